"""The events a person follows by default: the dashboard's feed, ``pokan watch``.

Defined once here: the dashboard's page carries :data:`FEED_EVENTS` (see
:func:`pokan.control.dashboard.page_html`) and ``pokan watch`` asks for them
when given no event names. Left out: the gossip rounds (``before_gossip``,
``after_gossip``), which come every round, and ``before_sync`` (``after_sync``
tells of a full sync).
"""

from __future__ import annotations

from pokan.net.events import MEMBERSHIP_EVENTS

#: the events about a key: they carry the key (and, but for removal, its value)
KEY_EVENTS = ("new_key", "key_changed", "key_removed")
#: what the dashboard's feed and a bare ``pokan watch`` follow
FEED_EVENTS = (*KEY_EVENTS, *MEMBERSHIP_EVENTS, "after_sync", "start", "shutdown")
