"""The failure detector's interface: what the Engine asks of it (sans-IO).

The :class:`~pokan.core.engine.Engine` owns one detector, chosen by
``EngineSettings.failure_detector``. A detector keeps the membership
statuses of the other nodes (``alive``, ``dead``, ``left``) over the shared
:class:`~pokan.core.state.ClusterState` and turns every batch into the
membership events it makes. Today's detector is phi accrual on gossiped
heartbeats (:class:`pokan.core.membership.Membership`); a probing detector
(SWIM) adds its own messages through :meth:`FailureDetector.handles` and
:meth:`FailureDetector.receive`, and its probes through
:meth:`FailureDetector.check`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

import attrs

from pokan import wire
from pokan.core.node import Address, Outgoing
from pokan.core.state import Batch, NodeState

#: a membership event: its name (``peer_dead``...) and the node's record
Transition = tuple[str, NodeState]


@attrs.frozen
class Detected:
    """What one detector step produced: messages to send, a batch to commit."""

    sends: tuple[Outgoing, ...] = ()
    batch: Batch = attrs.field(factory=Batch)
    #: what was refused: (reason, detail), to count as bad input
    rejected: tuple[tuple[str, str], ...] = ()


class FailureDetector(Protocol):
    """Statuses, failure detection and their events for one node."""

    #: nodes convicted so far
    convictions: int

    @property
    def pauses(self) -> int:
        """Times this node found itself stalled, and convicted nobody for it."""

    def describe(self) -> str:
        """The detector and its settings for the start banner."""

    def set_interval(
        self,
        interval: float,
        idle_interval: float | None,
        probe_interval: float | None = None,
        timeout_period: float | None = None,
    ) -> None:
        """Follow a new gossip interval (and idle interval)."""

    def adopt(self, now: float) -> None:
        """Take the statuses already in the state (restored) without events."""

    def start(self, now: float) -> None:
        """The rounds start now."""

    def observe(self, now: float, digest: Iterable[wire.DigestEntry] = ()) -> Batch:
        """After every merge: heartbeat arrivals, revivals, ``left`` flags."""

    def check(self, now: float) -> Detected:
        """Once a round: convictions (and probes), GC now and then."""

    def handles(self, message: wire.Message) -> bool:
        """Whether ``message`` is one of the detector's own (probes...)."""

    def receive(
        self,
        message: wire.Message,
        source: Address,
        now: float,
        size: int | None = None,
    ) -> Detected:
        """One of the detector's own messages, from ``source`` (``size``: its
        datagram's length, for the bound on replies to strangers)."""

    def poll(self, now: float) -> Detected:
        """Between rounds (the retry, any datagram): the timeouts now due."""

    def next_due(self) -> float | None:
        """When :meth:`poll` next has something to do (None: nothing timed
        between rounds), for the driver's timer."""

    def missed(self, node_id: str, now: float) -> Detected:
        """An exchange opened with ``node_id`` went unanswered this round."""

    def heard(self, node_id: str, now: float) -> Detected:
        """A gossip datagram came from ``node_id``'s own socket."""

    def forget(self, node_id: str, now: float, remember: bool = True) -> None:
        """Forget a node now (an operator's forget, or a peer's Forget)."""

    def settle(self, batch: Batch, now: float) -> list[Transition]:
        """The membership events ``batch`` makes, each once per transition."""

    def note(self, node_id: str) -> str:
        """Why the transition just settled for ``node_id`` happened (for the log)."""

    def view(self, node_id: str, now: float) -> dict[str, Any]:
        """What the detector thinks of ``node_id`` now: ``{"kind": ..., ...}``."""
