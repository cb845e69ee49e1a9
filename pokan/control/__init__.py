"""The control API: HTTP with JSON inside a running node (docs/control-api.md).

:class:`~pokan.control.service.ControlListener` binds it with the node;
:mod:`~pokan.control.api` holds the ``/v1`` resources, :mod:`~pokan.control.sse`
the event stream, :mod:`~pokan.control.endpoint` parses ``--control``.
"""
