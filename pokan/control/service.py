"""The control API of one Server: configured, bound with the node, closed with it."""

from __future__ import annotations

import os
import stat
from typing import Any

from twisted.internet import error as ierror

from pokan.control import dashboard, views
from pokan.control.api import V1
from pokan.control.auth import BearerCheck, read_token_file
from pokan.control.endpoint import ControlEndpoint, parse_control
from pokan.control.metrics import MetricsResource
from pokan.control.site import ControlRoot, ControlSite
from pokan.control.sse import EventStream
from pokan.errors import ConfigurationError, StartupError

#: how errors name the settings: the Server's arguments, or twistd's options
API_NAMES = {"control": "control=", "token": "control_token_file="}
TWISTD_NAMES = {"control": "--control", "token": "--control-token-file"}


class ControlListenError(StartupError):
    """The control port could not be bound; the message says why and what to do."""

    def __init__(self, where: str, reason: str, hint: str = "in use") -> None:
        self.where = where
        self.reason = reason
        self.hint = hint
        super().__init__(self.describe(API_NAMES))

    def describe(self, names: dict[str, str]) -> str:
        option = names["control"]
        if self.hint == "no directory":
            what = f"Create its directory or choose another path with {option}"
        elif self.hint == "not a socket":
            what = (
                "The path is a file or directory, not a socket: choose another"
                f" path with {option}"
            )
        else:
            what = (
                f"Is another node running there? Choose another address with {option}"
            )
        return (
            f"cannot listen for the control API on {where_text(self.where)}:"
            f" {self.reason}. {what} (or turn it off: --no-control, control=None)"
        )


def unix_listen_error(where: str, path: str, error: OSError) -> ControlListenError:
    """Why a Unix control socket at ``path`` could not be bound."""
    reason = (error.strerror or str(error)).lower()
    if not os.path.isdir(os.path.dirname(os.path.abspath(path))):
        return ControlListenError(where, reason, "no directory")
    if os.path.lexists(path) and not stat.S_ISSOCK(os.lstat(path).st_mode):
        return ControlListenError(where, reason, "not a socket")
    return ControlListenError(where, reason)


def where_text(where: str) -> str:
    return where.removeprefix("http://")


class ControlListener:
    """Where the control API listens, its token, and its HTTP site.

    ``site.root`` takes more resources with ``putChild`` (metrics, the
    dashboard): they are behind the same token check.
    """

    def __init__(
        self,
        node: Any,
        endpoint: ControlEndpoint,
        token: str | None = None,
    ) -> None:
        self.node = node
        self.endpoint = endpoint
        self.token = token
        self.events: EventStream | None = None
        self.root = ControlRoot(BearerCheck(token) if token is not None else None)
        self.site: ControlSite | None = None
        self.port: Any = None
        #: the TCP port bound (None: not bound yet, or a unix socket)
        self._bound: int | None = None

    @classmethod
    def configure(
        cls,
        node: Any,
        control: str | ControlEndpoint,
        token_file: str | None,
        names: dict[str, str] = API_NAMES,
    ) -> ControlListener:
        """Check the settings: ConfigurationError names the bad one."""
        endpoint = (
            control
            if isinstance(control, ControlEndpoint)
            else parse_control(control, names["control"])
        )
        token = read_token_file(token_file) if token_file is not None else None
        if token is None and not endpoint.loopback:
            raise ConfigurationError(
                f"{names['control']} {endpoint.describe()} is reachable from other"
                f" hosts: give {names['token']} FILE (a file of mode 0600 whose"
                " first line is the token clients send as 'Authorization: Bearer"
                " TOKEN'; `pokan keygen > FILE && chmod 600 FILE` makes one), or"
                " listen on 127.0.0.1"
            )
        return cls(node, endpoint, token)

    @classmethod
    def for_server(
        cls, node: Any, control: str | None, token_file: str | None
    ) -> ControlListener | None:
        """The control API of a Server's ``control=`` (None: off)."""
        if control is None:
            if token_file is not None:
                raise ConfigurationError(
                    "control_token_file= needs control= (where the control API"
                    " listens, such as 127.0.0.1:7373)"
                )
            return None
        return cls.configure(node, control, token_file)

    @property
    def address(self) -> str:
        """``http://127.0.0.1:7373`` (the port bound, once bound) or ``unix:/path``."""
        return self.endpoint.describe(self._bound)

    def listen(self, reactor: Any, clock: Any) -> Any:
        """Bind the control port; ControlListenError if it cannot be."""
        self.events = EventStream(self.node, clock)
        self.root.putChild(b"v1", V1(self.node, self.events))
        self.root.putChild(b"metrics", MetricsResource(self.node.metrics))
        dashboard.mount(self.root)
        self.site = ControlSite(self.root, write_limit=self.write_limit)
        try:
            if self.endpoint.path is not None:
                self.port = reactor.listenUNIX(
                    self.endpoint.path, self.site, mode=0o600, wantPID=True
                )
            else:
                self.port = reactor.listenTCP(
                    self.endpoint.port, self.site, interface=self.endpoint.host
                )
                # kept: the port can no longer say it once closed
                self._bound = self.port.getHost().port
        except (ierror.CannotListenError, OSError) as e:
            # an OSError: a Unix socket's lock file (wantPID) in no directory
            self._stop_unbound_site()
            error = e.socketError if isinstance(e, ierror.CannotListenError) else e
            if self.endpoint.path is not None and isinstance(error, OSError):
                raise unix_listen_error(
                    self.endpoint.describe(), self.endpoint.path, error
                ) from None
            if not isinstance(e, ierror.CannotListenError):
                raise
            reason = getattr(error, "strerror", None) or str(error)
            raise ControlListenError(self.endpoint.describe(), reason.lower()) from None
        return self.port

    def write_limit(self) -> str:
        """What one write to the node may take (a too-large body's 413 says it)."""
        return views.write_limit(self.node)

    def _stop_unbound_site(self) -> None:
        """listenUNIX starts the site before it binds: stop it again (its
        log-date timer) when the bind fails."""
        if self.site is not None and self.site.numPorts:
            self.site.doStop()

    def close_connections(self) -> None:
        """End the event streams and drop every connection (the node stops)."""
        if self.events is not None:
            self.events.close_all()
        if self.site is not None:
            self.site.close_connections()
