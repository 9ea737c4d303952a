"""Speed report from a pytest-benchmark JSON file: cost curves and same-run ratios, no re-runs.

``tox -e bench -- --benchmark-json=reports/speed/bench.json`` measures; ``python -m harness
speed reports/speed/bench.json`` turns the file into ``speed.csv`` (one row per benchmark:
median seconds, the sweep it belongs to and its x), ``scaling.png`` (a learner's step cost
against tasks per batch, batch size and width; an evaluation point against test tasks) and
``README.md`` (the ratios each benchmark measured against its in-run reference, and the machine).
Pure functions over the file's rows, as the result reports are over metric CSVs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from harness.aggregate import to_markdown  # noqa: E402

SWEEP_LABELS = {
    "tasks": "tasks per meta-batch",
    "batch": "rows per task (outer batch)",
    "width": "hidden width",
    "eval_tasks": "test tasks (one evaluation point, MACAW)",
}


def load_benchmarks(path: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """One row per benchmark (name, median s, extra info) and the run's machine info."""
    try:
        doc = json.loads(Path(path).read_text())
        rows = [
            {"name": b["name"], "median_s": b["stats"]["median"], **b.get("extra_info", {})}
            for b in doc["benchmarks"]
        ]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a pytest-benchmark JSON file ({e})") from e
    return pd.DataFrame(rows), doc.get("machine_info", {})


def sweep_table(df: pd.DataFrame) -> pd.DataFrame:
    """The sweep rows only: learner, sweep, x, median seconds, and cost relative to the sweep's
    smallest x (how cost grows, independent of the machine's absolute speed)."""
    if "sweep" not in df:
        return pd.DataFrame(columns=["learner", "sweep", "x", "median_s", "relative"])
    s = df[df["sweep"].notna()].copy()
    s["learner"] = s.get("learner", pd.Series(index=s.index, dtype=object)).fillna("macaw")
    s = s.sort_values(["learner", "sweep", "x"])
    first = s.groupby(["learner", "sweep"])["median_s"].transform("first")
    s["relative"] = s["median_s"] / first
    return s[["learner", "sweep", "x", "median_s", "relative"]].reset_index(drop=True)


def ratio_table(df: pd.DataFrame) -> pd.DataFrame:
    """Every same-run ratio a benchmark recorded (``speedup_vs_*`` in its extra info), and how:
    the median of ``ratio_pairs`` rounds with the two alternating where the benchmark says so
    (a drifting host's speed cancels in it), else the ratio of two benchmarks' medians."""
    cols = [c for c in df.columns if c.startswith("speedup_vs_")]
    out = []
    for _, r in df.iterrows():
        pairs = r.get("ratio_pairs")
        how = f"interleaved, {int(pairs)} pairs" if pd.notna(pairs) else "two medians"
        for c in cols:
            if pd.notna(r.get(c)):
                ref = c.removeprefix("speedup_vs_").replace("_", " ")
                out.append(
                    {"benchmark": r["name"], "against": ref, "ratio": float(r[c]), "measured": how}
                )
    return pd.DataFrame(out, columns=["benchmark", "against", "ratio", "measured"])


ROOFLINE_COLUMNS = {
    "meta_step": [
        "learner",
        "gflop",
        "ms",
        "gflops",
        "limit_gflops_1t",
        "limit_gflops_2t",
        "fraction",
        "dominant",
    ],
    "evaluation_point": [
        "learner",
        "ms",
        "sim_ms",
        "learner_ms",
        "gflop",
        "gflops",
        "limit_gflops_1t",
        "fraction",
    ],
}
"""the roofline benchmarks' rows (``tests/benchmarks/test_bench_roofline.py``), by kind"""


def roofline_table(df: pd.DataFrame, kind: str) -> pd.DataFrame:
    """The roofline rows of one kind (``meta_step`` or ``evaluation_point``), one per learner:
    FLOPs, time, achieved GFLOP/s, the limit of the step's own products replayed alone and the
    fraction of it reached."""
    cols = ROOFLINE_COLUMNS[kind]
    if "roofline" not in df:
        return pd.DataFrame(columns=cols)
    rows = df[df["roofline"] == kind]
    return rows[[c for c in cols if c in rows]].reset_index(drop=True)


