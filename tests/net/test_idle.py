"""The idle interval: a node with nothing to spread gossips less often."""

from __future__ import annotations

from typing import Any

from twisted.internet import task
from twisted.python import usage
from twisted.trial import unittest

from pokan import ConfigurationError, Server, wire
from pokan.core.state import Entry, NodeDelta
from pokan.daemon import tap
from tests.core.test_node import addr, info, know, node
from tests.net.test_server_unit import ServerTestCase, other_node
from tests.simnet import SimCluster, assert_convicted_once_by_all
from tests.support import LogCatcher


def idle_node(rounds: int = 5, peers: int = 6):  # type: ignore[no-untyped-def]
    n = node(1, seed=2)
    n.fanout = 3
    n.idle_rounds = rounds
    for i in range(2, 2 + peers):
        know(n, i)
    return n


def settle(n, rounds: int = 20) -> None:  # type: ignore[no-untyped-def]
    """Run rounds until the node has nothing left to spread."""
    for _ in range(rounds):
        n.gossip_round()


class NodeTests(unittest.TestCase):
    def test_idle_node_opens_one_exchange_per_idle_interval(self) -> None:
        n = idle_node()
        settle(n)
        self.assertTrue(n.idle)
        sent = [len(n.gossip_round()) for _ in range(20)]
        self.assertEqual(sent.count(0), 16)
        self.assertEqual([s for s in sent if s], [1, 1, 1, 1])
        self.assertEqual(sent.index(1) + 5, sent.index(1, sent.index(1) + 1))

    def test_heartbeat_grows_only_in_rounds_that_gossip(self) -> None:
        n = idle_node()
        settle(n)
        before = n.state.me.heartbeat
        for _ in range(10):
            n.gossip_round()
        self.assertEqual(n.state.me.heartbeat, before + 2)

    def test_default_gossips_every_round(self) -> None:
        n = idle_node(rounds=1)
        settle(n)
        self.assertFalse(n.idle)
        self.assertEqual([len(n.gossip_round()) for _ in range(5)], [3] * 5)

    def test_a_write_goes_out_at_once_and_speeds_rounds_up(self) -> None:
        n = idle_node()
        settle(n)
        pushes = n.wrote(n.state.write("k", "v", 1.0))
        self.assertTrue(pushes)
        self.assertTrue(all(isinstance(p.message, wire.Ack) for p in pushes))
        self.assertFalse(n.idle)
        # full rounds (fanout 3) again, until the rumour is spread and a
        # whole idle interval passed without news
        sent = [len(n.gossip_round()) for _ in range(12)]
        self.assertEqual(sent[:5], [3] * 5)
        self.assertIn(0, sent)
        self.assertTrue(n.idle)

    def test_a_long_idle_interval_means_no_long_busy_spell(self) -> None:
        n = idle_node(rounds=100)  # 20 s at 0.2 s
        settle(n, rounds=200)
        self.assertTrue(n.idle)
        n.wrote(n.state.write("k", "v", 1.0))
        sent = [len(n.gossip_round()) for _ in range(30)]
        # full rounds for BUSY_ROUNDS (10), not for 100, once the rumour is
        # spread (it rides a few rounds): then the idle pace
        self.assertEqual(sent[:10], [3] * 10)
        self.assertLessEqual(sent.count(3), 15)
        self.assertTrue(n.idle)

    def test_news_from_a_peer_speeds_rounds_up(self) -> None:
        n = idle_node()
        settle(n)
        delta = NodeDelta(info(2), 5, 0, 1, (("k", Entry("v", 1, 1.0)),))
        n.receive(wire.Ack(info(2).id, (delta,)), addr(2))
        self.assertFalse(n.idle)
        self.assertEqual(len(n.gossip_round()), 3)

    def test_teaching_a_peer_that_is_behind_keeps_the_pace(self) -> None:
        n = idle_node()
        n.state.write("k", "v", 1.0)
        settle(n)
        self.assertTrue(n.idle)
        # a peer that lacks our write opens an exchange: we answer with it
        syn = wire.Syn(info(2).id, (wire.DigestEntry(info(1).id, 1, 0, 0),))
        (reply, *_) = n.receive(syn, addr(2)).outgoing
        assert isinstance(reply.message, wire.SynAck)
        self.assertTrue(reply.message.deltas)
        self.assertFalse(n.idle)

    def test_heartbeats_alone_are_no_news(self) -> None:
        n = idle_node()
        settle(n)
        syn = wire.Syn(info(2).id, (wire.DigestEntry(info(2).id, 1, 0, 40),))
        n.receive(syn, addr(2))
        self.assertTrue(n.idle)


