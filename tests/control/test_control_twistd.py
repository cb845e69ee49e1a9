"""twistd pokan serves the control API (installed pokan: pip install . first)."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.trial import unittest

from tests.control_support import call
from tests.support import TWISTD, Daemon, free_port, run, temp_dir, wait_until


def twistd_args(port: int, *extra: str) -> list[str]:
    return [
        TWISTD,
        "-n",
        "--pidfile=",
        "pokan",
        "--address",
        "127.0.0.1",
        "--tcp-port",
        str(port),
        "--udp-port",
        str(port),
        *extra,
    ]


class TwistdControlTests(unittest.TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def test_default_control_port_in_the_start_line(self) -> Any:
        port = free_port()
        while port + 1818 > 65535:
            port = free_port()
        daemon = Daemon(self, twistd_args(port), cwd=temp_dir(self))
        line = f"control API on http://127.0.0.1:{port + 1818}"
        yield wait_until(lambda: line in daemon.output(), 30, message=daemon.describe)
        code, body = yield call(f"http://127.0.0.1:{port + 1818}", "GET", "/v1/info")
        self.assertEqual(code, 200)
        self.assertEqual(body["id"], f"127.0.0.1:{port}")
        # quiet: no access-log line per request, no debug
        self.assertNotIn("GET /v1/info", daemon.output())

    @defer.inlineCallbacks
    def test_info_shows_the_settings_given(self) -> Any:
        port, control = free_port(), free_port()
        daemon = Daemon(
            self,
            twistd_args(
                port,
                "--control",
                f"127.0.0.1:{control}",
                "--failure-detector",
                "phi",
                "--max-sync-connections",
                "9",
                "--max-sync-per-host",
                "3",
                "--handler-queue",
                "7",
                "--on-event",
                "new_key=true",
            ),
            cwd=temp_dir(self),
        )
        yield wait_until(lambda: daemon.exited() or _answers(control), 30)
        code, body = yield call(f"http://127.0.0.1:{control}", "GET", "/v1/info")
        self.assertEqual(code, 200, daemon.describe())
        settings = body["settings"]
        self.assertEqual(
            {
                name: settings.get(name, "missing")
                for name in (
                    "failure_detector",
                    "max_sync_connections",
                    "max_sync_per_host",
                    "drop_rate",
                    "handler_queue",
                    "probe_interval",
                )
            },
            {
                "failure_detector": "phi",
                "max_sync_connections": 9,
                "max_sync_per_host": 3,
                "drop_rate": 0.0,
                "handler_queue": 7,
                "probe_interval": None,  # phi does not probe
            },
        )
        daemon.kill()

    @defer.inlineCallbacks
    def test_log_level_warn_hides_the_info_start_line(self) -> Any:
        port, control = free_port(), free_port()
        daemon = Daemon(
            self,
            twistd_args(
                port, "--control", f"127.0.0.1:{control}", "--log-level", "warn"
            ),
            cwd=temp_dir(self),
        )
        yield wait_until(lambda: daemon.exited() or _answers(control), 30)
        code, _ = yield call(f"http://127.0.0.1:{control}", "GET", "/v1/health")
        self.assertEqual(code, 200, daemon.describe())  # started: banner logged
        self.assertNotIn("listening on", daemon.output())  # an info line
        daemon.kill()

    def test_no_control(self) -> None:
        port = free_port()
        result = run(
            twistd_args(port, "--no-control", "--control", "127.0.0.1:1"),
            cwd=temp_dir(self),
        )
        self.assertEqual(result.returncode, 1)
        self.assertIn("--no-control cannot go with --control", result.stdout)

    def test_beyond_loopback_without_token_refused(self) -> None:
        result = run(
            twistd_args(free_port(), "--control", "0.0.0.0:7999"), cwd=temp_dir(self)
        )
        self.assertEqual(result.returncode, 1)
        self.assertIn("--control-token-file", result.stdout)

    def test_bad_log_level(self) -> None:
        result = run(
            twistd_args(free_port(), "--log-level", "loud"), cwd=temp_dir(self)
        )
        self.assertEqual(result.returncode, 1)
        self.assertIn(
            "--log-level must be one of debug, info, warn, error", result.stdout
        )


def _answers(port: int) -> bool:
    import socket

    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True
