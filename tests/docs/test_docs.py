"""The examples in docs/api.md and docs/quickstart.md run as documented."""

from __future__ import annotations

import inspect
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from twisted.trial import unittest

from pokan import Server
from tests.support import free_port, wait_until

DOCS = Path(__file__).resolve().parents[2] / "docs"
BIN = Path(sys.executable).parent


def code_blocks(name: str, language: str) -> list[str]:
    text = (DOCS / name).read_text()
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def wait_for(condition, timeout: float, what: str):
    return wait_until(condition, timeout, interval=0.05, message=what)


class APIExamplesTests(unittest.TestCase):
    def test_every_python_block_runs(self) -> None:
        blocks = code_blocks("api.md", "python")
        self.assertGreaterEqual(len(blocks), 4)
        for block in blocks:
            exec(compile(block, "docs/api.md", "exec"), {"print": lambda *a: None})


class APISignatureTests(unittest.TestCase):
    def test_the_server_signature_is_the_real_one(self) -> None:
        text = " ".join((DOCS / "api.md").read_text().split())
        documented = re.search(r"`Server\(address, \*, (.*?)\)`", text)
        assert documented is not None
        params = dict(p.split("=", 1) for p in documented[1].split(", "))
        real = inspect.signature(Server).parameters
        self.assertEqual(list(params), [n for n in real if n != "address"])
        for name, shown in params.items():
            default = real[name].default
            if name != "max_frame":  # shown as 16 MiB
                self.assertEqual(shown, repr(default), name)


class QuickstartTests(unittest.TestCase):
    async def test_three_node_cluster_and_script(self) -> None:
        (commands,) = code_blocks("quickstart.md", "sh")
        (script,) = code_blocks("quickstart.md", "python")
        ports = {p: str(free_port()) for p in ("5555", "5556", "5557", "5558")}

        def with_ports(text: str) -> str:
            return re.sub(r"\b555[5-8]\b", lambda m: ports[m.group()], text)

        workdir = tempfile.mkdtemp()
        logs = []
        for line in with_ports(commands).strip().splitlines():
            argv = line.split()
            argv[0] = str(BIN / "twistd")
            log = Path(workdir) / f"node{len(logs)}.log"
            with log.open("w") as out:
                proc = subprocess.Popen(
                    argv, cwd=workdir, stdout=out, stderr=subprocess.STDOUT
                )
            self.addCleanup(stop, proc)
            logs.append(log)
        await wait_for(
            lambda: all(
                "joined the cluster through seed" in log.read_text() for log in logs[1:]
            ),
            30,
            "the two nodes to join the seed",
        )
        result = subprocess.run(
            [sys.executable, "-c", with_ports(script)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=workdir,
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        lines = result.stdout.splitlines()
        self.assertEqual(len(lines), 3, result.stdout)
        self.assertTrue(all(" alive " in line for line in lines), lines)
        roles = sorted(re.search(r"'role': '(\w+)'", line)[1] for line in lines)
        self.assertEqual(roles, ["db", "seed", "web"])


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
