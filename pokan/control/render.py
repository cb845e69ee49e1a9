"""How the ``pokan`` command shows API answers to people: tables and lines."""

from __future__ import annotations

import datetime
import json
from collections.abc import Sequence
from typing import Any

from pokan.control.client import decode_value

#: characters of a value a table shows before cutting it short
SHOWN_VALUE = 48


def columns(rows: Sequence[Sequence[str]], headers: Sequence[str] = ()) -> str:
    """Rows (under headers, if any), each column as wide as its widest cell."""
    table = [list(r) for r in ([headers] if headers else []) + list(rows)]
    if not table:
        return ""
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in table
    )


def text_or_bytes(data: bytes) -> str | bytes:
    """``data`` as text if it is UTF-8, else the bytes themselves."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data


def short_value(value: str | bytes) -> str:
    """A value on one short line: text quoted if needed, bytes by their size."""
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    shown = value if value.isprintable() and value.strip() == value else repr(value)
    if len(shown) > SHOWN_VALUE:
        shown = shown[: SHOWN_VALUE - 3] + "..."
    return shown or "''"


def item_value(item: dict[str, Any]) -> str | bytes:
    return decode_value(item)


def seconds(value: object) -> str:
    """A duration for people: 0.4s, 12s, 5m3s, 2h10m; '-' if unknown."""
    if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
        return "-"
    if value < 10:
        return f"{value:.1f}s"
    whole = int(value)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60}s"
    return f"{whole // 3600}h{whole % 3600 // 60}m"


def detector(view: object) -> str:
    """The failure detector's view of a node on one line: 'phi 0.30 (dead at 8)'."""
    if not isinstance(view, dict) or not view:
        return "-"
    kind = view.get("kind")
    rest = {k: v for k, v in view.items() if k != "kind"}
    parts = [str(kind)] if kind is not None else []
    if kind in rest:  # the detector's own figure: phi
        value = rest.pop(kind)
        parts.append("never heard" if value is None else _figure(value))
    threshold = rest.pop("threshold", None)
    parts.extend(f"{name}={_figure(value)}" for name, value in sorted(rest.items()))
    if threshold is not None:
        parts.append(f"(dead at {_figure(threshold)})")
    return " ".join(parts)


def _figure(value: object) -> str:
    return (
        f"{value:.2f}".rstrip("0").rstrip(".")
        if isinstance(value, float)
        else str(value)
    )


def members_table(members: list[dict[str, Any]]) -> str:
    rows = [
        (
            f"{m.get('id')}{' (this node)' if m.get('me') else ''}",
            str(m.get("status")),
            str(m.get("role")),
            f"{m.get('address')} udp {m.get('udp_port')} tcp {m.get('tcp_port')}",
            str(m.get("generation")),
            "now" if m.get("me") else seconds(m.get("last_heard_s")),
            "-" if m.get("me") else detector(m.get("detector")),
        )
        for m in members
    ]
    headers = ("NODE", "STATUS", "ROLE", "ADDRESS", "GENERATION", "HEARD", "DETECTOR")
    return columns(rows, headers)


def keys_table(keys: list[dict[str, Any]], now: float) -> str:
    rows = []
    for k in keys:
        stamp = k.get("timestamp")
        age = now - stamp if isinstance(stamp, int | float) else None
        rows.append(
            (
                str(k.get("node")),
                str(k.get("key")),
                short_value(decode_value(k)),
                str(k.get("version")),
                seconds(age) + " ago" if age is not None else "-",
            )
        )
    return columns(rows, ("NODE", "KEY", "VALUE", "VERSION", "SET"))


def event_line(name: str, data: dict[str, Any]) -> str:
    """One event on one line: time, name, node, key=value."""
    stamp = data.get("time")
    when = (
        datetime.datetime.fromtimestamp(stamp).isoformat(
            sep=" ", timespec="milliseconds"
        )
        if isinstance(stamp, int | float)
        else "-"
    )
    parts = [when, name]
    if data.get("node") is not None:
        parts.append(str(data["node"]))
    if data.get("key") is not None:
        key = str(data["key"])
        if "value" in data and "type" in data:
            parts.append(f"{key}={short_value(decode_value(data))}")
        else:
            parts.append(key)
    return " ".join(parts)


#: fields of the stats that ``pokan info`` shows in its head, not as counters
_HEAD_FIELDS = frozenset({"cluster", "sealed"})


def info_text(info: dict[str, Any]) -> str:
    """``pokan info``: the node, then its settings, then its counters."""
    head = [
        ("node", str(info.get("id"))),
        (
            "address",
            f"{info.get('address')} udp {info.get('udp_port')}"
            f" tcp {info.get('tcp_port')}",
        ),
        (
            "cluster",
            f"{info.get('cluster')}"
            f" ({'sealed' if info.get('sealed') else 'not sealed'})",
        ),
        ("generation", str(info.get("generation"))),
        ("version", str(info.get("version"))),
    ]
    lines = [columns(head)]
    for section in ("settings", "counters"):
        values = info.get(section)
        if isinstance(values, dict) and section == "counters":
            values = {k: v for k, v in values.items() if k not in _HEAD_FIELDS}
        if isinstance(values, dict) and values:
            rows = [(f"  {name}", text) for name, text in _flat(values)]
            lines.append(f"{section}:")
            lines.append(columns(rows))
    return "\n".join(lines)


def _flat(values: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for name, value in sorted(values.items()):
        if isinstance(value, dict):
            rows.extend(_flat(value, f"{prefix}{name}."))
        else:
            rows.append((f"{prefix}{name}", _scalar(value)))
    return rows


def _scalar(value: Any) -> str:
    """A value as the JSON says it (null, false, []), a string as it is."""
    return value if isinstance(value, str) else json.dumps(value)
