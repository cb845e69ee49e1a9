"""Run the simulator over cluster sizes; write its table and plots into the docs.

    PYTHONPATH=. .venv/bin/python bench/simulate.py            # measure, then write
    PYTHONPATH=. .venv/bin/python bench/simulate.py --from T...  # saved tables

Measures with ``pokan.sim.simulate`` (N = 10, 100, 1000 by default; eager push on
and off; 0% and 20% loss), prints the table as it goes, then replaces the
section between the simulation markers of docs/performance.md and draws
docs/img/sim-rounds.png and docs/img/sim-bytes.png (matplotlib: the ``bench``
extra, ``pip install '.[bench]'``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pokan.sim.simulate import HEADER, Config, measure, row

BEGIN, END = "<!-- simulation-table:begin -->", "<!-- simulation-table:end -->"
ROOT = Path(__file__).resolve().parent.parent


def parse(lines: list[str]) -> list[list[str]]:
    """The data rows of a table printed by ``python -m pokan.simulate``."""
    rows = []
    for line in lines:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == HEADER.count("|") - 1 and cells[0].isdigit():
            rows.append(cells)
    return rows


def plot(rows: list[list[str]], img: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    img.mkdir(parents=True, exist_ok=True)
    series: dict[tuple[str, str], list[tuple[int, float, float, float]]] = {}
    for r in rows:
        key = (r[1], r[2])  # loss, push
        series.setdefault(key, []).append(
            (int(r[0]), float(r[3]), float(r[4]), float(r[7]))
        )

    def chart(
        column: int, ylabel: str, name: str, budget: bool, prefix: str = ""
    ) -> Path:
        """One line per (loss, push) series: ``column`` of its points against N."""
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for (loss, push), points in sorted(series.items()):
            label = f"{'push ' + push if push != '0' else 'rounds only'}, {loss} loss"
            style = ("-" if loss == "0%" else "--") + ("C0" if push != "0" else "C1")
            ax.plot(
                [p[0] for p in points],
                [p[column] for p in points],
                style,
                marker="o",
                label=prefix + label,
            )
        if budget:
            ax.axhline(
                4 * 1400, color="red", linewidth=1, label="budget: 4 x 1400 bytes"
            )
            ax.set_ylim(bottom=0)
        ax.set_xscale("log")
        ax.set_xlabel("nodes")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        path = img / name
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path

    for points in series.values():
        points.sort()
    return [
        chart(
            2,
            "rounds until one write reached every node (p99)",
            "sim-rounds.png",
            False,
            "p99, ",
        ),
        chart(3, "bytes sent per node per round (mean)", "sim-bytes.png", True),
    ]


def write_docs(doc: Path, table: list[str], command: str) -> None:
    section = "\n".join(
        [
            BEGIN,
            f"Measured with {command} (seed 1, 20 trials per row):",
            "",
            *table,
            "",
            "![rounds against N](img/sim-rounds.png)",
            "![bytes per node per round against N](img/sim-bytes.png)",
            END,
        ]
    )
    text = doc.read_text() if doc.exists() else "# Performance\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + section + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n## Simulation\n\n" + section + "\n"
    doc.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", default="10,100,1000")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument(
        "--from",
        dest="sources",
        nargs="+",
        help="tables printed earlier by python -m pokan.simulate",
    )
    parser.add_argument(
        "--command", help="how they were measured, for the docs (markdown)"
    )
    parser.add_argument("--docs", default=str(ROOT / "docs" / "performance.md"))
    args = parser.parse_args(argv)
    if args.sources:
        lines = [
            line
            for source in args.sources
            for line in Path(source).read_text().splitlines()
        ]
        command = args.command or (
            "`python -m pokan.simulate --n 10,100,1000 --push 3,0 --loss 0,0.2 > T`"
            " and `python bench/simulate.py --from T`"
        )
    else:
        lines = [HEADER, "|" + "---|" * (HEADER.count("|") - 1)]
        print("\n".join(lines), flush=True)
        for n in (int(x) for x in args.n.split(",")):
            for push in (3, 0):
                for loss in (0.0, 0.2):
                    line = row(
                        measure(Config(n=n, loss=loss, push_fanout=push), args.trials)
                    )
                    print(line, flush=True)
                    lines.append(line)
        command = f"`python bench/simulate.py --n {args.n} --trials {args.trials}`"
    rows = parse(lines)
    table = [HEADER, "|" + "---|" * (HEADER.count("|") - 1)]
    table += [line for line in lines if line.startswith("| ") and line[2].isdigit()]
    doc = Path(args.docs)
    for path in plot(rows, doc.parent / "img"):
        print(f"wrote {path}")
    write_docs(doc, table, command)
    print(f"wrote {doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
