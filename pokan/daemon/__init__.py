"""``twistd pokan``: options, handler plugins and command handlers."""
