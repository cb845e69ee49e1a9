"""Integration: real ``twistd pokan`` processes in Linux network namespaces.

Issue 14, item 5: "partition and heal across network namespaces" and "20 %
loss" are membership scenarios that must pass. Each test builds its own
network: a bridge in a namespace of its own and three namespaces (names
carry the test's pid, ``pokan-t<pid>-a``...), each with a veth onto the
bridge, an address in 10.231.77.0/24 and loopback up, and runs one node in
each with the default failure detector (SWIM). Faults are nftables rules
inside the nodes' namespaces; statuses are read from each node's control
API, on the loopback of its own namespace. Nothing of this touches the host's
network: no interface, address or rule is added to the root namespace, and
the nodes know only each other.

Needs root, ``ip netns`` and ``nft`` (``make unit`` installs Debian's
nftables); skipped, saying which is missing, otherwise.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable

from twisted.logger import Logger
from twisted.trial import unittest

from pokan.core.liveness import DEFAULT_ALPHA, DEFAULT_BETA, SwimSettings
from pokan.core.settings import EngineSettings
from tests.support import TWISTD, Daemon, temp_dir

#: the test network, 10.231.77.0/24: inside the test's own namespaces only,
#: so it cannot clash with the host's; node k (1, 2, 3) is SUBNET.k
SUBNET = "10.231.77"
LETTERS = ("a", "b", "c")
GOSSIP_PORT = 5555
CONTROL_PORT = 7373
INTERVAL = 0.2
#: bounded waits: a status poll every POLL s, each wait at most WAIT s
POLL = 0.2
WAIT = 20.0
#: the 20 % loss run, and how often it reads every node's view meanwhile
LOSS_SECONDS = 30.0
LOSS_POLL = 0.5
TABLE = "pokantest"
PYTHON = sys.executable


def _tool(name: str) -> str:
    """The path of an admin tool: on PATH, or in /usr/sbin and /sbin."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin") or ""


#: iproute2's ip and nftables' nft ("" when missing)
IP, NFT = _tool("ip"), _tool("nft")

log = Logger()

#: the probe period the nodes run with (the default: half the gossip
#: interval, at least 2 s; 2 s here) and the period of a probe's stages
#: (half the interval, at least 0.5 s, at most the probe period; 0.5 s)
_DEFAULTS = EngineSettings(gossip_interval=INTERVAL)
PROBE, STAGE = _DEFAULTS.probe_period, _DEFAULTS.probe_stage_period

# How long a kill -9 may take to be seen dead by both survivors, from
# docs/membership.md ("How a failure is detected", "Probe interval",
# "Suspicion timeouts"), for N = 3, I = --gossip-interval = 0.2 s, P = the
# probe period = 2 s and S = the stage period = 0.5 s, times (LHM + 1):
#   - the wait for a first probe of the dead node: one probe a period,
#     round-robin over the 2 other members, so at most 2 probe periods (2 P);
#   - the probe itself, unanswered: 0.9 stage periods (S, rounded up);
#   - the suspicion timeout, counted in units U = max(I, S) = 0.5 s: min =
#     1.65 max(2, log10(3)) U = 1.65 s, max = 3 min = 4.95 s (not scaled by
#     the LHM; one confirmation makes it the minimum);
#   - the two last-chance pings: 0.4 stage periods (0.4 S);
#   - the dead rumour: milliseconds (each survivor also convicts on its own).
# The LHM (0 to 8) multiplies the probe parts: with it at its maximum,
# 9 x (2 P + 1.4 S) + 4.95 = 42.3 s + 4.95 s. Plus one poll of the test (0.2
# s, and the ~0.1 s a read of three control APIs takes): 47.55 s. With the
# LHM at 0 it is 2 P + 1.4 S + 4.95 + 0.3 = 9.95 s.
SUSPICION_MAX = (
    DEFAULT_BETA
    * DEFAULT_ALPHA
    * 2
    * SwimSettings(INTERVAL, timeout_period=STAGE, probe_period=PROBE).suspicion_unit
)
KILL_BOUND = 9 * (2 * PROBE + 1.4 * STAGE) + SUSPICION_MAX + POLL + 0.1

#: a node's view: {node id: status} as its control API's /v1/members says,
#: or None while it does not answer
View = dict[str, str] | None

#: run with the venv's python inside a namespace: print the node's members
_QUERY = (
    "import sys, urllib.request\n"
    f"url = 'http://127.0.0.1:{CONTROL_PORT}' + sys.argv[1]\n"
    "try:\n"
    "    print(urllib.request.urlopen(url, timeout=2).read().decode())\n"
    "except OSError as e:\n"
    "    print('null'); print(e, file=sys.stderr)\n"
)