class ClusterTests(unittest.TestCase):
    """Clusters on a virtual clock, gossip interval 0.2 s, idle interval 1 s."""

    def quiet_datagrams(self, sim: SimCluster, seconds: float = 10) -> float:
        sim.run(5)
        before = sim.sent
        sim.run(seconds)
        return (sim.sent - before) / seconds / len(sim.nodes)

    def test_idle_cluster_sends_far_fewer_datagrams(self) -> None:
        # every round a full one (no idle pace), 1 s, and the default (10
        # rounds with SWIM: 2 s)
        busy = self.quiet_datagrams(
            SimCluster(10, interval=0.2, seed=1, idle_interval=0.2)
        )
        idle = self.quiet_datagrams(
            SimCluster(10, interval=0.2, seed=1, idle_interval=1.0)
        )
        default = self.quiet_datagrams(SimCluster(10, interval=0.2, seed=1))
        self.assertLess(idle, busy / 5)
        # one exchange opened (about 2-3 datagrams) per node per second, and
        # two SWIM probes (one per 0.5 s, the default floor) with their acks
        self.assertLess(idle, 7)
        self.assertLess(default, idle)
        self.assertLess(default, 6)

    def test_write_on_idle_cluster_spreads_at_once(self) -> None:
        sim = SimCluster(10, interval=0.2, seed=2, idle_interval=1.0)
        sim.run(10)
        sim.nodes[3].write("k", "v")
        writer = sim.nodes[3].id
        took = sim.run_until(
            lambda: all("k" in n.state.nodes[writer].entries for n in sim.nodes),
            5,
            step=0.005,
        )
        assert took is not None
        self.assertLess(took, 0.2)  # before even one gossip round

    def test_killed_node_is_convicted_by_everyone_once(self) -> None:
        sim = SimCluster(10, interval=0.2, seed=3, idle_interval=1.0)
        sim.run(20)
        assert_convicted_once_by_all(self, sim, sim.nodes[4], 30)

    def test_converges_and_convicts_nobody_with_loss(self) -> None:
        sim = SimCluster(
            10, interval=0.2, loss=0.2, jitter=0.1, seed=5, idle_interval=1.0
        )
        sim.run(5)
        for i, n in enumerate(sim.nodes):
            n.write(f"k{i}", "v")  # some pushes and rumours are lost
        sim.run(55)
        self.assertEqual(sum(n.engine.convictions for n in sim.nodes), 0)
        for n in sim.nodes:
            for i, m in enumerate(sim.nodes):
                self.assertIn(f"k{i}", m.state.nodes[sim.nodes[i].id].entries)
                if m is not n:
                    self.assertEqual(n.status_of(m), "alive")


