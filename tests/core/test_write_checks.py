"""What a write must be: bad keys, and a write too large for a datagram."""

from __future__ import annotations

from twisted.trial import unittest

from pokan.core import write_checks
from pokan.core.state import NodeInfo
from pokan.errors import NamesSettings

INFO = NodeInfo("10.0.0.1:5555", 1, "10.0.0.1", 5555, 5555, "seed")


class KeyTests(unittest.TestCase):
    def test_an_empty_key_is_a_bad_value_as_other_bad_keys(self) -> None:
        for bad in ("", "k" * 1025, "\udc80"):
            with self.assertRaises(ValueError) as caught:
                write_checks.check_key(bad)
            self.assertNotIsInstance(caught.exception, TypeError)
        with self.assertRaises(ValueError) as caught:
            write_checks.check_key("")
        self.assertEqual(
            str(caught.exception), "key is empty: a key is 1 to 1024 characters"
        )

    def test_a_key_not_text_is_a_type_error(self) -> None:
        for bad in (None, b"k", 3):
            self.assertRaises(TypeError, write_checks.check_key, bad)


class FitTests(unittest.TestCase):
    def too_large(self) -> write_checks.TooLargeToGossip:
        with self.assertRaises(write_checks.TooLargeToGossip) as caught:
            write_checks.check_fits("k", "x" * 3000, INFO, 1400)
        return caught.exception

    def test_names_the_keyword_by_default(self) -> None:
        error = self.too_large()
        self.assertIsInstance(error, ValueError)
        self.assertIsInstance(error, NamesSettings)
        message = str(error)
        self.assertIn("; with max_datagram=1400 one write may take at most", message)
        self.assertTrue(
            message.endswith(
                " Store less per key, or raise max_datagram on every node."
            )
        )

    def test_names_the_option_as_the_caller_does(self) -> None:
        message = self.too_large().describe({"max_datagram": "--max-datagram"})
        self.assertIn("; with --max-datagram 1400 one write may take at most", message)
        self.assertTrue(
            message.endswith(
                " Store less per key, or raise --max-datagram on every node."
            )
        )
        self.assertNotIn("max_datagram", message)
