"""Bytes on the loopback wire to and from a set of ports, counted by nftables.

The same measure for every implementation bench/cluster.py compares, none of
which has to count its own bytes: the kernel counts every IP packet (headers
included) that leaves through ``lo`` from one of the ports, or to one of them
(a TCP client's packets come from an ephemeral port). Each packet is counted
once, at the output hook. Needs ``nft`` (Debian's ``nftables``) and root.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterable


class CounterUnavailable(Exception):
    """nftables cannot be used here: the message says why and what to do."""


class LoopbackByteCounter:
    """An nftables table counting the loopback bytes of ``ports``."""

    def __init__(self, ports: Iterable[int]) -> None:
        self.table = f"pokan_bench_{os.getpid()}"
        self.ports = sorted(set(ports))

    def __enter__(self) -> LoopbackByteCounter:
        if shutil.which("nft") is None:
            raise CounterUnavailable(
                "nft not found: install Debian's nftables (apt-get install nftables)"
            )
        elements = ", ".join(map(str, self.ports))
        match = 'oifname "lo" meta l4proto { tcp, udp }'
        self._nft(
            "-f",
            "-",
            stdin=f"""
table inet {self.table} {{
  set ports {{ type inet_service; elements = {{ {elements} }} }}
  chain out {{
    type filter hook output priority 0; policy accept;
    {match} th sport @ports counter accept
    {match} th dport @ports counter accept
  }}
}}
""",
        )
        return self

    def __exit__(self, *exc: object) -> None:
        self._nft("delete", "table", "inet", self.table)

    def bytes(self) -> int:
        """The bytes counted since the table was made."""
        listing = json.loads(self._nft("-j", "list", "table", "inet", self.table))
        return sum(
            expr["counter"]["bytes"]
            for item in listing["nftables"]
            if "rule" in item
            for expr in item["rule"]["expr"]
            if "counter" in expr
        )

    def _nft(self, *args: str, stdin: str | None = None) -> str:
        done = subprocess.run(
            ["nft", *args], input=stdin, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise CounterUnavailable(
                f"nft {' '.join(args)} failed ({done.stderr.strip()}): "
                "counting bytes needs root"
            )
        return done.stdout
