"""What the core refused or undid: counted, and logged a few lines at a time."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from pokan.core.address import family_name
from pokan.core.state import ClusterState
from pokan.core.transitionlog import Seconds, ThrottledLines
from pokan.net.badinput import BadInputReporter, OtherFamilyReporter


class Refusals:
    """The refusals of one node's Engine, and its re-asserts over forgeries.

    ``bad_input`` is asked for at each refusal: the node has its reporter
    once it listens (nothing is counted before).
    """

    def __init__(
        self,
        state: ClusterState,
        bad_input: Callable[[], BadInputReporter | None],
        now: Callable[[], float],
    ) -> None:
        self._state = state
        self._bad_input = bad_input
        address = state.me.info.address
        self._other_family = OtherFamilyReporter(address, family_name(address))
        #: a line any peer can cause: forgeries undone
        self._forgeries = ThrottledLines(Seconds(now), "re-asserts")

    def refused(
        self, channel: str, source: str, host: str, rejected: Iterable[tuple[str, str]]
    ) -> None:
        """Count (and log, throttled) what the core refused."""
        bad_input = self._bad_input()
        if bad_input is None:
            return
        for reason, detail in rejected:
            if reason == "other-family":  # one warning per peer, not per source
                bad_input.counts[reason] += 1
                self._other_family.report(detail)
                continue
            bad_input.report(channel, source, reason, detail, host=host)

    def reasserted(self, source: str) -> None:
        """The Engine wrote this node's true state again over ``source``'s claim."""
        self._forgeries.emit(
            "re-assert",
            "a message from {source} (or one it passed on) claimed a version,"
            " write, heartbeat or status of this node that it never had; wrote"
            " its true state again above it ({count} re-asserts so far). Often"
            " a forgery: give every node a key (docs/security.md)",
            warn=True,
            source=source,
            count=self._state.reasserts,
        )
