"""Operating a running node: its control API, metrics and the ``pokan`` command."""
