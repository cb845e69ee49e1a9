"""No failure detection: the simulator's gossip-only runs (sans-IO).

Measuring how fast writes and joins spread needs no detector, and a detector
that keeps a window per peer costs N x N at 10,000 nodes. This one holds
every node alive: it drains the heartbeat news and makes no transitions.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pokan import wire
from pokan.core.detection import Detected, Transition
from pokan.core.node import Address
from pokan.core.state import Batch, ClusterState


class NoDetection:
    """A :class:`~pokan.core.detection.FailureDetector` that detects nothing."""

    convictions = 0
    pauses = 0

    def __init__(self, state: ClusterState) -> None:
        self.state = state

    def describe(self) -> str:
        return "no failure detection"

    def set_interval(
        self,
        interval: float,
        idle_interval: float | None,
        probe_interval: float | None = None,
        timeout_period: float | None = None,
    ) -> None:
        pass

    def adopt(self, now: float) -> None:
        pass

    def start(self, now: float) -> None:
        pass

    def observe(self, now: float, digest: Iterable[wire.DigestEntry] = ()) -> Batch:
        self.state.heartbeat_news.clear()
        return Batch()

    def check(self, now: float) -> Detected:
        return Detected()

    def handles(self, message: wire.Message) -> bool:
        return False

    def receive(
        self,
        message: wire.Message,
        source: Address,
        now: float,
        size: int | None = None,
    ) -> Detected:
        return Detected()

    def poll(self, now: float) -> Detected:
        return Detected()

    def next_due(self) -> float | None:
        return None

    def missed(self, node_id: str, now: float) -> Detected:
        return Detected()  # heartbeats, not exchanges, tell phi

    def heard(self, node_id: str, now: float) -> Detected:
        return Detected()

    def forget(self, node_id: str, now: float, remember: bool = True) -> None:
        from pokan.core import gc

        gc.forget(self.state, node_id)

    def settle(self, batch: Batch, now: float) -> list[Transition]:
        return []

    def note(self, node_id: str) -> str:
        return ""

    def view(self, node_id: str, now: float) -> dict[str, Any]:
        return {"kind": "none"}
