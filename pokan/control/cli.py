"""The ``pokan`` command: tools for operators (``pokan keygen``, ``pokan members``...).

The commands that talk to a running node live in pokan.control.cli_commands;
docs/cli.md shows them all.
"""

from __future__ import annotations

import click

from pokan.control.cli_commands import COMMANDS
from pokan.wire.keyring import generate_key


@click.group()
@click.version_option(package_name="pokan", prog_name="pokan")
def main() -> None:
    """Tools for running a pokan cluster.

    Every command but keygen talks to a running node's control API: give it
    with --control HOST:PORT or unix:/PATH (or POKAN_CONTROL; default
    127.0.0.1:7373). Shell completion: eval "$(_POKAN_COMPLETE=bash_source pokan)".
    Exit codes: 0 ok, 1 no (no such key or node, a wait timed out, a join
    failed), 2 usage, 3 no pokan node answers, 4 the node refused the request.
    """


for _command in COMMANDS:
    main.add_command(_command)


@main.command()
def keygen() -> None:
    """Print a fresh cluster key (32 random bytes, base64) on one line.

    Make a key file readable by its owner only, and give every node the
    same one (twistd pokan --key-file PATH, or Server(key_file=PATH)):

    \b
        pokan keygen > /etc/pokan/keys && chmod 600 /etc/pokan/keys

    The first line of a key file seals, every line opens: to rotate keys,
    see docs/security.md, "Rotating keys without downtime".
    """
    click.echo(generate_key())


if __name__ == "__main__":
    main(prog_name="pokan")
