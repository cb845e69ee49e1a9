"""The ``pokan`` command: tools for operators (``pokan keygen``, ...)."""

from __future__ import annotations

import click

from pokan.wire.keyring import generate_key


@click.group()
def main() -> None:
    """Tools for running a pokan cluster."""


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
