"""Operating a running node: the ``pokan`` command line."""