class OptionTests(unittest.TestCase):
    def test_default_is_twenty_seconds_or_ten_rounds_with_swim(self) -> None:
        server = Server("127.0.0.1", gossip_interval=0.2, reactor=task.Clock())
        self.assertEqual(server.idle_interval, 20.0)
        self.assertEqual(server._node.idle_rounds, 100)
        # the probes keep their own pace: every 2 s (the floor), their
        # stages on 0.5 s, suspicion counted in gossip intervals
        swim = server._engine.detector.swim  # type: ignore[attr-defined]
        self.assertEqual(swim.settings.probe_period, 2.0)
        self.assertEqual(swim.settings.stage_period, 0.5)
        self.assertEqual(swim.settings.interval, 0.2)
        server.gossip_every(3)  # ten rounds are longer than 20 s
        self.assertEqual(server.idle_interval, 30.0)
        self.assertEqual(server._node.idle_rounds, 10)

    def test_default_is_the_gossip_interval_with_phi(self) -> None:
        server = Server(
            "127.0.0.1",
            gossip_interval=0.2,
            failure_detector="phi",
            reactor=task.Clock(),
        )
        self.assertEqual(server.idle_interval, 0.2)
        self.assertEqual(server._node.idle_rounds, 1)
        self.assertEqual(server._membership.detector.min_mean, 0.05)

    def test_idle_interval_sets_rounds_and_phi_pace(self) -> None:
        server = Server(
            "127.0.0.1", gossip_interval=0.2, idle_interval=1, reactor=task.Clock()
        )
        self.assertEqual(server.idle_interval, 1.0)
        self.assertEqual(server._node.idle_rounds, 5)
        self.assertEqual(server._membership.detector.interval, 1.0)
        self.assertEqual(server._membership.detector.min_mean, 1.0)
        server.gossip_every(0.5)
        self.assertEqual(server._node.idle_rounds, 2)
        server.idle_every(None)
        self.assertEqual(server.idle_interval, 20.0)  # the default: 20 s
        self.assertEqual(server._node.idle_rounds, 40)
        # SWIM's probes never follow the idle interval
        swim = server._engine.detector.swim  # type: ignore[attr-defined]
        self.assertEqual(swim.settings.probe_period, 2.0)

    def test_bad_idle_intervals(self) -> None:
        for bad in (0, -1, "soon", 0.1):
            self.assertRaises(
                ConfigurationError,
                Server,
                "127.0.0.1",
                gossip_interval=0.2,
                idle_interval=bad,
            )
        server = Server("127.0.0.1", idle_interval=2.0, reactor=task.Clock())
        self.assertRaises(ConfigurationError, server.gossip_every, 3)

    def test_twistd_option(self) -> None:
        options = tap.Options()
        options.parseOptions(
            ["--address", "127.0.0.1", "-i", "0.2", "--idle-interval", "1"]
        )
        server = tap.makeService(options).server  # type: ignore[attr-defined]
        self.assertEqual(server.idle_interval, 1.0)
        self.assertRaises(
            usage.UsageError,
            tap.Options().parseOptions,
            ["--address", "127.0.0.1", "-i", "1", "--idle-interval", "0.5"],
        )


class ProbeIntervalTests(unittest.TestCase):
    """SWIM's probe period: a setting of its own, in seconds."""

    def swim(self, server: Server) -> Any:
        return server._engine.detector.swim  # type: ignore[attr-defined]

    def test_given_it_is_the_probe_period_whatever_the_intervals(self) -> None:
        server = Server(
            "127.0.0.1",
            gossip_interval=0.2,
            idle_interval=5,
            probe_interval=1.5,
            reactor=task.Clock(),
        )
        settings = self.swim(server).settings
        self.assertEqual(settings.probe_period, 1.5)
        self.assertEqual(settings.interval, 0.2)  # suspicion counted in rounds
        server.gossip_every(0.1)
        self.assertEqual(self.swim(server).settings.probe_period, 1.5)

    def test_default_is_half_the_gossip_interval_at_least_two_seconds(self) -> None:
        # (gossip interval, probe period, stage period)
        for interval, period, stages in (
            (0.05, 2.0, 0.5),
            (0.2, 2.0, 0.5),
            (1.0, 2.0, 0.5),
            (3.0, 2.0, 1.5),
            (6.0, 3.0, 3.0),
        ):
            server = Server("127.0.0.1", gossip_interval=interval, reactor=task.Clock())
            settings = self.swim(server).settings
            self.assertEqual(settings.probe_period, period)
            self.assertEqual(settings.stage_period, stages)

    def test_a_short_probe_interval_shortens_the_stages_with_it(self) -> None:
        server = Server(
            "127.0.0.1", gossip_interval=1.0, probe_interval=0.3, reactor=task.Clock()
        )
        self.assertEqual(self.swim(server).settings.stage_period, 0.3)
        server = Server(
            "127.0.0.1", gossip_interval=1.0, probe_interval=5, reactor=task.Clock()
        )
        self.assertEqual(self.swim(server).settings.stage_period, 0.5)

    def test_bad_probe_intervals_name_the_option(self) -> None:
        for bad in (0, -1, "soon", 61, 0.001):
            with self.assertRaises(ConfigurationError) as caught:
                Server("127.0.0.1", probe_interval=bad)
            self.assertIn("probe_interval=", str(caught.exception))

    def test_twistd_option(self) -> None:
        options = tap.Options()
        options.parseOptions(["--address", "127.0.0.1", "--probe-interval", "0.7"])
        server = tap.makeService(options).server  # type: ignore[attr-defined]
        self.assertEqual(self.swim(server).settings.probe_period, 0.7)
        with self.assertRaises(usage.UsageError) as caught:
            tap.Options().parseOptions(
                ["--address", "127.0.0.1", "--probe-interval", "soon"]
            )
        self.assertIn("--probe-interval", str(caught.exception))


