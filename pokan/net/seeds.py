"""Joining the cluster through seeds: first that answers, retried with backoff."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet.error import DNSLookupError
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from pokan.core.address import format_host_port
from pokan.net.protocols import NotAPokanNode

log = Logger()


#: the shortest wait before trying again when every seed answered as
#: something else than pokan (a wrong port): no use asking it every second
NOT_POKAN_DELAY = 30.0
#: once the retries reach their slowest pace, a failure unchanged since its
#: last line is logged again only this often (seconds)
REPEAT_LINE_EVERY = 600.0


class SeedIsSelf(Exception):
    """The seed answered with this node's own id: it is this node."""


class SeedSync:
    """Tries each seed in order until one completes a full sync.

    When none answers, warns (naming them and why) and tries again after a
    delay that doubles up to ``max_delay``; from then on, the same failure
    is logged once every :data:`REPEAT_LINE_EVERY` seconds, not at every
    try. The node keeps gossiping meanwhile. A seed
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
        #: the failure last logged (and whether at the slowest pace), when,
        #: and the tries that failed alike since
        self._said: tuple[str, bool] | None = None
        self._said_at = 0.0
        self._unsaid = 0

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
                errors.append(f"{name}: {why_not(host, e)}")
                continue
            self.synced_with = name
            self._said, self._unsaid = None, 0
            log.info("joined the cluster through seed {seed}", seed=name)
            return
        if self._stopped or not self.seeds:
            return
        if foreign == len(errors):  # none is down: all are something else
            self.delay = max(self.delay, min(NOT_POKAN_DELAY, self.max_delay))
        self._report("; ".join(errors))
        delay = self.delay
        if self.rng is not None:
            delay *= self.rng.uniform(0.75, 1.25)
        self._retry = self.clock.callLater(delay, self._attempt)
        self.delay = min(self.delay * 2, self.max_delay)

    def _report(self, errors: str) -> None:
        """Warn that no seed answered; at the slowest pace, not every time."""
        now = self.clock.seconds()
        slowest = self.delay >= self.max_delay
        said = (errors, slowest)
        # said at this pace already, and not that long ago
        if slowest and said == self._said and now - self._said_at < REPEAT_LINE_EVERY:
            self._unsaid += 1
            return
        alike = (
            f"; {self._unsaid} tries since the last line failed as it said"
            if self._unsaid
            else ""
        )
        log.warn(
            "could not sync with any seed ({errors}); gossip goes on, next try"
            " in {delay}s{pace}{alike}",
            errors=errors,
            delay=self.delay,
            pace=REPEAT_NOTE.format(minutes=REPEAT_LINE_EVERY / 60) if slowest else "",
            alike=alike,
        )
        self._said, self._said_at, self._unsaid = said, now, 0


def why_not(host: str, error: Exception) -> str:
    """Why a sync with a seed at ``host`` failed, in a few words."""
    if isinstance(error, DNSLookupError):
        return f"cannot resolve the host name {host}: check it, and this host's DNS"
    return str(error)


#: what the warning adds once the retries reach their slowest pace
REPEAT_NOTE = ", then as often (said again in {minutes:g} minutes if nothing changes)"


#: what a node with no seed but itself does
NO_OTHER_SEED = (
    ": with no other seed this node joins no cluster, it waits for others to"
    " join through it (to join one, give --gossip-with, or gossip_with, another"
    " node's HOST:PORT)"
)
