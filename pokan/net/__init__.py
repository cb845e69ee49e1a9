"""The Twisted edges: sockets, timers, the store and events around the core."""
