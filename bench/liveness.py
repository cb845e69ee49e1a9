"""Liveness at scale: the issue's two target rows and a sweep of N, into the docs.

    PYTHONPATH=. .venv/bin/python bench/liveness.py --out L.jsonl   # measure
    PYTHONPATH=. .venv/bin/python bench/liveness.py --from L.jsonl  # docs only

Each configuration runs in its own process (``python -m pokan.simulate ...
--json`` under ``/usr/bin/time -v``, so its peak RSS is its own), one after
another; every JSON object is appended to ``--out`` as it comes, with the
command and ``/usr/bin/time``'s peak RSS and CPU. Then (or from a saved file)
the script replaces the section between the liveness markers of
docs/performance.md with the table and draws docs/img/liveness-detect.png
and docs/img/liveness-bytes.png (matplotlib: the ``bench`` extra).

Rows: the targets (1400-byte datagrams, 1 s interval, 5% loss, heartbeats
on): N = 1,000 for 300 rounds with 5 kills and 1% of the nodes stalled 5
rounds at a time; N = 10,000 for 100 rounds with 5 kills; and the sweep
N = 10 to 10,000, 100 rounds, 5% loss, 5 kills (2 at N = 10). ``--phi`` adds
the phi detector at N = 1,000 for comparison.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

BEGIN, END = "<!-- liveness-table:begin -->", "<!-- liveness-table:end -->"
ROOT = Path(__file__).resolve().parent.parent
SWEEP = (10, 30, 100, 300, 1000, 3000, 10000)

#: (label, arguments of python -m pokan.simulate)
TARGETS = (
    (
        "target 1,000",
        ["--n", "1000", "--rounds", "300", "--kill", "5", "--pause", "0.01:5"],
    ),
    ("target 10,000", ["--n", "10000", "--rounds", "100", "--kill", "5"]),
)
COMMON = ["--loss", "0.05", "--interval", "1", "--max-datagram", "1400", "--json"]


def sweep_args(n: int) -> list[str]:
    return ["--n", str(n), "--rounds", "100", "--kill", str(5 if n > 10 else 2)]


#: the phi detector on gossiped heartbeats at N = 1,000, for comparison
PHI_ROW = (
    "phi 1,000",
    ["--n", "1000", "--rounds", "50", "--kill", "5", "--failure-detector", "phi"],
)


def configurations(
    sizes: tuple[int, ...], phi: bool = False
) -> list[tuple[str, list[str]]]:
    rows = list(TARGETS)
    if phi:
        rows.append(PHI_ROW)
    rows += [(f"sweep {n}", sweep_args(n)) for n in sizes if n != 10000]
    return rows  # the 10,000 target is the sweep's last point too


def measure_one(label: str, args: list[str], extra: list[str]) -> dict[str, Any]:
    """Run one configuration in its own process; its figures."""
    command = [sys.executable, "-m", "pokan.simulate", *args, *COMMON, *extra]
    timed = ["/usr/bin/time", "-v", *command]
    print(f"{label}: {' '.join(command[1:])}", file=sys.stderr, flush=True)
    done = subprocess.run(timed, capture_output=True, text=True, check=True)
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    figures["label"] = label
    figures["command"] = "python " + " ".join(command[1:])
    for name, key in (
        ("Maximum resident set size (kbytes)", "time_peak_rss_mb"),
        ("User time (seconds)", "time_user_s"),
        ("System time (seconds)", "time_sys_s"),
    ):
        found = re.search(re.escape(name) + r": ([\d.]+)", done.stderr)
        if found:
            value = float(found.group(1))
            figures[key] = round(value / 1024 if "kbytes" in name else value, 1)
    return figures


def table(rows: list[dict[str, Any]]) -> list[str]:
    def cell(x: float | None) -> str:
        return "not all" if x is None else f"{x:.2f}"

    lines = [
        "| run | N | rounds | kills | paused | false convictions | convictions of"
        " paused | kill seen by all p50 | p99 | fresh write to all p50 | p99"
        " | bytes/node/round mean | max | CPU s | peak RSS GB |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for f in rows:
        d, u, b = f["detect_rounds"], f["update_rounds"], f["bytes_per_node_round"]
        pause = f["pause"]
        paused = (
            f"{pause['fraction']:.0%}, {pause['rounds']:g} rounds"
            if pause["fraction"]
            else "-"
        )
        rss = f.get("time_peak_rss_mb", f["peak_rss_mb"]) / 1024
        cpu = f.get("time_user_s", f["cpu_s"]) + f.get("time_sys_s", 0.0)
        lines.append(
            f"| {f['label']} | {f['n']:,} | {f['rounds']} | {f['kills']} | {paused} "
            f"| {f['false_convictions']} | {f['convictions_of_paused']} "
            f"| {cell(d['p50'])} | {cell(d['p99'])} | {cell(u['p50'])} "
            f"| {cell(u['p99'])} | {b['mean']:,.0f} | {b['max']:,.0f} "
            f"| {cpu:,.0f} | {rss:.2f} |"
        )
    return lines


def plot(rows: list[dict[str, Any]], img: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    img.mkdir(parents=True, exist_ok=True)
    sweep = sorted(
        (f for f in rows if f["label"].startswith(("sweep", "target 10,"))),
        key=lambda f: f["n"],
    )
    if not sweep:
        return []  # no sweep point measured: keep the plots as they are
    ns = [f["n"] for f in sweep]

    def values(field: str, stat: str) -> list[float]:
        return [
            float("nan") if f[field][stat] is None else f[field][stat] for f in sweep
        ]

    paths = []
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.plot(ns, values("detect_rounds", "p99"), "-oC0", label="kill seen by all, p99")
    ax.plot(ns, values("detect_rounds", "p50"), "--oC0", label="kill seen by all, p50")
    ax.plot(ns, values("update_rounds", "p99"), "-oC1", label="fresh write to all, p99")
    ax.plot(
        ns, values("update_rounds", "p50"), "--oC1", label="fresh write to all, p50"
    )
    ax.axhline(10, color="red", linewidth=1, label="target at 10,000: 10 rounds")
    ax.set_xscale("log")
    ax.set_ylim(bottom=0)
    ax.set_xlabel("nodes")
    ax.set_ylabel("rounds (1 s interval, 5% loss)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(img / "liveness-detect.png")
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.plot(ns, values("bytes_per_node_round", "mean"), "-oC0", label="mean")
    ax.plot(ns, values("bytes_per_node_round", "max"), "--oC0", label="busiest node")
    ax.axhline(4 * 1400, color="red", linewidth=1, label="budget: 4 x 1400 bytes")
    ax.set_xscale("log")
    ax.set_ylim(bottom=0)
    ax.set_xlabel("nodes")
    ax.set_ylabel("bytes sent per node per round")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(img / "liveness-bytes.png")
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)
    return paths


def write_docs(doc: Path, rows: list[dict[str, Any]], note: str) -> None:
    commands = sorted({f["command"] for f in rows}, key=len)
    section = "\n".join(
        [
            BEGIN,
            note,
            "",
            *table(rows),
            "",
            "Each row is one process (seed 1), its command:",
            "",
            "```",
            *commands,
            "```",
            "",
            "![rounds against N](img/liveness-detect.png)",
            "![bytes per node per round against N](img/liveness-bytes.png)",
            END,
        ]
    )
    text = doc.read_text()
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + section + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n## Liveness at scale\n\n" + section + "\n"
    doc.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="liveness.jsonl", help="append figures here")
    parser.add_argument("--from", dest="source", help="figures saved by --out")
    parser.add_argument(
        "--sizes", default=",".join(map(str, SWEEP)), help="the sweep's N"
    )
    parser.add_argument(
        "--phi",
        action="store_true",
        help="add a row of the phi detector at N = 1,000 (50 rounds)",
    )
    parser.add_argument(
        "--only", default="", help="run only the rows whose label contains this"
    )
    parser.add_argument(
        "--extra", default="", help="more arguments for every run (space-separated)"
    )
    parser.add_argument(
        "--note",
        default="Measured with `python bench/liveness.py` (the commands below).",
        help="the sentence above the table in the docs (markdown)",
    )
    parser.add_argument("--docs", default=str(ROOT / "docs" / "performance.md"))
    args = parser.parse_args(argv)
    if args.source:
        rows = [json.loads(x) for x in Path(args.source).read_text().splitlines() if x]
    else:
        sizes = tuple(int(x) for x in args.sizes.split(","))
        rows = []
        with Path(args.out).open("a") as out:
            for label, run_args in configurations(sizes, args.phi):
                if args.only and args.only not in label:
                    continue
                figures = measure_one(label, run_args, args.extra.split())
                out.write(json.dumps(figures) + "\n")
                out.flush()
                print("\n".join(table([figures])[2:]), flush=True)
                rows.append(figures)
    doc = Path(args.docs)
    for path in plot(rows, doc.parent / "img"):
        print(f"wrote {path}")
    write_docs(doc, rows, args.note)
    print(f"wrote {doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
