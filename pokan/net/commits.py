"""Committing what the Engine changed: persist the batch, then fire events.

Events fire after the change is stored (architecture, boundary 4): first
the membership transitions the batch made, then its key events. A store
that fails is logged; the change stays in memory and the events still fire.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from pokan.core.engine import Output
from pokan.core.state import Batch, ClusterState
from pokan.core.transitionlog import TransitionLog
from pokan.net.events import EventDispatcher
from pokan.peer import Peer
from pokan.store import IStore

log = Logger()


class Commits:
    """Persists each batch of a node to ``store``, then fires its events."""

    def __init__(
        self,
        state: ClusterState,
        store: IStore,
        events: EventDispatcher,
        transition_log: TransitionLog,
    ) -> None:
        self._state = state
        self._store = store
        self._events = events
        self._transition_log = transition_log

    def commit(self, output: Output) -> defer.Deferred[None]:
        """Persist a batch, then fire its events; the Deferred fires after both."""
        batch, transitions = output.batch, output.transitions
        if not batch:
            return defer.succeed(None)
        for (event, node), note in zip(transitions, output.notes, strict=True):
            self._transition_log.line(event[5:], node.info.id, note)
        d = defer.maybeDeferred(self._store.persist, batch)
        d.addErrback(self.persist_failed, batch)
        if transitions:
            d.addCallback(lambda _: self._announce_membership(transitions))
        d.addCallback(lambda _: self._announce(batch))
        return d

    def persist_failed(self, failure: Failure, batch: Batch) -> None:
        log.failure(
            "store could not persist {count} changes; they stay in memory",
            failure,
            count=len(batch.changes),
        )

    def _announce_membership(self, transitions: Iterable[Any]) -> Any:
        fired = []
        for event, node in transitions:
            if self._events.has_handlers(event):
                peer = Peer(node)
                fired.append(self._events.fire(event, peer, peer=peer))
        return defer.gatherResults(fired) if fired else None

    def _announce(self, batch: Batch) -> defer.Deferred[None]:
        fired = []
        events = self._events
        for change in batch.changes:
            event = change.event
            if event is None or not events.has_handlers(event):
                continue
            node = self._state.nodes.get(change.node_id)
            peer = Peer(node) if node is not None else None
            fired.append(events.fire(event, change.key, change.value, peer=peer))
        if not fired:
            return defer.succeed(None)
        return defer.gatherResults(fired).addCallback(lambda _: None)
