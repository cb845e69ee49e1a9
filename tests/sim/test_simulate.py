"""The simulator runs the real core, and its rounds stay low (a regression guard)."""

from __future__ import annotations

import io
import sys

from twisted.trial import unittest

from pokan.sim import command
from pokan.sim.simulate import Config, Simulation, measure, percentile


class SimulateTests(unittest.TestCase):
    def test_rounds_for_100_nodes(self) -> None:
        """One write and one join reach 100 nodes in few rounds, lossless or not.

        The bounds are generous (the figures in docs/performance.md are about
        half of them): this catches a protocol regression, not a slow machine.
        """
        for loss in (0.0, 0.2):
            figures = measure(Config(n=100, loss=loss, push_fanout=0, seed=7), 3)
            self.assertEqual(figures.failed, 0)
            self.assertLessEqual(max(figures.update_rounds), 12, loss)
            self.assertLessEqual(max(figures.join_rounds), 12, loss)
            self.assertLessEqual(figures.bytes_mean, 4 * 1400)

    def test_push_spreads_within_a_round(self) -> None:
        figures = measure(Config(n=50, push_fanout=3, seed=3), 3)
        self.assertEqual(figures.failed, 0)
        self.assertLess(figures.update_median, 2)

    def test_every_byte_is_encoded(self) -> None:
        """The meter counts the encoded datagrams, each within max_datagram."""
        sim = Simulation(Config(n=30, max_datagram=600, seed=2))
        sizes: list[int] = []
        count = sim.meter.count

        def counting(sender: int, size: int) -> None:
            sizes.append(size)
            count(sender, size)

        self.patch(sim.meter, "count", counting)
        sim.run_until(lambda: False, 3.0)
        self.assertTrue(sizes)
        self.assertLessEqual(max(sizes), 600 - 28)
        self.assertEqual(sum(sim.meter.total.values()), sum(sizes))

    def test_shared_start_state_is_never_changed(self) -> None:
        """The converged start is shared by every node, copied on change:
        writes, joins and heartbeats leave the shared records as built."""
        sim = Simulation(Config(n=30, loss=0.1, seed=4))
        shared = [
            n for n in sim.nodes[0].state.nodes.values() if getattr(n, "shared", False)
        ]
        self.assertEqual(len(shared), 29)
        before = [(n.version, n.heartbeat, n.status, dict(n.entries)) for n in shared]
        sim.run_until(lambda: False, 2.0)
        sim.write(3, "key", "value")
        joiner = sim.join()
        sim.run_until(lambda: False, 8.0)
        after = [(n.version, n.heartbeat, n.status, dict(n.entries)) for n in shared]
        self.assertEqual(after, before)
        writer = sim.nodes[3].state.me.info.id
        for node in sim.nodes:
            known = node.state.nodes[writer]
            self.assertFalse(getattr(known, "shared", False))
            self.assertEqual(known.entries["key"].value, "value")
            self.assertIn(sim.nodes[joiner].state.me.info.id, node.state.nodes)
            self.assertGreater(known.heartbeat, 0)

    def test_partition_heals(self) -> None:
        config = Config(n=40, partitions=2, partition_rounds=3, push_fanout=0, seed=5)
        figures = measure(config, 2)
        self.assertEqual(figures.failed, 0)
        self.assertGreaterEqual(min(figures.update_rounds), 3)

    def test_seeded_runs_repeat(self) -> None:
        first = measure(Config(n=20, loss=0.1, seed=11), 2)
        second = measure(Config(n=20, loss=0.1, seed=11), 2)
        self.assertEqual(first.update_rounds, second.update_rounds)
        self.assertEqual(first.bytes_mean, second.bytes_mean)

    def test_percentile(self) -> None:
        self.assertEqual(percentile([3, 1, 2], 50), 2)
        self.assertEqual(percentile(list(range(1, 101)), 99), 99)
        self.assertEqual(percentile([], 99), float("inf"))

    def test_main_prints_a_table(self) -> None:
        out = io.StringIO()
        self.patch(sys, "stdout", out)
        command.main(["--n", "10", "--loss", "0", "--trials", "2"])
        lines = out.getvalue().splitlines()
        self.assertEqual(len(lines), 3)
        self.assertTrue(lines[2].startswith("| 10 | 0% |"))


class OverloadTests(unittest.TestCase):
    def test_backlog_bounded_every_key_converges_no_owner_starved(self) -> None:
        """Issue #6, point 3, at a size CI affords: writes faster than the
        datagrams carry, then none; the rumour queues stay bounded, every
        node ends with every key's last write, no owner's keys lag far."""
        from pokan.core.rumours import RumourQueue
        from pokan.sim.overload import overload

        figures = overload(
            Config(n=40, seed=5), rate=8.0, hot_rate=160.0, rounds=5, observers=5
        )
        self.assertLessEqual(figures.max_backlog, RumourQueue().max_rumours)
        self.assertGreater(figures.evicted, 0)  # it was an overload
        self.assertIsNotNone(figures.converge_rounds)  # all converged
        self.assertLess(figures.starved_ratio, 3.0)
        self.assertLessEqual(figures.bytes_mean, 4 * 1400)
