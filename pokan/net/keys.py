"""A node's gossip keys: read at start, read again on SIGHUP."""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger

from pokan.errors import ConfigurationError
from pokan.wire.envelope import Envelope

log = Logger()


def sealer_for(key_file: str | None) -> Any:
    """The Sealer of the keys in ``key_file``; None for plaintext gossip."""
    if key_file is None:
        return None
    from pokan.wire.keyring import Sealer, read_key_file

    return Sealer(read_key_file(key_file))


def reload_keys(envelope: Envelope, key_file: str | None) -> bool:
    """Read ``key_file`` again into the envelope's sealer; whether taken.

    See :meth:`pokan.Server.reload_keys`: a bad file is refused with a
    warning and the old keys stay; a node without keys takes none.
    """
    sealer = envelope.sealer
    if key_file is None or sealer is None:
        log.warn(
            "reload of the gossip keys asked, but this node was started"
            " without a key file (key_file=, --key-file): nothing to reload"
        )
        return False
    from pokan.wire.keyring import read_key_file

    try:
        keyring = read_key_file(key_file)
    except ConfigurationError as e:
        log.warn(
            "could not reload the gossip keys: {error}; still using {keys}",
            error=e,
            keys=sealer.keyring.describe(),
        )
        return False
    sealer.keyring = keyring
    log.info(
        "gossip keys reloaded from {path}: {keys}",
        path=key_file,
        keys=keyring.describe(),
    )
    return True
