"""Finding handlers for ``--handler``: plugins by name, or objects by import path.

Plugins are the :class:`~twisted.plugin.IPlugin` providers of the modules
of the :mod:`pokan.plugins` package (whose path covers ``pokan/plugins/``
under every ``sys.path`` entry). pokan imports those modules itself rather
than through :func:`twisted.plugin.getCache`, which logs a module that fails
to import as an unhandled error with its traceback: here such failures are
kept, so a missing handler is reported with the reason, in one line.
"""

from __future__ import annotations

import importlib
import os
import types
from collections.abc import Callable
from typing import Any

import attrs
from twisted.logger import Logger
from twisted.plugin import IPlugin
from twisted.python.failure import Failure
from twisted.python.modules import getModule

from pokan.daemon.handlers import handler_methods
from pokan.daemon.interfaces import IEventHandlerFactory
from pokan.errors import ConfigurationError

log = Logger()


@attrs.frozen
class FoundPlugin:
    """A handler plugin and the module it was found in."""

    factory: Any  # an IEventHandlerFactory provider
    module: str


@attrs.frozen
class BrokenPlugin:
    """A plugin module (or object in one) that could not be loaded."""

    where: str
    error: str


@attrs.frozen
class Discovery:
    """The handler plugins found by name, and the modules that failed."""

    plugins: dict[str, list[FoundPlugin]]
    broken: tuple[BrokenPlugin, ...]
    searched: tuple[str, ...] = ()  # the plugin directories that exist
    #: the broken modules already logged: once each, however many --handler
    warned: set[str] = attrs.field(factory=set, init=False, eq=False, repr=False)

    def warn_broken(self) -> None:
        """Log each module that failed to load, once, in one line."""
        for broken in self.broken:
            if broken.where in self.warned:
                continue
            self.warned.add(broken.where)
            log.warn(
                "handler plugin module {where} failed to load: {error}",
                where=broken.where,
                error=broken.error,
            )

    def listing(self) -> list[str]:
        """One line per plugin, by name: ``NAME  DESCRIPTION (MODULE)``."""
        width = max((len(name) for name in self.plugins), default=0)
        return [
            f"{name:<{width}}  {found.factory.description} ({found.module})"
            for name in sorted(self.plugins)
            for found in self.plugins[name]
        ]

    def describe(self) -> str:
        """What was found, for error messages."""
        lines = []
        if self.plugins:
            lines.append("handler plugins found:")
            for name in sorted(self.plugins):
                for found in self.plugins[name]:
                    lines.append(
                        f"  {name}: {found.factory.description} ({found.module})"
                    )
        else:
            lines.append("no handler plugins found")
        lines.append(
            "plugin directories searched: "
            + (", ".join(self.searched) or "none")
            + " (and pokan/plugins/ under any PYTHONPATH entry)"
        )
        if self.broken:
            lines.append("plugin modules that failed to load:")
            lines.extend(f"  {b.where}: {b.error}" for b in self.broken)
        return "\n".join(lines)


def _plugins_package() -> types.ModuleType:
    import pokan.plugins

    return pokan.plugins


def discover(package: types.ModuleType | None = None) -> Discovery:
    """Every handler plugin under ``package`` (default :mod:`pokan.plugins`)."""
    package = package if package is not None else _plugins_package()
    searched = tuple(str(p) for p in package.__path__ if os.path.isdir(p))
    broken: list[BrokenPlugin] = []
    plugins: dict[str, list[FoundPlugin]] = {}
    for child in getModule(package.__name__).iterModules():
        try:
            module = importlib.import_module(child.name)
        except (Exception, SystemExit):  # sys.exit() in a module: a failure too
            failure = Failure()
            broken.append(BrokenPlugin(_where(failure, searched), _error(failure)))
            continue
        for attribute, obj in vars(module).items():
            if not (IPlugin.providedBy(obj) and IEventHandlerFactory.providedBy(obj)):
                continue
            name = getattr(obj, "name", None)
            if not isinstance(name, str) or not name:
                where = f"{child.name}.{attribute}"
                broken.append(BrokenPlugin(where, "provides no name"))
                continue
            plugins.setdefault(name, []).append(FoundPlugin(obj, child.name))
    return Discovery(plugins, tuple(broken), searched)


