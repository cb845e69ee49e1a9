"""The control API of a running node: HTTP with JSON, metrics, the dashboard."""
