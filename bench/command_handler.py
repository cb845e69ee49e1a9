"""What a command handler costs: runs per second, and time per queued event.

    .venv/bin/python -m bench.command_handler [--runs 300] [--events 20000]

Prints (1) how many runs of ``true`` one handler completes per second (each
run is a fork and exec of /bin/sh, through setsid), which bounds the event
rate a handler keeps up with before its queue drops events, and (2) how long
the reactor spends queueing one event for a handler that is busy: the whole
cost of a command handler to gossip.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from twisted.internet import defer, task

from pokan.daemon.commands import CommandHandler, CommandSpec


@defer.inlineCallbacks
def main(reactor: Any, runs: int, events: int) -> Any:
    quick = CommandHandler(
        CommandSpec.parse("key_changed=true"), reactor, max_queue=runs
    )
    started = time.perf_counter()
    for i in range(runs):
        quick.submit("key_changed", ("key", f"value {i}"))
    yield quick.idle()
    elapsed = time.perf_counter() - started
    print(
        f"runs of `true`: {runs} in {elapsed:.2f} s = {runs / elapsed:.0f} runs/s"
        f" ({1000 * elapsed / runs:.1f} ms each); failed {quick.failed}"
    )

    busy = CommandHandler(
        CommandSpec.parse("key_changed=sleep 30"), reactor, max_queue=100
    )
    busy.submit("key_changed", ("key", "first"))  # runs, and stays running
    started = time.perf_counter()
    for i in range(events):
        busy.submit("key_changed", ("key", f"value {i}"))
    elapsed = time.perf_counter() - started
    print(
        f"queueing for a busy handler: {events} events in {elapsed * 1000:.0f} ms"
        f" = {1e6 * elapsed / events:.1f} us per event"
        f" ({busy.dropped} dropped, queue bound 100)"
    )
    yield busy.shutdown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--events", type=int, default=20000)
    args = parser.parse_args()
    task.react(main, [args.runs, args.events])
