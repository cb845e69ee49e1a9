"""Records shared copy-on-write by the simulator's states (pokan.sim.shared)."""

from __future__ import annotations

from twisted.trial import unittest

from pokan.core import gc
from pokan.core.membership import Membership
from pokan.core.state import Entry
from pokan.sim.shared import SharedNodeState, SharingClusterState
from tests.core.test_state import ME, OTHER, delta, events, info


class SharedRecordTests(unittest.TestCase):
    """Records shared by several states (the simulator's converged start)
    are copied before they change, never changed in place."""

    def setUp(self) -> None:
        self.shared = SharedNodeState(
            OTHER,
            {"a": Entry("1", 1, 1.0)},
            1,
            3,
        )
        self.states = [
            SharingClusterState(ME),
            SharingClusterState(info("10.0.0.3:5555")),
        ]
        for state in self.states:
            state.nodes[OTHER.id] = self.shared
        self.state = self.states[0]

    def assertUntouched(self) -> None:
        self.assertEqual(
            (self.shared.entries, self.shared.version, self.shared.heartbeat),
            ({"a": Entry("1", 1, 1.0)}, 1, 3),
        )
        self.assertEqual(self.shared.status, "alive")
        self.assertIs(self.states[1].nodes[OTHER.id], self.shared)

    def test_merge_copies_then_changes(self) -> None:
        batch = self.state.merge([delta(OTHER, 1, 2, ("b", Entry("2", 2, 1.0)))])
        self.assertEqual(events(batch), [("b", "new_key")])
        mine = self.state.nodes[OTHER.id]
        self.assertIsNot(mine, self.shared)
        self.assertEqual(sorted(mine.entries), ["a", "b"])
        self.assertEqual(mine.version, 2)
        self.assertFalse(mine.shared)
        self.assertUntouched()

    def test_heartbeat_copies_the_record_not_the_entries(self) -> None:
        self.assertTrue(self.state.observe_heartbeat(OTHER.id, 1, 9))
        mine = self.state.nodes[OTHER.id]
        self.assertEqual(mine.heartbeat, 9)
        self.assertIs(mine.entries, self.shared.entries)
        self.assertIs(self.state.writable(mine), mine)  # copied once
        mine.own_entries()["c"] = Entry("3", 3, 1.0)
        self.assertIsNot(mine.entries, self.shared.entries)
        self.assertUntouched()

    def test_status_reset_and_nothing_new(self) -> None:
        self.state.merge([delta(OTHER, 0, 1, heartbeat=1)])  # old news
        self.assertIs(self.state.nodes[OTHER.id], self.shared)
        self.state.mark(OTHER.id, OTHER.generation, "dead")
        self.assertEqual(self.state.nodes[OTHER.id].status, "dead")
        reborn = info(OTHER.id, 2)
        self.states[1].merge([delta(reborn, 0, 1, ("a", Entry("2", 1, 2.0)))])
        self.assertEqual(
            self.states[1].nodes[OTHER.id].entries, {"a": Entry("2", 1, 2.0)}
        )
        self.states[1].nodes[OTHER.id] = self.shared
        self.assertUntouched()

    def test_gc_and_membership_copy(self) -> None:
        self.shared.entries["gone"] = Entry(None, 2, 1.0)
        self.shared.version = 2
        gc.collect_tombstones(self.state, 100.0, 10.0)
        self.assertNotIn("gone", self.state.nodes[OTHER.id].entries)
        self.assertIn("gone", self.shared.entries)
        membership = Membership(self.states[1], 1.0)
        for now in range(11):  # silent for 10 intervals: convicted
            membership.tick(float(now))
        self.assertEqual(self.states[1].nodes[OTHER.id].status, "dead")
        self.assertEqual(self.shared.status, "alive")

    def test_a_real_node_s_records_are_its_own(self) -> None:
        """The core's own state never copies: records change in place."""
        from pokan.core.state import ClusterState, NodeState

        state = ClusterState(ME)
        record = NodeState(OTHER, {"a": Entry("1", 1, 1.0)}, 1)
        state.nodes[OTHER.id] = record
        state.merge([delta(OTHER, 1, 2, ("b", Entry("2", 2, 1.0)))])
        self.assertIs(state.nodes[OTHER.id], record)
        self.assertEqual(sorted(record.entries), ["a", "b"])
