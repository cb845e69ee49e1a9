"""``twistd pokan --version`` and ``--list-handlers``: print, then exit 0."""

from __future__ import annotations

import importlib.metadata
import io
import sys

from twisted.trial import unittest

import twisted
from pokan.tap import Options


def parse_printing(args: list[str]) -> tuple[str, object]:
    """Parse ``args``; what went to stdout and the SystemExit code."""
    out = io.StringIO()
    saved, sys.stdout = sys.stdout, out
    try:
        Options().parseOptions(args)
    except SystemExit as e:
        return out.getvalue(), e.code
    finally:
        sys.stdout = saved
    raise AssertionError(f"{args} did not exit; printed {out.getvalue()!r}")


class VersionTests(unittest.TestCase):
    def test_prints_pokan_and_twisted_versions(self) -> None:
        printed, code = parse_printing(["--version"])
        self.assertIn(code, (None, 0))
        lines = printed.splitlines()
        self.assertEqual(lines[0], f"pokan {importlib.metadata.version('pokan')}")
        self.assertIn(f"Twisted {twisted.__version__}", printed)
