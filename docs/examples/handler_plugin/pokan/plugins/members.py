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

from pokan.handlers import HandlerPlugin

log = Logger()


class MembersFile:
    """Rewrites ``path`` whenever the set of live nodes changes."""

    def __init__(self, server: Any, path: str) -> None:
        self.server = server
        self.path = path
        self.members: list[str] = []

    @classmethod
    def from_argument(cls, server: Any, argument: str | None) -> MembersFile:
        return cls(server, argument or "members.txt")

    def refresh(self) -> None:
        me = self.server.me.id
        alive = sorted([me, *(p.id for p in self.server.peers(status="alive"))])
        if alive == self.members:
            return
        for joined in sorted(set(alive) - set(self.members)):
            log.info("member joined: {node}", node=joined)
        for left in sorted(set(self.members) - set(alive)):
            log.info("member left: {node}", node=left)
        self.members = alive
        partial = f"{self.path}.tmp"
        with open(partial, "w", encoding="utf-8") as f:
            f.write("".join(f"{node}\n" for node in alive))
        os.replace(partial, self.path)  # readers never see half a file

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
