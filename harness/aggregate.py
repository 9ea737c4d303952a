"""Tidy rows → per-seed scores → tables with honest uncertainty (Agarwal et al., 2021 style).

* per seed: mean over the family's test tasks at each evaluation step;
* scores normalised per family: 0 = the uniform random policy, 1 = the best behaviour episodes of
  the test tasks' data (both recorded in every row, so this needs no re-run);
* across seeds: mean and standard error; interquartile mean (IQM) with a stratified-bootstrap 95%
  confidence interval (runs resampled with replacement within each family).

All functions are pure table → table or array → number; the rng is passed explicitly.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

RUN_KEYS = ["suite", "algorithm", "family", "seed"]


def per_seed_curves(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, step): scores averaged over test tasks, raw and normalised."""
    df = rows.copy()
    success = df["post_success"].notna() & (df["post_success"].astype(str) != "")
    df["score"] = np.where(success, df["post_success"], df["post_return"])
    df["pre_score"] = np.where(success, df["pre_success"], df["pre_return"])
    df["random_score"] = np.where(success, df["random_success"], df["random_return"])
    cols = ["score", "pre_score", "random_score", "behaviour_best"]
    out = df.groupby([*RUN_KEYS, "step"], as_index=False)[cols].mean(numeric_only=True)
    span = (out["behaviour_best"] - out["random_score"]).where(lambda s: s.abs() > 1e-8)
    out["normalized"] = (out["score"] - out["random_score"]) / span
    out["pre_normalized"] = (out["pre_score"] - out["random_score"]) / span
    return out


def final_scores(curves: pd.DataFrame) -> pd.DataFrame:
    """The last evaluation point of every run."""
    last = curves.groupby(RUN_KEYS)["step"].transform("max")
    return curves[curves["step"] == last].reset_index(drop=True)


def iqm(x: np.ndarray) -> float:
    """Interquartile mean: the mean of the middle 50% (scipy's trim_mean(x, 0.25)).

    Missing scores (NaN: a run that did not finish) are left out, never sorted in as the
    largest score and trimmed away."""
    x = np.asarray(x, dtype=float).ravel()
    x = np.sort(x[~np.isnan(x)])
    n = len(x)
    if n == 0:
        return float("nan")
    cut = int(0.25 * n)
    return float(x[cut : n - cut].mean())


def stratified_bootstrap_ci(
    scores: np.ndarray,
    func: Callable[[np.ndarray], float],
    reps: int = 2000,
    rng: np.random.Generator | None = None,
    level: float = 0.95,
) -> tuple[float, float, float]:
    """Point estimate and CI of ``func`` over a ``(runs × tasks)`` score matrix.

    Runs are resampled with replacement independently within each task (column), as in
    rliable's ``get_interval_estimates``.
    """
    rng = rng or np.random.default_rng(0)
    scores = np.asarray(scores, dtype=float)
    n_runs, n_tasks = scores.shape
    idx = rng.integers(0, n_runs, size=(reps, n_runs, n_tasks))
    samples = np.take_along_axis(scores[None].repeat(reps, 0), idx, axis=1)
    stats = np.array([func(s) for s in samples])
    lo, hi = np.nanpercentile(stats, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return func(scores), float(lo), float(hi)


def score_matrix(final: pd.DataFrame, algorithm: str, column: str = "normalized") -> np.ndarray:
    """``(seeds × families)`` matrix of one algorithm's final scores (families as columns)."""
    sub = final[final["algorithm"] == algorithm]
    table = sub.pivot_table(index="seed", columns="family", values=column)
    return table.to_numpy()


def results_table(final: pd.DataFrame, rng: np.random.Generator | None = None) -> pd.DataFrame:
    """Per algorithm × family: final score mean ± SE, IQM with bootstrap CI, normalised mean."""
    rng = rng or np.random.default_rng(0)
    rows = []
    for (algo, fam), g in final.groupby(["algorithm", "family"]):
        s = g["score"].to_numpy()
        point, lo, hi = stratified_bootstrap_ci(s[:, None], iqm, rng=rng)
        rows.append(
            {
                "algorithm": algo,
                "family": fam,
                "seeds": len(s),
                "mean": s.mean(),
                "se": s.std(ddof=1) / np.sqrt(len(s)) if len(s) > 1 else np.nan,
                "iqm": point,
                "iqm_ci_low": lo,
                "iqm_ci_high": hi,
                "pre_adaptation": g["pre_score"].mean(),
                "normalized_mean": g["normalized"].mean(),
            }
        )
    return pd.DataFrame(rows)


def aggregate_table(final: pd.DataFrame, rng: np.random.Generator | None = None) -> pd.DataFrame:
    """Per algorithm, over all families: IQM and mean of normalised scores with 95% CIs."""
    rng = rng or np.random.default_rng(0)
    rows = []
    for algo in sorted(final["algorithm"].unique()):
        m = score_matrix(final, algo)
        m = m[:, ~np.isnan(m).all(0)]
        q, qlo, qhi = stratified_bootstrap_ci(m, iqm, rng=rng)
        mu, mlo, mhi = stratified_bootstrap_ci(m, lambda x: float(np.nanmean(x)), rng=rng)
        rows.append(
            {
                "algorithm": algo,
                "iqm": q,
                "iqm_ci_low": qlo,
                "iqm_ci_high": qhi,
                "mean": mu,
                "mean_ci_low": mlo,
                "mean_ci_high": mhi,
            }
        )
    return pd.DataFrame(rows)


def performance_profile(final: pd.DataFrame, taus: np.ndarray) -> pd.DataFrame:
    """Fraction of runs (family × seed) whose normalised score exceeds τ, per algorithm."""
    out = []
    for algo, g in final.groupby("algorithm"):
        x = g["normalized"].to_numpy()
        out += [{"algorithm": algo, "tau": t, "fraction": float(np.mean(x > t))} for t in taus]
    return pd.DataFrame(out)


def to_markdown(df: pd.DataFrame, digits: int = 2) -> str:
    """A small markdown table (no optional 'tabulate' dependency)."""
    cols = list(df.columns)
    fmt = [
        [f"{v:.{digits}f}" if isinstance(v, float) else str(v) for v in row]
        for row in df.itertuples(index=False)
    ]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(r) + " |" for r in fmt]
    return "\n".join(lines)
