"""Paper-style figures from result files only (a report never re-runs anything).

* ``curves``: the paper's Figure 3 — one panel per family, score vs meta-training steps on a log
  x-axis, one line per algorithm, smoothed (running mean over up to 20 evaluation points, at
  most a tenth of them), band = ± one standard error over seeds;
* ``final``: run score per family and algorithm, mean over seeds with its 95 % t-interval;
* ``aggregate``: IQM and mean of normalised scores over all families, with 95% CIs;
* ``profile``: performance profile of normalised scores;
* ``budget``: every findings row's decision at each budget checkpoint.
Each is written as PNG and PDF; the report around them is ``harness/report.py``.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from harness.aggregate import performance_profile  # noqa: E402
from harness.labels import color  # noqa: E402

PAPER_LEVELS = Path(__file__).parent / "paper_levels.toml"


def paper_levels() -> dict[str, dict[str, float]]:
    """family → algorithm → the level the paper reports (``harness/paper_levels.toml``)."""
    import tomllib

    return tomllib.loads(PAPER_LEVELS.read_text())["levels"]


def _color(algo: str, i: int) -> str:
    return color(algo, i)


def _save(fig, out: Path, name: str) -> list[str]:
    fig.tight_layout()
    files = []
    for ext in ("png", "pdf"):
        # no creation date: a rebuild from the same result files writes the same bytes
        meta = {"CreationDate": None} if ext == "pdf" else {}
        fig.savefig(out / f"{name}.{ext}", dpi=130, metadata=meta)
        files.append(f"{name}.{ext}")
    plt.close(fig)
    return files


def plot_curves(curves: pd.DataFrame, out: Path, smooth: int = 20) -> None:
    fams = sorted(curves["family"].unique())
    fig, axes = plt.subplots(1, len(fams), figsize=(4.2 * len(fams), 3.4), squeeze=False)
    for ax, fam in zip(axes[0], fams):
        sub = curves[curves["family"] == fam]
        for i, algo in enumerate(sorted(sub["algorithm"].unique())):
            g = sub[sub["algorithm"] == algo].pivot_table(
                index="step", columns="seed", values="score"
            )
            w = max(1, min(smooth, len(g) // 10))  # the paper: 20 of ~4000 points
            g = g.rolling(w, min_periods=1).mean()
            mean = g.mean(axis=1)
            se = g.std(axis=1, ddof=1) / np.sqrt(g.shape[1]) if g.shape[1] > 1 else 0 * mean
            ax.plot(g.index, mean, label=algo, color=_color(algo, i))
            ax.fill_between(
                g.index, mean - se.fillna(0), mean + se.fillna(0), alpha=0.2, color=_color(algo, i)
            )
        for algo, level in paper_levels().get(fam, {}).items():
            ax.axhline(level, ls="--", lw=1, color=_color(algo, 0), alpha=0.8)
        ax.set_xscale("symlog", linthresh=max(1, int(sub["step"][sub["step"] > 0].min() or 1)))
        ax.set_title(fam + (" (dashed: paper)" if fam in paper_levels() else ""), fontsize=9)
        ax.set_xlabel("meta-training steps")
        ax.set_ylabel("success rate" if sub["score"].between(0, 1).all() else "return")
    axes[0][-1].legend(fontsize=8)
    _save(fig, out, "curves")


def plot_final(table: pd.DataFrame, out: Path) -> None:
    fams = sorted(table["family"].unique())
    algos = sorted(table["algorithm"].unique())
    fig, axes = plt.subplots(1, len(fams), figsize=(3.4 * len(fams), 3.2), squeeze=False)
    for ax, fam in zip(axes[0], fams):
        sub = table[table["family"] == fam].set_index("algorithm").reindex(algos)
        x = np.arange(len(algos))
        err = np.vstack([sub["mean"] - sub["ci_low"], sub["ci_high"] - sub["mean"]])
        ax.bar(
            x,
            sub["mean"],
            yerr=np.nan_to_num(err),
            capsize=3,
            color=[_color(a, i) for i, a in enumerate(algos)],
        )
        ax.set_xticks(x, algos, rotation=30, fontsize=8)
        ax.set_title(f"{fam}: run score (mean, 95% t-CI)", fontsize=9)
    _save(fig, out, "final")


def plot_aggregate(agg: pd.DataFrame, out: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(8, 0.6 * len(agg) + 1.4), squeeze=False)
    for ax, stat in zip(axes[0], ("iqm", "mean")):
        y = np.arange(len(agg))
        ax.errorbar(
            agg[stat],
            y,
            xerr=[agg[stat] - agg[f"{stat}_ci_low"], agg[f"{stat}_ci_high"] - agg[stat]],
            fmt="o",
            capsize=4,
        )
        ax.set_yticks(y, agg["algorithm"])
        ax.set_xlabel(f"normalised score ({stat.upper()}, 95% CI)")
        ax.axvline(0, color="grey", lw=0.5)
    _save(fig, out, "aggregate")


def plot_profile(final: pd.DataFrame, out: Path) -> None:
    taus = np.linspace(-0.5, 1.5, 81)
    prof = performance_profile(final, taus)
    fig, ax = plt.subplots(figsize=(4.8, 3.4))
    for i, (algo, g) in enumerate(prof.groupby("algorithm")):
        ax.plot(g["tau"], g["fraction"], label=algo, color=_color(algo, i))
    ax.set_xlabel("normalised score τ")
    ax.set_ylabel("fraction of runs with score > τ")
    ax.legend(fontsize=8)
    _save(fig, out, "profile")


def plot_training(train: pd.DataFrame, out: Path) -> bool:
    """The learners' training losses (``train.csv``), mean over seeds: one panel per family ×
    algorithm, every ``*loss*`` metric on a symlog axis — where a diverging run shows."""
    train = train[train["metric"].str.contains("loss")]
    if train.empty:
        return False
    fams = sorted(train["family"].unique())
    algos = sorted(train["algorithm"].unique())
    fig, axes = plt.subplots(
        len(fams), len(algos), figsize=(3.6 * len(algos), 2.8 * len(fams)), squeeze=False
    )
    for r, fam in enumerate(fams):
        for c, algo in enumerate(algos):
            ax = axes[r][c]
            sub = train[(train["family"] == fam) & (train["algorithm"] == algo)]
            for metric, g in sub.groupby("metric"):
                m = g.groupby("step")["value"].mean()
                ax.plot(m.index, m.to_numpy(), lw=1, label=metric)
            ax.set_yscale("symlog", linthresh=1e-2)
            ax.set_title(f"{algo} · {fam}", fontsize=9)
            ax.set_xlabel("meta-training steps", fontsize=8)
            if len(sub):
                ax.legend(fontsize=6)
    _save(fig, out, "training")
    return True


def plot_online(online: pd.DataFrame, out: Path) -> None:
    """Return against online environment steps after offline adaptation: mean over the
    fine-tuned tasks, mean ± SE over seeds, one panel per family (the paper's OOD figure)."""
    fams = sorted(online["family"].unique())
    fig, axes = plt.subplots(1, len(fams), figsize=(5 * len(fams), 3.4), squeeze=False)
    for ax, fam in zip(axes[0], fams, strict=True):
        sub = online[online["family"] == fam]
        for algo, g in sub.groupby("algorithm"):
            per_seed = g.groupby(["seed", "env_steps"])["return"].mean().unstack("seed")
            m = per_seed.mean(axis=1)
            se = per_seed.std(axis=1, ddof=1) / np.sqrt(per_seed.shape[1])
            ax.plot(m.index, m.to_numpy(), label=algo)
            if per_seed.shape[1] > 1:
                ax.fill_between(m.index, (m - se).to_numpy(), (m + se).to_numpy(), alpha=0.2)
        ax.set_title(f"{fam}: online fine-tuning", fontsize=9)
        ax.set_xlabel("online environment steps")
        ax.set_ylabel("return")
        ax.legend(fontsize=7)
    _save(fig, out, "online")


DECISION_COLORS = {
    "holds": "#2ca02c",
    "fails": "#d62728",
    "inconclusive": "#bdbdbd",
    "too few runs": "#fdd0a2",
    "not run": "#ffffff",
}


def plot_budget(by_budget: pd.DataFrame, out: Path) -> bool:
    """Rows (claim · family) × budget checkpoints, coloured by the decision at each: a verdict
    that is a property of the budget shows as a row that changes colour."""
    if by_budget.empty:
        return False
    keys = list(dict.fromkeys(zip(by_budget["claim"], by_budget["family"], strict=True)))
    qs = sorted(by_budget["checkpoint"].unique())
    cell = {(r.claim, r.family, r.checkpoint): r.decision for r in by_budget.itertuples()}
    fig, ax = plt.subplots(figsize=(2.2 + 1.1 * len(qs) + 3.5, 0.28 * len(keys) + 1.2))
    for i, (claim, fam) in enumerate(keys):
        for j, q in enumerate(qs):
            d = cell.get((claim, fam, q), "not run")
            ax.add_patch(
                plt.Rectangle((j, i), 1, 1, color=DECISION_COLORS.get(d, "#ffffff"), ec="grey")
            )
    ax.set_xlim(0, len(qs))
    ax.set_ylim(len(keys), 0)
    ax.set_xticks(np.arange(len(qs)) + 0.5, [f"{q:.0%}" for q in qs], fontsize=8)
    ax.set_yticks(np.arange(len(keys)) + 0.5, [f"{c} · {f}" for c, f in keys], fontsize=7)
    ax.set_xlabel("budget checkpoint (share of each run's steps)", fontsize=8)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c, ec="grey") for c in DECISION_COLORS.values()]
    ax.legend(
        handles, list(DECISION_COLORS), fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0)
    )
    _save(fig, out, "budget")
    return True


def plot_tuning(tuning: pd.DataFrame, out: Path) -> None:
    """Validation score against the outer-rate grid value, one panel per algorithm."""
    algos = sorted(tuning["algorithm"].unique())
    fig, axes = plt.subplots(1, len(algos), figsize=(2.8 * len(algos), 2.8), squeeze=False)
    for i, (ax, algo) in enumerate(zip(axes[0], algos, strict=True)):
        g = tuning[tuning["algorithm"] == algo].sort_values("lr")
        ax.errorbar(
            g["lr"], g["mean"], yerr=g["se"].fillna(0), fmt="o-", capsize=3, color=_color(algo, i)
        )
        ax.set_xscale("log")
        ax.set_title(algo, fontsize=9)
        ax.set_xlabel("outer learning rate (largest)", fontsize=8)
    axes[0][0].set_ylabel("validation score (normalised)")
    _save(fig, out, "tuning")
