"""Prometheus metrics of one node: a collector, its registry, ``/metrics``.

:class:`NodeCollector` reads at scrape time the counters the node keeps
anyway (``Server.stats``, its meters, its store): nothing is counted twice
and no hot path calls into prometheus-client. Each node gets a registry of
its own (:func:`node_registry`), so several nodes in one process never
clash. docs/operations.md lists every metric and the alerts worth setting.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from twisted.web import resource
from twisted.web.iweb import IRequest

from pokan.net.meters import Timings

if TYPE_CHECKING:
    from pokan.net.server import Server

#: ``Server.stats`` counters that become ``pokan_<name>_total`` as they are
STATS_COUNTERS = {
    "send_errors": "Datagrams that could not be sent.",
    "handler_runs": "Event handler calls made.",
    "handler_failures": "Event handler calls that raised or whose Deferred failed.",
    "handler_timeouts": "Event handler calls cancelled after handler_timeout.",
    "convictions": "Peers this node's failure detector declared dead.",
    "rumours_evicted": "Fresh updates dropped from a full rumour queue before"
    " they were spread (gossip still carries them, later).",
    "rounds": "Gossip rounds run.",
    "idle_rounds": "Gossip rounds that opened no exchange, the node being idle.",
    "watch_hints": "Watch connections lost that made this node probe their"
    " member at once.",
    "early_watches": "Inbound watch connections closed because their member"
    " was not yet known alive at its generation (a join or restart).",
}


class NodeCollector(Collector):
    """Every metric of one node, read from it at each scrape."""

    def __init__(self, server: Server, store: object = None) -> None:
        self.server = server
        self.store = store

    def collect(self) -> Iterator[Metric]:
        server = self.server
        stats = server.stats
        traffic = server.meters.traffic
        syncs = server.meters.syncs
        info = GaugeMetricFamily(
            "pokan_node",
            "This node: always 1, its id and cluster as labels.",
            labels=["id", "cluster", "sealed"],
        )
        info.add_metric(
            [server.id, str(stats["cluster"]), str(bool(stats["sealed"])).lower()], 1
        )
        yield info
        yield _by_label(
            "pokan_messages_sent",
            "Gossip datagrams sent, by message type.",
            "type",
            traffic.sent,
        )
        yield _by_label(
            "pokan_messages_received",
            "Gossip datagrams received and decoded, by message type.",
            "type",
            traffic.received,
        )
        yield _by_label(
            "pokan_sent_bytes",
            "Bytes of gossip datagrams sent, by message type.",
            "type",
            traffic.sent_bytes,
        )
        yield _by_label(
            "pokan_received_bytes",
            "Bytes of gossip datagrams received and decoded, by message type.",
            "type",
            traffic.received_bytes,
        )
        yield _by_label(
            "pokan_dropped",
            "Input dropped, by reason (oversized, bad-field, wrong-cluster,"
            " unsealed, replayed, too-many-connections...).",
            "reason",
            stats["dropped_by_reason"],
        )
        yield _counter(
            "pokan_exchanges",
            "Gossip exchanges this node opened whose SynAck came back.",
            traffic.exchanges,
        )
        yield histogram(traffic.exchange_rtt)
        yield _by_label(
            "pokan_full_syncs",
            "Full syncs over TCP this node opened, by outcome (ok, failed).",
            "outcome",
            {"ok": syncs.done["ok"], "failed": syncs.done["failed"]},
        )
        yield _counter(
            "pokan_full_syncs_answered",
            "Full syncs other nodes opened with this one (Hellos answered).",
            syncs.answered,
        )
        yield histogram(syncs.duration)
        for name, text in STATS_COUNTERS.items():
            yield _counter(f"pokan_{name}", text, stats[name])
        yield _counter(
            "pokan_refutations",
            "Times this node re-asserted its own state over claims about it"
            " (stale or forged) that peers gossiped.",
            stats["reasserts"],
        )
        peers = GaugeMetricFamily(
            "pokan_peers", "Other nodes known, by status.", labels=["status"]
        )
        for status, count in sorted(stats["peers_by_status"].items()):
            peers.add_metric([status], count)
        yield peers
        yield GaugeMetricFamily(
            "pokan_keys", "Live keys held, of every node.", value=stats["keys"]
        )
        yield GaugeMetricFamily(
            "pokan_tombstones",
            "Deleted keys held until GC (tombstone_ttl).",
            value=stats["tombstones"],
        )
        yield GaugeMetricFamily(
            "pokan_rumour_queue_depth",
            "Fresh updates waiting to be spread eagerly.",
            value=stats["rumours_queued"],
        )
        yield from self._store_metrics(stats)

    def _store_metrics(self, stats: Mapping[str, Any]) -> Iterable[Metric]:
        store = self.store
        yield GaugeMetricFamily(
            "pokan_store_pending_changes",
            "Changes kept in memory until the store (Redis) takes them again.",
            value=stats["store_pending"],
        )
        available = getattr(store, "available", None)
        if isinstance(available, bool):
            yield GaugeMetricFamily(
                "pokan_store_up",
                "1 while the store (Redis) takes writes as they come.",
                value=int(available),
            )
        written = getattr(store, "batches_written", None)
        if isinstance(written, int):
            yield _counter(
                "pokan_store_batches_written",
                "Batches of changes the store wrote.",
                written,
            )
        latency = getattr(store, "write_seconds", None)
        if isinstance(latency, Timings):
            yield histogram(latency)


def histogram(timings: Timings) -> Metric:
    """A node's :class:`~pokan.net.meters.Timings` as a Prometheus histogram."""
    return HistogramMetricFamily(
        timings.name,
        timings.documentation,
        buckets=[(floatToGoString(b), n) for b, n in timings.cumulative()],
        sum_value=timings.sum,
    )


def _counter(name: str, documentation: str, value: float) -> Metric:
    return CounterMetricFamily(name, documentation, value=value)


def _by_label(
    name: str, documentation: str, label: str, values: Mapping[str, float]
) -> Metric:
    family = CounterMetricFamily(name, documentation, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family


def node_registry(server: Server, store: object = None) -> CollectorRegistry:
    """A registry of this node's metrics alone."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector(server, store))
    return registry


class MetricsResource(resource.Resource):
    """``/metrics``: the registry in Prometheus's text format (or OpenMetrics,
    if the scraper asks for it), rendered in the reactor thread: a scrape
    reads counters, it never waits."""

    isLeaf = True

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()
        self.registry = registry

    def render_GET(self, request: IRequest) -> bytes:
        accept = request.getHeader(b"Accept")
        encoder, content_type = choose_encoder(
            accept.decode("latin-1") if accept else ""
        )
        request.setHeader(b"Content-Type", content_type.encode("ascii"))
        request.setHeader(b"Cache-Control", b"no-store")
        return encoder(self.registry)

    def render_HEAD(self, request: IRequest) -> bytes:
        return self.render_GET(request)

    def render(self, request: IRequest) -> bytes:
        if request.method in (b"GET", b"HEAD"):
            return super().render(request)
        request.setResponseCode(405)
        request.setHeader(b"Allow", b"GET, HEAD")
        request.setHeader(b"Content-Type", b"application/json")
        method = request.method.decode("ascii", "replace")
        return json.dumps(
            {"error": f"{method} is not allowed on /metrics; use GET"}
        ).encode()
