"""Paper-style figures from result files only (a report never re-runs anything).

* ``curves``: the paper's Figure 3 — one panel per family, score vs meta-training steps on a log
  x-axis, one line per algorithm, smoothed (running mean over up to 20 evaluation points, at
  most a tenth of them), band = ± one standard error over seeds;
* ``final``: run score per family and algorithm, mean over seeds with its 95 % t-interval;
* ``aggregate``: IQM and mean of normalised scores over all families, with 95% CIs;
* ``profile``: performance profile of normalised scores.
Each is written as PNG and PDF.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from harness.aggregate import (  # noqa: E402
    LAST_K,
    ONLINE_LAST,
    RUN_KEYS,
    aggregate_table,
    online_gains,
    per_seed_curves,
    performance_profile,
    results_table,
    run_costs,
    run_scores,
    to_markdown,
)
from harness.findings import ALPHA, findings_table  # noqa: E402
from harness.power import describe, plan_table  # noqa: E402

PAPER_LEVELS = Path(__file__).parent / "paper_levels.toml"


def paper_levels() -> dict[str, dict[str, float]]:
    """family → algorithm → the level the paper reports (``harness/paper_levels.toml``)."""
    import tomllib

    return tomllib.loads(PAPER_LEVELS.read_text())["levels"]


COLORS = {"macaw": "#1f77b4", "meta-bc": "#ff7f0e", "mt-ft": "#2ca02c", "pearl": "#d62728"}


def _color(algo: str, i: int) -> str:
    return COLORS.get(algo, plt.get_cmap("tab10")(4 + i % 6))


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


def _cost_section(rows: pd.DataFrame, out: Path) -> list[str]:
    """The report's "Cost" section and ``costs.csv``: measured CPU-hours per algorithm and
    family, and what the whole costs on 2 cores and on N workers."""
    if "wall_time" not in rows:
        return []
    costs = run_costs(rows)
    if costs.empty:
        return []
    costs.to_csv(out / "costs.csv", index=False)
    total, longest = costs["cpu_hours"].sum(), costs["longest_min"].max() / 60.0
    spans = ", ".join(f"{n} workers ≈ {max(longest, total / n):.1f} h" for n in (2, 16, 64))
    return [
        "## Cost",
        "",
        "Measured from the runs themselves: a run's wall time is its last metric row's "
        "`wall_time` (training and its evaluation points, resumes summed, one thread per "
        "worker), so its CPU time on the machine it ran on; the final multi-draw scoring and "
        "online fine-tuning after it are not counted. "
        f"All {int(costs['runs'].sum())} runs: **{total:.1f} CPU-hours**. Run on N workers "
        "(`--workers`, Ray or SLURM: docs/running.md), the wall time is about CPU-hours / N "
        f"and never below the longest run ({longest:.1f} h): {spans}.",
        "",
        to_markdown(costs),
        "",
    ]


def build_report(
    rows: pd.DataFrame,
    out: Path,
    title: str,
    include_partial: bool = False,
    train: pd.DataFrame | None = None,
    draws: pd.DataFrame | None = None,
    online: pd.DataFrame | None = None,
) -> Path:
    """Figures, tables (CSV + markdown) and a README.md embedding them, under ``out``.

    Runs without ``done.json`` (column ``finished``) are drawn in the curves but left out of
    the score tables and the findings unless ``include_partial``; the README lists them.
    ``train``: the runs' training logs (:func:`harness.runner.load_train_logs`), drawn as loss
    curves when given; ``draws``: their multi-draw final rows
    (:func:`harness.runner.load_final_draws`), a robustness column when given; ``online``:
    their online fine-tuning rows (:func:`harness.runner.load_online`), drawn and tested.
    """
    out.mkdir(parents=True, exist_ok=True)
    curves = per_seed_curves(rows)
    if "finished" not in rows:
        rows = rows.assign(finished=True)
    status = rows.groupby(RUN_KEYS)[["finished", "step"]].agg({"finished": "all", "step": "max"})
    partial = status[~status["finished"]].reset_index()
    final = run_scores(curves, draws=draws)
    if not include_partial and len(partial):
        keep = final.merge(status.reset_index()[[*RUN_KEYS, "finished"]], on=RUN_KEYS)
        final = keep[keep["finished"]].drop(columns="finished").reset_index(drop=True)
    if final.empty:
        raise ValueError(
            f"no finished runs to report in {title} ({len(partial)} partial; "
            "use --include-partial to report them)"
        )
    has_online = online is not None and len(online) > 0
    if has_online:
        final = final.merge(online_gains(online), on=RUN_KEYS, how="left")
    table = results_table(final)
    agg = aggregate_table(final)
    findings = findings_table(final)
    plan = plan_table(final)
    final.to_csv(out / "runs.csv", index=False)
    findings.to_csv(out / "findings.csv", index=False)
    plan.to_csv(out / "plan.csv", index=False)
    table.to_csv(out / "results.csv", index=False)
    agg.to_csv(out / "aggregate.csv", index=False)
    curves.to_csv(out / "curves.csv", index=False)
    plot_curves(curves, out)
    plot_final(table, out)
    plot_aggregate(agg, out)
    plot_profile(final, out)
    has_training = train is not None and plot_training(train, out)
    n_runs = final.groupby(["algorithm", "family", "seed"]).ngroups
    points = sorted(final["points"].unique())
    n_tests = int(findings["p"].notna().sum())
    notes = out / "NOTES.md"  # kept by hand (a campaign log, data notes): survives rebuilds
    text = [
        f"# {title}",
        "",
        *([notes.read_text().strip(), ""] if notes.exists() else []),
        f"{n_runs} runs: {', '.join(sorted(final['algorithm'].unique()))} on "
        f"{', '.join(sorted(final['family'].unique()))}, seeds "
        f"{', '.join(str(s) for s in sorted(final['seed'].unique()))}. Every algorithm of a "
        "family adapted on byte-identical adaptation sets (sha256 in the metric rows).",
        "",
        "**Run score**: the return (or Meta-World success rate) after adaptation, mean over "
        f"test tasks, averaged over the run's last {'/'.join(map(str, points))} evaluation "
        f"points after step 0 (the last {LAST_K}, or the last half of a shorter curve): one "
        "point is one episode per task after one adaptation draw, too noisy to score a run "
        "alone. `final_point`: the last point alone; `multi_draw` (where recorded): the "
        "final learner over several independent adaptation draws. Normalised: 0 = uniform "
        "random policy (one score per family), 1 = best behaviour episodes of the test tasks' "
        "data. Per family: mean ± SE over seeds with a 95 % t-interval; across families: IQM "
        "and mean with 95 % stratified-bootstrap CIs (50 000 resamples).",
        "",
        "![learning curves](curves.png)",
        "",
        "## Run scores",
        "",
        to_markdown(table),
        "",
        "![final](final.png)",
        "",
        "## Aggregate over families (normalised)",
        "",
        to_markdown(agg),
        "",
        "![aggregate](aggregate.png)",
        "",
        "![performance profile](profile.png)",
        "",
        "## The claims, from these results",
        "",
        f"Each (claim, family) row: a two-sided exact Mann–Whitney test of the two arms' "
        f"normalised run scores (an exact permutation test of the same statistic where scores "
        f"tie), Holm-adjusted over the {n_tests} rows below. *holds* / *fails*: adjusted p ≤ "
        f"{ALPHA:g} with the effect on / against the claimed side; *too few runs*: even a "
        "complete separation could not reach the level Holm needs here; *inconclusive*: it "
        "could have, and did not. A claim over several families holds only where every "
        "family's row holds (its `all N` row). A `≥` claim is a non-inferiority test with the "
        "margin shown. P(X > Y) and its bootstrap CI are the effect size, not the rule.",
        "",
        to_markdown(findings) if len(findings) else "No claim is answerable here.",
        "",
        "## Seeds each claim needs",
        "",
        describe("exact", ALPHA, 0.8, max(1, n_tests)),
        "",
        to_markdown(plan) if len(plan) else "No claim is answerable here.",
        "",
    ]
    text += _cost_section(rows, out)
    if has_online:
        plot_online(online, out)
        gains = final.dropna(subset=["online_gain"])
        summary = gains.groupby(["algorithm", "family"])["online_gain"].agg(
            ["count", "mean", "sem"]
        )
        text += [
            "## Online fine-tuning",
            "",
            "After training, per fine-tuned test task: the offline adaptation, then rounds of 3 "
            "scored episodes and one exploration trajectory added to the task's buffer "
            "(harness/online.py). `online_gain`: the mean return of the last "
            f"{ONLINE_LAST} rounds minus round 0's, normalised, mean over tasks; tested by the "
            "claims above with `score = online_gain`. Learners without online fine-tuning: "
            + (", ".join(sorted(set(final["algorithm"]) - set(gains["algorithm"]))) or "none")
            + ".",
            "",
            to_markdown(summary.reset_index().rename(columns={"count": "seeds"})),
            "",
            "![online fine-tuning](online.png)",
            "",
        ]
    if has_training:
        text += [
            "## Training losses",
            "",
            "From each run's `train.csv`, mean over seeds.",
            "",
            "![training losses](training.png)",
            "",
        ]
    if len(partial):
        text += [
            "## Partial runs",
            "",
            "Not finished, so "
            + ("included as they stand" if include_partial else "left out of the tables")
            + ": "
            + ", ".join(
                f"{r.algorithm} {r.family} seed {r.seed} (partial: stopped at step {r.step})"
                for r in partial.itertuples()
            ),
            "",
        ]
    text += [
        "Rebuild from the result files with `python -m harness report <results>/<suite>`.",
    ]
    (out / "README.md").write_text("\n".join(text) + "\n")
    return out
