"""``twistd pokan --version`` and ``--list-handlers``: print, then exit 0."""

from __future__ import annotations

import importlib.metadata
import io
import sys

from twisted.trial import unittest

import twisted
from pokan.daemon.discovery import Discovery, FoundPlugin
from pokan.daemon.tap import Options


def parse_printing(
    args: list[str], options: Options | None = None
) -> tuple[str, object]:
    """Parse ``args``; what went to stdout and the SystemExit code."""
    out = io.StringIO()
    saved, sys.stdout = sys.stdout, out
    try:
        (options or Options()).parseOptions(args)
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


class Plugin:
    def __init__(self, name: str, description: str) -> None:
        self.name = name
        self.description = description


class ListHandlersTests(unittest.TestCase):
    def test_one_line_per_installed_plugin_then_exit_0(self) -> None:
        options = Options()
        options._discovered = Discovery(
            {
                "zeta": [FoundPlugin(Plugin("zeta", "last one"), "mod_z")],
                "alpha": [FoundPlugin(Plugin("alpha", "first one"), "mod_a")],
            },
            (),
        )
        printed, code = parse_printing(["--list-handlers"], options)
        self.assertIn(code, (None, 0))
        lines = printed.splitlines()
        self.assertEqual(len(lines), 2, printed)
        self.assertTrue(lines[0].startswith("alpha"), lines)
        self.assertIn("first one", lines[0])
        self.assertIn("mod_a", lines[0])
        self.assertTrue(lines[1].startswith("zeta"), lines)

    def test_lists_the_builtin_log_plugin_without_address(self) -> None:
        printed, code = parse_printing(["--list-handlers"])
        self.assertIn(code, (None, 0))
        self.assertIn("log", [line.split()[0] for line in printed.splitlines()])
