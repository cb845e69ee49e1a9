"""Handler plugins for ``twistd pokan --handler NAME``.

Twisted's plugin discovery scans this package. Its path also covers every
``pokan/plugins/`` directory (without ``__init__.py``) on ``sys.path``, so a
plugin module can be installed here by a distribution or dropped in such a
directory named on PYTHONPATH. See docs/handlers.md.
"""

from twisted.plugin import pluginPackagePaths

__path__.extend(pluginPackagePaths(__name__))
__all__: list[str] = []
