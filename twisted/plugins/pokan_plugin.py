"""Makes ``twistd pokan`` available; the work is in pokan.tap (imported lazily)."""

from twisted.application.service import ServiceMaker

pokan = ServiceMaker(
    "pokan",
    "pokan.tap",
    "A pokan gossip node: spreads every node's key/value pairs to all nodes.",
    "pokan",
)
