"""Checking durations given in options and API calls."""

from __future__ import annotations

import math

from pokan.errors import ConfigurationError


def check_seconds(value: object, what: str) -> float:
    """``value`` as a positive, finite number of seconds (a number or its text).

    Raises ConfigurationError naming ``what`` and the value given otherwise.
    """
    if isinstance(value, bool):
        raise ConfigurationError(f"{what} must be a number of seconds, got {value!r}")
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigurationError(
            f"{what} must be a number of seconds, got {value!r}"
        ) from None
    if not (math.isfinite(seconds) and seconds > 0):
        raise ConfigurationError(
            f"{what} must be a positive number of seconds, got {value!r}"
        )
    return seconds
