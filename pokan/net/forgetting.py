"""An operator's forget: drop a dead or left node here and at every live peer."""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet import defer
from twisted.logger import Logger

from pokan import wire
from pokan.core.engine import Engine, Output
from pokan.core.node import Address, address_of
from pokan.errors import NodeIsAlive

log = Logger()


def forget(
    engine: Engine,
    node_id: str,
    force: bool,
    now: float,
    *,
    commit: Callable[[Output], defer.Deferred[None]],
    send: Callable[[Address, wire.Message], None],
) -> defer.Deferred[None]:
    """Forget ``node_id``, commit that, tell every live peer (a FORGET).

    See :meth:`pokan.Server.forget`: LookupError for an unknown node,
    ValueError for this node itself, :class:`NodeIsAlive` for a live one
    unless ``force``. The Deferred is ``commit``'s.
    """
    state = engine.state
    me = state.me.info.id
    if node_id == me:
        raise ValueError(
            f"{node_id} is this node itself: stop it instead of forgetting it"
        )
    node = state.nodes.get(node_id)
    if node is None:
        raise LookupError(f"unknown node {node_id!r}")
    alive = node.status == "alive"
    if alive and not force:
        raise NodeIsAlive(
            f"node {node_id} is alive: only a dead or left node is forgotten;"
            " force it (force=True, --force) to drop it here anyway, and it"
            " comes back with its next gossip"
        )
    status, generation = node.status, node.info.generation
    d = commit(engine.forget(node_id, now, remember=not alive))
    tell = wire.Forget(me, node_id, generation)
    told = 0
    for peer in state.others():
        if peer.status == "alive":
            send(address_of(peer), tell)
            told += 1
    log.info(
        "forgot node {node} ({status}{forced}); told {count} live peer{s}",
        node=node_id,
        status=status,
        forced=", forced" if alive else "",
        count=told,
        s="" if told == 1 else "s",
    )
    return d
