"""Stores drop forgotten nodes (membership GC); the Redis store keeps ``left``."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.trial import unittest

from pokan.core.state import Batch, ClusterState, Entry, NodeDelta, NodeInfo, NodeRecord
from pokan.store.pending import Pending, Plan
from tests.redisreader import read_cluster
from tests.store.test_store_redis import ME, OTHER, StoreCase

NEWER = NodeInfo("127.0.0.1:7002", 10, "127.0.0.1", 7002, 7002, "peer")


class PlanForgetTests(unittest.TestCase):
    def test_plan_of_a_forgetting_batch(self) -> None:
        state = ClusterState(ME)
        known = state.merge([NodeDelta(OTHER, 1, 0, 1, (("a", Entry("1", 1, 1.0)),))])
        plan = Plan.of(known + Batch(forgotten=(OTHER.id,)))
        self.assertEqual(plan.forgotten, {OTHER.id})
        self.assertEqual(plan.keys, {})
        self.assertEqual(plan.nodes, {})

    def test_updated_forgets_then_takes_back_a_newer_generation(self) -> None:
        first = Plan({OTHER.id: {"a": Entry("1", 1, 1.0)}})
        forget = Plan(forgotten={OTHER.id})
        combined = first.updated(forget)
        self.assertEqual((combined.keys, combined.forgotten), ({}, {OTHER.id}))
        back = combined.updated(Plan(nodes={OTHER.id: NodeRecord(NEWER, 0, "alive")}))
        self.assertEqual(back.forgotten, set())
        self.assertEqual(list(back.nodes), [OTHER.id])

    def test_pending_keeps_the_forgetting(self) -> None:
        pending = Pending()
        pending.add(1, Plan({OTHER.id: {"a": Entry("1", 1, 1.0)}}))
        pending.add(2, Plan(forgotten={OTHER.id}))
        self.assertEqual(len(pending), 1)
        taken = pending.take()
        self.assertEqual(taken.plan().forgotten, {OTHER.id})
        self.assertEqual(taken.plan().keys, {})
        pending.add_all(taken)
        pending.add(3, Plan(nodes={OTHER.id: NodeRecord(NEWER, 0, "alive")}))
        self.assertEqual(pending.plan().forgotten, set())
        pending.drop_up_to(3)
        self.assertEqual(len(pending), 0)


class RedisForgetTests(StoreCase):
    @defer.inlineCallbacks
    def test_forgotten_node_leaves_redis_and_left_survives(self) -> Any:
        store, _ = yield self.opened()
        other = NodeDelta(OTHER, 1, 0, 1, (("a", Entry("1", 1, 1.0)),))
        yield store.persist(self.state.merge([other]))
        yield store.persist(self.state.mark(OTHER.id, OTHER.generation, "left"))
        self.assertEqual(
            read_cluster(self.plain, "t")["nodes"][OTHER.id]["status"], "left"
        )
        yield store.persist(Batch(forgotten=(OTHER.id,)))
        state = read_cluster(self.plain, "t")
        self.assertNotIn(OTHER.id, state["nodes"])
        self.assertEqual(self.plain.exists(f"t:keys:{OTHER.id}"), 0)
        self.assertEqual(self.plain.exists(f"t:node:{OTHER.id}"), 0)
