"""Property tests of the merge: hostile messages never overflow a node, never
stop it speaking, and a cluster still converges once its real nodes write."""

from __future__ import annotations

import contextlib
import random

import attrs
from hypothesis import example, given, settings
from hypothesis import strategies as st
from twisted.internet import task
from twisted.trial import unittest

from pokan import wire
from pokan.core.membership import Membership
from pokan.core.node import Address, GossipNode, Outgoing
from pokan.core.state import ClusterState, Entry, NodeDelta, NodeInfo
from pokan.errors import DecodeError, EncodeError
from tests.simnet import SimCluster
from tests.wire.test_fuzz_codec import (
    FUZZ,
    MAX_COUNTER,
    counters,
    deltas,
    infos,
    messages,
    node_ids,
)

#: the real nodes of a 3-node SimCluster (see tests/simnet.py)
REAL_IDS = ("10.0.0.1:5555", "10.0.0.2:5555", "10.0.0.3:5555")
REAL_ADDRESSES: tuple[Address, ...] = tuple((i.split(":")[0], 5555) for i in REAL_IDS)
ME = NodeInfo(REAL_IDS[0], 1, "10.0.0.1", 5555, 5555)
PEER = NodeInfo(REAL_IDS[1], 1, "10.0.0.2", 5555, 5555)


@st.composite
def forged_infos(draw: st.DrawFn) -> NodeInfo:
    """The identity of a real node at a forged generation, or anything at all."""
    real = draw(st.sampled_from(REAL_IDS))
    host = real.split(":")[0]
    exact = NodeInfo(real, draw(counters()), host, 5555, 5555)
    return draw(st.one_of(st.just(exact), infos(st.sampled_from(REAL_IDS)), infos()))


hostile_deltas = st.one_of(deltas(forged_infos()), deltas())
hostile_messages = messages(
    hostile_deltas, st.one_of(st.sampled_from(REAL_IDS), node_ids)
)
sources = st.one_of(
    st.sampled_from(REAL_ADDRESSES), st.just(("10.9.9.9", 4444))
)  # a real node's socket, or an outsider's
hostile_traffic = st.lists(st.tuples(hostile_messages, sources), max_size=12)


def as_received(message: wire.Message) -> wire.Message | None:
    """``message`` as a node would get it off the wire; None if refused."""
    try:
        return wire.decode(wire.encode(message))
    except (EncodeError, DecodeError):
        return None


def forged_self(**fields: int) -> NodeDelta:
    """A delta about ME at forged counters."""
    info = attrs.evolve(ME, generation=fields.pop("generation", ME.generation))
    version = fields.get("version", 0)
    entries = (("k", Entry("forged", version, 0.0)),) if version else ()
    return NodeDelta(info, fields.get("heartbeat", 0), 0, version, entries, gc_point=0)


def own_counters(state: ClusterState) -> dict[str, int]:
    """Every counter of a node's own record."""
    me = state.me
    found = {
        "generation": me.info.generation,
        "version": me.version,
        "heartbeat": me.heartbeat,
        "gc_point": me.gc_point,
    }
    for key, entry in me.entries.items():
        found[f"entry {key!r}"] = entry.version
    return found


class OneNode(unittest.TestCase):
    """Hostile messages at one GossipNode that gossips between them."""

    @settings(FUZZ, max_examples=150)
    @given(hostile_traffic)
    @example(  # a forged generation of ME at the bound: ME must not move above it
        [(wire.Syn("x", (), None, None, (forged_self(generation=MAX_COUNTER),)),
          ("10.9.9.9", 4444))]
    )  # fmt: skip
    @example(
        [
            (
                wire.Ack(REAL_IDS[1], (forged_self(generation=2**64 - 1),)),
                REAL_ADDRESSES[1],
            )
        ]
    )
    @example(
        [(wire.Ack(REAL_IDS[1], (forged_self(version=2**64 - 1),)), REAL_ADDRESSES[1])]
    )
    @example(
        [
            (
                wire.Ack(REAL_IDS[1], (forged_self(heartbeat=2**64 - 1),)),
                REAL_ADDRESSES[1],
            )
        ]
    )
    @example(
        [
            (
                wire.Syn(
                    REAL_IDS[1], (wire.DigestEntry(REAL_IDS[0], 2**64 - 1, 0, 0),)
                ),
                REAL_ADDRESSES[1],
            )
        ]
    )
    def test_no_overflow_and_the_node_still_speaks(
        self, traffic: list[tuple[wire.Message, Address]]
    ) -> None:
        clock = task.Clock()
        state = ClusterState(ME)
        node = GossipNode(state, random.Random(1))
        membership = Membership(state, 1.0)
        node.merge_full([NodeDelta(PEER, 1, 0, 0, ())])
        for raw, source in traffic:
            outgoing: tuple[Outgoing, ...] = ()
            message = as_received(raw)
            if message is None:
                continue
            if isinstance(message, wire.Hello | wire.Welcome):
                node.merge_full(message.deltas)
            else:
                result = node.receive(message, source)
                outgoing = result.outgoing
                membership.observe(clock.seconds(), getattr(message, "digest", ()))
            for out in (*outgoing, *node.gossip_round()):
                _sendable(out.message, node)
            clock.advance(0.5)
            membership.tick(clock.seconds())
        for name, value in own_counters(state).items():
            self.assertLessEqual(value, MAX_COUNTER, f"own {name} is {value}")
        wire.encode(wire.Hello(state.me.info.id, node.full_state()))
        for _ in range(3):
            for out in node.gossip_round():
                _sendable(out.message, node)


