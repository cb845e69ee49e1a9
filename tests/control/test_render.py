"""``pokan info``'s text: values as the JSON gives them."""

from __future__ import annotations

from twisted.trial import unittest

from pokan.control.render import info_text


class InfoTextTests(unittest.TestCase):
    def test_settings_read_as_the_json_says_them(self) -> None:
        text = info_text(
            {
                "id": "n1",
                "settings": {
                    "handler_queue": None,
                    "seeds": [],
                    "drop_rate": 0.0,
                    "store": "memory",
                    "phi": {"on": False},
                },
            }
        )
        rows = {tuple(line.split(None, 1)) for line in text.splitlines()[1:]}
        for row in (
            ("handler_queue", "null"),
            ("seeds", "[]"),
            ("drop_rate", "0.0"),
            ("store", "memory"),
            ("phi.on", "false"),
        ):
            self.assertIn(row, rows, text)
        settings = text.split("settings:\n", 1)[1]
        self.assertNotIn("None", settings)
        self.assertNotIn("False", settings)

    def test_counters_hold_only_counters(self) -> None:
        """The cluster name and sealing head the text; they are no counters."""
        text = info_text(
            {
                "id": "n1",
                "cluster": "prod",
                "sealed": True,
                "counters": {"rounds": 7, "sealed": True, "cluster": "prod"},
            }
        )
        self.assertIn("prod (sealed)", text.splitlines()[2])
        counters = text.split("counters:\n", 1)[1]
        self.assertIn("rounds", counters)
        self.assertNotIn("sealed", counters)
        self.assertNotIn("cluster", counters)
