"""What the control API uses of a running Server: views, control, joins.

:class:`Operations` is a part of :class:`pokan.Server` (a base class it
takes these methods from): the read-only views of the node (health, its
settings, a node's entries, what the detector thinks), the control API's
listener, and the two actions an operator
takes (``join`` a node now, ``forget`` a gone one). The Server's state is
what they read; see :mod:`pokan.net.server`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

from twisted.internet import defer

from pokan import wire
from pokan.core.address import parse_host_port
from pokan.core.engine import Engine, Output
from pokan.core.node import Address
from pokan.core.state import ClusterState, Value
from pokan.errors import ConfigurationError
from pokan.net import forgetting, views
from pokan.net.events import EventDispatcher
from pokan.net.pacing import Pacing
from pokan.net.settings import Settings
from pokan.net.sync import FullSyncs
from pokan.peer import Peer
from pokan.store import IStore


class OperatedNode(Protocol):
    """What of a Server the operator's methods read."""

    running: Any
    events: EventDispatcher
    _store: IStore
    _engine: Engine
    _pacing: Pacing
    _syncs: FullSyncs
    _heard: views.Heard
    _control: Any
    _metrics: Any
    _joined: bool
    _handler_names: list[str]

    @property
    def id(self) -> str: ...

    @property
    def configuration(self) -> Settings: ...

    @property
    def control_address(self) -> str | None: ...

    @property
    def _state(self) -> ClusterState: ...

    def _now(self) -> float: ...

    def _other_seeds(self) -> list[tuple[str, int]]: ...

    def _commit(self, output: Output) -> defer.Deferred[None]: ...

    def _send(self, address: Address, message: wire.Message) -> None: ...


class Operations:
    """The operator's side of a Server (see the module's docstring)."""

    def _control_of(self: OperatedNode, control: Any, token_file: str | None) -> Any:
        if control is None and token_file is None:
            return None  # off: twisted.web stays unimported (about 10 MB)
        from pokan.control.service import ControlListener

        return ControlListener.for_server(self, control, token_file)

    def _stop_control(self: OperatedNode) -> None:
        if self._control is not None:
            self._control.close_connections()

    @property
    def control(self: OperatedNode) -> Any:
        """The control API (a :class:`pokan.control.service.ControlListener`),
        or None when off. ``control.root.putChild(name, resource)`` serves
        more resources on its port, behind its token."""
        return self._control

    @property
    def control_address(self: OperatedNode) -> str | None:
        """Where the control API listens: ``http://127.0.0.1:7373`` (the port
        bound, once started), ``unix:/path``; None when off."""
        return None if self._control is None else self._control.address

    @property
    def generation(self: OperatedNode) -> int:
        """This node's generation (set at start: microseconds since the epoch)."""
        return self._state.me.info.generation

    def health(self: OperatedNode) -> dict[str, Any]:
        """``{"listening", "synced", "reason"}``: reason None when healthy.

        Healthy once the node listens and gossips and, when it has seeds
        other than itself, has synced with one of them (or joined a node
        through :meth:`join`) at least once.
        """
        listening = bool(self.running) and self._pacing.started
        synced = self._joined or self._syncs.synced
        return views.health(listening, self._other_seeds(), synced)

    def settings(self: OperatedNode) -> dict[str, Any]:
        """The node's settings, as plain data (for ``GET /v1/info``)."""
        return views.settings(
            self.configuration,
            self._engine,
            events=self.events,
            store=self._store,
            control=self.control_address,
            handlers=self._handler_names,
        )

    def entries(
        self: OperatedNode, node_id: str
    ) -> list[tuple[str, Value, int, float]] | None:
        """A node's live keys as ``(key, value, version, timestamp)``, by key;
        None for a node this node does not know."""
        return views.entries(self._state, node_id)

    def last_heard(self: OperatedNode, node_id: str) -> float | None:
        """Seconds since ``node_id`` was last heard: its last datagram from its
        own socket (SWIM), or its last fresh heartbeat (phi); None if it was
        not heard yet (or it is this node)."""
        return views.last_heard(self._engine, self._heard, node_id, self._now())

    def detector_view(self: OperatedNode, node_id: str) -> dict[str, Any]:
        """What the failure detector thinks of ``node_id``: under SWIM
        ``{"kind": "swim", "status": "alive", "incarnation": 0, "lhm": 0}``
        (with ``suspected_for``, ``confirmations`` and ``timeout`` for a
        suspect); under phi ``{"kind": "phi", "phi": 0.3, "threshold": 8.0}``
        (phi None if never heard)."""
        return views.detector_view(self._engine, node_id, self._now())

    def listen(
        self: OperatedNode,
        listener: Callable[[str, tuple[Any, ...], Any], None],
        events: Iterable[str] | None = None,
    ) -> Callable[[], None]:
        """Observe every event (or those named, as ``before_gossip``,
        ``new_key``...): ``listener(event, args, peer)`` is called at once,
        must not block; returns the function that stops it. See
        :meth:`pokan.events.EventDispatcher.listen`."""
        return self.events.listen(listener, events)

    def join(self: OperatedNode, host_port: str) -> defer.Deferred[Peer]:
        """A full sync with the node at ``HOST:PORT`` (its TCP port), now.

        Fires with that node as a Peer once merged; fails if it cannot be
        reached. ConfigurationError for a malformed address.
        """
        host, port = parse_host_port(host_port)
        if not self.running:
            return defer.fail(ConfigurationError(f"node {self.id} is not running"))

        def joined(peer: Peer) -> Peer:
            self._joined = True
            return peer

        return self._syncs.sync_with(host, port).addCallback(joined)

    def forget(
        self: OperatedNode, node_id: str, force: bool = False
    ) -> defer.Deferred[None]:
        """Drop a dead or left node's record and keys, here and at every peer.

        The live peers are sent a FORGET, which each applies only if it holds
        that node dead or left too (never a node it holds alive). Gossip
        about the forgotten generation is ignored here for a dead-node TTL:
        only a restart brings it back. LookupError for an unknown node,
        ValueError for this node itself, :class:`NodeIsAlive` for a live one
        unless ``force``; forced, a live node is dropped here without that
        memory, and comes back with its next gossip. The Deferred fires once
        the store has persisted it.
        """
        return forgetting.forget(
            self._engine,
            node_id,
            force,
            self._now(),
            commit=self._commit,
            send=self._send,
        )
