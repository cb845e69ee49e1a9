"""ClusterState: versions, timestamps, tombstones, merge, generations, restore."""

from __future__ import annotations

from twisted.trial import unittest

from pokan.core.state import (
    Batch,
    ClusterState,
    Entry,
    KeyChange,
    NodeDelta,
    NodeInfo,
    NodeRecord,
)
from pokan.store.interface import Snapshot


def info(node_id: str = "10.0.0.2:5555", generation: int = 1) -> NodeInfo:
    host, port = node_id.rsplit(":", 1)
    return NodeInfo(node_id, generation, host, int(port), int(port), "peer")


ME = info("10.0.0.1:5555")
OTHER = info("10.0.0.2:5555")


def delta(
    who: NodeInfo,
    since: int,
    version: int,
    *entries: tuple[str, Entry],
    heartbeat: int = 0,
) -> NodeDelta:
    return NodeDelta(who, heartbeat, since, version, tuple(entries))


def events(batch: Batch) -> list[tuple[str, str | None]]:
    return sorted((c.key, c.event) for c in batch.changes)


class LocalWriteTests(unittest.TestCase):
    def setUp(self) -> None:
        self.state = ClusterState(ME)

    def test_versions_grow(self) -> None:
        versions = []
        for i, stamp in enumerate([5.0, 6.0, 6.0, 7.0]):
            self.state.write(f"k{i % 2}", "v", stamp)
            versions.append(self.state.me.version)
        self.assertEqual(versions, [1, 2, 3, 4])
        self.assertEqual(self.state.me.entries["k0"].version, 3)
        self.assertEqual(self.state.me.entries["k1"].version, 4)

    def test_version_grows_when_clock_steps_back_for_another_key(self) -> None:
        self.state.write("a", "1", 100.0)
        self.state.write("b", "2", 1.0)  # another key: its own timestamp rules
        self.assertEqual(self.state.me.entries["b"].version, 2)

    def test_older_timestamp_changes_nothing(self) -> None:
        self.state.write("k", "new", 10.0)
        batch = self.state.write("k", "old", 9.0)
        self.assertFalse(batch)
        self.assertEqual(self.state.me.entries["k"], Entry("new", 1, 10.0))
        self.assertEqual(self.state.me.version, 1)

    def test_same_timestamp_overwrites(self) -> None:
        self.state.write("k", "a", 10.0)
        batch = self.state.write("k", "b", 10.0)
        self.assertEqual(events(batch), [("k", "key_changed")])

    def test_new_key_then_changed_then_same_value(self) -> None:
        self.assertEqual(events(self.state.write("k", "a", 1.0)), [("k", "new_key")])
        self.assertEqual(
            events(self.state.write("k", "b", 2.0)), [("k", "key_changed")]
        )
        # rewriting the same value is a new version but fires nothing
        batch = self.state.write("k", "b", 3.0)
        self.assertEqual(events(batch), [("k", None)])
        self.assertEqual(self.state.me.version, 3)

    def test_batch_carries_node_record(self) -> None:
        batch = self.state.write("k", "a", 1.0)
        self.assertEqual(batch.nodes, (NodeRecord(ME, 1, "alive"),))

    def test_delete_makes_tombstone(self) -> None:
        self.state.write("k", "a", 1.0)
        batch = self.state.write("k", None, 2.0)
        (change,) = batch.changes
        self.assertEqual(change.event, "key_removed")
        self.assertEqual(change.value, "a")  # handlers get the removed value
        tomb = self.state.me.entries["k"]
        self.assertTrue(tomb.deleted)
        self.assertEqual(tomb.version, 2)
        self.assertEqual(list(self.state.me.live_items()), [])

    def test_delete_missing_or_deleted_changes_nothing(self) -> None:
        self.assertFalse(self.state.write("nope", None, 1.0))
        self.state.write("k", "a", 1.0)
        self.state.write("k", None, 2.0)
        self.assertFalse(self.state.write("k", None, 3.0))
        self.assertEqual(self.state.me.version, 2)

    def test_write_after_delete_is_new_key(self) -> None:
        self.state.write("k", "a", 1.0)
        self.state.write("k", None, 2.0)
        self.assertEqual(events(self.state.write("k", "b", 3.0)), [("k", "new_key")])

    def test_str_and_bytes_keep_their_type(self) -> None:
        self.state.write("s", "abc", 1.0)
        self.state.write("b", b"abc", 1.0)
        self.assertIs(type(self.state.me.entries["s"].value), str)
        self.assertIs(type(self.state.me.entries["b"].value), bytes)
        # same text, other type: a change
        batch = self.state.write("s", b"abc", 2.0)
        self.assertEqual(events(batch), [("s", "key_changed")])

    def test_entries_since_oldest_first(self) -> None:
        for i, key in enumerate("abcab"):
            self.state.write(key, str(i), float(i))
        got = [(k, e.version) for k, e in self.state.me.entries_since(1)]
        self.assertEqual(got, [("c", 3), ("a", 4), ("b", 5)])


