"""Settings a user cannot mean are refused, naming the option as typed."""

from __future__ import annotations

from twisted.python import usage
from twisted.trial import unittest

from pokan import ConfigurationError, Server
from pokan.daemon.tap import Options


class ServerBoundsTests(unittest.TestCase):
    def refused(self, **kwargs: object) -> str:
        with self.assertRaises(ConfigurationError) as caught:
            Server("127.0.0.1", **kwargs)  # type: ignore[arg-type]
        return str(caught.exception)

    def test_each_bound_names_the_argument(self) -> None:
        cases = {
            "gossip_interval": (
                1e-9,
                "gossip_interval= must be from 0.01 to 60 seconds, got 1e-09",
            ),
            "sync_timeout": (
                0.01,
                "sync_timeout= must be from 0.1 to 600 seconds, got 0.01",
            ),
            "phi_threshold": (0.5, "phi_threshold= must be from 1 to 50, got 0.5"),
            "tombstone_ttl": (
                10**9,
                "tombstone_ttl= must be from 0.1 to 31536000 seconds, got 1000000000",
            ),
            "dead_node_ttl": (
                0.01,
                "dead_node_ttl= must be from 0.1 to 31536000 seconds, got 0.01",
            ),
            "gossip_fanout": (17, "gossip_fanout= must be from 1 to 16, got 17"),
            "idle_interval": (
                301,
                "idle_interval= must be from the gossip interval (1 s) to 300"
                " seconds, got 301",
            ),
        }
        for name, (value, message) in cases.items():
            self.assertEqual(self.refused(**{name: value}), message, name)

    def test_the_bounds_themselves_are_taken(self) -> None:
        Server("127.0.0.1", gossip_interval=0.01, idle_interval=300)
        Server("127.0.0.1", gossip_interval=60, phi_threshold=50, gossip_fanout=16)
        Server("127.0.0.1", tombstone_ttl=0.1, dead_node_ttl=31536000)
        Server("127.0.0.1", sync_timeout=600, phi_threshold=1, gossip_fanout=1)

    def test_not_a_number(self) -> None:
        self.assertEqual(
            self.refused(gossip_interval="soon"),
            "gossip_interval= must be a number of seconds, got 'soon'",
        )
        self.assertEqual(
            self.refused(phi_threshold=float("nan")),
            "phi_threshold= must be from 1 to 50, got nan",
        )

    def test_the_setters_name_themselves(self) -> None:
        server = Server("127.0.0.1")
        with self.assertRaises(ConfigurationError) as caught:
            server.gossip_every(1e-9)
        self.assertEqual(
            str(caught.exception),
            "gossip_every() must be from 0.01 to 60 seconds, got 1e-09",
        )
        with self.assertRaises(ConfigurationError) as caught:
            server.idle_every(1000)
        self.assertIn(
            "idle_every() must be from the gossip interval", str(caught.exception)
        )


class OptionBoundsTests(unittest.TestCase):
    def refused(self, *args: str) -> str:
        with self.assertRaises(usage.UsageError) as caught:
            Options().parseOptions(["--address", "127.0.0.1", *args])
        return str(caught.exception)

    def test_each_bound_names_the_option_as_typed(self) -> None:
        cases = [
            (
                ["--gossip-interval", "1e-9"],
                "--gossip-interval must be from 0.01 to 60 seconds, got 1e-09",
            ),
            (
                ["-i", "100"],
                "--gossip-interval must be from 0.01 to 60 seconds, got 100",
            ),
            (["--gossip-fanout", "0"], "--gossip-fanout must be from 1 to 16, got 0"),
            (["--phi-threshold", "60"], "--phi-threshold must be from 1 to 50, got 60"),
            (
                ["--tombstone-ttl", "0"],
                "--tombstone-ttl must be from 0.1 to 31536000 seconds, got 0",
            ),
            (
                ["--dead-node-ttl", "1e12"],
                "--dead-node-ttl must be from 0.1 to 31536000 seconds,"
                " got 1000000000000",
            ),
            (
                ["--idle-interval", "0.5"],
                "--idle-interval must be from the gossip interval (1 s) to 300"
                " seconds, got 0.5",
            ),
            (["--gossip-interval", "soon"], "--gossip-interval must be a number of"),
        ]
        for args, message in cases:
            self.assertEqual(self.refused(*args)[: len(message)], message, args)
