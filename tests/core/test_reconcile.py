"""Scuttlebutt under a byte budget: digest slices, deltas, and convergence."""

from __future__ import annotations

import random
from collections import deque

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from pokan import wire
from pokan.core import reconcile
from pokan.core.node import Address, GossipNode
from pokan.core.state import ClusterState, Entry, NodeDelta, NodeInfo, NodeState, Value

Write = tuple[str, Value | None, float]  # key, value (None: delete), timestamp


def node_info(i: int, generation: int = 1, pad: int = 0) -> NodeInfo:
    host = f"10.{i // 250}.{i % 250}.{1 + pad}"
    return NodeInfo(f"{host}:5555", generation, host, 5555, 5555, "peer")


def latest(history: list[Write], upto: int) -> dict[str, Entry]:
    """The entries of a node after its first ``upto`` writes."""
    entries: dict[str, Entry] = {}
    for version, (key, value, stamp) in enumerate(history[:upto], start=1):
        entries[key] = Entry(value, version, stamp)
    return entries


def load(node: NodeState, history: list[Write], upto: int, heartbeat: int) -> None:
    node.entries = latest(history, upto)
    node.version = upto
    node.heartbeat = heartbeat


def random_history(rng: random.Random, big: int) -> list[Write]:
    keys = [f"k{j}" + "x" * rng.randrange(0, 30) for j in range(rng.randrange(1, 8))]
    history: list[Write] = []
    for t in range(rng.randrange(0, 25)):
        size = rng.choice([0, 3, 20, 100, rng.randrange(0, big + 1)])
        roll = rng.random()
        value: Value | None
        if roll < 0.1:
            value = None
        elif roll < 0.55:
            value = "é" * (size // 2)
        else:
            value = rng.randbytes(size)
        history.append((rng.choice(keys), value, float(t)))
    return history


class Cluster:
    """A random truth (every node's writes) and views of it, for properties."""

    def __init__(self, rng: random.Random, n: int, big: int) -> None:
        self.rng = rng
        self.n = n
        # per node, per generation (1 or 2): the writes that incarnation made
        self.truth = {
            i: {g: random_history(rng, big) for g in (1, 2)} for i in range(n)
        }
        self.generation = {i: rng.choice((1, 2)) for i in range(n)}

    def view(self, me: int) -> ClusterState:
        """What node ``me`` knows: a random prefix of what others wrote."""
        rng = self.rng
        state = ClusterState(node_info(me, self.generation[me]))
        own = self.truth[me][self.generation[me]]
        load(state.me, own, len(own), rng.randrange(0, 100))
        for i in range(self.n):
            if i == me or rng.random() < 0.2:
                continue  # some nodes it does not know at all
            generation = self.generation[i] if rng.random() < 0.8 else 1
            history = self.truth[i][generation]
            upto = rng.randrange(0, len(history) + 1)
            node = NodeState(node_info(i, generation))
            load(node, history, upto, rng.randrange(0, 100))
            state.nodes[node.info.id] = node
        state._sorted_ids = None
        return state

    def check_valid(self, test: unittest.TestCase, state: ClusterState) -> None:
        """Entries are genuine writes, and a watermark leaves nothing unsent.

        Writes superseded later may be missing below a watermark (they are
        never sent), but a key whose last write is at or below the watermark
        must be held at that write: nobody would send it again.
        """
        for node_id, node in state.nodes.items():
            i = next(j for j in range(self.n) if node_info(j).id == node_id)
            history = self.truth[i][node.info.generation]
            test.assertLessEqual(node.version, len(history))
            for key, entry in node.entries.items():
                key_, value, stamp = history[entry.version - 1]
                test.assertEqual(
                    (key_, value, stamp), (key, entry.value, entry.timestamp)
                )
            for key, entry in latest(history, len(history)).items():
                if entry.version <= node.version:
                    held = node.entries.get(key)
                    test.assertEqual(held, entry, f"{node_id} lacks {key}")


def fits(test: unittest.TestCase, message: wire.Message, max_datagram: int) -> None:
    data = wire.encode(message)
    test.assertLessEqual(len(data), max_datagram - wire.SEAL_HEADROOM)
    test.assertEqual(wire.decode(data), message)


class BudgetPropertyTests(unittest.TestCase):
    @settings(max_examples=60, deadline=None, derandomize=True)
    @given(
        seed=st.integers(0, 2**32),
        n=st.integers(2, 70),
        max_datagram=st.one_of(
            st.integers(512, 2000), st.integers(512, wire.MAX_UDP_PAYLOAD)
        ),
    )
    def test_every_message_fits(self, seed: int, n: int, max_datagram: int) -> None:
        rng = random.Random(seed)
        cluster = Cluster(rng, n, big=rng.choice([200, 1500, 70000]))
        a, b = cluster.view(0), cluster.view(1)
        budget_a = reconcile.message_budget(max_datagram, a.me.info.id)
        budget_b = reconcile.message_budget(max_datagram, b.me.info.id)
        cursor = rng.randrange(0, n)
        for _ in range(3):
            syn, cursor = reconcile.make_syn(b, cursor, budget_b)
            fits(self, syn, max_datagram)
            deltas, differing = reconcile.respond_to_syn(a, syn, budget_a)
            syn_ack = wire.SynAck(a.me.info.id, tuple(deltas), tuple(differing))
            fits(self, syn_ack, max_datagram)
            lags = [a.nodes[d.info.id].version - d.since for d in deltas]
            self.assertEqual(lags, sorted(lags, reverse=True))
            b.merge(deltas)
            cluster.check_valid(self, b)
            back = reconcile.respond_to_syn_ack(b, differing, budget_b)
            fits(self, wire.Ack(b.me.info.id, tuple(back)), max_datagram)
            a.merge(back)
            cluster.check_valid(self, a)


def state_with(me: int, *others: tuple[int, int, int]) -> ClusterState:
    """A state knowing ``(node, writes, value size)`` for each other node."""
    state = ClusterState(node_info(me))
    for i, count, size in others:
        node = NodeState(node_info(i))
        history: list[Write] = [(f"k{v}", "v" * size, 1.0) for v in range(count)]
        load(node, history, count, 0)
        state.nodes[node.info.id] = node
    state._sorted_ids = None
    return state


class BuildDeltasTests(unittest.TestCase):
    def test_most_out_of_date_first(self) -> None:
        a = state_with(0, (1, 3, 10), (2, 9, 10), (3, 5, 10))
        wants = [(n, 0) for n in a.others()]
        deltas = reconcile.build_deltas(wants, 10_000)
        self.assertEqual(
            [d.info.id for d in deltas], [node_info(i).id for i in (2, 3, 1)]
        )
        # what is lacking counts, not the total: node 2 known up to 8 here
        wants = [(a.nodes[node_info(2).id], 8), (a.nodes[node_info(1).id], 0)]
        deltas = reconcile.build_deltas(wants, 10_000)
        self.assertEqual([d.info.id for d in deltas], [node_info(i).id for i in (1, 2)])

    def test_cut_short_watermark(self) -> None:
        a = state_with(0, (1, 20, 50))
        node = a.nodes[node_info(1).id]
        (delta,) = reconcile.build_deltas([(node, 4)], 400)
        self.assertEqual(delta.since, 4)
        self.assertLess(delta.version, 20)
        self.assertEqual(
            [e.version for _, e in delta.entries], list(range(5, delta.version + 1))
        )
        data = wire.encode(wire.Ack("x", (delta,)))
        self.assertEqual(wire.decode(data), wire.Ack("x", (delta,)))
        # the receiver, at 4, takes the watermark and holds everything below it
        b = ClusterState(node_info(9))
        b.merge([NodeDelta(node.info, 0, 0, 4, tuple(node.entries_since(0)[:4]))])
        b.merge([delta])
        mine = b.nodes[node.info.id]
        self.assertEqual(mine.version, delta.version)
        self.assertEqual(
            sorted(e.version for e in mine.entries.values()),
            list(range(1, delta.version + 1)),
        )

    def test_too_big_entry_skipped(self) -> None:
        a = state_with(0, (1, 2, 5000), (2, 2, 10))
        big = a.nodes[node_info(1).id]
        wants = [(big, 0), (a.nodes[node_info(2).id], 0)]
        deltas = reconcile.build_deltas(wants, 1000)
        self.assertEqual([d.info.id for d in deltas], [node_info(2).id])
        # a big write later in the history cuts the delta short before it
        big.entries["k1"] = Entry("v", 1, 1.0)
        big.entries["k0"] = Entry("v" * 5000, 2, 1.0)
        (delta,) = reconcile.build_deltas([(big, 0)], 1000)
        self.assertEqual((delta.version, len(delta.entries)), (1, 1))

    def test_header_only_delta_when_nothing_pending(self) -> None:
        # a watermark above every entry (superseded writes) still travels
        a = state_with(0, (1, 3, 10))
        node = a.nodes[node_info(1).id]
        node.version = 7
        (delta,) = reconcile.build_deltas([(node, 3)], 1000)
        self.assertEqual((delta.since, delta.version, delta.entries), (3, 7, ()))

    def test_a_node_that_left_travels_as_left(self) -> None:
        """A receiver new to it learns it left: it never sees it join."""
        a = state_with(0, (1, 3, 10))
        gone = a.nodes[node_info(1).id]
        gone.status = "left"
        (delta,) = reconcile.build_deltas([(gone, 0)], 1000)
        self.assertTrue(delta.left)
        b = ClusterState(node_info(9))
        (record,) = b.merge([delta]).nodes
        self.assertEqual(record.status, "left")
        self.assertEqual(b.nodes[gone.info.id].status, "left")

    def test_nothing_fits(self) -> None:
        a = state_with(0, (1, 3, 10))
        self.assertEqual(
            reconcile.build_deltas([(a.nodes[node_info(1).id], 0)], 10), []
        )


class MakeSynTests(unittest.TestCase):
    def test_whole_digest_when_it_fits(self) -> None:
        state = state_with(5, *((i, 1, 1) for i in range(10) if i != 5))
        syn, cursor = reconcile.make_syn(state, 3, 1400)
        self.assertEqual((syn.low, syn.high, cursor), (None, None, 0))
        self.assertEqual(syn.digest[0].node_id, state.me.info.id)
        self.assertEqual(sorted(e.node_id for e in syn.digest), sorted(state.nodes))
        self.assertTrue(all(syn.covers(i) for i in state.nodes))

    def test_alone(self) -> None:
        state = ClusterState(node_info(0))
        syn, cursor = reconcile.make_syn(state, 7, 1400)
        self.assertEqual((len(syn.digest), syn.low, cursor), (1, None, 0))

    def test_rotating_slices(self) -> None:
        state = state_with(0, *((i, 1, 1) for i in range(1, 60)))
        ids = [i for i in state.sorted_ids() if i != state.me.info.id]
        budget = reconcile.message_budget(600, state.me.info.id)
        cursor, seen, wrapped = 0, set(), False
        for _ in range(20):
            syn, nxt = reconcile.make_syn(state, cursor, budget)
            self.assertLessEqual(len(wire.encode(syn)), 600 - wire.SEAL_HEADROOM)
            self.assertEqual(syn.digest[0].node_id, state.me.info.id)
            listed = [e.node_id for e in syn.digest[1:]]
            self.assertLess(len(listed), len(ids))
            expected = [ids[(cursor + k) % len(ids)] for k in range(len(listed))]
            self.assertEqual(listed, expected)
            self.assertEqual((syn.low, syn.high), (listed[0], listed[-1]))
            self.assertEqual(nxt, (cursor + len(listed)) % len(ids))
            for node_id in ids:
                self.assertEqual(syn.covers(node_id), node_id in listed, node_id)
            wrapped = wrapped or nxt < cursor
            seen.update(listed)
            cursor = nxt
        self.assertTrue(wrapped)
        self.assertEqual(seen, set(ids))

    def test_responder_fills_in_unlisted_nodes_in_range(self) -> None:
        # b lacks node 3 inside the range it sent: a sends all of it
        b = state_with(9, *((i, 2, 1) for i in range(1, 6) if i != 3))
        a = state_with(7, *((i, 2, 1) for i in range(1, 6)))
        for node in b.others():
            node.heartbeat = a.nodes[node.info.id].heartbeat
        syn = wire.Syn(
            b.me.info.id,
            tuple(reconcile.digest_entry(n) for n in b.nodes.values()),
            node_info(1).id,
            node_info(9).id,
        )
        deltas, differing = reconcile.respond_to_syn(a, syn, 10_000)
        sent = {d.info.id: d for d in deltas}
        self.assertEqual(set(sent), {node_info(3).id, a.me.info.id})
        self.assertEqual(sent[node_info(3).id].since, 0)
        # b's own entry is news to a: a asks for it with a zero entry
        self.assertIn(wire.DigestEntry(b.me.info.id, 0, 0, 0), differing)

    def test_differing_digest_lists_only_what_the_initiator_can_use(self) -> None:
        a = state_with(7, *((i, 2, 1) for i in range(1, 5)))
        ids = [node_info(i).id for i in range(1, 5)]
        beats = [a.nodes[i].heartbeat for i in ids]
        syn = wire.Syn(
            node_info(9).id,
            (
                wire.DigestEntry(ids[0], 1, 2, beats[0]),  # the same
                wire.DigestEntry(ids[1], 1, 2, beats[1] + 5),  # fresher beat
                wire.DigestEntry(ids[2], 1, 2, beats[2] - 1),  # staler beat
                wire.DigestEntry(ids[3], 1, 1, beats[3]),  # behind a version
                reconcile.digest_entry(a.me),
            ),
        )
        deltas, differing = reconcile.respond_to_syn(a, syn, 10_000)
        # the fresher heartbeat is taken, and not sent back: nothing differs
        self.assertEqual(a.nodes[ids[1]].heartbeat, beats[1] + 5)
        self.assertEqual(
            [(e.node_id, e.version, e.heartbeat) for e in differing],
            [(ids[2], 2, beats[2]), (ids[3], 2, beats[3])],
        )
        self.assertEqual([(d.info.id, d.since) for d in deltas], [(ids[3], 1)])

    def test_differing_digest_is_cut_to_the_budget(self) -> None:
        # a is ahead on every heartbeat: every entry differs
        a = state_with(7, *((i, 2, 1) for i in range(1, 60)))
        for node in a.others():
            node.heartbeat = 1000
        listed = [reconcile.digest_entry(n) for n in a.nodes.values()]
        syn = wire.Syn(node_info(9).id, tuple(e._replace(heartbeat=0) for e in listed))
        budget = 300
        deltas, differing = reconcile.respond_to_syn(a, syn, budget)
        self.assertFalse(deltas)
        self.assertTrue(0 < len(differing) < 59)
        ahead = [e for e in listed if e.heartbeat]  # all but a's own entry
        self.assertEqual(differing, ahead[: len(differing)])

        def size(entries: list[wire.DigestEntry]) -> int:
            return wire.packed_size([wire.pack_digest_entry(e) for e in entries])

        self.assertLessEqual(size(differing), budget)
        self.assertGreater(size(ahead[: len(differing) + 1]), budget)


class ConvergenceTests(unittest.TestCase):
    """N GossipNodes over an in-memory network of real encoded datagrams."""

    def run_cluster(
        self, n: int, max_datagram: int, seed: int, bound: int, restarts: int = 0
    ) -> int:
        """Run rounds until every node agrees; return how many it took."""
        rng = random.Random(seed)
        nodes: dict[Address, GossipNode] = {}
        infos = [node_info(i, generation=rng.randrange(1, 10**6)) for i in range(n)]
        seed_address = (infos[0].address, infos[0].udp_port)

        def boot(info: NodeInfo) -> None:
            seeds = [] if info.id == infos[0].id else [seed_address]
            node = GossipNode(
                ClusterState(info), random.Random(rng.random()), max_datagram, seeds
            )
            nodes[(info.address, info.udp_port)] = node

        for info in infos:
            boot(info)
        self.partial_syns = 0
        stamp = [0.0]

        def write(node: GossipNode) -> None:
            stamp[0] += 1
            key = f"key-{rng.randrange(6)}"
            roll = rng.random()
            value: Value | None = (
                None
                if roll < 0.1
                else (
                    rng.randbytes(rng.randrange(40))
                    if roll < 0.5
                    else "v" * rng.randrange(40)
                )
            )
            node.state.write(key, value, stamp[0])

        for node in nodes.values():
            for _ in range(rng.randrange(1, 4)):
                write(node)
        queue: deque[tuple[Address, Address, bytes]] = deque()

        def send(source: Address, outgoing: tuple | list) -> None:  # type: ignore[type-arg]
            for out in outgoing:
                data = wire.encode(out.message)
                self.assertLessEqual(len(data), max_datagram - wire.SEAL_HEADROOM)
                queue.append((source, out.address, data))

        def deliver() -> None:
            while queue:
                # datagrams are lost, duplicated and reordered on the way
                queue.rotate(-rng.randrange(len(queue)))
                source, to, data = queue.popleft()
                roll = rng.random()
                if roll < 0.05:
                    continue
                if roll < 0.08:
                    queue.append((source, to, data))
                message = wire.decode(data, wire.DATAGRAM_TYPES)
                if isinstance(message, wire.Syn) and message.low is not None:
                    self.partial_syns += 1
                send(to, nodes[to].receive(message, source).outgoing)

        addresses = list(nodes)
        writes_until = bound // 3
        for round_ in range(1, bound + 1):
            order = addresses[:]
            rng.shuffle(order)
            if round_ < writes_until and rng.random() < restarts / writes_until:
                # a node restarts without persistence: a newer generation
                old = nodes[rng.choice(addresses)].state.me.info
                boot(attrs.evolve(old, generation=old.generation + 1))
                write(nodes[(old.address, old.udp_port)])
            for address in order:
                if round_ < writes_until and rng.random() < 0.1:
                    write(nodes[address])
                send(address, nodes[address].gossip_round())
                if rng.random() < 0.5:
                    deliver()
            deliver()
            if round_ >= writes_until and self.converged(nodes):
                return round_
        self.fail(f"{n} nodes did not converge in {bound} rounds")

    @staticmethod
    def converged(nodes: dict[Address, GossipNode]) -> bool:
        truth = {
            node.state.me.info.id: (node.state.me.info, node.state.me.entries)
            for node in nodes.values()
        }
        for node in nodes.values():
            if len(node.state.nodes) != len(truth):
                return False
            for node_id, (info, entries) in truth.items():
                mine = node.state.nodes[node_id]
                if mine.info != info or mine.entries != entries:
                    return False
        return True

    def test_small_cluster_full_digest(self) -> None:
        self.run_cluster(8, 1400, seed=1, bound=60)
        self.assertEqual(self.partial_syns, 0)

    def test_large_cluster_partial_digest(self) -> None:
        self.run_cluster(60, 600, seed=2, bound=200)
        self.assertGreater(self.partial_syns, 0)

    def test_restarts_under_new_generations(self) -> None:
        for seed in range(3, 6):
            self.run_cluster(25, 512, seed=seed, bound=150, restarts=4)
            self.assertGreater(self.partial_syns, 0)
