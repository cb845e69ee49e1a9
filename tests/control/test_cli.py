"""The ``pokan`` command line: ``pokan keygen``."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner
from twisted.trial import unittest

from pokan.control.cli import main
from pokan.wire.keyring import KEY_SIZE, read_key_file

ROOT = Path(__file__).resolve().parents[2]


class KeygenTests(unittest.TestCase):
    def read_back(self, output: str) -> bytes:
        """The one key ``output`` holds, read back through a 0600 key file."""
        self.assertEqual(output.count("\n"), 1)
        self.assertTrue(output.endswith("\n"))
        path = os.path.abspath(self.mktemp())
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(output)
        (key,) = read_key_file(path).keys
        self.assertEqual(len(key), KEY_SIZE)
        self.assertEqual(key, base64.b64decode(output.strip(), validate=True))
        return key

    def test_prints_one_fresh_key_line(self) -> None:
        runner = CliRunner()
        keys = set()
        for _ in range(3):
            result = runner.invoke(main, ["keygen"])
            self.assertEqual(result.exit_code, 0, result.output)
            keys.add(self.read_back(result.output))
        self.assertEqual(len(keys), 3)

    def test_help_says_how_to_make_a_key_file(self) -> None:
        result = CliRunner().invoke(main, ["keygen", "--help"])
        self.assertEqual(result.exit_code, 0)
        text = " ".join(result.output.split())
        self.assertIn(
            "pokan keygen > /etc/pokan/keys && chmod 600 /etc/pokan/keys", text
        )

    def test_keygen_is_a_command_of_the_group(self) -> None:
        result = CliRunner().invoke(main, ["--help"])
        self.assertEqual(result.exit_code, 0)
        self.assertIn("keygen", result.output)
        self.assertNotEqual(CliRunner().invoke(main, ["no-such-command"]).exit_code, 0)

    def test_runs_as_a_module(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        done = subprocess.run(
            [sys.executable, "-m", "pokan.control.cli", "keygen"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertEqual(done.stderr, "")
        self.read_back(done.stdout)
