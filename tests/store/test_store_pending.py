"""Plan, Pending and overlay: what the Redis store writes and keeps (no I/O)."""

from __future__ import annotations

import attrs
from twisted.trial import unittest

from pokan.core.state import Batch, ClusterState, Entry, KeyChange, NodeInfo, NodeRecord
from pokan.store.interface import Snapshot
from pokan.store.pending import Pending, Plan, overlay

ME = NodeInfo("10.0.0.1:5555", 3, "10.0.0.1", 5555, 5555, "seed")


def entry(value: str | None, version: int) -> Entry:
    return Entry(value, version, float(version))


class PlanTests(unittest.TestCase):
    def test_latest_change_per_key_wins(self) -> None:
        a1, a2 = entry("1", 1), entry("2", 2)
        batch = Batch(
            (
                KeyChange("n", "a", None, a1),
                KeyChange("n", "a", a1, a2),
                KeyChange("n", "b", None, None),
            ),
            (NodeRecord(ME, 2, "alive"),),
        )
        plan = Plan.of(batch)
        self.assertEqual(plan.keys, {"n": {"a": a2, "b": None}})
        self.assertEqual(list(plan.nodes), [ME.id])
        self.assertEqual(len(plan), 3)
        self.assertEqual(plan.events, [])

    def test_events(self) -> None:
        state = ClusterState(ME)
        plan = Plan.of(state.write("k", b"\x01", 1.0), with_events=True)
        self.assertEqual(len(plan.events), 1)
        self.assertIn('"event":"new_key"', plan.events[0])
        self.assertIn('"value":"AQ=="', plan.events[0])


class PendingTests(unittest.TestCase):
    def plan(self, value: str | None, version: int, key: str = "k") -> Plan:
        return Plan({"n": {key: entry(value, version)}})

    def test_keeps_latest_per_key(self) -> None:
        pending = Pending()
        for seq in range(1, 100):
            pending.add(seq, self.plan(str(seq), seq))
        self.assertEqual(len(pending), 1)
        self.assertEqual(pending.plan().keys["n"]["k"], entry("99", 99))

    def test_an_older_batch_never_overwrites_a_newer_one(self) -> None:
        pending = Pending()
        pending.add(5, self.plan("new", 5))
        pending.add(3, self.plan("old", 3))
        self.assertEqual(pending.plan().keys["n"]["k"].value, "new")

    def test_put_back_after_a_failed_flush(self) -> None:
        pending = Pending()
        pending.add(1, self.plan("a", 1))
        pending.add(1, self.plan("x", 1, key="other"))
        taken = pending.take()
        self.assertEqual(len(pending), 0)
        pending.add(2, self.plan("b", 2))  # came while flushing
        pending.add_all(taken)
        keys = pending.plan().keys["n"]
        self.assertEqual(keys["k"].value, "b")
        self.assertEqual(keys["other"].value, "x")

    def test_full_rewrite_drops_what_it_covered(self) -> None:
        pending = Pending()
        pending.add(1, self.plan("a", 1))
        pending.add(2, self.plan("b", 2, key="other"))
        pending.drop_up_to(1)
        self.assertEqual(list(pending.plan().keys["n"]), ["other"])
        pending.add(1, self.plan("late", 1))  # a late, covered batch
        self.assertEqual(list(pending.plan().keys["n"]), ["other"])

    def test_node_records(self) -> None:
        pending = Pending()
        pending.add(2, Plan(nodes={ME.id: NodeRecord(ME, 2, "alive")}))
        pending.add(1, Plan(nodes={ME.id: NodeRecord(ME, 1, "dead")}))
        self.assertEqual(pending.plan().nodes[ME.id].version, 2)


class OverlayTests(unittest.TestCase):
    def test_early_writes_win_renumbered(self) -> None:
        persisted = Snapshot(
            (NodeRecord(ME, 7, "alive"),),
            {ME.id: {"old": entry("o", 6), "k": entry("persisted", 7)}},
        )
        early = Plan(
            {ME.id: {"k": entry("early", 1), "z": entry("zz", 2)}},
            {ME.id: NodeRecord(attrs.evolve(ME, generation=0), 2, "alive")},
        )
        snapshot, written = overlay(persisted, early, ME.id)
        mine = snapshot.entries[ME.id]
        self.assertEqual(mine["old"], entry("o", 6))
        self.assertEqual((mine["k"].value, mine["k"].version), ("early", 8))
        self.assertEqual((mine["z"].value, mine["z"].version), ("zz", 9))
        (record,) = snapshot.nodes
        self.assertEqual((record.info.generation, record.version), (3, 9))
        self.assertEqual(set(written.keys[ME.id]), {"k", "z"})
        self.assertEqual(written.nodes[ME.id], record)
