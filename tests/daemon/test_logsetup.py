"""twistd's --log-level: its own observer behind a level filter."""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger, LogLevel
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
        why_not = filter_twistd_log(application, config, check_log_level(level))
        self.assertIsNone(why_not)
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
        why_not = filter_twistd_log(Componentized(), config, LogLevel.warn)
        self.assertIn("--logger", why_not or "")

    def test_a_twistd_without_its_private_observer_maker_is_left_alone(self) -> None:
        """twistd has no public way to make its observer: where Twisted drops
        the private one, twistd keeps its own and the reason is returned."""
        from twisted.logger import ILogObserver, LogLevel
        from twisted.python.components import Componentized
        from twisted.scripts import _twistd_unix

        from pokan.daemon.logsetup import filter_twistd_log

        class LaterAppLogger:
            def __init__(self, options: Any) -> None:
                self.options = options

        self.patch(_twistd_unix, "UnixAppLogger", LaterAppLogger)
        application = Componentized()
        config = {"logfile": self.mktemp(), "nodaemon": False, "syslog": False}
        why_not = filter_twistd_log(application, config, LogLevel.warn)
        self.assertIn("log observer", why_not or "")
        self.assertIsNone(application.getComponent(ILogObserver))

    def test_unknown_level(self) -> None:
        from pokan import ConfigurationError
        from pokan.daemon.logsetup import check_log_level

        with self.assertRaises(ConfigurationError):
            check_log_level("loud")


class DaemonServiceLogLevelTests(unittest.TestCase):
    """twistd's application takes the filter, or a warning says why not."""

    def service(self, twistd_config: dict[str, Any]) -> Any:
        from twisted.internet import task

        from pokan.daemon.logsetup import check_log_level
        from pokan.daemon.tap import DaemonService
        from pokan.net.server import Server

        server = Server("127.0.0.1", reactor=task.Clock())
        return DaemonService(server, False, check_log_level("warn"), twistd_config)

    def test_a_logger_of_twistd_gets_a_warning(self) -> None:
        from twisted.application.service import Application
        from twisted.logger import ILogObserver

        from pokan.daemon import tap

        events: list[dict[str, Any]] = []
        self.patch(tap, "log", Logger(namespace="pokan.test", observer=events.append))
        application = Application("pokan")
        self.service({"logger": "some.factory"}).setServiceParent(application)
        self.assertIsNone(application.getComponent(ILogObserver))
        [warning] = events
        self.assertEqual(warning["chosen_level"], "warn")
        self.assertEqual(warning["log_level"], LogLevel.warn)
        self.assertIn("--logger", warning["why_not"])

    def test_twistds_own_observer_is_filtered_silently(self) -> None:
        from twisted.application.service import Application
        from twisted.logger import FilteringLogObserver, ILogObserver

        from pokan.daemon import tap

        events: list[dict[str, Any]] = []
        self.patch(tap, "log", Logger(namespace="pokan.test", observer=events.append))
        application = Application("pokan")
        config = {"logfile": self.mktemp(), "nodaemon": False, "syslog": False}
        self.service(config).setServiceParent(application)
        observer = application.getComponent(ILogObserver)
        self.assertIsInstance(observer, FilteringLogObserver)
        self.assertEqual(events, [])
