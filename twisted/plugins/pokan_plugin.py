"""Makes ``twistd pokan`` available; the work is in pokan.daemon.tap (lazily)."""

from twisted.application.service import ServiceMaker

pokan = ServiceMaker(
    "pokan",
    "pokan.daemon.tap",
    "A pokan gossip node: spreads every node's key/value pairs to all nodes.",
    "pokan",
)
