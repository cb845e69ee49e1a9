"""twistd's --log-level: its own observer behind a level filter."""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger
from twisted.trial import unittest


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
