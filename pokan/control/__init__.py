"""Operating a running node: the control API and the ``pokan`` command line.

The control API is HTTP with JSON inside a running node (docs/control-api.md):
:class:`~pokan.control.service.ControlListener` binds it with the node,
:mod:`~pokan.control.api` holds the ``/v1`` resources, :mod:`~pokan.control.sse`
the event stream, :mod:`~pokan.control.endpoint` parses ``--control``;
:mod:`~pokan.control.cli` is the ``pokan`` command.
"""