class KeyChangeTests(unittest.TestCase):
    def test_events(self) -> None:
        a1, a2 = Entry("a", 1, 0.0), Entry("b", 2, 0.0)
        tomb = Entry(None, 3, 0.0)
        cases = [
            (None, a1, "new_key"),
            (a1, a2, "key_changed"),
            (a1, Entry("a", 2, 1.0), None),
            (a1, tomb, "key_removed"),
            (a1, None, "key_removed"),
            (tomb, a1, "new_key"),
            (None, tomb, None),
            (tomb, None, None),
            (Entry("a", 1, 0.0), Entry(b"a", 2, 0.0), "key_changed"),
        ]
        for old, new, expected in cases:
            self.assertEqual(KeyChange("n", "k", old, new).event, expected, (old, new))


class MergeTests(unittest.TestCase):
    def setUp(self) -> None:
        self.state = ClusterState(ME)

    def test_new_node_and_keys(self) -> None:
        batch = self.state.merge(
            [delta(OTHER, 0, 2, ("a", Entry("1", 1, 1.0)), ("b", Entry(b"2", 2, 1.0)))]
        )
        self.assertEqual(events(batch), [("a", "new_key"), ("b", "new_key")])
        node = self.state.nodes[OTHER.id]
        self.assertEqual(node.version, 2)
        self.assertIs(type(node.entries["b"].value), bytes)
        self.assertEqual(batch.nodes, (NodeRecord(OTHER, 2, "alive"),))

    def test_only_higher_versions(self) -> None:
        self.state.merge([delta(OTHER, 0, 3, ("a", Entry("new", 3, 1.0)))])
        batch = self.state.merge([delta(OTHER, 0, 1, ("a", Entry("old", 1, 9.0)))])
        self.assertEqual(self.state.nodes[OTHER.id].entries["a"].value, "new")
        self.assertFalse(batch.changes)
        # the same version again changes nothing either
        batch = self.state.merge([delta(OTHER, 0, 3, ("a", Entry("new", 3, 1.0)))])
        self.assertFalse(batch)

    def test_watermark_advances_only_from_contiguous_delta(self) -> None:
        self.state.merge([delta(OTHER, 0, 2, ("a", Entry("1", 2, 1.0)))])
        node = self.state.nodes[OTHER.id]
        self.assertEqual(node.version, 2)
        # a delta from 5: we lack 3..5, so the entry is taken, the watermark kept
        self.state.merge([delta(OTHER, 5, 7, ("b", Entry("2", 7, 1.0)))])
        self.assertEqual(node.version, 2)
        self.assertEqual(node.entries["b"].version, 7)
        # since == our version: advances
        self.state.merge([delta(OTHER, 2, 4, ("c", Entry("3", 4, 1.0)))])
        self.assertEqual(node.version, 4)
        # since < our version: advances too
        self.state.merge([delta(OTHER, 1, 9, ("d", Entry("4", 9, 1.0)))])
        self.assertEqual(node.version, 9)
        # a lower watermark never lowers it
        self.state.merge([delta(OTHER, 0, 3)])
        self.assertEqual(node.version, 9)

    def test_heartbeat_only_grows(self) -> None:
        self.state.merge([delta(OTHER, 0, 0, heartbeat=5)])
        self.state.merge([delta(OTHER, 0, 0, heartbeat=3)])
        self.assertEqual(self.state.nodes[OTHER.id].heartbeat, 5)

    def test_deltas_about_ourselves_ignored(self) -> None:
        self.state.write("k", "mine", 1.0)
        older_me = info(ME.id, ME.generation - 1)
        batch = self.state.merge(
            [
                delta(ME, 0, 50, ("k", Entry("theirs", 50, 9.0))),
                delta(older_me, 0, 50, ("k", Entry("theirs", 50, 9.0))),
            ]
        )
        self.assertFalse(batch)
        self.assertEqual(self.state.me.entries["k"].value, "mine")
        self.assertEqual(self.state.me.version, 1)
        self.assertEqual(self.state.me.info, ME)

    def test_newer_incarnation_of_ourselves_moves_our_generation_above(self) -> None:
        self.state.write("k", "mine", 1.0)
        for seen in (info(ME.id, ME.generation + 1), info(ME.id, ME.generation + 5)):
            batch = self.state.merge(
                [delta(seen, 0, 50, ("k", Entry("theirs", 50, 9.0)))]
            )
            self.assertEqual(self.state.me.info.generation, seen.generation + 1)
            self.assertEqual(batch.nodes, (self.state.me.record(),))
            self.assertEqual(batch.changes, ())
        self.assertEqual(self.state.me.entries["k"].value, "mine")
        self.assertEqual(self.state.me.version, 1)
        self.assertEqual(self.state.nodes[ME.id], self.state.me)

    def test_remote_tombstone(self) -> None:
        self.state.merge([delta(OTHER, 0, 1, ("a", Entry("1", 1, 1.0)))])
        batch = self.state.merge([delta(OTHER, 1, 2, ("a", Entry(None, 2, 2.0)))])
        (change,) = batch.changes
        self.assertEqual(change.event, "key_removed")
        self.assertEqual(change.value, "1")

    def test_tombstone_for_unknown_key_fires_nothing(self) -> None:
        batch = self.state.merge([delta(OTHER, 0, 2, ("a", Entry(None, 2, 2.0)))])
        self.assertEqual(events(batch), [("a", None)])

    def test_merge_is_idempotent(self) -> None:
        d = delta(OTHER, 0, 2, ("a", Entry("1", 1, 1.0)), ("b", Entry("2", 2, 1.0)))
        self.assertTrue(self.state.merge([d]))
        self.assertFalse(self.state.merge([d]))


