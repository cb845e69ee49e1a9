"""Finding handler plugins by name and handlers by import path."""

from __future__ import annotations

import importlib
import os
import sys
import textwrap
from typing import Any

from twisted.trial import unittest

from pokan.daemon.discovery import Discovery, FoundPlugin, discover, resolve
from pokan.daemon.handlers import HandlerPlugin
from pokan.errors import ConfigurationError
from tests.support import LogCatcher

GOOD = """
from pokan.daemon.handlers import HandlerPlugin

class Echo:
    def __init__(self, arg):
        self.arg = arg
    def new_key(self, key):
        pass

echo = HandlerPlugin("echo", "echoes keys", lambda server, arg: Echo(arg))
unrelated = object()
"""

BROKEN = """
import no_such_module_for_pokan_tests
"""

SYNTAX = """
def oops(:
"""


class PluginDirectory:
    """A throwaway plugin package on sys.path."""

    count = 0

    def __init__(self, test: unittest.TestCase, modules: dict[str, str]) -> None:
        PluginDirectory.count += 1
        root = os.path.abspath(test.mktemp())
        self.name = f"pokan_test_plugins_{PluginDirectory.count}"
        package = os.path.join(root, self.name)
        os.makedirs(package)
        with open(os.path.join(package, "__init__.py"), "w") as f:
            f.write("")
        for name, source in modules.items():
            with open(os.path.join(package, f"{name}.py"), "w") as f:
                f.write(textwrap.dedent(source))
        sys.path.insert(0, root)
        test.addCleanup(sys.path.remove, root)
        test.addCleanup(self._forget)
        importlib.invalidate_caches()
        self.package = importlib.import_module(self.name)

    def _forget(self) -> None:
        for name in list(sys.modules):
            if name == self.name or name.startswith(self.name + "."):
                del sys.modules[name]


class DiscoverTests(unittest.TestCase):
    def test_finds_plugins_and_reports_broken_modules(self) -> None:
        plugins = PluginDirectory(
            self, {"good": GOOD, "broken": BROKEN, "syntax": SYNTAX}
        )
        logs = LogCatcher(self)
        found = discover(plugins.package)
        self.assertEqual(list(found.plugins), ["echo"])
        self.assertEqual(found.plugins["echo"][0].module, f"{plugins.name}.good")
        errors = sorted(b.error for b in found.broken)
        self.assertEqual(len(errors), 2, found.broken)
        self.assertIn("ModuleNotFoundError", errors[0])
        self.assertIn("no_such_module_for_pokan_tests", errors[0])
        self.assertIn("SyntaxError", errors[1])
        wheres = " ".join(b.where for b in found.broken)
        self.assertIn("broken.py", wheres)
        self.assertIn("syntax.py", wheres)
        # kept, not logged: no "Unhandled Error" with a traceback per module
        # (trial would also fail this test for a logged error)
        self.assertEqual(logs.events, [])
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_exit_and_multi_line_errors_are_one_line_failures(self) -> None:
        plugins = PluginDirectory(
            self,
            {
                "good": GOOD,
                "exits": "import sys\nsys.exit('bye from plugin')\n",
                "lines": "raise RuntimeError('boom\\nsecond line')\n",
            },
        )
        found = discover(plugins.package)  # a sys.exit() does not end us
        self.assertEqual(list(found.plugins), ["echo"])
        self.assertEqual(
            sorted(b.error for b in found.broken),
            ["RuntimeError: boom", "SystemExit: bye from plugin"],
        )

    def test_describe_lists_plugins_directories_and_failures(self) -> None:
        plugins = PluginDirectory(self, {"good": GOOD, "broken": BROKEN})
        text = discover(plugins.package).describe()
        self.assertIn("echo: echoes keys", text)
        self.assertIn(plugins.name, text)
        self.assertIn("failed to load", text)
        self.assertIn("no_such_module_for_pokan_tests", text)

    def test_builtin_log_plugin_is_found(self) -> None:
        found = discover()
        self.assertIn("log", found.plugins)


