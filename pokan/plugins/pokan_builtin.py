"""The handler plugins that ship with pokan."""

from pokan.daemon.handlers import HandlerPlugin
from pokan.daemon.logging_handler import LoggingHandler

log = HandlerPlugin(
    "log",
    "Logs every event at info level (argument: events to log, comma-separated)",
    LoggingHandler.from_argument,
)
