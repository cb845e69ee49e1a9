"""start()'s logging: to stderr unless the program logs itself."""

from __future__ import annotations

import io
import types
import warnings
from typing import Any

from twisted.internet import defer
from twisted.logger import LogBeginner, Logger, LogPublisher
from twisted.trial import unittest

from pokan.daemon.logsetup import log_to_stderr
from pokan.net import blocking
from tests.support import start_server


class FakeStdio:
    def __init__(self) -> None:
        self.stdout = io.StringIO()
        self.stderr = io.StringIO()


class LogToStderrTests(unittest.TestCase):
    """On a LogBeginner of its own: the global one is left alone."""

    def setUp(self) -> None:
        self.publisher = LogPublisher()
        self.stdio = FakeStdio()
        self.warnings = types.SimpleNamespace(showwarning=warnings.showwarning)
        self.beginner = LogBeginner(
            self.publisher, io.StringIO(), self.stdio, self.warnings
        )
        self.log = Logger(namespace="pokan.test", observer=self.publisher)
        self.stream = io.StringIO()

    def begin(self) -> bool:
        return log_to_stderr(self.beginner, self.publisher, self.stream)

    def test_info_and_up_as_text_lines(self) -> None:
        self.log.info("before {what}", what="the start")  # buffered, then shown
        self.assertTrue(self.begin())
        self.log.debug("not shown")
        self.log.info("node {id} listening", id="127.0.0.1:5555")
        self.log.warn("could not sync with any seed")
        lines = self.stream.getvalue().splitlines()
        self.assertEqual(len(lines), 3, lines)
        self.assertTrue(lines[0].endswith("[pokan.test#info] before the start"))
        self.assertTrue(
            lines[1].endswith("[pokan.test#info] node 127.0.0.1:5555 listening")
        )
        self.assertTrue(
            lines[2].endswith("[pokan.test#warn] could not sync with any seed")
        )

    def test_print_is_not_redirected(self) -> None:
        self.begin()
        self.assertIsInstance(self.stdio.stdout, io.StringIO)
        self.assertIsInstance(self.stdio.stderr, io.StringIO)

    def test_not_when_the_program_began_logging(self) -> None:
        mine: list[Any] = []
        self.beginner.beginLoggingTo([mine.append], redirectStandardIO=False)
        self.assertFalse(self.begin())
        self.log.info("once")
        self.assertEqual(self.stream.getvalue(), "")
        self.assertEqual([e["log_format"] for e in mine], ["once"])

    def test_not_when_the_program_observes_the_publisher(self) -> None:
        mine: list[Any] = []
        self.publisher.addObserver(mine.append)
        self.assertFalse(self.begin())
        self.log.info("once")
        self.assertEqual(self.stream.getvalue(), "")
        self.assertEqual([e["log_format"] for e in mine], ["once"])

    def test_only_once(self) -> None:
        self.assertTrue(self.begin())
        self.assertFalse(self.begin())
        self.log.info("once")
        self.assertEqual(len(self.stream.getvalue().splitlines()), 1)


class ServiceDoesNotBeginLoggingTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_start_service_leaves_logging_to_the_program(self) -> Any:
        """Only the blocking start() may begin logging; a service never does."""
        calls: list[Any] = []
        self.patch(blocking, "log_to_stderr", lambda *a: calls.append(a))
        node = yield start_server(self)
        yield node.stopService()
        self.assertEqual(calls, [])


class TwistdLogLevelTests(unittest.TestCase):
    """--log-level: twistd's own observer behind a level filter."""

    def observer(self, level: str) -> tuple[Any, str]:
        from twisted.logger import ILogObserver
        from twisted.python.components import Componentized

        from pokan.daemon.logsetup import check_log_level, filter_twistd_log

        path = self.mktemp()
        application = Componentized()
        config = {"logfile": path, "nodaemon": False, "syslog": False}
        self.assertTrue(filter_twistd_log(application, config, check_log_level(level)))
        return application.getComponent(ILogObserver), path

    def test_warn_keeps_warnings_only(self) -> None:
        observer, path = self.observer("warn")
        log = Logger(namespace="pokan.test", observer=observer)
        log.info("an info line")
        log.warn("a warning")
        with open(path) as f:
            text = f.read()
        self.assertIn("a warning", text)
        self.assertNotIn("an info line", text)

    def test_debug_keeps_debug(self) -> None:
        observer, path = self.observer("debug")
        Logger(namespace="pokan.test", observer=observer).debug("a debug line")
        with open(path) as f:
            self.assertIn("a debug line", f.read())

    def test_a_logger_of_twistd_is_left_alone(self) -> None:
        from twisted.logger import LogLevel
        from twisted.python.components import Componentized

        from pokan.daemon.logsetup import filter_twistd_log

        config = {"logger": "some.factory"}
        self.assertFalse(filter_twistd_log(Componentized(), config, LogLevel.warn))

    def test_unknown_level(self) -> None:
        from pokan import ConfigurationError
        from pokan.daemon.logsetup import check_log_level

        with self.assertRaises(ConfigurationError):
            check_log_level("loud")