class ServerPaceTests(ServerTestCase):
    """A Server on a fake reactor: an idle node sleeps between its rounds.

    Four fake peers open an exchange each once a second and answer every
    Syn with a SynAck showing a fresh heartbeat (so they stay alive and no
    retry is needed), and nothing else.
    """

    def setUp(self) -> None:
        self.beat = 0
        self.syns = 0

    def run_for(self, seconds: float) -> None:
        port = self.reactor.udpPorts[0]
        for step in range(round(seconds / 0.05)):
            self.reactor.advance(0.05)
            if step % 20 == 0:  # each peer opens an exchange once a second
                for i in (2, 3, 4, 5):
                    self.beat += 1
                    peer = other_node(i)
                    entry = wire.DigestEntry(peer.id, peer.generation, 0, self.beat)
                    syn = wire.Syn(peer.id, (entry,))
                    port.protocol.datagramReceived(
                        wire.encode(syn), (peer.address, peer.udp_port)
                    )
            written, port.written[:] = list(port.written), []
            for data, address in written:
                message = wire.decode(data)
                if not isinstance(message, wire.Syn):
                    continue
                self.syns += 1
                self.beat += 1
                peer = other_node(int(address[0].rsplit(".", 1)[1]))
                entry = wire.DigestEntry(peer.id, peer.generation, 0, self.beat)
                reply = wire.SynAck(peer.id, (), (entry,))
                port.protocol.datagramReceived(wire.encode(reply), address)

    def server(self, **kwargs: Any) -> Server:
        # the fake peers here only gossip (no probe is answered): phi's pace
        kwargs.setdefault("failure_detector", "phi")
        server = self.start(gossip_interval=0.2, **kwargs)
        for i in (2, 3, 4, 5):
            self.introduce(other_node(i))
        self.run_for(5)  # the news of four nodes is spread
        self.syns = 0
        return server

    def test_idle_server_sends_one_syn_per_idle_interval(self) -> None:
        server = self.server(idle_interval=1.0)
        self.run_for(10)
        self.assertIn(self.syns, (10, 11))
        self.assertGreater(server.stats["idle_rounds"], 30)
        self.assertEqual(server.stats["convictions"], 0)

    def test_default_server_gossips_every_round(self) -> None:
        server = self.server()
        self.run_for(10)
        self.assertIn(self.syns, (150, 151, 152, 153))
        self.assertEqual(server.stats["convictions"], 0)

    def test_no_wakeups_between_idle_rounds(self) -> None:
        """Idle, the next idle round is the only timer: failure checks run in
        it, and its exchange has no retry armed (a cancelled call still
        wakes a real reactor up)."""
        server = self.server(idle_interval=1.0)
        pending = set()
        for _ in range(40):
            self.run_for(0.25)
            calls = self.reactor.getDelayedCalls()
            self.assertEqual(len(calls), 1, calls)
            pending.add(calls[0].func.__name__)
            self.assertLessEqual(calls[0].getTime(), self.reactor.seconds() + 1.0)
        self.assertEqual(pending, {"_resume_rounds"})
        self.assertEqual(server.stats["convictions"], 0)

    def test_start_line_names_the_idle_interval(self) -> None:
        logs = LogCatcher(self)
        self.server(idle_interval=1.0)
        banner = "gossip every 0.2s to 3 peers, every 1.0s to one peer when idle;"
        self.assertTrue(logs.matching(banner))

    def test_start_line_without_idle_interval(self) -> None:
        logs = LogCatcher(self)
        self.server()
        self.assertTrue(logs.matching("gossip every 0.2s to 3 peers; phi threshold"))

    def test_write_goes_out_at_once_then_full_rounds(self) -> None:
        server = self.server(idle_interval=1.0)
        server.store("k", "v")
        pushes = [m for m, _ in self.reactor.sent() if isinstance(m, wire.Ack)]
        self.assertTrue(pushes)  # before any round ran
        self.run_for(0.25)
        self.assertEqual(self.syns, 3)  # a full round (fanout 3) within 0.2 s