class MergeManyTests(unittest.TestCase):
    def test_one_batch_with_each_node_once(self) -> None:
        """A full sync's deltas make one batch: every change, each node's
        last record once, in the order the nodes first changed."""
        third = info("10.0.0.3:5555")
        state = ClusterState(ME)
        batch = state.merge(
            [
                delta(OTHER, 0, 1, ("a", Entry("1", 1, 1.0))),
                delta(third, 0, 0),
                delta(OTHER, 1, 2, ("b", Entry("2", 2, 1.0))),
                delta(OTHER, 0, 2),  # nothing new
            ]
        )
        self.assertEqual(events(batch), [("a", "new_key"), ("b", "new_key")])
        self.assertEqual(
            batch.nodes, (NodeRecord(OTHER, 2, "alive"), NodeRecord(third, 0, "alive"))
        )

    def test_new_nodes_keep_the_ids_sorted(self) -> None:
        state = ClusterState(ME)
        before = state.sorted_ids()
        state.merge([delta(info("10.0.0.9:5555"), 0, 0), delta(OTHER, 0, 0)])
        self.assertEqual(state.sorted_ids(), sorted(state.nodes))
        self.assertEqual(before, [ME.id])  # a list handed out is never changed


class ViewNewsTests(unittest.TestCase):
    def setUp(self) -> None:
        self.state = ClusterState(ME)
        self.state.merge([delta(OTHER, 0, 0)])
        self.state.view_news.clear()

    def test_view_news(self) -> None:
        """Status changes and new nodes are recorded for the peer view."""
        self.state.mark(OTHER.id, OTHER.generation, "dead")
        self.state.merge([delta(info("10.0.0.4:5555"), 0, 0)])
        self.assertEqual(
            self.state.view_news, {OTHER.id: "alive", "10.0.0.4:5555": None}
        )