def _run(args: list[str], timeout: float = 10.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, capture_output=True, text=True, timeout=timeout, check=False
    )


def _must(args: Iterable[str]) -> None:
    """Run a setup command; fail with its output if it fails."""
    args = list(args)
    result = _run(args)
    if result.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} exited with {result.returncode}:"
            f" {result.stderr.strip() or result.stdout.strip()}"
        )


def node_id(k: int) -> str:
    return f"{SUBNET}.{k}:{GOSSIP_PORT}"


class Network:
    """The bridge namespace and the three node namespaces of one test."""

    def __init__(self, tag: str) -> None:
        self.bridge = f"pokan-t{tag}-br"
        self.ns = {x: f"pokan-t{tag}-{x}" for x in LETTERS}
        self.address = {x: f"{SUBNET}.{k}" for k, x in enumerate(LETTERS, 1)}

    def names(self) -> list[str]:
        return [self.bridge, *self.ns.values()]

    def existing(self) -> set[str]:
        listed = _run([IP, "netns", "list"]).stdout.split("\n")
        return {line.split()[0] for line in listed if line.strip()}

    def remove(self) -> None:
        """Delete every namespace of ours (the veths go with them)."""
        present = self.existing()
        for name in self.names():
            if name in present:
                _run([IP, "netns", "delete", name])

    def create(self) -> None:
        """The bridge and the nodes' namespaces (the bridge's already added)."""
        br = self.bridge
        _must([IP, "-n", br, "link", "add", "br0", "type", "bridge"])
        _must([IP, "-n", br, "link", "set", "br0", "up"])
        for x in LETTERS:
            ns = self.ns[x]
            _must([IP, "netns", "add", ns])
            _must(
                [
                    *(IP, "-n", br, "link", "add", f"v{x}", "type", "veth"),
                    *("peer", "name", "eth0", "netns", ns),
                ]
            )
            _must([IP, "-n", br, "link", "set", f"v{x}", "master", "br0", "up"])
            _must([IP, "-n", ns, "addr", "add", f"{self.address[x]}/24", "dev", "eth0"])
            _must([IP, "-n", ns, "link", "set", "eth0", "up"])
            _must([IP, "-n", ns, "link", "set", "lo", "up"])

    def exec(self, x: str, *args: str) -> list[str]:
        return [IP, "netns", "exec", self.ns[x], *args]

    def nft(self, x: str, *commands: str) -> None:
        """Run nft commands in node ``x``'s namespace, in one transaction."""
        script = "\n".join(commands) + "\n"
        args = self.exec(x, NFT, "-f", "-")
        result = subprocess.run(
            args, input=script, capture_output=True, text=True, timeout=10, check=False
        )
        if result.returncode != 0:
            raise AssertionError(
                f"nft in {self.ns[x]} exited with {result.returncode}:"
                f" {result.stderr.strip()}\n--- script ---\n{script}"
            )

    def ruleset(self, x: str) -> str:
        return _run(self.exec(x, NFT, "list", "ruleset")).stdout


def _table(*rules: str) -> list[str]:
    """A fresh ``inet pokantest`` table with input and output chains."""
    return [
        f"add table inet {TABLE}",
        f"add chain inet {TABLE} input"
        " { type filter hook input priority 0; policy accept; }",
        f"add chain inet {TABLE} output"
        " { type filter hook output priority 0; policy accept; }",
        *rules,
    ]


