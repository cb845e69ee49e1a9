"""Settings: one frozen value, checked once, errors naming the option."""

from __future__ import annotations

import attrs
from twisted.trial import unittest

from pokan.daemon.tap import FLAG_NAMES
from pokan.errors import ConfigurationError
from pokan.net.server import Server
from pokan.net.settings import API_NAMES, Settings


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
            ({"max_nodes": 1}, "max_nodes=", "--max-nodes"),
            ({"cluster": "a b"}, "cluster=", "--cluster"),
            ({"drop_rate": 2}, "drop_rate=", "--drop-rate"),
            ({"udp_port": "x"}, "udp_port=", "--udp-port"),
            ({"tcp_port": 70000}, "tcp_port=", "--tcp-port"),
            ({"max_sync_connections": 0}, "max_sync_connections=", "--max-sync-"),
            ({"max_sync_per_host": 0}, "max_sync_per_host=", "--max-sync-per-host"),
            ({"handler_timeout": 0}, "handler_timeout=", "--handler-timeout"),
            ({"seeds": 5555}, "gossip_with=", "--gossip-with"),
        ]
        for raw, keyword, flag in cases:
            # the name first, as typed: "--drop-rate must be ...", not
            # "--drop-rate: drop rate must be ..."
            with self.assertRaises(ConfigurationError) as caught:
                Settings.checked(address="127.0.0.1", **raw)
            self.assertTrue(str(caught.exception).startswith(f"{keyword} must"))
            with self.assertRaises(ConfigurationError) as caught:
                Settings.checked(FLAG_NAMES, address="127.0.0.1", **raw)
            self.assertTrue(str(caught.exception).startswith(f"{flag}"))
            self.assertNotIn(keyword, str(caught.exception))

    def test_the_flags_name_every_setting_the_api_does(self) -> None:
        api_only = {"max_frame", "sync_timeout"}  # no twistd option sets them
        self.assertEqual(set(API_NAMES) - set(FLAG_NAMES), api_only)

    def test_seeds_of_a_wrong_type_say_the_form_expected(self) -> None:
        for seeds, got in (
            (5555, "got 5555 (int)"),
            (b"10.0.0.9:5555", "got b'10.0.0.9:5555' (bytes)"),
            ([5555], "got 5555 (int) in [5555]"),
            (("10.0.0.9", 5555), "got 5555 (int) in ['10.0.0.9', 5555]"),
        ):
            with self.assertRaises(ConfigurationError) as caught:
                Settings.checked(address="127.0.0.1", seeds=seeds)
            message = str(caught.exception)
            self.assertIn(
                'gossip_with= must be a "HOST:PORT" string or a list', message
            )
            self.assertTrue(message.endswith(got), message)
        listed = Settings.checked(address="127.0.0.1", seeds=iter(["10.0.0.9"]))
        self.assertEqual(listed.seeds, (("10.0.0.9", 5555),))

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