def _sendable(message: wire.Message, node: GossipNode) -> None:
    """What the node sends encodes: EncodeError (too big) is reported by
    GossipProtocol.send and allowed; any other exception fails the test."""
    with contextlib.suppress(EncodeError):
        wire.encode(message, node.max_datagram - wire.SEAL_HEADROOM)


class Cluster(unittest.TestCase):
    """Hostile messages at a 3-node simulated cluster; then its nodes write
    and every node must hold every real node's latest write."""

    @settings(FUZZ, max_examples=40)
    @given(
        st.lists(st.tuples(hostile_messages, sources, st.integers(0, 2)), max_size=12)
    )
    @example(
        [
            (
                wire.Ack(
                    REAL_IDS[1],
                    (
                        NodeDelta(
                            NodeInfo(REAL_IDS[2], 2**64 - 1, "10.0.0.3", 5555, 5555),
                            0,
                            0,
                            0,
                            (),
                        ),
                    ),
                ),
                REAL_ADDRESSES[1],
                0,
            )
        ]
    )
    @example(
        [
            (
                wire.Ack(
                    REAL_IDS[1],
                    (
                        NodeDelta(
                            attrs.evolve(PEER, generation=1),
                            0,
                            0,
                            2**64 - 1,
                            (("final", Entry("forged", 2**64 - 1, 0.0)),),
                        ),
                    ),
                ),
                REAL_ADDRESSES[2],
                0,
            )
        ]
    )
    @example(
        [
            (
                wire.Ack(REAL_IDS[1], (forged_self(generation=2**64 - 1),)),
                REAL_ADDRESSES[1],
                0,
            )
        ]
    )
    def test_real_writes_converge_after_hostile_traffic(
        self, traffic: list[tuple[wire.Message, Address, int]]
    ) -> None:
        sim = SimCluster(3, interval=1.0, seed=3)
        sim.run(3, step=0.05)
        self.assertEqual([n.id for n in sim.nodes], list(REAL_IDS))
        for raw, source, target in traffic:
            message = as_received(raw)
            if message is None:
                continue
            node = sim.nodes[target]
            if isinstance(message, wire.Hello | wire.Welcome):
                node.carry_out(
                    node.engine.merge_full(message.deltas, sim.clock.seconds())
                )
            else:
                node.receive(message, source)
            sim.run(0.2, step=0.05)
        for node in sim.nodes:
            node.write("final", f"from {node.id}")

        def converged() -> bool:
            return all(
                _value(reader.state, writer.id, "final") == f"from {writer.id}"
                for reader in sim.nodes
                for writer in sim.nodes
            )

        took = sim.run_until(converged, limit=30, step=0.05)
        self.assertIsNotNone(took, _missing(sim))


def _value(state: ClusterState, owner: str, key: str) -> object:
    node = state.nodes.get(owner)
    entry = None if node is None else node.entries.get(key)
    return None if entry is None else entry.value


def _missing(sim: SimCluster) -> str:
    return "; ".join(
        f"{reader.id} holds {_value(reader.state, writer.id, 'final')!r}"
        f" for {writer.id} (generation"
        f" {getattr(reader.state.nodes.get(writer.id), 'info', None)})"
        for reader in sim.nodes
        for writer in sim.nodes
        if _value(reader.state, writer.id, "final") != f"from {writer.id}"
    )
