"""What an embedded node imports: nothing it does not use (its memory).

Each check runs in a fresh interpreter (this test process has imported
everything already). An embedded Server with no control API imports neither
twisted.web nor prometheus-client (about 5 MB of a node's RSS between them;
docs/performance.md); one with ``control=`` imports its control API.
"""

from __future__ import annotations

import json
import subprocess
import sys

from twisted.trial import unittest

HEAVY = ("twisted.web.server", "prometheus_client", "pokan.control.service")

PROGRAM = """
import json, sys
from twisted.internet import task
from pokan import Server
server = Server("127.0.0.1", tcp_port=0, udp_port=0, reactor=task.Clock(){extra})
server.store("k", "v")
print(json.dumps({{name: name in sys.modules for name in {heavy!r}}}))
"""


def imported(extra: str = "") -> dict[str, bool]:
    """Which of :data:`HEAVY` a fresh interpreter imported for a Server."""
    program = PROGRAM.format(extra=extra, heavy=HEAVY)
    out = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


class FootprintTests(unittest.TestCase):
    def test_a_node_without_control_imports_no_web_and_no_metrics(self) -> None:
        self.assertEqual(imported(), dict.fromkeys(HEAVY, False))

    def test_a_node_with_control_imports_it(self) -> None:
        found = imported(', control="127.0.0.1:0"')
        self.assertTrue(found["twisted.web.server"])
        self.assertTrue(found["pokan.control.service"])
