"""The ``pokan`` commands that talk to a running node's control API.

Each prints a table or lines for people, or JSON with ``--json``; docs/cli.md
shows them all, with their exit codes (see :class:`Exit`).
"""

from __future__ import annotations

import time
from typing import Any, BinaryIO

import click

from pokan.control import render
from pokan.control.cli_context import Exit, Session, control_command
from pokan.control.client import (
    ApiError,
    ControlError,
    NoNode,
    encode_value,
    key_path,
    node_keys_path,
)
from pokan.control.feed import FEED_EVENTS
from pokan.core.address import DEFAULT_PORT, format_host_port, parse_host_port
from pokan.core.state import ROLES, STATUSES
from pokan.errors import ConfigurationError
from pokan.net.events import ALL_EVENTS

#: the most bytes ``set --file`` reads (the API takes bodies up to 1 MiB)
MAX_VALUE_READ = 1024 * 1024
#: seconds between two looks at the members while ``wait`` waits
WAIT_POLL = 0.2


def _a_key(_ctx: click.Context, _param: click.Parameter, key: str) -> str:
    """KEY, refused when empty (the API would answer for ``/v1/keys/``)."""
    if not key:
        raise click.BadParameter("the key is empty: give the key's name")
    return key


@control_command("members")
@click.option(
    "--status", type=click.Choice(STATUSES), help="Only nodes of this status."
)
@click.option("--role", type=click.Choice(ROLES), help="Only seeds, or only peers.")
def members(session: Session, status: str | None, role: str | None) -> None:
    """Every node this node knows, with its status and how long since heard."""
    query = {k: v for k, v in (("status", status), ("role", role)) if v is not None}
    found = list(session.client.pages("/v1/members", "members", query))
    if session.as_json:
        session.emit_json({"members": found})
        return
    click.echo(render.members_table(found))


@control_command("get")
@click.argument("key", callback=_a_key)
@click.option("--node", metavar="ID", help="Another node's key (default: this node's).")
def get(session: Session, key: str, node: str | None) -> None:
    """Print one key's value: text with a newline, bytes as they are."""
    if node is None:
        node = this_node(session)
    item = session.client.get(node_keys_path(node, key))
    if session.as_json:
        session.emit_json(item)
        return
    value = render.item_value(item)
    click.echo(value, nl=isinstance(value, str))


@control_command("set")
@click.argument("key", callback=_a_key)
@click.argument("value", required=False)
@click.option(
    "--file",
    "source",
    type=click.File("rb"),
    help="Read the value from this file ('-': stdin) instead of VALUE.",
)
@click.option("--bytes", "as_bytes", is_flag=True, help="Store the value as bytes.")
def set_(
    session: Session,
    key: str,
    value: str | None,
    source: BinaryIO | None,
    as_bytes: bool,
) -> None:
    """Set this node's KEY to VALUE; the cluster learns it by gossip.

    A value read with --file that is not UTF-8 text is stored as bytes, as it
    is; text is stored as text unless --bytes says otherwise.
    """
    if (value is None) == (source is None):
        raise click.UsageError(
            "give either VALUE or --file PATH (or --file - for stdin)"
        )
    stored: str | bytes
    if source is not None:
        data = source.read(MAX_VALUE_READ + 1)
        if len(data) > MAX_VALUE_READ:
            raise click.BadParameter(
                f"over {MAX_VALUE_READ} bytes, the most read: a key and its"
                " value must fit in one gossip datagram, about 1.2 KB at the"
                " default --max-datagram 1400 (the node says its exact limit;"
                " see docs/operations.md, Limits)",
                param_hint="--file",
            )
        stored = data if as_bytes else render.text_or_bytes(data)
    else:
        assert value is not None
        stored = value.encode("utf-8", "surrogateescape") if as_bytes else value
    answer = session.client.put(key_path(key), encode_value(stored))
    if session.as_json:
        session.emit_json(answer)
        return
    click.echo(
        f"set {key} = {render.short_value(stored)} on {answer.get('node')}"
        f" (version {answer.get('version')})"
    )


@control_command("delete")
@click.argument("key", callback=_a_key)
def delete(session: Session, key: str) -> None:
    """Delete this node's KEY; the cluster learns it by gossip."""
    answer = session.client.delete(key_path(key))
    if session.as_json:
        session.emit_json(answer)
        return
    click.echo(f"deleted {key} on {answer.get('node')}")


@control_command("keys")
@click.option("--node", metavar="ID", help="Only this node's keys.")
def keys(session: Session, node: str | None) -> None:
    """Every key of every node (the cluster's whole state), or of one node."""
    path = "/v1/keys" if node is None else node_keys_path(node)
    found = list(session.client.pages(path, "keys"))
    if session.as_json:
        session.emit_json({"keys": found})
        return
    click.echo(render.keys_table(found, time.time()))


