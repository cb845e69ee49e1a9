"""No failure detection: the gossip alone, as the simulator measured it before.

``python -m pokan.simulate --failure-detector none`` gives every Engine this
stand-in for its :class:`~pokan.core.detection.FailureDetector`: it drains
the heartbeat news, takes the ``left`` flags of digests, and never convicts
anyone, so what is measured is the dissemination and its bytes alone
(heartbeats still ride in the digests). Simulator only; a node never uses it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pokan import wire
from pokan.core.detection import Detected, Transition
from pokan.core.node import Address
from pokan.core.state import Batch, ClusterState


class NoDetector:
    """A FailureDetector that detects nothing."""

    def __init__(self, state: ClusterState) -> None:
        self.state = state
        self.convictions = 0

    @property
    def pauses(self) -> int:
        return 0

    def describe(self) -> str:
        return "no failure detection"

    def set_interval(self, interval: float, idle_interval: float | None) -> None:
        pass

    def adopt(self, now: float) -> None:
        pass

    def start(self, now: float) -> None:
        pass

    def observe(self, now: float, digest: Iterable[wire.DigestEntry] = ()) -> Batch:
        batch = Batch()
        for entry in digest:
            if entry.left:
                batch += self.state.mark(entry.node_id, entry.generation, "left")
        self.state.heartbeat_news.clear()
        return batch

    def check(self, now: float) -> Detected:
        return Detected()

    def handles(self, message: wire.Message) -> bool:
        return False

    def receive(self, message: wire.Message, source: Address, now: float) -> Detected:
        return Detected()

    def settle(self, batch: Batch, now: float) -> list[Transition]:
        return []

    def note(self, node_id: str) -> str:
        return ""

    def view(self, node_id: str, now: float) -> dict[str, Any]:
        return {"kind": "none"}
