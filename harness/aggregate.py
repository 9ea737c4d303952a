"""Tidy rows → per-seed curves → run scores → tables with honest uncertainty.

* per seed: mean over the family's test tasks at each evaluation step;
* scores normalised per family: 0 = the uniform random policy (one score per family: its mean
  over every evaluation row of the family, so one run's seed does not move another's zero),
  1 = the best behaviour episodes of the test tasks' data;
* **the run score**: the mean of the last ``k`` evaluation points after step 0 (default 5; a
  run with fewer uses the last half of them). One point is one episode per test task after one
  adaptation draw, and 80–100 % of its variance was evaluation-to-evaluation swing in the
  reference runs; averaging the curve's end needs no retraining. Beside it, the single final
  point (as the paper reads Figure 3) and, where a run recorded it, the multi-draw final score
  (the final learner evaluated on several independent adaptation draws);
* across seeds: mean ± SE with a t-interval (honest at 3 seeds, where a bootstrap of 3 runs is
  not); across families: IQM and mean with a stratified bootstrap (50 000 resamples);
* per (algorithm, family): the **trend** at the end of the budget (rising, flat, falling or
  undetermined; the seed is the replicate) and the **noise split** of the final learner's
  scores (evaluation noise against seed-to-seed variation).

All functions are pure table → table or array → number; the rng is passed explicitly.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy import stats

RUN_KEYS = ["suite", "algorithm", "family", "seed"]
LAST_K = 5
BOOTSTRAP_REPS = 50_000  # rliable's default


def per_seed_curves(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, step): scores averaged over test tasks, raw and normalised."""
    df = rows.copy()
    success = df["post_success"].notna() & (df["post_success"].astype(str) != "")
    df["score"] = np.where(success, df["post_success"], df["post_return"])
    df["pre_score"] = np.where(success, df["pre_success"], df["pre_return"])
    df["random_score"] = np.where(success, df["random_success"], df["random_return"])
    cols = ["score", "pre_score", "random_score", "behaviour_best"]
    out = df.groupby([*RUN_KEYS, "step"], as_index=False)[cols].mean(numeric_only=True)
    out["random_score"] = out.groupby("family")["random_score"].transform("mean")
    span = (out["behaviour_best"] - out["random_score"]).where(lambda s: s.abs() > 1e-8)
    out["normalized"] = (out["score"] - out["random_score"]) / span
    out["pre_normalized"] = (out["pre_score"] - out["random_score"]) / span
    return out


def final_scores(curves: pd.DataFrame) -> pd.DataFrame:
    """The last evaluation point of every run."""
    last = curves.groupby(RUN_KEYS)["step"].transform("max")
    return curves[curves["step"] == last].reset_index(drop=True)


def points_used(n_after_zero: int, k: int = LAST_K) -> int:
    """How many of a run's last evaluation points its score averages: ``k``, or the last half
    (rounded up) of a shorter curve; step 0 never counts."""
    return k if n_after_zero >= k else max(1, math.ceil(n_after_zero / 2))


def run_scores(
    curves: pd.DataFrame, k: int = LAST_K, draws: pd.DataFrame | None = None
) -> pd.DataFrame:
    """One row per run: its score (mean of the last evaluation points, :func:`points_used`),
    the single final point beside it, and the multi-draw final score where ``draws`` has it."""
    rows = []
    for key, g in curves.sort_values("step").groupby(RUN_KEYS, sort=True):
        after = g[g["step"] > 0]
        use = after.tail(points_used(len(after), k)) if len(after) else g.tail(1)
        last = g.iloc[-1]
        rows.append(
            {
                **dict(zip(RUN_KEYS, key, strict=True)),
                "step": int(last["step"]),
                "points": len(use),
                "score": use["score"].mean(),
                "normalized": use["normalized"].mean(),
                "pre_score": use["pre_score"].mean(),
                "pre_normalized": use["pre_normalized"].mean(),
                "final_point": last["score"],
                "final_point_normalized": last["normalized"],
                "random_score": last["random_score"],
                "behaviour_best": last["behaviour_best"],
            }
        )
    out = pd.DataFrame(rows)
    if draws is not None and len(draws) and len(out):
        md = multi_draw_scores(draws, curves)
        out = out.merge(md, on=RUN_KEYS, how="left")
    return out


