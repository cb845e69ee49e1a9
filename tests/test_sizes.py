"""The arithmetic sizes of the wire module agree with msgpack."""

from __future__ import annotations

from twisted.trial import unittest

from pokan import wire
from pokan.peerview import PeerView
from pokan.state import ClusterState, NodeInfo, NodeState


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
        self.view = PeerView(self.state, max_age=2)

    def ids(self, nodes: list[NodeState]) -> list[str]:
        return sorted(n.info.id for n in nodes)

    def test_partition(self) -> None:
        self.state.nodes[info(2).id].status = "dead"
        self.view.refresh()
        self.assertEqual(self.ids(self.view.live), [info(1).id, info(3).id])
        self.assertEqual(self.ids(self.view.dead), [info(2).id])
        self.assertEqual(self.ids(self.view.seeds), [info(3).id])

    def test_new_node_rebuilds(self) -> None:
        self.view.refresh()
        self.state.nodes[info(4).id] = NodeState(info(4))
        self.view.refresh()
        self.assertIn(info(4).id, self.ids(self.view.live))

    def test_status_change_is_caught_on_pick_and_by_age(self) -> None:
        self.view.refresh()
        node = self.state.nodes[info(1).id]
        node.status = "dead"
        self.assertIsNone(self.view.current(node, alive=True))
        self.assertIn(info(1).id, self.ids(self.view.dead))
        node.status = "alive"
        for _ in range(3):
            self.view.refresh()
        self.assertIn(info(1).id, self.ids(self.view.live))
