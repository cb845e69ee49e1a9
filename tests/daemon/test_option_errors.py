"""--store and --handler errors: one line, as every other option error."""

from __future__ import annotations

import errno
import io
import sys

from twisted.python import usage
from twisted.trial import unittest

from pokan.daemon import tap
from tests.support import TWISTD, run, temp_dir

HINT = "(see `twistd pokan --help`)"
BIG = "k=" + "x" * 3000
TOO_BIG = (
    "--store k=...: key and value take 3024 bytes packed; with --max-datagram"
    " 1400 one write may take at most 1234. Store less per key, or raise"
    " --max-datagram on every node."
)
BAD_FACTORY = "--handler log: unknown events nonsense; choose from new_key,"


#: fixed ports: every case fails before anything binds
ADDRESS = ["--address", "127.0.0.1", "-t", "5993", "-u", "5993"]


def parse(*args: str) -> tap.Options:
    options = tap.Options()
    options.parseOptions([*ADDRESS, *args])
    return options


class OptionsTests(unittest.TestCase):
    def test_store_without_equals_or_key(self) -> None:
        for value, message in (
            ("k", "--store k: expected KEY=VALUE"),
            ("=x", "--store =x: expected KEY=VALUE, the key is empty"),
        ):
            with self.assertRaises(usage.UsageError) as caught:
                parse("--store", value)
            self.assertEqual(str(caught.exception), f"{message} {HINT}")

    def test_an_empty_redis_prefix_names_the_flag(self) -> None:
        with self.assertRaises(usage.UsageError) as caught:
            parse("--redis", "redis://127.0.0.1:1/0", "--redis-prefix", "")
        self.assertTrue(
            str(caught.exception).startswith("--redis-prefix must not be empty: "),
            str(caught.exception),
        )

    def test_settings_are_named_as_typed_not_as_the_api_s_keywords(self) -> None:
        """One mechanism: the settings checks take twistd's names."""
        for args, message in (
            (("--drop-rate", "3"), "--drop-rate must be a number from 0 to 1, got '3'"),
            (
                ("--cluster", "a b"),
                "--cluster must be 1 to 64 letters, digits, '.', '_' or '-', got 'a b'",
            ),
            (("--tcp-port", "0"), "--tcp-port must be from 1 to 65535, got 0"),
            (
                ("--max-sync-per-host", "0"),
                "--max-sync-per-host must be a whole number from 1, got 0",
            ),
        ):
            with self.assertRaises(usage.UsageError) as caught:
                parse(*args)
            self.assertEqual(str(caught.exception), f"{message} {HINT}")

    def test_errors_raised_later_name_the_options_too(self) -> None:
        from pokan.core.write_checks import TooLargeToGossip
        from pokan.net.listen_errors import ListenError

        in_use = OSError(errno.EADDRINUSE, "Address already in use")
        listen = ListenError("127.0.0.1", 5555, "udp", in_use)
        self.assertIn("(udp_port=)", str(listen))
        self.assertIn(
            "Choose another port (--udp-port) or address", tap.described(listen)
        )
        too_large = TooLargeToGossip(3024, 1234, 1400)
        self.assertIn("with max_datagram=1400 one", str(too_large))
        self.assertIn("with --max-datagram 1400 one", tap.described(too_large))
        self.assertEqual(tap.described(ValueError("plain")), "plain")

    def test_unknown_handler_first_line_ends_with_the_hint(self) -> None:
        with self.assertRaises(usage.UsageError) as caught:
            parse("--handler", "nope")
        first, *details = str(caught.exception).splitlines()
        self.assertEqual(
            first, f"--handler nope: no handler plugin of that name {HINT}"
        )
        self.assertIn("handler plugins found:", details)

    def refused(self, *args: str) -> str:
        """What makeService prints before exiting 1, as twistd would."""
        options = parse(*args)
        out = io.StringIO()
        self.patch(sys, "stdout", out)
        self.patch(sys, "argv", ["twistd", "-n"])
        with self.assertRaises(SystemExit) as caught:
            tap.makeService(options)
        self.assertEqual(caught.exception.code, 1)
        return out.getvalue()

    def test_store_too_large_for_a_datagram(self) -> None:
        self.assertEqual(self.refused("--store", BIG), f"twistd -n: {TOO_BIG} {HINT}\n")

    def test_store_key_too_long(self) -> None:
        out = self.refused("--store", "k" * 1025 + "=v")
        self.assertTrue(out.startswith(f"twistd -n: --store {'k' * 1025}=...: key is"))
        self.assertTrue(out.endswith(f" {HINT}\n"), out)

    def test_handler_factory_refusal(self) -> None:
        out = self.refused("--handler", "log=nonsense")
        self.assertTrue(out.startswith(f"twistd -n: {BAD_FACTORY}"), out)
        self.assertTrue(out.endswith(f" {HINT}\n"), out)
        self.assertEqual(out.count("\n"), 1)


class TwistdTests(unittest.TestCase):
    """The same errors from a real twistd: one line on stdout, exit status 1."""

    def twistd(self, *args: str) -> tuple[str, int]:
        result = run(
            [TWISTD, "-n", "--pidfile=", "pokan", *ADDRESS, *args],
            cwd=temp_dir(self),
            timeout=30,
        )
        self.assertEqual(result.stderr, "")
        return result.stdout.strip(), result.returncode

    def assertRefused(self, args: list[str], message: str) -> None:
        self.assertEqual(self.twistd(*args), (f"twistd -n: {message} {HINT}", 1))

    def test_as_any_other_option_error(self) -> None:
        self.assertRefused(
            ["--gossip-interval", "0"],
            "--gossip-interval must be from 0.01 to 60 seconds, got 0",
        )

    def test_store(self) -> None:
        self.assertRefused(
            ["--store", "=x"], "--store =x: expected KEY=VALUE, the key is empty"
        )
        self.assertRefused(["--store", "k"], "--store k: expected KEY=VALUE")
        self.assertRefused(["--store", BIG], TOO_BIG)

    def test_handler(self) -> None:
        out, code = self.twistd("--handler", "nope")
        self.assertEqual(code, 1)
        first, *details = out.splitlines()
        self.assertEqual(
            first, f"twistd -n: --handler nope: no handler plugin of that name {HINT}"
        )
        self.assertIn("handler plugins found:", details)
        out, code = self.twistd("--handler", "log=nonsense")
        self.assertEqual(code, 1)
        self.assertEqual(len(out.splitlines()), 1, out)
        self.assertTrue(out.startswith(f"twistd -n: {BAD_FACTORY}"), out)
        self.assertTrue(out.endswith(f" {HINT}"), out)
