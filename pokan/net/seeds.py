"""Joining the cluster through seeds: first that answers, retried with backoff."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from pokan.core.address import format_host_port
from pokan.net.protocols import NotAPokanNode

log = Logger()


#: the shortest wait before trying again when every seed answered as
#: something else than pokan (a wrong port): no use asking it every second
NOT_POKAN_DELAY = 30.0


class SeedIsSelf(Exception):
    """The seed answered with this node's own id: it is this node."""


class SeedSync:
    """Tries each seed in order until one completes a full sync.

    When none answers, warns (naming them) and tries again after a delay that
    doubles up to ``max_delay``. The node keeps gossiping meanwhile. A seed
    that turns out to be this node itself (a name that resolves to it: the
    sync raises :class:`SeedIsSelf`) is dropped, with a warning.
    """

    def __init__(
        self,
        clock: IReactorTime,
        seeds: list[tuple[str, int]],
        sync: Callable[[str, int], defer.Deferred[Any]],
        first_delay: float = 1.0,
        max_delay: float = 60.0,
        rng: random.Random | None = None,
    ) -> None:
        self.clock = clock
        self.seeds = seeds
        self.sync = sync
        self.delay = first_delay
        self.first_delay = first_delay
        self.max_delay = max_delay
        #: spreads each retry over +-25% of its delay, so that joiners
        #: refused together (a seed's per-host cap) do not retry in step
        self.rng = rng
        self.attempts = 0
        self.synced_with: str | None = None
        self._retry: IDelayedCall | None = None
        self._stopped = False
        self._running = False
        #: seeds already said not to answer as pokan nodes (said once each)
        self._told: set[tuple[str, int]] = set()

    def start(self) -> None:
        self._attempt()

    @property
    def idle(self) -> bool:
        """True when neither syncing nor waiting to retry."""
        return not self._running and self._retry is None and not self._stopped

    def restart(self) -> None:
        """Join again (e.g. no live peer is known any more), from a short delay."""
        if self.idle:
            self.delay = self.first_delay
            self._attempt()

    def stop(self) -> None:
        self._stopped = True
        if self._retry is not None and self._retry.active():
            self._retry.cancel()

    def _attempt(self) -> defer.Deferred[None]:
        self._running = True
        d = self._try_seeds()
        d.addBoth(self._done)
        return d

    def _done(self, result: Any) -> None:
        self._running = False

    @defer.inlineCallbacks
    def _try_seeds(self) -> Any:
        self._retry = None
        self.attempts += 1
        errors = []
        foreign = 0
        for host, port in self.seeds:
            if self._stopped:
                return
            name = format_host_port(host, port)
            try:
                yield self.sync(host, port)
            except SeedIsSelf:
                self.seeds = [s for s in self.seeds if s != (host, port)]
                log.warn(
                    "seed {seed} is this node itself; ignored{rest}",
                    seed=name,
                    rest="" if self.seeds else NO_OTHER_SEED,
                )
                continue
            except NotAPokanNode as e:
                foreign += 1
                errors.append(f"{name}: not a pokan node")
                if (host, port) not in self._told:
                    self._told.add((host, port))
                    log.warn(
                        "seed {seed}: {error}; is it the TCP port of a pokan"
                        " node? Trying it again every {slow:g}s or more",
                        seed=name,
                        error=str(e),
                        slow=NOT_POKAN_DELAY,
                    )
                continue
            except Exception as e:
                errors.append(f"{name}: {e}")
                continue
            self.synced_with = name
            log.info("joined the cluster through seed {seed}", seed=name)
            return
        if self._stopped or not self.seeds:
            return
        log.warn(
            "could not sync with any seed ({errors}); gossip goes on, next try"
            " in {delay}s",
            errors="; ".join(errors),
            delay=self.delay,
        )
        if foreign == len(errors):  # none is down: all are something else
            self.delay = max(self.delay, min(NOT_POKAN_DELAY, self.max_delay))
        delay = self.delay
        if self.rng is not None:
            delay *= self.rng.uniform(0.75, 1.25)
        self._retry = self.clock.callLater(delay, self._attempt)
        self.delay = min(self.delay * 2, self.max_delay)


#: what a node with no seed but itself does
NO_OTHER_SEED = (
    ": with no other seed this node joins no cluster, it waits for others to"
    " join through it (to join one, give --gossip-with, or gossip_with, another"
    " node's HOST:PORT)"
)
