"""Example handler plugin: logs membership changes, keeps a file of the members.

Load it with ``twistd pokan --handler members=/path/to/members.txt`` after
putting ``docs/examples/handler_plugin`` on PYTHONPATH (this directory has no
``__init__.py`` files on purpose: see docs/handlers.md). The file lists the
ids of the live nodes, this one included, one per line, sorted.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.logger import Logger

from pokan import HandlerPlugin

log = Logger()


class MembersFile:
    """Rewrites ``path`` whenever the set of live nodes changes."""

    def __init__(self, server: Any, path: str) -> None:
        self.server = server
        self.path = path
        self.members: list[str] = []

    @classmethod
    def from_argument(cls, server: Any, argument: str | None) -> MembersFile:
        """The handler for ``--handler members=PATH``; ValueError if PATH is unusable.

        Checked now, so twistd stops with the message instead of failing at
        every membership change.
        """
        path = argument or "members.txt"
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            raise ValueError(
                f"the members file's directory {directory} does not exist;"
                " create it or name a file in an existing directory"
            )
        if not os.access(directory, os.W_OK | os.X_OK):
            raise ValueError(
                f"the members file's directory {directory} is not writable by"
                " this process; fix its permissions or name another file"
            )
        if os.path.isdir(path):
            raise ValueError(f"{path} is a directory; name a file to write")
        return cls(server, path)

    def refresh(self) -> None:
        me = self.server.me.id
        alive = sorted([me, *(p.id for p in self.server.peers(status="alive"))])
        if alive == self.members:
            return
        partial = f"{self.path}.tmp"
        with open(partial, "w", encoding="utf-8") as f:
            f.write("".join(f"{node}\n" for node in alive))
        os.replace(partial, self.path)  # readers never see half a file
        # only once the file says so: a failed write is retried next change
        for joined in sorted(set(alive) - set(self.members)):
            log.info("member joined: {node}", node=joined)
        for left in sorted(set(self.members) - set(alive)):
            log.info("member left: {node}", node=left)
        self.members = alive

    # Membership events, when the server fires them: the change is logged
    # by refresh() as a difference of the member set.
    def peer_joined(self, peer: Any) -> None:
        self.refresh()

    def peer_left(self, peer: Any) -> None:
        self.refresh()

    def peer_dead(self, peer: Any) -> None:
        self.refresh()

    def peer_alive(self, peer: Any) -> None:
        self.refresh()

    # Without membership events, nodes show up through syncs and gossip.
    def start(self) -> None:
        self.refresh()

    def after_sync(self) -> None:
        self.refresh()

    def after_gossip(self) -> None:
        self.refresh()


members = HandlerPlugin(
    "members",
    "Logs membership changes and keeps a file of the live members"
    " (argument: the file, default members.txt)",
    MembersFile.from_argument,
)