def plot_roofline(table: pd.DataFrame, path: Path) -> None:
    """Bars: each learner's fraction of its own products' one-thread limit."""
    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    order = table.sort_values("fraction")
    ax.barh(order["learner"], order["fraction"], color="tab:blue")
    for y, (f, g) in enumerate(zip(order["fraction"], order["gflops"], strict=True)):
        ax.text(f, y, f" {f:.0%} ({g:.0f} GFLOP/s)", va="center", fontsize=8)
    ax.axvline(1.0, color="k", lw=0.8, ls="--")
    ax.set_xlim(0, max(1.15, float(order["fraction"].max()) * 1.35))
    ax.set_xlabel("fraction of the limit: the step's own matrix products replayed alone, 1 thread")
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_scaling(table: pd.DataFrame, path: Path) -> None:
    """One panel per sweep, one line per learner, log-log."""
    sweeps = [s for s in SWEEP_LABELS if s in set(table["sweep"])]
    fig, axes = plt.subplots(1, len(sweeps), figsize=(4.2 * len(sweeps), 3.4), squeeze=False)
    for ax, sweep in zip(axes[0], sweeps, strict=True):
        part = table[table["sweep"] == sweep]
        for learner, g in part.groupby("learner"):
            ax.plot(g["x"], g["median_s"] * 1e3, marker="o", label=learner)
        ax.set_xscale("log")
        ax.set_yscale("log")
        xs = sorted(set(part["x"]))
        ax.set_xticks(xs, [f"{x:g}" for x in xs])
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_xlabel(SWEEP_LABELS[sweep])
        ax.set_ylabel("ms per step" if sweep != "eval_tasks" else "ms per evaluation point")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def build_speed_report(bench_json: Path, out: Path) -> Path:
    df, machine = load_benchmarks(bench_json)
    out.mkdir(parents=True, exist_ok=True)
    sweeps, ratios = sweep_table(df), ratio_table(df)
    df.to_csv(out / "speed.csv", index=False)
    lines = ["# Speed", ""]
    cpu = machine.get("cpu", {})
    lines += [
        f"Measured on {cpu.get('brand_raw', 'unknown CPU')} "
        f"({machine.get('node', '?')}, Python {machine.get('python_version', '?')}); "
        f"source: `{Path(bench_json).name}`.",
        "",
        "## Ratios against a reference measured in the same run",
        "",
        to_markdown(ratios) if len(ratios) else "(none)",
        "",
    ]
    steps, points = roofline_table(df, "meta_step"), roofline_table(df, "evaluation_point")
    if len(steps):
        plot_roofline(steps, out / "roofline.png")
        lines += [
            "## Roofline: each meta-step against this machine's limit (one thread)",
            "",
            "FLOPs of one meta-step (FlopCounterMode: products and attention, forward and "
            "backward), its median time, the achieved GFLOP/s, and the limit: the step's own "
            "matrix products replayed alone as plain float32 products, at one thread and at two "
            "(`harness/roofline.py`). `dominant`: the product shape (batch × m × k × n) with the "
            "largest FLOP share.",
            "",
            "![roofline](roofline.png)",
            "",
            to_markdown(steps),
            "",
        ]
    if len(points):
        lines += [
            "## An evaluation point: simulator against learner (cheetah-vel, one thread)",
            "",
            "5 test tasks, prior and adapted policies: `sim_ms` inside the environments' `step` "
            "and `reset`, `learner_ms` the rest (adaptation and acting); the learner's FLOPs "
            "against its own products' limit.",
            "",
            to_markdown(points),
            "",
        ]
    if len(sweeps):
        plot_scaling(sweeps, out / "scaling.png")
        lines += [
            "## How cost grows (one thread)",
            "",
            "![scaling](scaling.png)",
            "",
            to_markdown(sweeps.assign(ms=sweeps["median_s"] * 1e3).drop(columns="median_s")),
            "",
        ]
    (out / "README.md").write_text("\n".join(lines))
    return out / "README.md"