class NetnsClusterTests(unittest.TestCase):
    """Three nodes, one per namespace, partitioned and healed, then lossy."""

    def setUp(self) -> None:
        reason = self._cannot_run()
        if reason:
            raise unittest.SkipTest(reason)
        self.net = Network(str(os.getpid()))
        self.net.remove()  # the leftovers of a crashed run with our names
        self.addCleanup(self.net.remove)
        first = _run([IP, "netns", "add", self.net.bridge])
        if first.returncode != 0:
            raise unittest.SkipTest(
                f"cannot create a network namespace (ip netns add):"
                f" {first.stderr.strip()}"
            )
        self.net.create()
        probe = _run(self.net.exec("a", NFT, "add", "table", "inet", f"{TABLE}probe"))
        if probe.returncode != 0:
            raise unittest.SkipTest(
                f"nftables does not work in a network namespace here:"
                f" {probe.stderr.strip()}"
            )
        _must(self.net.exec("a", NFT, "delete", "table", "inet", f"{TABLE}probe"))
        self.dir = temp_dir(self)
        self.daemons: dict[str, Daemon] = {}
        self.trace: list[str] = []
        self.addCleanup(self._log_trace)

    def _log_trace(self) -> None:
        """What the waits took, into _trial_temp/test.log."""
        for line in self.trace:
            log.info("{test}: {line}", test=self.id(), line=line)

    @staticmethod
    def _cannot_run() -> str:
        if not sys.platform.startswith("linux"):
            return "network namespaces are Linux only"
        if os.geteuid() != 0:
            return "needs root to create network namespaces (ip netns add)"
        if not IP:
            return "ip (iproute2) is missing: cannot create network namespaces"
        if not NFT:
            return (
                "nft is missing: `make unit` installs Debian's nftables"
                " (apt-get install nftables)"
            )
        if not os.path.exists(TWISTD):
            return f"no twistd next to {PYTHON}: run `make .venv/.installed`"
        return ""

    # -- nodes and their views --------------------------------------------------

    def start_nodes(self) -> None:
        seed = f"{self.net.address['a']}:{GOSSIP_PORT}"
        for x in LETTERS:
            args = self.net.exec(
                x,
                TWISTD,
                "-n",
                "--pidfile=",
                "pokan",
                "--address",
                self.net.address[x],
                "--gossip-interval",
                str(INTERVAL),
                "--control",
                f"127.0.0.1:{CONTROL_PORT}",
            )
            if x != "a":
                args += ["--gossip-with", seed]
            self.daemons[x] = Daemon(self, args, cwd=self.dir)

    def read(self, path: str, letters: Iterable[str] = LETTERS) -> dict[str, object]:
        """GET ``path`` from the control API of each node, all at once."""
        running = {
            x: subprocess.Popen(
                self.net.exec(x, PYTHON, "-c", _QUERY, path),
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            for x in letters
        }
        answers: dict[str, object] = {}
        for x, process in running.items():
            try:
                out, _ = process.communicate(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()
                out = "null"
            try:
                answers[x] = json.loads(out or "null")
            except ValueError:
                answers[x] = None
        return answers

    def views(self, letters: Iterable[str] = LETTERS) -> dict[str, View]:
        """Each node's {node id: status}; None for one that does not answer."""
        views: dict[str, View] = {}
        for x, body in self.read("/v1/members", letters).items():
            if isinstance(body, dict):
                views[x] = {m["id"]: m["status"] for m in body["members"]}
            else:
                views[x] = None
        return views

    def wait(
        self,
        what: str,
        condition: Callable[[dict[str, View]], bool],
        timeout: float = WAIT,
        letters: Iterable[str] = LETTERS,
    ) -> float:
        """Poll the views every POLL s until ``condition``; the time it took."""
        letters = tuple(letters)
        start = time.monotonic()
        deadline = start + timeout
        views: dict[str, View] = {}
        for _ in range(int(timeout / POLL) + 2):
            views = self.views(letters)
            if condition(views):
                took = time.monotonic() - start
                self.trace.append(f"{what}: {took:.2f}s")
                return took
            left = deadline - time.monotonic()
            if left <= 0:
                break
            time.sleep(min(POLL, left))
        self.fail(
            f"timed out after {timeout}s waiting for {what}\n{self.describe(views)}"
        )

    def describe(self, views: dict[str, View] | None = None) -> str:
        parts = [f"views: {json.dumps(views, sort_keys=True)}"] if views else []
        parts += self.trace
        for x in LETTERS:
            parts.append(
                f"--- nft ruleset in {self.net.ns[x]} ---\n{self.net.ruleset(x)}"
            )
        for x, daemon in self.daemons.items():
            parts.append(
                f"--- node {x} ({self.net.address[x]}) ---\n{daemon.describe()}"
            )
        return "\n".join(parts)

    def holds(self, views: dict[str, View], x: str, others: str, status: str) -> bool:
        """Node ``x`` holds each node of ``others`` at ``status``."""
        view = views.get(x)
        if view is None:
            return False
        return all(view.get(node_id(LETTERS.index(o) + 1)) == status for o in others)

    def all_alive(self, views: dict[str, View]) -> bool:
        return all(self.holds(views, x, "abc", "alive") for x in LETTERS)

    # -- faults -----------------------------------------------------------------

    def cut_off(self, x: str) -> None:
        """Drop every packet between node ``x`` and the two others, both ways."""
        a = self.net.address
        others = [o for o in LETTERS if o != x]
        away = ", ".join(a[o] for o in others)
        self.net.nft(
            x,
            *_table(
                f"add rule inet {TABLE} input ip saddr {{ {away} }} drop",
                f"add rule inet {TABLE} output ip daddr {{ {away} }} drop",
            ),
        )
        for o in others:
            self.net.nft(
                o,
                *_table(
                    f"add rule inet {TABLE} input ip saddr {a[x]} drop",
                    f"add rule inet {TABLE} output ip daddr {a[x]} drop",
                ),
            )

    def lossy(self, percent: int) -> None:
        """Every node drops ``percent`` % of the UDP it gets from the subnet."""
        for x in LETTERS:
            self.net.nft(
                x,
                *_table(
                    f'add rule inet {TABLE} input iifname "eth0"'
                    f" ip saddr {SUBNET}.0/24 meta l4proto udp"
                    f" numgen random mod 100 < {percent} drop",
                ),
            )

    def clear(self) -> None:
        for x in LETTERS:
            self.net.nft(x, f"delete table inet {TABLE}")

    # -- scenarios --------------------------------------------------------------

    def test_partition_and_heal(self) -> None:
        """C cut off: A and B hold C dead, C holds them dead; healed: all alive."""
        self.start_nodes()
        self.wait("all 3 alive everywhere", self.all_alive)

        self.cut_off("c")
        self.wait(
            "A and B holding C dead and each other alive, C holding A and B dead",
            lambda v: (
                self.holds(v, "a", "c", "dead")
                and self.holds(v, "b", "c", "dead")
                and self.holds(v, "a", "ab", "alive")
                and self.holds(v, "b", "ab", "alive")
                and self.holds(v, "c", "ab", "dead")
                and self.holds(v, "c", "c", "alive")
            ),
        )

        self.clear()
        self.wait("all 3 alive everywhere again after the heal", self.all_alive)

    def test_twenty_percent_loss(self) -> None:
        """20 % loss for 30 s convicts nobody; a kill -9 is still found fast."""
        self.start_nodes()
        self.wait("all 3 alive everywhere", self.all_alive)
        before = self.convictions()

        self.lossy(20)
        seen_bad: list[str] = []
        suspicions = 0
        max_lhm = 0
        polls = 0
        start = time.monotonic()
        end = start + LOSS_SECONDS
        for _ in range(int(LOSS_SECONDS / LOSS_POLL) + 2):
            now = time.monotonic()
            if now >= end:
                break
            at = now - start
            for x, body in self.read("/v1/members").items():
                if not isinstance(body, dict):
                    seen_bad.append(f"{at:.1f}s: node {x} did not answer")
                    continue
                for m in body["members"]:
                    if m["status"] != "alive":
                        seen_bad.append(f"{at:.1f}s: {x} holds {m['id']} {m['status']}")
                    detector = m.get("detector") or {}
                    suspicions += detector.get("status") == "suspect"
                    max_lhm = max(max_lhm, int(detector.get("lhm", 0)))
                if len(body["members"]) != 3:
                    seen_bad.append(
                        f"{at:.1f}s: {x} knows {len(body['members'])} nodes"
                    )
            polls += 1
            pause = min(now + LOSS_POLL, end) - time.monotonic()
            time.sleep(max(0.0, pause))
        after = self.convictions()
        dead_lines = {x: self.dead_lines(x) for x in LETTERS}
        self.trace.append(
            f"20% loss for {LOSS_SECONDS}s: {polls} polls, {suspicions} suspect"
            f" readings, max LHM {max_lhm}, convictions {before} -> {after}"
        )
        self.assertEqual(seen_bad, [], self.describe())
        self.assertEqual(after, before, self.describe())
        self.assertEqual(dead_lines, {x: [] for x in LETTERS}, self.describe())

        # still at 20 % loss: kill -9 C; A and B must hold it dead in time
        self.daemons["c"].process.kill()
        self.daemons["c"].process.wait(5)
        took = self.wait(
            "A and B holding the killed C dead",
            lambda v: (
                self.holds(v, "a", "c", "dead") and self.holds(v, "b", "c", "dead")
            ),
            timeout=KILL_BOUND + 1,
            letters="ab",
        )
        self.assertLessEqual(
            took,
            KILL_BOUND,
            f"kill -9 seen dead by both after {took:.2f}s, over the"
            f" {KILL_BOUND:.2f}s that docs/membership.md implies\n{self.describe()}",
        )

    def convictions(self) -> dict[str, int]:
        """Every node's count of convictions (``/v1/info`` counters)."""
        counts: dict[str, int] = {}
        for x, body in self.read("/v1/info").items():
            if not isinstance(body, dict):
                self.fail(f"node {x} gave no /v1/info\n{self.describe()}")
            counts[x] = int(body["counters"]["convictions"])
        return counts

    def dead_lines(self, x: str) -> list[str]:
        """The ``peer ... dead`` log lines (and throttled sums of them) of x."""
        pattern = re.compile(r"peer \S+ dead|dead: \d+")
        return [
            line
            for line in self.daemons[x].output().splitlines()
            if pattern.search(line)
        ]
