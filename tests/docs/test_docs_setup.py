"""The docs say how to get `twistd` and `python`, and what peers() returns."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from twisted.trial import unittest

from pokan import Server

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


class SetupNoteTests(unittest.TestCase):
    def test_each_page_says_early_where_twistd_and_python_are(self) -> None:
        for name in ("twistd.md", "embedding.md", "handlers.md", "redis.md"):
            text = (DOCS / name).read_text()
            first_command = min(
                i for i in (text.find("twistd -n"), text.find("python")) if i >= 0
            )
            note = text.find(". .venv/bin/activate")
            self.assertTrue(0 <= note < first_command + 400, name)

    def test_redis_md_offers_no_udp_port_twistd_refuses(self) -> None:
        self.assertNotIn("`--udp-port 0`", (DOCS / "redis.md").read_text())
        refused = subprocess.run(
            [
                sys.executable,
                "-c",
                "from pokan.daemon.tap import Options;"
                " Options().parseOptions(['-a', '127.0.0.1', '--udp-port', '0'])",
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        self.assertIn("--udp-port must be from 1 to 65535", refused.stderr)

    def test_peers_doc_names_every_status_returned_by_default(self) -> None:
        doc = Server.peers.__doc__ or ""
        for status in ("alive", "dead", "left"):
            self.assertIn(status, doc)
            self.assertIn(f'`"{status}"`', (DOCS / "api.md").read_text())
        self.assertIn('peers("alive")', (DOCS / "api.md").read_text())
