"""Outer learning rates by one rule for every algorithm, on tasks that are never test tasks.

The protocol (the ``tune`` suite, ``python -m harness tune``):

1. every algorithm meta-trains at each value of one grid (:data:`GRID` unless the suite's
   ``[tune] grid`` says otherwise), at the reference's budget and settings, with the same seeds;
2. its **outer rates** — the learner's ``outer_rates``, the optimisers that meta-train its
   networks — move together, **keeping the authors' ratios**: the grid value is the largest of
   them and the others keep their default ratio to it (MACAW's value network stays 10× slower
   than its policy, FOCAL's ``c_lr`` 3× slower than its actor), because those ratios are part
   of each method's design and the grid then asks one question of all: how large a step;
3. each run trains on the family's train tasks less its validation tasks and is scored on the
   validation tasks (``split = "validation"``; ``harness.runner.validation_tasks``), by the
   suite's primary score; a test task is never seen;
4. per algorithm the rule picks the grid value with the highest mean score over seeds (an
   exact tie: the smaller rate), and ``--write`` writes the chosen rates into the reference
   suite. Every algorithm gets the same grid, seeds and budget: an equal tuning budget.
"""

from __future__ import annotations

import math
import re
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from algorithms.base import learner_class
from harness.runner import RunConfig

GRID = (1e-4, 3e-4, 1e-3)
"""The outer-rate grid (the largest outer rate of each algorithm), the same for all."""

MARK = "# outer learning rates: chosen by `python -m harness tune --write` from reports/tuning/"


def scaled_rates(algorithm: str, value: float) -> dict[str, float]:
    """The learner's outer rates at grid ``value``: the largest default rate becomes ``value``,
    every other one keeps its default ratio to it."""
    cls = learner_class(algorithm)
    if not cls.outer_rates:
        raise ValueError(f"learner {cls.name} declares no outer_rates: it cannot be tuned")
    defaults = {f.name: f.default for f in fields(cls.Config) if f.name in cls.outer_rates}
    top = max(defaults.values())
    return {k: float(f"{value * v / top:.6g}") for k, v in defaults.items()}


def grid_label(algorithm: str, value: float) -> str:
    """The variant label of one grid point, e.g. ``macaw@3e-04`` (grid values have one
    significant digit, so the label names the value exactly; suites are checked for it)."""
    label = f"{algorithm}@{value:.0e}"
    if float(f"{value:.0e}") != value:
        raise ValueError(f"grid value {value!r}: use one significant digit (e.g. 3e-4)")
    return label


def grid_runs(runs: list[RunConfig], grid: tuple[float, ...] = GRID) -> list[RunConfig]:
    """Each run of the tune suite at every grid value (its label naming the point)."""
    out = []
    for r in runs:
        name = learner_class(r.algorithm).name
        for g in grid:
            learner = {**r.learner, **scaled_rates(r.algorithm, g)}
            out.append(
                RunConfig(**{**r.to_json(), "learner": learner, "label": grid_label(name, g)})
            )
    return out


def parse_label(label: str) -> tuple[str, float] | None:
    """(algorithm, grid value) of a grid label; ``None`` for any other name."""
    m = re.fullmatch(r"(.+)@(\d(?:\.\d+)?e[-+]\d+)", str(label))
    return (m.group(1), float(m.group(2))) if m else None


TUNING_COLUMNS = ["algorithm", "lr", "seeds", "mean", "se", "rates"]


def tuning_table(final: pd.DataFrame, column: str) -> pd.DataFrame:
    """Per (algorithm, grid value): the validation score under ``column`` (the primary score),
    mean ± SE over seeds, and the rates the point set."""
    rows = []
    for label, g in final.groupby("algorithm"):
        parsed = parse_label(label)
        if parsed is None:
            continue
        algo, lr = parsed
        x = g[column].dropna().to_numpy(float)
        rows.append(
            {
                "algorithm": algo,
                "lr": lr,
                "seeds": len(x),
                "mean": float(x.mean()) if len(x) else np.nan,
                "se": float(x.std(ddof=1) / math.sqrt(len(x))) if len(x) > 1 else np.nan,
                "rates": ", ".join(f"{k} {v:g}" for k, v in scaled_rates(algo, lr).items()),
            }
        )
    table = pd.DataFrame(rows, columns=TUNING_COLUMNS)
    return table.sort_values(["algorithm", "lr"]).reset_index(drop=True)


def choose(
    table: pd.DataFrame, grid: tuple[float, ...] | None = None, seeds: int | None = None
) -> dict[str, float | None]:
    """algorithm → the chosen grid value: the highest mean validation score, an exact tie to the
    smaller rate; ``None`` until every grid point has ``seeds`` finished runs. By default the
    grid is every value any algorithm ran and ``seeds`` the most any point has: every
    algorithm is chosen on the same grid and the same number of seeds."""
    if table.empty:
        return {}
    grid = tuple(sorted(table["lr"].unique())) if grid is None else grid
    seeds = int(table["seeds"].max()) if seeds is None else seeds
    out: dict[str, float | None] = {}
    for algo, g in table.groupby("algorithm"):
        complete = set(g.loc[g["seeds"] >= seeds, "lr"]) >= set(grid)
        if not complete:
            out[algo] = None
            continue
        g = g[g["lr"].isin(grid)].sort_values("lr")
        out[algo] = float(g.loc[g["mean"].idxmax(), "lr"]) if g["mean"].notna().any() else None
    return out


def write_choice(suite: Path, choice: dict[str, float], report: str = "reports/tuning/") -> None:
    """Write each chosen algorithm's outer rates into its ``[learner.<name>]`` table of
    ``suite`` (created where missing), marked with a comment naming the tuning report; other
    keys and the rest of the file are kept."""
    text = Path(suite).read_text()
    for algo, value in sorted(choice.items()):
        rates = scaled_rates(algo, value)
        head = f"[learner.{algo}]"
        lines = [f"{MARK} ({algo}: grid value {value:g})", head]
        if head not in text:
            text = text.rstrip("\n") + "\n\n" + "\n".join(lines) + "\n"
        start = text.index(head)
        end = text.find("\n[", start + len(head))
        end = len(text) if end < 0 else end + 1
        body = [
            ln
            for ln in text[start:end].splitlines()
            if ln.split("=")[0].strip() not in rates and not ln.startswith(MARK)
        ]
        table = [body[0], *(f"{k} = {v:g}" for k, v in rates.items()), *body[1:]]
        before = text[:start].rstrip("\n").splitlines()
        while before and before[-1].startswith(MARK):
            before.pop()
        text = (
            "\n".join(before)
            + ("\n\n" if before else "")
            + f"{MARK} ({algo}: grid value {value:g})\n"
            + "\n".join(table)
            + "\n"
            + text[end:]
        )
    Path(suite).write_text(text)


def describe_choice(choice: dict[str, Any], grid: tuple[float, ...] | None = None) -> str:
    """One line; a choice at an end of the grid says so (the best rate may lie beyond it)."""

    def one(a: str, v: float | None) -> str:
        if v is None:
            return f"{a} pending"
        edge = ""
        if grid and v == max(grid):
            edge = " (the grid's largest: the best rate may lie above it)"
        elif grid and v == min(grid):
            edge = " (the grid's smallest: the best rate may lie below it)"
        return f"{a} {v:g}{edge}"

    return "; ".join(one(a, v) for a, v in sorted(choice.items()))


def display(table: pd.DataFrame) -> pd.DataFrame:
    """The tuning table with each grid value written as its label writes it (1e-04)."""
    return table.assign(lr=table["lr"].map(lambda v: f"{v:.0e}"))
