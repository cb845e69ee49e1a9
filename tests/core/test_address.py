"""Seed addresses: HOST[:PORT] parsed, anything that cannot be a host refused."""

from __future__ import annotations

from twisted.trial import unittest

from pokan.core.address import DEFAULT_PORT, parse_host_port, parse_seeds
from pokan.errors import ConfigurationError


class ParseHostPortTests(unittest.TestCase):
    def test_accepted(self) -> None:
        for text, expected in (
            ("10.0.0.9:7000", ("10.0.0.9", 7000)),
            (" 10.0.0.9:7000 ", ("10.0.0.9", 7000)),
            ("10.0.0.9", ("10.0.0.9", DEFAULT_PORT)),
            ("seed.example.com:80", ("seed.example.com", 80)),
            ("seed_1", ("seed_1", DEFAULT_PORT)),
            ("[::1]:7000", ("::1", 7000)),
            ("[::1]", ("::1", DEFAULT_PORT)),
            ("::1", ("::1", DEFAULT_PORT)),
        ):
            self.assertEqual(parse_host_port(text), expected, text)

    def test_refused_with_what_was_wrong(self) -> None:
        for text, says in (
            ("", "expected HOST[:PORT]"),
            ("  ", "expected HOST[:PORT]"),
            ("10.0.0.1:5611,10.0.0.2:5612", "several addresses"),
            ("a b:5555", "'a b' in 'a b:5555' is not an IP address or host name"),
            ("[seed]:5555", "malformed [IPv6]:PORT"),
            ("[::1", "malformed [IPv6]:PORT"),
            ("[::1]:", "missing port"),
            ("seed]:5555", "not an IP address or host name"),
            ("seed:", "missing port"),
            (":5555", "missing host"),
            ("seed:port", "port in 'seed:port' must be a number"),
            ("seed:0", "must be from 1 to 65535"),
            ("127.0.0.1: 5555", "port in '127.0.0.1: 5555' must be a number"),
            ("1.2.3.4:+5", "must be a number"),
            ("seed:5_555", "must be a number"),
            ("::1:5565", "ambiguous: the IPv6 address ::1:5565, or ::1 port 5565?"),
            ("fe80::2:80", "Write [fe80::2]:80 for the port, [fe80::2:80] for"),
            ("1:2:3:x", "[ADDRESS]:PORT"),
            # a port alone: the resolver would make it 0.0.21.179
            ("5555", "'5555' looks like a port, not a host"),
            ("5555:5555", "'5555' looks like a port, not a host"),
        ):
            with self.assertRaises(ConfigurationError, msg=text) as caught:
                parse_host_port(text)
            self.assertIn(says, str(caught.exception), text)

    def test_the_message_gives_the_default_port(self) -> None:
        with self.assertRaises(ConfigurationError) as caught:
            parse_host_port("a b")
        self.assertIn(f"port {DEFAULT_PORT} if left out", str(caught.exception))


class ParseSeedsTests(unittest.TestCase):
    def test_a_list(self) -> None:
        self.assertEqual(
            parse_seeds("10.0.0.1, seed:5556,[::1]:7"),
            [("10.0.0.1", DEFAULT_PORT), ("seed", 5556), ("::1", 7)],
        )

    def test_an_empty_item_is_refused(self) -> None:
        for text in ("", "a,,b", "a,", " , "):
            with self.assertRaises(ConfigurationError, msg=text) as caught:
                parse_seeds(text)
            self.assertIn("empty seed", str(caught.exception))