class GenerationTests(unittest.TestCase):
    def setUp(self) -> None:
        self.state = ClusterState(ME)
        self.state.merge(
            [
                delta(
                    OTHER,
                    0,
                    5,
                    ("same", Entry("s", 1, 1.0)),
                    ("changed", Entry("c", 2, 1.0)),
                    ("missing", Entry("m", 3, 1.0)),
                    ("gone", Entry(None, 5, 1.0)),
                ),
            ]
        )
        self.state.merge([delta(OTHER, 0, 5, heartbeat=40)])
        self.state.mark(OTHER.id, OTHER.generation, "dead")

    def test_newer_generation_resets(self) -> None:
        reborn = info(OTHER.id, OTHER.generation + 1)
        batch = self.state.merge(
            [
                delta(
                    reborn,
                    0,
                    2,
                    ("same", Entry("s", 1, 5.0)),
                    ("changed", Entry("C", 2, 5.0)),
                ),
            ]
        )
        self.assertEqual(
            events(batch),
            [
                ("changed", "key_changed"),
                ("gone", None),
                ("missing", "key_removed"),
                ("same", None),
            ],
        )
        node = self.state.nodes[OTHER.id]
        self.assertEqual(node.info, reborn)
        self.assertEqual(set(node.entries), {"same", "changed"})
        self.assertEqual(node.version, 2)
        self.assertEqual(node.heartbeat, 0)
        self.assertEqual(node.status, "alive")
        self.assertEqual(batch.nodes, (NodeRecord(reborn, 2, "alive"),))
        # the dropped key's change has no new entry, so a store deletes it
        (missing,) = [c for c in batch.changes if c.key == "missing"]
        self.assertIsNone(missing.new)
        self.assertEqual(missing.value, "m")

    def test_newer_generation_partial_delta(self) -> None:
        # only part of the new incarnation arrived: its watermark is what it sent
        reborn = info(OTHER.id, OTHER.generation + 1)
        self.state.merge([delta(reborn, 0, 1, ("same", Entry("s", 1, 5.0)))])
        self.assertEqual(self.state.nodes[OTHER.id].version, 1)

    def test_older_generation_ignored(self) -> None:
        older = info(OTHER.id, OTHER.generation - 1)
        batch = self.state.merge([delta(older, 0, 9, ("new", Entry("x", 9, 9.0)))])
        self.assertFalse(batch)
        node = self.state.nodes[OTHER.id]
        self.assertEqual(node.info, OTHER)
        self.assertNotIn("new", node.entries)
        self.assertEqual(node.version, 5)

    def test_mark_needs_matching_generation(self) -> None:
        self.assertFalse(self.state.mark(OTHER.id, OTHER.generation + 1, "alive"))
        self.assertFalse(self.state.mark(OTHER.id, OTHER.generation, "dead"))
        self.assertTrue(self.state.mark(OTHER.id, OTHER.generation, "alive"))
        self.assertFalse(self.state.mark(ME.id, ME.generation, "dead"))
        self.assertFalse(self.state.mark("unknown:1", 1, "dead"))

    def test_observe_heartbeat(self) -> None:
        self.assertFalse(self.state.observe_heartbeat(OTHER.id, OTHER.generation, 3))
        self.assertTrue(self.state.observe_heartbeat(OTHER.id, OTHER.generation, 41))
        self.assertFalse(self.state.observe_heartbeat(OTHER.id, 99, 100))
        self.assertFalse(self.state.observe_heartbeat(ME.id, ME.generation, 100))
        self.assertFalse(self.state.observe_heartbeat("x:1", 1, 100))


