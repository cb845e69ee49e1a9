"""The Makefile: `make run` installs only what running needs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from twisted.trial import unittest

ROOT = Path(__file__).resolve().parents[2]


def planned(target: str, venv: str) -> str:
    """The commands ``make -n TARGET`` would run for a fresh venv."""
    return subprocess.run(
        ["make", "-n", "-C", str(ROOT), target, f"VENV={venv}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


class MakefileTests(unittest.TestCase):
    def setUp(self) -> None:
        if shutil.which("make") is None:
            raise unittest.SkipTest("make is not installed")
        self.venv = str(Path(self.mktemp()).resolve())

    def test_run_installs_no_dev_tools(self) -> None:
        plan = planned("run", self.venv)
        self.assertIn("pip install -q .\n", plan)
        self.assertNotIn("[dev]", plan)
        self.assertIn("trap : INT;", plan)  # Ctrl-C is not make's "Interrupt"

    def test_test_installs_the_dev_tools(self) -> None:
        plan = planned("test", self.venv)
        self.assertIn("pip install -q '.[dev]'", plan)
        self.assertIn("mypy", plan)

    def test_unit_installs_the_browser(self) -> None:
        """``make test`` installs Debian's chromium for the dashboard's browser test."""
        plan = planned("unit", self.venv)
        self.assertIn("command -v chromium", plan)
        self.assertIn("apt-get install -y -qq chromium", plan)
        self.assertNotIn("playwright install", plan)  # never Playwright's downloads

    def test_unit_installs_nftables(self) -> None:
        """``make test`` installs Debian's nftables for the network-namespace test."""
        plan = planned("unit", self.venv)
        self.assertIn("command -v nft ", plan)
        self.assertIn("apt-get install -y -qq nftables", plan)
