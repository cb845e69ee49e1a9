"""An operator's forget: committed here, told to the live peers only."""

from __future__ import annotations

from twisted.internet import defer
from twisted.trial import unittest

from pokan import wire
from pokan.core.engine import Engine, Output
from pokan.errors import NodeIsAlive
from pokan.net.forgetting import forget
from tests.core.test_engine import engine, joined, source


class ForgetTests(unittest.TestCase):
    def setUp(self) -> None:
        self.a, self.b, self.c = engine(1), engine(2), engine(3)
        for other in (self.b, self.c):
            joined(self.a, other)
        (bye,) = [o for o in self.c.goodbye(1.0) if o.address == source(self.a)]
        self.a.receive(bye.message, source(self.c), None, 1.0)
        self.commits: list[Output] = []
        self.sends: list[tuple[tuple[str, int], wire.Message]] = []

    def forget(self, e: Engine, node_id: str, force: bool = False) -> None:
        def commit(output: Output) -> defer.Deferred[None]:
            self.commits.append(output)
            return defer.succeed(None)

        d = forget(
            e,
            node_id,
            force,
            2.0,
            commit=commit,
            send=lambda address, message: self.sends.append((address, message)),
        )
        self.successResultOf(d)

    def test_a_left_node_is_dropped_and_the_live_peers_told(self) -> None:
        self.assertEqual(self.a.state.nodes[self.c.id].status, "left")
        self.forget(self.a, self.c.id)
        self.assertNotIn(self.c.id, self.a.state.nodes)
        (output,) = self.commits
        self.assertEqual(output.batch.forgotten, (self.c.id,))
        ((address, message),) = self.sends
        self.assertEqual(address, source(self.b))
        self.assertEqual(
            message, wire.Forget(self.a.id, self.c.id, self.c.state.me.info.generation)
        )

    def test_a_live_node_only_by_force(self) -> None:
        self.assertRaises(NodeIsAlive, self.forget, self.a, self.b.id)
        self.assertEqual((self.commits, self.sends), ([], []))
        self.forget(self.a, self.b.id, force=True)
        self.assertNotIn(self.b.id, self.a.state.nodes)
        self.assertEqual(self.sends, [])  # no live peer left to tell

    def test_neither_itself_nor_an_unknown_node(self) -> None:
        self.assertRaises(ValueError, self.forget, self.a, self.a.id)
        self.assertRaises(LookupError, self.forget, self.a, "10.0.0.99:5555")
        self.assertEqual(self.commits, [])