class RestoreTests(unittest.TestCase):
    def test_restore(self) -> None:
        old_me = info(ME.id, 7)
        snapshot = Snapshot(
            nodes=(NodeRecord(old_me, 3, "alive"), NodeRecord(OTHER, 4, "dead")),
            entries={
                ME.id: {"k": Entry("v", 5, 1.0), "b": Entry(b"x", 2, 1.0)},
                OTHER.id: {"o": Entry("w", 4, 1.0)},
            },
        )
        state = ClusterState(info(ME.id, 0))
        self.assertEqual(state.restore(snapshot), 7)
        # our version is at least the highest entry's, so new writes go above it
        self.assertEqual(state.me.version, 5)
        self.assertIs(type(state.me.entries["b"].value), bytes)
        state.write("new", "n", 2.0)
        self.assertEqual(state.me.entries["new"].version, 6)
        other = state.nodes[OTHER.id]
        self.assertEqual((other.version, other.status), (4, "dead"))
        self.assertEqual(other.entries["o"].value, "w")
        self.assertEqual(state.sorted_ids(), sorted([ME.id, OTHER.id]))

    def test_restore_without_self(self) -> None:
        state = ClusterState(ME)
        snapshot = Snapshot((NodeRecord(OTHER, 1, "alive"),), {})
        self.assertEqual(state.restore(snapshot), 0)
        self.assertEqual(state.nodes[OTHER.id].entries, {})


class TakeBackTests(unittest.TestCase):
    """A node whose store lost its record takes its keys back, once."""

    def previous(self) -> NodeDelta:
        return delta(
            info(ME.id, 3),
            0,
            9,
            ("role", Entry("worker", 4, 1.0)),
            ("gone", Entry(None, 6, 2.0)),
            ("mine", Entry("old", 9, 3.0)),
        )

    def test_the_previous_incarnation_s_live_keys_become_ours(self) -> None:
        state = ClusterState(info(ME.id, 5))
        state.write("mine", "new", 4.0)
        state.adopt_previous = True
        batch = state.merge([self.previous()])
        me = state.me
        self.assertEqual(me.info.generation, 5)
        self.assertEqual(
            {k: e.value for k, e in me.entries.items()},
            {"mine": "new", "role": "worker"},
        )
        self.assertEqual(me.entries["role"], Entry("worker", 2, 1.0))
        self.assertEqual(me.version, 2)
        self.assertEqual(events(batch), [("role", "new_key")])
        self.assertEqual(batch.nodes, (me.record(),))
        self.assertEqual((state.adopted, state.adopt_previous), (1, False))
        # once only
        self.assertEqual(state.merge([self.previous()]), Batch())

    def test_without_the_flag_an_old_incarnation_changes_nothing(self) -> None:
        state = ClusterState(info(ME.id, 5))
        self.assertEqual(state.merge([self.previous()]), Batch())
        self.assertEqual(state.me.entries, {})
        self.assertIsNone(state.adopted)


class IdentityTests(unittest.TestCase):
    def test_rename_self(self) -> None:
        state = ClusterState(ME)
        state.write("k", "v", 1.0)
        self.assertEqual(state.sorted_ids(), [ME.id])
        new = info("10.0.0.9:1", 3)
        state.rename_self(new)
        self.assertEqual(state.sorted_ids(), [new.id])
        self.assertIs(state.nodes[new.id], state.me)
        self.assertEqual(state.me.entries["k"].value, "v")

    def test_full_deltas(self) -> None:
        state = ClusterState(ME)
        state.write("k", "v", 1.0)
        state.merge([delta(OTHER, 0, 2, ("a", Entry("1", 2, 1.0)))])
        full = {d.info.id: d for d in state.full_deltas()}
        self.assertEqual(full[ME.id].entries, (("k", Entry("v", 1, 1.0)),))
        self.assertEqual((full[OTHER.id].since, full[OTHER.id].version), (0, 2))
        other = ClusterState(info("10.0.0.3:5555"))
        other.merge(full.values())
        self.assertEqual(other.nodes[ME.id].entries, state.me.entries)
