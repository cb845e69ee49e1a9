"""The exceptions pokan raises."""

from collections.abc import Mapping


class PokanError(Exception):
    """Base class of every error pokan raises on purpose."""


class NamesSettings(PokanError):
    """An error whose message names settings, as the caller names them.

    ``str()`` names them as the library's API does (``max_datagram=``);
    :meth:`describe` as ``names`` says, keyed by setting (the fields of
    :class:`pokan.net.settings.Settings`, and ``redis``): twistd passes its
    options (``--max-datagram``).
    """

    def describe(self, names: Mapping[str, str]) -> str:
        """The message, naming the settings as ``names`` says."""
        return str(self)


class ConfigurationError(PokanError, ValueError):
    """A setting is invalid; the message says which and what to do."""


class StartupError(PokanError):
    """The node could not start (a port in use, a store unreachable, ...)."""


class DecodeError(PokanError, ValueError):
    """Bytes from the network are not a valid pokan message.

    ``reason`` is a short, stable label used to count drops.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class EncodeError(PokanError, ValueError):
    """A message cannot be encoded within the configured limits."""


class NodeIsAlive(PokanError, ValueError):
    """A live node cannot be forgotten without ``force``; the message says so."""