def _error(failure: Failure) -> str:
    """The exception in one line (its first), for a one-line warning."""
    kind = failure.type.__name__ if failure.type is not None else "Error"
    message = failure.getErrorMessage().strip().split("\n", 1)[0]
    return f"{kind}: {message}"


def _where(failure: Failure, searched: tuple[str, ...]) -> str:
    """The plugin file a failure came from, as precisely as it says."""
    filename = getattr(failure.value, "filename", None)
    if isinstance(filename, str) and filename:
        line = getattr(failure.value, "lineno", None)
        return f"{filename}:{line}" if line else filename
    roots = tuple(os.path.abspath(p) + os.sep for p in searched)
    for frame in reversed(failure.frames):
        path = os.path.abspath(frame[1])
        if path.startswith(roots):
            return f"{path}:{frame[2]}"
    return "a plugin module"


# -- resolving --handler ----------------------------------------------------------


@attrs.frozen
class HandlerSpec:
    """A resolved ``--handler``: what to build, with which argument."""

    label: str
    build: Callable[[Any, str | None], object]
    argument: str | None

    def make(self, server: Any) -> object:
        """Build the handler object for ``server``; ConfigurationError if it fails."""
        try:
            return self.build(server, self.argument)
        except (ValueError, TypeError) as e:
            raise ConfigurationError(f"--handler {self.label}: {e}") from None


def resolve(value: str, discovery: Callable[[], Discovery] = discover) -> HandlerSpec:
    """Resolve ``NAME[=ARG]`` or ``package.module:attribute[=ARG]``."""
    spec, sep, argument = value.partition("=")
    spec = spec.strip()
    arg = argument if sep else None
    if not spec:
        raise ConfigurationError(
            f"--handler expects NAME[=ARG] or package.module:attribute, got {value!r}"
        )
    if ":" in spec:
        return _by_import_path(spec, arg)
    found = discovery()
    matches = found.plugins.get(spec, [])
    if not matches:
        raise ConfigurationError(
            f"--handler {spec}: no handler plugin of that name\n{found.describe()}"
        )
    if len(matches) > 1:
        modules = ", ".join(m.module for m in matches)
        raise ConfigurationError(
            f"--handler {spec}: several plugins have that name ({modules});"
            " name one by import path, package.module:attribute"
        )
    found.warn_broken()
    return HandlerSpec(spec, matches[0].factory.build, arg)


def _by_import_path(spec: str, argument: str | None) -> HandlerSpec:
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ConfigurationError(
            f"--handler {spec}: an import path is package.module:attribute"
        )
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as e:
        raise ConfigurationError(
            f"--handler {spec}: cannot import {module_name}: {type(e).__name__}: {e}"
        ) from None
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigurationError(
                f"--handler {spec}: {module_name} has no attribute {attribute}"
            ) from None
    if IEventHandlerFactory.providedBy(obj):
        return HandlerSpec(spec, obj.build, argument)
    try:
        methods = handler_methods(obj)
    except TypeError as e:
        raise ConfigurationError(f"--handler {spec}: {e}") from None
    if not methods:
        raise ConfigurationError(
            f"--handler {spec}: {obj!r} is neither a handler plugin"
            " (IEventHandlerFactory) nor an object with handler methods"
        )
    if argument is not None:
        raise ConfigurationError(
            f"--handler {spec}: takes no argument (it is a handler object,"
            " not a plugin)"
        )
    return HandlerSpec(spec, lambda server, arg: obj, None)


__all__ = ["BrokenPlugin", "Discovery", "HandlerSpec", "discover", "resolve"]
