"""start()'s logging: to stderr unless the program logs itself."""

from __future__ import annotations

import io
import types
import warnings
from typing import Any

from twisted.internet import defer
from twisted.logger import LogBeginner, Logger, LogPublisher
from twisted.trial import unittest

from pokan.net import blocking
from pokan.net.stderrlog import log_to_stderr
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
