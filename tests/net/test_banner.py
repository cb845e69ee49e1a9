"""The start banner and its warnings, as plain lines."""

from __future__ import annotations

from typing import Any

import attrs
from twisted.logger import LogLevel, formatEvent
from twisted.trial import unittest

from pokan.core.settings import EngineSettings
from pokan.net.banner import Line, start_lines
from pokan.net.settings import Settings


def lines(config: Settings, **given: Any) -> list[Line]:
    facts: dict[str, Any] = {
        "id": f"{config.address}:{config.udp_port}",
        "fanout": 3,
        "detector": "phi threshold 8",
        "store": "memory",
        "handlers": (),
        "keys": None,
        "control": None,
    }
    facts.update(given)
    return start_lines(config, **facts)


def text(line: Line) -> str:
    return formatEvent({"log_format": line.format, **line.fields})


class StartLinesTests(unittest.TestCase):
    def test_a_loopback_seed_of_its_own(self) -> None:
        (banner,) = lines(Settings("127.0.0.1", tcp_port=7001, udp_port=7002))
        self.assertEqual(banner.level, LogLevel.info)
        self.assertEqual(
            text(banner),
            "pokan node 127.0.0.1:7002 listening on 127.0.0.1 udp 7002 tcp 7001;"
            " gossip every 1.0s to 3 peers, every 20.0s to one peer when idle;"
            " phi threshold 8;"
            " max datagram 1400;"
            " seeds: none (acting as seed); store: memory; handlers: none;"
            " cluster pokan, gossip unauthenticated",
        )

    def test_idle_interval_keys_handlers_and_control(self) -> None:
        config = Settings(
            "10.0.0.1",
            seeds=(("10.0.0.9", 5555),),
            engine=attrs.evolve(EngineSettings(), idle_interval=5.0),
        )
        (banner,) = lines(
            config,
            handlers=["Handlers", "--on-event x"],
            keys="1 key: ab12",
            control="http://127.0.0.1:7373",
        )
        said = text(banner)
        self.assertIn(
            "gossip every 1.0s to 3 peers, every 5.0s to one peer when idle;", said
        )
        self.assertIn("seeds: 10.0.0.9:5555;", said)
        self.assertIn("handlers: Handlers, --on-event x;", said)
        self.assertTrue(
            said.endswith(
                "gossip sealed with 1 key: ab12; control API on http://127.0.0.1:7373"
            ),
            said,
        )

    def test_unauthenticated_off_loopback_is_warned_of(self) -> None:
        _, warning = lines(Settings("10.0.0.1"))
        self.assertEqual(warning.level, LogLevel.warn)
        self.assertIn("anyone who can reach 10.0.0.1", text(warning))
        self.assertEqual(len(lines(Settings("10.0.0.1"), keys="1 key: ab")), 1)
        self.assertEqual(len(lines(Settings("::1"))), 1)

    def test_a_drop_rate_is_warned_of(self) -> None:
        _, warning = lines(Settings("127.0.0.1", drop_rate=0.25))
        self.assertIn("dropping 25% of the datagrams", text(warning))

    def test_itself_as_a_seed_is_ignored(self) -> None:
        alone = Settings("127.0.0.1", tcp_port=7001, seeds=(("127.0.0.1", 7001),))
        banner, warning = lines(alone)
        self.assertIn("seeds: none (acting as seed)", text(banner))
        self.assertTrue(
            text(warning).startswith(
                "seed 127.0.0.1:7001 is this node itself; ignored:"
            )
        )
        among = attrs.evolve(alone, seeds=(("127.0.0.1", 7001), ("127.0.0.2", 7001)))
        banner, warning = lines(among)
        self.assertIn("seeds: 127.0.0.2:7001;", text(banner))
        self.assertEqual(
            text(warning), "seed 127.0.0.1:7001 is this node itself; ignored"
        )
