"""The arithmetic sizes of the wire module agree with msgpack."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from pokan import wire
from pokan.core import gc
from pokan.core.peerview import PeerView
from pokan.core.state import ClusterState, Entry, NodeDelta, NodeInfo, NodeState
from pokan.net.fullsync import join_pieces, welcome_frames


class SizeTests(unittest.TestCase):
    def test_digest_entry_size_is_the_packed_size(self) -> None:
        ids = ["a", "x" * 31, "x" * 32, "é" * 20, "\u4e00" * 100, "y" * 300]
        numbers = [0, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**64 - 1]
        for node_id in ids:
            for n in numbers:
                entry = wire.DigestEntry(node_id, n, numbers[-1 - numbers.index(n)], n)
                self.assertEqual(
                    wire.digest_entry_size(entry),
                    wire.packed_size(wire.pack_digest_entry(entry)),
                    entry,
                )


def info(i: int, role: str = "peer") -> NodeInfo:
    return NodeInfo(f"10.0.0.{i}:5555", 1, f"10.0.0.{i}", 5555, 5555, role)  # type: ignore[arg-type]


class PeerViewTests(unittest.TestCase):
    def setUp(self) -> None:
        self.state = ClusterState(info(0))
        for i in (1, 2, 3):
            self.state.nodes[info(i).id] = NodeState(
                info(i, "seed" if i == 3 else "peer")
            )
        self.view = PeerView(self.state)
        self.view.refresh()

    def test_partition(self) -> None:
        self.state.nodes[info(2).id].status = "dead"
        self.view.rebuild()
        self.assertEqual(sorted(self.view.live), [info(1).id, info(3).id])
        self.assertEqual(self.view.dead, [info(2).id])
        self.assertEqual(self.view.seeds, [info(3).id])

    def test_follows_changes_without_rebuilding(self) -> None:
        """Status changes, new and forgotten nodes move one id each."""
        rebuilds: list[None] = []
        rebuild = self.view.rebuild
        self.patch(self.view, "rebuild", lambda: rebuilds.append(rebuild()))
        self.state.mark(info(1).id, 1, "dead")
        self.state.merge(
            [wire_delta(info(4, "seed")), wire_delta(info(3, "seed"), left=True)]
        )
        gc.forget(self.state, info(2).id)
        self.view.refresh()
        self.assertEqual(rebuilds, [])
        self.assertEqual(self.view.live, [info(4).id])
        self.assertEqual(self.view.dead, [info(1).id])
        # seeds are seeds whatever their status, as when rebuilt
        self.assertEqual(sorted(self.view.seeds), [info(3).id, info(4).id])
        self.assertEqual(self.state.view_news, {})
        self.state.set_status(self.state.nodes[info(1).id], "alive")
        self.view.refresh()
        self.assertEqual(
            (self.view.live, self.view.dead), ([info(4).id, info(1).id], [])
        )
        self.assertEqual(rebuilds, [])

    def test_changes_behind_the_states_back_rebuild(self) -> None:
        self.state.nodes[info(4).id] = NodeState(info(4))
        self.view.refresh()
        self.assertIn(info(4).id, self.view.live)
        # a status set directly, then a change recorded from the wrong list
        self.state.nodes[info(1).id].status = "dead"
        self.state.mark(info(1).id, 1, "left")
        self.view.refresh()
        self.assertNotIn(info(1).id, self.view.live + self.view.dead)

    def test_status_change_is_caught_on_pick(self) -> None:
        node = self.state.nodes[info(1).id]
        node.status = "dead"
        self.assertIsNone(self.view.current(info(1).id, alive=True))
        self.assertIn(info(1).id, self.view.dead)
        self.assertIs(self.view.current(info(1).id, alive=False), node)

    def test_many_changes_rebuild(self) -> None:
        view = PeerView(self.state, max_news=2)
        view.refresh()
        self.state.merge([wire_delta(info(i)) for i in range(4, 8)])
        view.refresh()
        self.assertEqual(len(view.live), 7)
        self.assertEqual(self.state.view_news, {})


def wire_delta(node: NodeInfo, left: bool = False) -> NodeDelta:
    return NodeDelta(node, 1, 0, 0, (), left=left)


def _state(sizes: list[list[int]], gc_points: list[int]) -> tuple[NodeDelta, ...]:
    """One delta per node: values of the given sizes, versions 1, 2, ..."""
    deltas = []
    for i, values in enumerate(sizes):
        version = len(values)
        gc_point = min(gc_points[i % len(gc_points)], version)
        entries = tuple(
            (f"key{v}", Entry("x" * size, v, 1.0)) for v, size in enumerate(values, 1)
        )
        deltas.append(
            NodeDelta(
                info(i + 1), i, 0, version, entries, left=i % 3 == 0, gc_point=gc_point
            )
        )
    return tuple(deltas)


class WelcomeFrameSizeTests(unittest.TestCase):
    """A full state in frames: none over the limit, all joined back as sent."""

    @settings(max_examples=100, deadline=None, derandomize=True)
    @given(
        st.lists(st.lists(st.integers(0, 900), max_size=40), min_size=1, max_size=8),
        st.lists(st.integers(0, 50), min_size=1, max_size=3),
        st.integers(1024, 8192),
    )
    def test_frames_fit_and_join_back(
        self, sizes: list[list[int]], gc_points: list[int], limit: int
    ) -> None:
        welcome = wire.Welcome("10.0.0.9:5555", _state(sizes, gc_points))
        frames = welcome_frames(welcome, limit)
        self.assertTrue(all(len(f) <= limit for f in frames), [len(f) for f in frames])
        deltas = [d for f in frames for d in wire.decode(f).deltas]  # type: ignore[union-attr]
        self.assertEqual(join_pieces(deltas), welcome.deltas)
