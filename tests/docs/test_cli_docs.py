"""docs/cli.md: every ``console`` example runs as written, against 3 nodes.

The doc's addresses (nodes on 5555-5557, control APIs on 7373-7375, nothing on
7399) are mapped to free ports. Output is compared line by line once numbers
are masked (times, generations and versions vary) and runs of spaces made one;
a ``...`` line stands for any lines. Commands that only read are retried until
their output matches (bounded): gossip takes a moment to spread a write.
"""

from __future__ import annotations

import os
import re
from typing import Any

from twisted.internet import defer
from twisted.trial import unittest

from tests.clirun import shell, tree_pokan_dir
from tests.support import ROOT, free_port, start_server, temp_dir, wait_until

DOC = os.path.join(ROOT, "docs", "cli.md")
#: commands whose output may lag gossip (they change nothing)
READ_ONLY = ("pokan get", "pokan keys", "pokan members", "pokan info")


def examples() -> list[tuple[str, list[str]]]:
    """(command, expected output lines) of every ``console`` block, in order."""
    with open(DOC, encoding="utf-8") as f:
        blocks = re.findall(r"```console\n(.*?)```", f.read(), flags=re.S)
    found: list[tuple[str, list[str]]] = []
    for block in blocks:
        for line in block.splitlines():
            if line.startswith("$ "):
                found.append((line[2:], []))
            else:
                found[-1][1].append(line)
    return found


def masked(line: str) -> str:
    return " ".join(re.sub(r"\d+(\.\d+)?", "N", line).split())


def matches(expected: list[str], actual: list[str]) -> bool:
    """Expected lines in order, ``...`` standing for any lines in between."""
    want = [masked(e) for e in expected]
    got = [masked(a) for a in actual]
    i = 0
    skipping = False
    for line in want:
        if line == "...":
            skipping = True
            continue
        while i < len(got) and got[i] != line:
            if not skipping:
                return False
            i += 1
        if i == len(got):
            return False
        i += 1
        skipping = False
    return skipping or i == len(got)


def free_ports(n: int) -> list[int]:
    """``n`` distinct free ports, ascending (the doc's order of node ids)."""
    ports: set[int] = set()
    while len(ports) < n:
        ports.add(free_port())
    return sorted(ports)


class CliDocTests(unittest.TestCase):
    timeout = 300

    @defer.inlineCallbacks
    def test_every_example_of_cli_md(self) -> Any:
        nodes = free_ports(3)
        controls = free_ports(4)
        names = {
            "5555": nodes[0], "5556": nodes[1], "5557": nodes[2],
            "7373": controls[0], "7374": controls[1], "7375": controls[2],
            "7399": controls[3],
        }  # fmt: skip
        seed = f"127.0.0.1:{nodes[0]}"
        for i, port in enumerate(nodes):
            yield start_server(
                self,
                tcp_port=port,
                udp_port=port,
                control=f"127.0.0.1:{controls[i]}",
                gossip_with=None if i == 0 else seed,
            )

        def mapped(text: str) -> str:
            return re.sub(r"\b(5555|5556|5557|7373|7374|7375|7399)\b",
                          lambda m: str(names[m.group(1)]), text)  # fmt: skip

        bin_dir = tree_pokan_dir(temp_dir(self))
        env = {"POKAN_CONTROL": f"127.0.0.1:{controls[0]}"}
        last_code = 0
        ran = 0
        for command, expected in examples():
            want = [mapped(line) for line in expected]
            if command == "echo $?":
                self.assertEqual([str(last_code)], want, "the exit code shown")
                continue
            run = mapped(command)
            result: list[Any] = []

            @defer.inlineCallbacks
            def attempt(
                run: str = run, want: list[str] = want, out: list[Any] = result
            ) -> Any:
                done = yield shell(run, bin_dir, **env)
                out[:] = [done]
                return matches(want, done.text.splitlines())

            if command.startswith(READ_ONLY):
                yield wait_until(
                    attempt,
                    timeout=20,
                    interval=0.2,
                    message=lambda run=run, want=want, out=result: (
                        f"{run!r} to print\n" + "\n".join(want)
                        + "\n--- it printed ---\n" + (out[0].text if out else "")
                    ),
                )  # fmt: skip
            else:
                ok = yield attempt()
                self.assertTrue(
                    ok, f"{run!r} printed\n{result[0].text}\nnot\n" + "\n".join(want)
                )
            last_code = result[0].code
            ran += 1
        self.assertGreaterEqual(ran, 15)


class MatchTests(unittest.TestCase):
    def test_matching_masks_numbers_and_skips_ellipses(self) -> None:
        self.assertTrue(matches(["a  1.5s", "..."], ["a 2.0s", "b", "c"]))
        self.assertTrue(matches(["a", "...", "c"], ["a", "b", "c"]))
        self.assertFalse(matches(["a", "c"], ["a", "b", "c"]))
        self.assertFalse(matches(["a"], ["a", "b"]))
        self.assertFalse(matches(["x"], []))
