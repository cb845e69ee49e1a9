"""When a node's gossip rounds run: every interval, paused while idle.

:class:`Pacing` owns the round timers of a :class:`pokan.Server`: a
``LoopingCall`` that ticks the Engine every gossip interval, the retry half
a round on when a round's exchange goes unanswered, and the pause through
the rounds an idle node would skip anyway (one wakeup per idle interval, not
one per gossip interval), and the failure detector's own timer: a call when
its next probe or timeout is due (:meth:`Engine.next_due`), so that probes
keep their pace while the gossip idles. What a round asks for is carried
out by the callbacks it is given: the Server's commit, send and
``before_gossip``.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet import task
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from pokan import wire
from pokan.core.engine import Engine, Output
from pokan.core.node import Address, Outgoing

log = Logger()

#: the detector's timer never fires sooner than this after its last call
MIN_DELAY = 0.005


class Pacing:
    """The round loop of one node, its retries and its idle pauses.

    ``clock`` gives what times the rounds (asked for when rounds start: the
    reactor is chosen at start); ``now`` the time the Engine is told;
    ``running`` whether the node runs (a stopped node pauses no more).
    Each round ticks ``engine``, then calls ``commit`` with the Output and
    ``rejoin`` (the seeds again, with no live peer), then for each exchange
    it opens ``opening`` (the ``before_gossip`` event) and ``send``.
    """

    def __init__(
        self,
        clock: Callable[[], IReactorTime],
        engine: Engine,
        *,
        now: Callable[[], float],
        running: Callable[[], bool],
        commit: Callable[[Output], object],
        send: Callable[[Address, wire.Message], None],
        opening: Callable[[Outgoing], None],
        rejoin: Callable[[], None],
    ) -> None:
        self._clock = clock
        self._engine = engine
        self._now = now
        self._running = running
        self._commit = commit
        self._send = send
        self._opening = opening
        self._rejoin = rejoin
        #: the round loop (stopped while paused); None until rounds start
        self.loop: task.LoopingCall | None = None
        #: this round's retry, if one is due
        self.retry: IDelayedCall | None = None
        #: the call ending an idle pause, if paused
        self.resume: IDelayedCall | None = None
        #: the failure detector's next call (a probe or a timeout due)
        self.due: IDelayedCall | None = None

    @property
    def interval(self) -> float:
        return self._engine.settings.gossip_interval

    @property
    def started(self) -> bool:
        """Whether rounds were ever started (the node gossips)."""
        return self.loop is not None

    def start(self) -> None:
        """Rounds every gossip interval from now; the first one interval on."""
        self._start_rounds(now=False)

    def interval_changed(self) -> None:
        """The gossip or idle interval was set: pace running rounds anew."""
        if (self.loop is not None and self.loop.running) or self.resume:
            self._start_rounds(now=False)

    def wake(self) -> None:
        """After any Engine call: rounds every gossip interval again if news
        came during an idle pause, and the detector's timer set anew."""
        if self.resume is not None and not self._engine.node.idle:
            self._start_rounds(now=False)
        self.reschedule()

    def reschedule(self) -> None:
        """Call the detector when it next has something due: the timer moves
        to that time, later as well as sooner (a probe answered early needs
        no wakeup at its timeout)."""
        if self.loop is None or not self._running():
            return
        due = self._engine.next_due()
        current = self.due if self.due is not None and self.due.active() else None
        if due is None:
            if current is not None:
                current.cancel()
            self.due = None
            return
        clock = self._clock()
        delay = max(MIN_DELAY, due - self._now())
        if current is not None:
            if abs(current.getTime() - (clock.seconds() + delay)) > MIN_DELAY:
                current.reset(delay)
            return
        self.due = clock.callLater(delay, self._detector_due)

    def _detector_due(self) -> None:
        self.due = None
        self._between_rounds(self._engine.poll, "failure check")

    def _between_rounds(self, call: Callable[[float], Output], what: str) -> None:
        """One Engine call between rounds: commit and send what it gives."""
        try:
            output = call(self._now())
            self._commit(output)
            for out in output.sends:
                self._send(out.address, out.message)
        except Exception:
            log.failure("{what} failed; the next round will run as usual", what=what)
        self.reschedule()

    def answered(self) -> None:
        """A datagram came in: no retry once this round's exchange is answered."""
        if self.retry is not None and not self._engine.awaiting:
            if self.retry.active():
                self.retry.cancel()  # answered: no retry, no wakeup for it
            self.retry = None

    def stop(self) -> None:
        """No more rounds, retries or resumes."""
        if self.loop is not None and self.loop.running:
            self.loop.stop()
        for call in (self.resume, self.retry, self.due):
            if call is not None and call.active():
                call.cancel()

    def _start_rounds(self, now: bool) -> None:
        if self.loop is not None and self.loop.running:
            self.loop.stop()
        if self.resume is not None and self.resume.active():
            self.resume.cancel()
        self.resume = None
        self.loop = task.LoopingCall(self._gossip_round)
        self.loop.clock = self._clock()
        self.loop.start(self.interval, now=now)

    def _pause_while_quiet(self) -> None:
        """Sleep through the rounds an idle node would skip: no wakeups."""
        quiet = self._engine.node.quiet_rounds
        if not quiet or not self._running():
            return
        if self.loop is not None and self.loop.running:
            self.loop.stop()
        self.resume = self._clock().callLater(
            (quiet + 1) * self.interval, self._resume_rounds, quiet
        )

    def _resume_rounds(self, skipped: int) -> None:
        """The idle round after a pause: one wakeup, then another pause."""
        self.resume = None
        self._engine.node.skip_rounds(skipped)
        self._gossip_round()  # pauses again while the node stays quiet
        if self.resume is None and self._running():
            self._start_rounds(now=False)  # busy: a round every interval

    def _gossip_round(self) -> None:
        # failure checks run at the start of every round: no wakeups of
        # their own (an idle node checks once per idle interval)
        try:
            output = self._engine.tick(self._now())
        except Exception:
            log.failure("gossip round failed; the next one will run as usual")
            return
        try:
            self._commit(output)
            self._rejoin()
        except Exception:
            log.failure("membership check failed; gossip goes on")
        try:
            outgoing = output.sends
            for out in outgoing:
                self._opening(out)
                self._send(out.address, out.message)
            if self.retry is not None and self.retry.active():
                self.retry.cancel()  # a late round: the old retry is moot
            if outgoing and not self._engine.node.idle:
                # an idle exchange is not retried: the next idle round
                # opens another, and an idle node keeps its wakeups few
                self.retry = self._clock().callLater(
                    self.interval / 2, self._retry_round
                )
            self._pause_while_quiet()
        except Exception:
            log.failure("gossip round failed; the next one will run as usual")
        self.reschedule()

    def _retry_round(self) -> None:
        """Half a round on: a new exchange if this round's went unanswered."""
        self.retry = None
        self._between_rounds(self._engine.retry, "gossip retry")
