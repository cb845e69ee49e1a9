"""What every control command of ``pokan`` shares: options, output, exit codes.

``@control_command`` gives a click command ``--control``, ``--token-file`` and
``--json``, hands it a :class:`Session` and turns the client's errors into one
line on stderr and a documented exit code (docs/cli.md).
"""

from __future__ import annotations

import enum
import functools
import http.client
import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import attrs
import click

from pokan.control.client import (
    DEFAULT_CONTROL,
    ApiError,
    ControlClient,
    NoNode,
    NotPokan,
    Target,
    parse_target,
)
from pokan.errors import ConfigurationError

F = TypeVar("F", bound=Callable[..., Any])

#: the most bytes of a token file read (a token is one short line)
MAX_TOKEN_FILE = 4096


#: HTTP statuses that answer "no" (exit 1) rather than refuse (exit 4):
#: no such node or key, a join whose sync failed
ANSWERED_NO = (404, 502)


class Exit(enum.IntEnum):
    """The exit codes of ``pokan``'s control commands."""

    OK = 0
    #: the answer is no: no such key or node, a wait timed out, a join failed
    FAILED = 1
    #: a bad option or argument (click's own code for usage errors)
    USAGE = 2
    #: no pokan node answers at the control address
    NO_NODE = 3
    #: the node refused the request (bad input, wrong token, a live node...)
    REFUSED = 4


@attrs.define
class Session:
    """One command's connection settings and output mode."""

    client: ControlClient
    as_json: bool

    @property
    def target(self) -> Target:
        return self.client.target

    def emit_json(self, document: object) -> None:
        """One JSON document on one line of stdout."""
        click.echo(json.dumps(document, ensure_ascii=False, sort_keys=True))

    def fail(self, message: str, code: Exit = Exit.FAILED) -> None:
        """Say ``message`` on stderr and end the command with ``code``."""
        click.echo(message, err=True)
        sys.exit(int(code))


def read_token(path: str) -> str:
    """The bearer token in ``path`` (its first line); UsageError if none."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_TOKEN_FILE + 1)
    except OSError as e:
        raise click.BadParameter(
            f"cannot read {path}: {e.strerror or e}", param_hint="--token-file"
        ) from None
    lines = data[:MAX_TOKEN_FILE].decode("utf-8", "replace").splitlines()
    token = lines[0].strip() if lines else ""
    if not token or len(data) > MAX_TOKEN_FILE:
        raise click.BadParameter(
            f"{path} holds no token: it should hold the token on its first line",
            param_hint="--token-file",
        )
    return token


def refusal(error: ApiError, token_file: str | None) -> str:
    """What the node said; for a token refused, where the command's token comes from."""
    if error.status != http.client.UNAUTHORIZED:
        return error.message
    if token_file is None:
        return (
            "this node's control API needs a token, and none was given: give"
            " --token-file FILE (or set POKAN_TOKEN_FILE=FILE), FILE holding the"
            " token on its first line (a copy of the node's --control-token-file)"
        )
    return (
        f"{error.message}: {token_file} (--token-file or POKAN_TOKEN_FILE) does"
        " not hold this node's token, the first line of its --control-token-file"
    )


def _target(_ctx: click.Context, _param: click.Parameter, value: str) -> Target:
    try:
        return parse_target(value)
    except ConfigurationError as e:
        raise click.BadParameter(str(e)) from None


def control_command(name: str | None = None) -> Callable[[F], click.Command]:
    """Make ``f(session, ...)`` a click command with the shared options."""

    def make(f: F) -> click.Command:
        @functools.wraps(f)
        def run(
            control: Target, token_file: str | None, as_json: bool, **kw: Any
        ) -> None:
            token = read_token(token_file) if token_file else None
            session = Session(ControlClient(control, token), as_json)
            try:
                f(session, **kw)
            except NoNode as e:
                session.fail(f"{e}\n({e.reason})", Exit.NO_NODE)
            except NotPokan as e:
                session.fail(str(e), Exit.NO_NODE)
            except ApiError as e:
                code = Exit.FAILED if e.status in ANSWERED_NO else Exit.REFUSED
                session.fail(f"{refusal(e, token_file)} (HTTP {e.status})", code)

        options = [
            click.option(
                "--control",
                metavar="HOST:PORT|unix:/PATH",
                default=DEFAULT_CONTROL,
                envvar="POKAN_CONTROL",
                show_envvar=True,
                show_default=True,
                callback=_target,
                help="The node's control API.",
            ),
            click.option(
                "--token-file",
                type=click.Path(dir_okay=False),
                envvar="POKAN_TOKEN_FILE",
                show_envvar=True,
                help="A file holding the node's control token (--control-token-file).",
            ),
            click.option(
                "--json", "as_json", is_flag=True, help="Print JSON, for scripts."
            ),
        ]
        for option in reversed(options):
            run = option(run)
        return click.command(name)(run)

    return make