def discovery_of(*plugins: HandlerPlugin) -> Any:
    found: dict[str, list[FoundPlugin]] = {}
    for p in plugins:
        found.setdefault(p.name, []).append(FoundPlugin(p, f"mod_{len(found)}"))
    return lambda: Discovery(found, (), ("/plugins",))


class ResolveTests(unittest.TestCase):
    def test_by_name_with_argument(self) -> None:
        plugin = HandlerPlugin("echo", "d", lambda server, arg: ("built", server, arg))
        spec = resolve("echo=/tmp/x=y", discovery_of(plugin))
        self.assertEqual(spec.make("srv"), ("built", "srv", "/tmp/x=y"))
        self.assertIsNone(resolve("echo", discovery_of(plugin)).argument)

    def test_unknown_name_lists_what_was_found(self) -> None:
        plugin = HandlerPlugin("echo", "echoes", lambda server, arg: None)
        with self.assertRaises(ConfigurationError) as caught:
            resolve("ecco", discovery_of(plugin))
        message = str(caught.exception)
        self.assertIn("--handler ecco: no handler plugin of that name", message)
        self.assertIn("echo: echoes", message)
        self.assertIn("/plugins", message)

    def test_found_but_other_modules_broken_warns(self) -> None:
        from twisted.logger import formatEvent, globalLogPublisher

        from pokan.daemon.discovery import BrokenPlugin

        events: list[Any] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        plugin = HandlerPlugin("echo", "d", lambda server, arg: None)
        found = Discovery(
            {"echo": [FoundPlugin(plugin, "m")]},
            (BrokenPlugin("/p/oops.py:1", "ImportError: nope"),),
        )
        resolve("echo", lambda: found)
        lines = [formatEvent(e) for e in events]
        self.assertIn(
            "handler plugin module /p/oops.py:1 failed to load: ImportError: nope",
            lines,
        )

    def test_duplicate_names_are_ambiguous(self) -> None:
        a = HandlerPlugin("echo", "a", lambda server, arg: None)
        b = HandlerPlugin("echo", "b", lambda server, arg: None)
        with self.assertRaises(ConfigurationError) as caught:
            resolve("echo", discovery_of(a, b))
        self.assertIn("several plugins", str(caught.exception))

    def test_factory_errors_become_configuration_errors(self) -> None:
        def factory(server: Any, arg: str | None) -> Any:
            raise ValueError("needs a file name")

        spec = resolve("x", discovery_of(HandlerPlugin("x", "", factory)))
        with self.assertRaises(ConfigurationError) as caught:
            spec.make(None)
        self.assertEqual(str(caught.exception), "--handler x: needs a file name")

    def test_by_import_path(self) -> None:
        plugins = PluginDirectory(self, {"good": GOOD})
        spec = resolve(f"{plugins.name}.good:echo=hi")
        self.assertEqual(spec.make(None).arg, "hi")  # a plugin: built
        handler_object = f"{plugins.name}.good:Echo"
        with self.assertRaises(ConfigurationError) as caught:
            resolve(handler_object)
        self.assertIn("is a class", str(caught.exception))

    def test_import_path_to_a_handler_object(self) -> None:
        plugins = PluginDirectory(self, {"objs": GOOD + "\nready = Echo('preset')\n"})
        spec = resolve(f"{plugins.name}.objs:ready")
        self.assertEqual(spec.make(None).arg, "preset")
        with self.assertRaises(ConfigurationError) as caught:
            resolve(f"{plugins.name}.objs:ready=arg")
        self.assertIn("takes no argument", str(caught.exception))

    def test_import_path_errors(self) -> None:
        plugins = PluginDirectory(self, {"good": GOOD, "broken": BROKEN})
        cases = {
            "nope_not_a_module:x": "cannot import nope_not_a_module",
            f"{plugins.name}.broken:x": "no_such_module_for_pokan_tests",
            f"{plugins.name}.good:missing": "has no attribute missing",
            f"{plugins.name}.good:unrelated": "neither a handler plugin",
            ":x": "package.module:attribute",
            "=x": "NAME[=ARG]",
        }
        for value, message in cases.items():
            with self.assertRaises(ConfigurationError) as caught:
                resolve(value)
            self.assertIn(message, str(caught.exception), value)