def _complete_event(
    _ctx: click.Context, _param: click.Parameter, incomplete: str
) -> list[str]:
    return [name for name in ALL_EVENTS if name.startswith(incomplete)]


def _known_events(
    _ctx: click.Context, _param: click.Parameter, names: tuple[str, ...]
) -> tuple[str, ...]:
    """EVENT names, checked before any request: an unknown one is a usage error."""
    unknown = [name for name in names if name not in ALL_EVENTS]
    if unknown:
        raise click.BadParameter(
            f"unknown event {unknown[0]!r}; events are: {', '.join(ALL_EVENTS)}",
            param_hint="EVENT",
        )
    return names


@control_command("watch")
@click.argument(
    "events",
    nargs=-1,
    metavar="[EVENT]...",
    callback=_known_events,
    shell_complete=_complete_event,
)
def watch(session: Session, events: tuple[str, ...]) -> None:
    """Print the node's events as they happen, one line each, until Ctrl-C.

    With no EVENT, the dashboard's feed: key and membership events, after_sync,
    start and shutdown (not the gossip rounds). EVENT names keep only those
    events: new_key, key_changed, key_removed, peer_joined, peer_left,
    peer_dead, peer_alive, before_gossip, after_gossip, ...
    """
    last = ""
    try:
        for last, data in session.client.events(events or FEED_EVENTS):
            if session.as_json:
                session.emit_json(data)
            else:
                click.echo(render.event_line(last, data))
    except KeyboardInterrupt:
        return
    except NoNode:
        if last != "shutdown":
            raise
        # the node said it was stopping: say so, not "is one running?"
        click.echo(f"the node at {session.client.target} stopped", err=True)
        raise click.exceptions.Exit(Exit.NO_NODE) from None


@control_command("wait")
@click.option(
    "--members",
    "count",
    type=click.IntRange(min=1),
    required=True,
    help="Wait until this many nodes (this one included) are alive.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=60.0,
    show_default=True,
    help="Give up after this many seconds (exit 1).",
)
def wait(session: Session, count: int, timeout: float) -> None:
    """Wait until the cluster has N live members: for scripts and CI.

    A node that does not answer yet is waited for too.
    """
    deadline = time.monotonic() + timeout
    client = session.client
    seen = "no node answered"
    while True:
        left = deadline - time.monotonic()
        client.timeout = max(0.5, min(5.0, left))
        try:
            alive = sum(
                1 for _ in client.pages("/v1/members", "members", {"status": "alive"})
            )
        except ApiError:
            raise
        except ControlError as e:
            seen = str(e).splitlines()[0] if isinstance(e, NoNode) else str(e)
        else:
            if alive >= count:
                if session.as_json:
                    session.emit_json({"alive": alive})
                else:
                    click.echo(f"{alive} members alive")
                return
            seen = f"{alive} of {count} members alive"
        if time.monotonic() >= deadline:
            session.fail(f"timed out after {timeout:g}s: {seen}", Exit.FAILED)
        time.sleep(min(WAIT_POLL, max(0.0, deadline - time.monotonic())))


def _host_port(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    try:
        return format_host_port(*parse_host_port(value, DEFAULT_PORT))
    except ConfigurationError as e:
        raise click.BadParameter(str(e)) from None


@control_command("join")
@click.argument("address", metavar="HOST:PORT", callback=_host_port)
def join(session: Session, address: str) -> None:
    """Sync with the node at HOST:PORT (its TCP port) now, joining its cluster."""
    answer = session.client.post("/v1/join", {"address": address})
    if session.as_json:
        session.emit_json(answer)
        return
    click.echo(f"joined {answer.get('joined')} at {address}")


@control_command("forget")
@click.argument("node", metavar="NODE")
@click.option("--force", is_flag=True, help="Forget it even if it looks alive.")
def forget(session: Session, node: str, force: bool) -> None:
    """Drop a dead or left NODE's record everywhere (as serf force-leave)."""
    answer = session.client.post("/v1/forget", {"node": node, "force": force})
    if session.as_json:
        session.emit_json(answer)
        return
    click.echo(f"forgot {answer.get('forgotten')}")


@control_command("info")
def info(session: Session) -> None:
    """This node: its address, settings and counters."""
    answer = session.client.get("/v1/info")
    if session.as_json:
        session.emit_json(answer)
        return
    click.echo(render.info_text(answer))


def this_node(session: Session) -> str:
    """The id of the node the session talks to."""
    node: Any = session.client.get("/v1/info").get("id")
    if not isinstance(node, str):
        session.fail(f"{session.target} did not say its id in /v1/info", Exit.NO_NODE)
    return str(node)


#: every control command, in the order ``pokan --help`` lists them
COMMANDS = (members, get, set_, delete, keys, watch, wait, join, forget, info)
