"""A private redis-server for tests: a free port on 127.0.0.1, stopped by PID.

Never the machine's own server on 6379. Without persistence unless asked.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import Any

import redis
import trustme

STARTUP_DEADLINE = 10.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """One redis-server process; ``url`` points at it."""

    def __init__(
        self, port: int | None = None, unix_socket: bool = False, tls: bool = False
    ) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is missing: run `make redis-server`")
        self.binary = binary
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="pokan-redis-")
        self.socket_path = os.path.join(self.dir, "redis.sock") if unix_socket else None
        #: with ``tls``: TLS only, on ``port``, with a certificate for
        #: 127.0.0.1 from a throwaway CA whose certificate is ``ca_path``
        self.ca_path = self._make_certificates() if tls else None
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def tls_url(self) -> str:
        """A rediss:// URL that trusts the server's throwaway CA."""
        return f"rediss://127.0.0.1:{self.port}/0?ssl_ca_certs={self.ca_path}"

    def _make_certificates(self) -> str:
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1")
        ca_path = os.path.join(self.dir, "ca.pem")
        ca.cert_pem.write_to_path(ca_path)
        cert.cert_chain_pems[0].write_to_path(os.path.join(self.dir, "cert.pem"))
        cert.private_key_pem.write_to_path(os.path.join(self.dir, "key.pem"))
        return ca_path

    @property
    def unix_url(self) -> str:
        assert self.socket_path is not None
        return f"unix://{self.socket_path}?db=0"

    def start(self) -> None:
        """Start (again) on the same port: empty, as after a crash."""
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            self.dir,
            "--logfile",
            os.path.join(self.dir, "redis.log"),
        ]
        if self.socket_path is not None:
            args += ["--unixsocket", self.socket_path]
        if self.ca_path is not None:
            args[1:3] = ["--port", "0", "--tls-port", str(self.port)]
            args += ["--tls-cert-file", os.path.join(self.dir, "cert.pem")]
            args += ["--tls-key-file", os.path.join(self.dir, "key.pem")]
            args += ["--tls-auth-clients", "no"]
        self.process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL
        )
        deadline = time.monotonic() + STARTUP_DEADLINE
        probe = self.client()
        try:
            while True:
                try:
                    probe.ping()
                    return
                except redis.ConnectionError:
                    if self.process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(
                            f"redis-server did not start on port {self.port}"
                        ) from None
                    time.sleep(0.02)
        finally:
            probe.close()

    def client(self, **kwargs: Any) -> redis.Redis:
        """A plain redis-py client, as any program would use."""
        if self.ca_path is not None:
            kwargs.setdefault("ssl", True)
            kwargs.setdefault("ssl_ca_certs", self.ca_path)
        return redis.Redis(host="127.0.0.1", port=self.port, **kwargs)

    def kill(self) -> None:
        """SIGKILL it, as a crash does; wait until it is gone."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def exec_count(self) -> int:
        """How many EXECs the server has run (INFO commandstats)."""
        c = self.client()
        try:
            stats: Any = c.info("commandstats")
        finally:
            c.close()
        return int(stats.get("cmdstat_exec", {}).get("calls", 0))