def multi_draw_scores(draws: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    """Per run: the final learner's score averaged over its adaptation draws and test tasks,
    raw and normalised with the family's zero and one of ``curves``."""
    success = draws["post_success"].notna() & (draws["post_success"].astype(str) != "")
    d = draws.assign(s=np.where(success, draws["post_success"], draws["post_return"]))
    per_run = d.groupby(RUN_KEYS, as_index=False).agg(
        multi_draw=("s", "mean"), draws=("draw", "nunique")
    )
    scale = curves.groupby("family")[["random_score", "behaviour_best"]].mean().reset_index()
    per_run = per_run.merge(scale, on="family", how="left")
    span = (per_run["behaviour_best"] - per_run["random_score"]).where(lambda s: s.abs() > 1e-8)
    per_run["multi_draw_normalized"] = (per_run["multi_draw"] - per_run["random_score"]) / span
    return per_run[[*RUN_KEYS, "multi_draw", "multi_draw_normalized", "draws"]]


def iqm(x: np.ndarray, axis: int | None = None) -> float | np.ndarray:
    """Interquartile mean: the mean of the middle 50% (scipy's trim_mean(x, 0.25)).

    Missing scores (NaN: a run that did not finish) are left out, never sorted in as the
    largest score and trimmed away. ``axis``: the axis (or, None, all of it) to reduce."""
    x = np.asarray(x, dtype=float)
    if axis is None:
        x = x.ravel()
        x = np.sort(x[~np.isnan(x)])
        n = len(x)
        if n == 0:
            return float("nan")
        cut = int(0.25 * n)
        return float(x[cut : n - cut].mean())
    return np.apply_along_axis(iqm, axis, x)


def _iqm_rows(samples: np.ndarray) -> np.ndarray:
    """IQM of each row of a ``(reps, n)`` array without NaNs, vectorised."""
    s = np.sort(samples, axis=1)
    n = s.shape[1]
    cut = int(0.25 * n)
    return s[:, cut : n - cut].mean(axis=1)


def stratified_bootstrap_ci(
    scores: np.ndarray,
    func: Callable[[np.ndarray], float],
    reps: int = BOOTSTRAP_REPS,
    rng: np.random.Generator | None = None,
    level: float = 0.95,
) -> tuple[float, float, float]:
    """Point estimate and CI of ``func`` over a ``(runs × tasks)`` score matrix.

    Runs are resampled with replacement independently within each task (column), as in
    rliable's ``get_interval_estimates``. :func:`iqm` and ``np.nanmean`` are computed for all
    resamples at once (a matrix without missing scores); any other ``func`` one by one."""
    rng = rng or np.random.default_rng(0)
    scores = np.asarray(scores, dtype=float)
    n_runs, n_tasks = scores.shape
    idx = rng.integers(0, n_runs, size=(reps, n_runs, n_tasks))
    samples = np.take_along_axis(np.broadcast_to(scores, (reps, n_runs, n_tasks)), idx, axis=1)
    flat = samples.reshape(reps, -1)
    if func is iqm and not np.isnan(scores).any():
        values = _iqm_rows(flat)
    elif func is np.nanmean:
        values = np.nanmean(flat, axis=1)
    else:
        values = np.array([func(s) for s in samples])
    lo, hi = np.nanpercentile(values, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return float(func(scores)), float(lo), float(hi)


def t_interval(x: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The t-interval of a mean (NaN for fewer than 2 runs)."""
    x = np.asarray(x, float)
    if len(x) < 2:
        return float("nan"), float("nan")
    half = stats.t.ppf((1 + level) / 2, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))
    return float(x.mean() - half), float(x.mean() + half)


def score_matrix(final: pd.DataFrame, algorithm: str, column: str = "normalized") -> np.ndarray:
    """``(seeds × families)`` matrix of one algorithm's final scores (families as columns)."""
    sub = final[final["algorithm"] == algorithm]
    table = sub.pivot_table(index="seed", columns="family", values=column)
    return table.to_numpy()


def results_table(final: pd.DataFrame) -> pd.DataFrame:
    """Per algorithm × family over seeds: the run score's mean ± SE and 95 % t-interval, its
    IQM, the single final point's and (where recorded) the multi-draw score's means, the prior
    policy's score and the normalised mean."""
    rows = []
    for (algo, fam), g in final.groupby(["algorithm", "family"]):
        s = g["score"].to_numpy(float)
        lo, hi = t_interval(s)
        row = {
            "algorithm": algo,
            "family": fam,
            "seeds": len(s),
            "mean": s.mean(),
            "se": s.std(ddof=1) / np.sqrt(len(s)) if len(s) > 1 else np.nan,
            "ci_low": lo,
            "ci_high": hi,
            "iqm": iqm(s),
            "final_point": g["final_point"].mean(),
        }
        if "multi_draw" in g and g["multi_draw"].notna().any():
            row["multi_draw"] = g["multi_draw"].mean()
        row["pre_adaptation"] = g["pre_score"].mean()
        row["normalized_mean"] = g["normalized"].mean()
        rows.append(row)
    return pd.DataFrame(rows)


def aggregate_table(final: pd.DataFrame, rng: np.random.Generator | None = None) -> pd.DataFrame:
    """Per algorithm, over all families: IQM and mean of normalised run scores with 95%
    stratified-bootstrap CIs."""
    rng = rng or np.random.default_rng(0)
    rows = []
    for algo in sorted(final["algorithm"].unique()):
        m = score_matrix(final, algo)
        m = m[:, ~np.isnan(m).all(0)]
        q, qlo, qhi = stratified_bootstrap_ci(m, iqm, rng=rng)
        mu, mlo, mhi = stratified_bootstrap_ci(m, np.nanmean, rng=rng)
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


ONLINE_LAST = 10


def online_gains(online: pd.DataFrame, last: int = ONLINE_LAST) -> pd.DataFrame:
    """Per run: what online fine-tuning added — per task, the mean return of the last ``last``
    rounds minus the return at round 0 (after offline adaptation, before any online data),
    normalised by the task's (best behaviour − random) range; mean over the run's tasks."""
    rows = []
    for key, g in online.groupby([*RUN_KEYS, "task"]):
        g = g.sort_values("round")
        span = float(g["behaviour_best"].iloc[0] - g["random_return"].iloc[0]) or 1.0
        gain = (g["return"].iloc[-last:].mean() - g["return"].iloc[0]) / span
        rows.append({**dict(zip([*RUN_KEYS, "task"], key, strict=True)), "online_gain": gain})
    per_task = pd.DataFrame(rows)
    return per_task.groupby(RUN_KEYS, as_index=False)["online_gain"].mean()


def run_costs(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (algorithm, family): finished runs, one run's wall minutes (mean and max) and the
    CPU-hours of them all — what reproducing the comparison costs.

    A run's time is the ``wall_time`` of its last metric row: training plus its evaluation
    points, resumes summed, on one thread (each worker runs one); the final multi-draw scoring
    and any online fine-tuning after it are not in it, and a paused run counts its pause.
    """
    finished = rows[rows["finished"]] if "finished" in rows else rows
    per_run = finished.groupby(RUN_KEYS, as_index=False)["wall_time"].max()
    out = per_run.groupby(["algorithm", "family"], as_index=False)["wall_time"].agg(
        runs="count", run_min="mean", longest_min="max", cpu_hours="sum"
    )
    out[["run_min", "longest_min"]] /= 60.0
    out["cpu_hours"] /= 3600.0
    return out.sort_values(["family", "algorithm"]).reset_index(drop=True)


# -- the trend of every arm at the end of its budget ---------------------------------------------
TREND_BAND = 0.05
"""``flat`` means the score moved less than this over the last half of the budget (normalised:
5 % of the random → best-behaviour range), with 95 % confidence."""
TREND_LEVEL = 0.95

TREND_COLUMNS = ["algorithm", "family", "trend", "trend_change", "trend_low", "trend_high"]


def run_slopes(curves: pd.DataFrame) -> pd.DataFrame:
    """Per run: the least-squares slope of its normalised score over the last half of its
    curve (steps ≥ half its last step, step 0 excluded), times that half's length — how much
    the score moved over the last half of the budget."""
    rows = []
    for key, g in curves.groupby(RUN_KEYS, sort=True):
        last = g["step"].max()
        tail = g[(g["step"] >= last / 2) & (g["step"] > 0)].dropna(subset=["normalized"])
        if len(tail) < 2 or tail["step"].nunique() < 2:
            continue
        slope = np.polyfit(tail["step"].to_numpy(float), tail["normalized"].to_numpy(float), 1)[0]
        span = float(tail["step"].max() - tail["step"].min())
        rows.append({**dict(zip(RUN_KEYS, key, strict=True)), "change": slope * span})
    return pd.DataFrame(rows, columns=[*RUN_KEYS, "change"])


def classify_trend(changes: np.ndarray, band: float = TREND_BAND, level: float = TREND_LEVEL):
    """(trend, mean, low, high) from per-seed changes over the last half: the seed is the
    replicate, the interval a t-interval. ``flat`` when the interval lies inside ±band (an
    equivalence test, checked first); ``rising`` / ``falling`` when it excludes 0 on that side;
    else ``undetermined``. Identical changes give a zero-width interval, never NaN; one seed
    gives ``undetermined``."""
    x = np.asarray(changes, float)
    if len(x) < 2:
        return "undetermined", (float(x[0]) if len(x) else np.nan), np.nan, np.nan
    half = stats.t.ppf((1 + level) / 2, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))
    mean, lo, hi = float(x.mean()), float(x.mean() - half), float(x.mean() + half)
    if -band <= lo and hi <= band:
        trend = "flat"
    elif lo > 0:
        trend = "rising"
    elif hi < 0:
        trend = "falling"
    else:
        trend = "undetermined"
    return trend, mean, lo, hi


def arm_trends(curves: pd.DataFrame, band: float = TREND_BAND) -> pd.DataFrame:
    """Per (algorithm, family): the trend at the end of the budget (:func:`classify_trend` of
    :func:`run_slopes`), in normalised score over the last half of the budget."""
    slopes = run_slopes(curves)
    rows = []
    for (algo, fam), g in slopes.groupby(["algorithm", "family"]):
        trend, mean, lo, hi = classify_trend(g["change"].to_numpy(), band)
        rows.append(
            {
                "algorithm": algo,
                "family": fam,
                "trend": trend,
                "trend_change": mean,
                "trend_low": lo,
                "trend_high": hi,
            }
        )
    return pd.DataFrame(rows, columns=TREND_COLUMNS)


# -- where a run score's variance comes from ----------------------------------------------------
NOISE_COLUMNS = [
    "algorithm",
    "family",
    "seeds",
    "draws",
    "eval_sd",
    "seed_sd",
    "eval_share_point",
    "eval_share_multi_draw",
    "draw_se_over_seed_sd",
    "draws_for_a_third",
    "eval_sd_raw",
]


def noise_split(draws: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    """Per (algorithm, family), from the final learners' independent adaptation draws: the
    split of a run score's variance into evaluation noise and seed-to-seed variation (one-way
    random effects, method of moments).

    A draw's score is the mean over test tasks after one fresh adaptation draw and episode;
    ``eval_sd``: the within-run SD of draw scores (normalised); ``seed_sd``: the SD of the
    runs' true scores, √max(0, var(run means) − eval_sd² / draws); ``eval_share_point``: the
    share of one draw's (one evaluation point's) variance that is evaluation noise;
    ``eval_share_multi_draw``: the same for the mean over the run's draws;
    ``draw_se_over_seed_sd``: that mean's SE over ``seed_sd``; ``draws_for_a_third``: the
    draws that bring it under 1/3."""
    if draws is None or draws.empty:
        return pd.DataFrame(columns=NOISE_COLUMNS)
    success = draws["post_success"].notna() & (draws["post_success"].astype(str) != "")
    d = draws.assign(s=np.where(success, draws["post_success"], draws["post_return"]))
    d = d[d["draw"] >= 1]
    per_draw = d.groupby([*RUN_KEYS, "draw"], as_index=False)["s"].mean()
    scale = curves.groupby("family")[["random_score", "behaviour_best"]].mean()
    rows = []
    for (algo, fam), g in per_draw.groupby(["algorithm", "family"]):
        span = float(scale.loc[fam, "behaviour_best"] - scale.loc[fam, "random_score"])
        span = span if abs(span) > 1e-8 else np.nan
        runs = g.groupby(["suite", "seed"])["s"]
        n_draws = int(runs.size().min())
        if n_draws < 2:
            continue
        within = float(runs.var(ddof=1).mean())
        between = float(runs.mean().var(ddof=1)) if runs.ngroups > 1 else np.nan
        seed_var = max(0.0, between - within / n_draws) if not math.isnan(between) else np.nan
        eval_sd, seed_sd = math.sqrt(within) / span, math.sqrt(seed_var) / span
        se = eval_sd / math.sqrt(n_draws)
        rows.append(
            {
                "algorithm": algo,
                "family": fam,
                "seeds": runs.ngroups,
                "draws": n_draws,
                "eval_sd": eval_sd,
                "seed_sd": seed_sd,
                "eval_share_point": within / (within + seed_var) if within + seed_var else 0.0,
                "eval_share_multi_draw": (
                    (within / n_draws) / (within / n_draws + seed_var)
                    if within / n_draws + seed_var
                    else 0.0
                ),
                "draw_se_over_seed_sd": se / seed_sd if seed_sd > 0 else np.inf,
                "draws_for_a_third": (math.ceil(9 * within / seed_var) if seed_var > 0 else np.nan),
                "eval_sd_raw": math.sqrt(within),
            }
        )
    return pd.DataFrame(rows, columns=NOISE_COLUMNS)


def truncate_curves(curves: pd.DataFrame, fraction: float) -> pd.DataFrame:
    """Each run's curve up to ``fraction`` of its own last step (the budget checkpoints)."""
    last = curves.groupby(RUN_KEYS)["step"].transform("max")
    return curves[curves["step"] <= fraction * last + 1e-9].reset_index(drop=True)
