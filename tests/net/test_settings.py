"""Settings: one frozen value, checked once, errors naming the option."""

from __future__ import annotations

import attrs
from twisted.trial import unittest

from pokan.daemon.tap import FLAG_NAMES
from pokan.errors import ConfigurationError
from pokan.net.server import Server
from pokan.net.settings import Settings


class SettingsTests(unittest.TestCase):
    def test_defaults_are_the_server_s(self) -> None:
        settings = Settings.checked(address="127.0.0.1")
        self.assertEqual(settings, Server("127.0.0.1").configuration)
        self.assertEqual(settings.engine.fanout, 3)
        self.assertEqual(settings.max_hello, min(settings.max_frame, 2**20))

    def test_frozen(self) -> None:
        settings = Settings.checked(address="127.0.0.1")
        with self.assertRaises(attrs.exceptions.FrozenInstanceError):
            settings.address = "10.0.0.1"  # type: ignore[misc]

    def test_messages_name_the_keyword_or_the_flag(self) -> None:
        cases = [
            ({"gossip_interval": 0}, "gossip_interval=", "--gossip-interval"),
            ({"fanout": 99}, "gossip_fanout=", "--gossip-fanout"),
            ({"tombstone_ttl": -1}, "tombstone_ttl=", "--tombstone-ttl"),
            ({"max_nodes": 1}, "max nodes", "--max-nodes"),
            ({"cluster": "a b"}, "cluster", "--cluster: "),
            ({"drop_rate": 2}, "drop rate", "--drop-rate: "),
            ({"udp_port": "x"}, "udp port", "--udp-port"),
        ]
        for raw, keyword, flag in cases:
            with self.assertRaisesRegex(ConfigurationError, keyword):
                Settings.checked(address="127.0.0.1", **raw)
            with self.assertRaises(ConfigurationError) as caught:
                Settings.checked(FLAG_NAMES, address="127.0.0.1", **raw)
            self.assertIn(flag, str(caught.exception))

    def test_port_zero_only_where_allowed(self) -> None:
        self.assertEqual(Settings.checked(address="::1", tcp_port=0).tcp_port, 0)
        with self.assertRaisesRegex(ConfigurationError, "--tcp-port"):
            Settings.checked(FLAG_NAMES, any_port=False, address="::1", tcp_port=0)

    def test_a_server_from_settings_is_configured_alike(self) -> None:
        settings = Settings.checked(
            address="127.0.0.1",
            seeds="127.0.0.1:7000",
            gossip_interval=0.5,
            idle_interval=2,
        )
        server = Server.from_settings(settings)
        self.assertEqual(server.configuration, settings)
        self.assertEqual(server.seeds, ["127.0.0.1:7000"])
        self.assertEqual(server.idle_interval, 2.0)

    def test_the_server_s_settings_follow_its_setters(self) -> None:
        server = Server("127.0.0.1")
        server.gossip_every(0.25)
        server.udp_port = 7001
        self.assertEqual(server.configuration.engine.gossip_interval, 0.25)
        self.assertEqual(server.configuration.udp_port, 7001)
