"""A report from result files only, in named phases: declare, score, analyse, write, draw, tell.

* **declare** (:func:`declaration`): what the suites behind the runs declared before any run —
  algorithms, task families, primary score — from each results folder's ``suite.json`` (written
  at launch) or the built-in suite file; it fixes the hypothesis families' rows;
* **score**: per-seed curves, run scores (last-k, final point, multi-draw), finished runs only
  unless asked;
* **analyse**: the tables — run scores with each arm's end-of-budget trend, the aggregate, the
  noise split, the findings (Holm per hypothesis family; fragile and unstable flags), the
  verdicts per budget checkpoint, the power plan;
* **write** the CSVs, **draw** the figures (``harness.plots``), **tell** it in ``README.md``.

A report never re-runs anything.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from harness.aggregate import (
    LAST_K,
    ONLINE_LAST,
    RUN_KEYS,
    TREND_BAND,
    aggregate_table,
    arm_trends,
    noise_split,
    online_gains,
    per_seed_curves,
    results_table,
    run_costs,
    run_scores,
    to_markdown,
    truncate_curves,
)
from harness.findings import (
    ALPHA,
    CHECKPOINTS,
    CLAIMS,
    DEFAULT_PRIMARY,
    SCORES,
    Claim,
    Declaration,
    findings_by_budget,
    findings_table,
    hypothesis_families,
    mark_unstable,
)
from harness.plots import (
    plot_aggregate,
    plot_budget,
    plot_curves,
    plot_final,
    plot_online,
    plot_profile,
    plot_training,
    plot_tuning,
)
from harness.power import describe, plan_table
from harness.suite import DECLARATION, builtin_grid
from harness.tune import choose, describe_choice, display, parse_label, tuning_table

NOTES = "NOTES.md"
"""Kept by hand in a report folder (a campaign log, data notes): survives rebuilds."""


# -- declare ------------------------------------------------------------------------------------
def declaration(rows: pd.DataFrame, dirs: list[Path] | tuple[Path, ...] = ()) -> Declaration:
    """The union of the declarations of the suites behind ``rows``: each results folder's
    ``suite.json``, else the built-in suite of that name, else (an ad-hoc table) the runs
    present. Suites declaring different primary scores cannot share one report."""
    grids: dict[str, dict] = {}
    for d in dirs:
        path = Path(d) / DECLARATION
        if path.exists():
            grid = json.loads(path.read_text())
            grids[grid.get("suite", Path(d).name)] = grid
    sources = []
    algos: set[str] = set()
    fams: list[str] = []
    primaries: dict[str, str] = {}
    for suite in sorted(rows["suite"].astype(str).unique()):
        grid = grids.get(suite) or builtin_grid(suite)
        if grid is None:
            present = rows[rows["suite"] == suite]
            grid = {
                "algorithms": sorted(present["algorithm"].unique()),
                "families": sorted(present["family"].unique()),
                "primary_score": DEFAULT_PRIMARY,
            }
            sources.append(f"{suite}: the runs present (no declaration found)")
        else:
            where = DECLARATION if suite in grids else f"harness/suites/{suite}.toml"
            sources.append(f"{suite}: {where}")
        algos |= set(grid["algorithms"])
        fams += [f for f in grid["families"] if f not in fams]
        primaries[suite] = grid.get("primary_score", DEFAULT_PRIMARY)
    if len(set(primaries.values())) > 1:
        raise ValueError(
            "these runs' suites declare different primary scores ("
            + ", ".join(f"{s}: {p}" for s, p in primaries.items())
            + "); report them separately"
        )
    primary = next(iter(primaries.values()), DEFAULT_PRIMARY)
    return Declaration(frozenset(algos), tuple(fams), primary, tuple(sources))


# -- score --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Scored:
    curves: pd.DataFrame
    final: pd.DataFrame
    partial: pd.DataFrame
    """runs without ``done.json``: (suite, algorithm, family, seed, step)"""


def score(
    rows: pd.DataFrame,
    draws: pd.DataFrame | None,
    online: pd.DataFrame | None,
    include_partial: bool,
    title: str,
) -> Scored:
    curves = per_seed_curves(rows)
    if "finished" not in rows:
        rows = rows.assign(finished=True)
    status = rows.groupby(RUN_KEYS)[["finished", "step"]].agg({"finished": "all", "step": "max"})
    partial = status[~status["finished"]].reset_index()
    final = run_scores(curves, draws=draws)
    if not include_partial and len(partial):
        keep = final.merge(status.reset_index()[[*RUN_KEYS, "finished"]], on=RUN_KEYS)
        final = keep[keep["finished"]].drop(columns="finished").reset_index(drop=True)
        done = final[RUN_KEYS].drop_duplicates()
        curves_used = curves.merge(done, on=RUN_KEYS)
    else:
        curves_used = curves
    if final.empty:
        raise ValueError(
            f"no finished runs to report in {title} ({len(partial)} partial; "
            "use --include-partial to report them)"
        )
    if online is not None and len(online):
        final = final.merge(online_gains(online), on=RUN_KEYS, how="left")
    return Scored(curves_used, final, partial)


# -- analyse ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Analysis:
    results: pd.DataFrame
    aggregate: pd.DataFrame
    trends: pd.DataFrame
    noise: pd.DataFrame
    findings: pd.DataFrame
    by_budget: pd.DataFrame
    plan: pd.DataFrame
    tuning: pd.DataFrame
    """per (algorithm, grid value) of a tuning suite: the validation score (empty otherwise)"""


def analyse(
    scored: Scored,
    declared: Declaration,
    draws: pd.DataFrame | None,
    claims: list[Claim] | None = None,
) -> Analysis:
    claims = CLAIMS if claims is None else claims
    final, curves = scored.final, scored.curves
    trends = arm_trends(curves)
    results = results_table(final).merge(trends, on=["algorithm", "family"], how="left")
    results["trend"] = results["trend"].fillna("undetermined")
    findings = findings_table(final, claims, declared=declared, trends=trends)
    scores_at = {
        q: run_scores(truncate_curves(curves, q)).merge(final[RUN_KEYS], on=RUN_KEYS)
        for q in CHECKPOINTS
    }
    by_budget = findings_by_budget(scores_at, claims, declared)
    findings = mark_unstable(findings, by_budget)
    noise = noise_split(draws, curves) if draws is not None else noise_split(None, curves)
    return Analysis(
        results=results,
        aggregate=aggregate_table(final),
        trends=trends,
        noise=noise,
        findings=findings,
        by_budget=by_budget,
        plan=plan_table(final, claims, declared=declared),
        tuning=tuning_table(final, SCORES[declared.primary_score])
        if any(parse_label(a) for a in final["algorithm"].unique())
        else pd.DataFrame(),
    )


# -- write and draw -----------------------------------------------------------------------------
def write_tables(out: Path, scored: Scored, a: Analysis) -> None:
    scored.final.to_csv(out / "runs.csv", index=False)
    a.findings.to_csv(out / "findings.csv", index=False)
    a.by_budget.to_csv(out / "findings_by_budget.csv", index=False)
    a.plan.to_csv(out / "plan.csv", index=False)
    a.results.to_csv(out / "results.csv", index=False)
    a.aggregate.to_csv(out / "aggregate.csv", index=False)
    a.noise.to_csv(out / "noise.csv", index=False)
    if len(a.tuning):
        a.tuning.to_csv(out / "tuning.csv", index=False)
    scored.curves.to_csv(out / "curves.csv", index=False)


def draw(out: Path, scored: Scored, a: Analysis, train, online) -> dict[str, bool]:
    plot_curves(scored.curves, out)
    plot_final(a.results, out)
    plot_aggregate(a.aggregate, out)
    plot_profile(scored.final, out)
    has_budget = plot_budget(a.by_budget, out)
    has_training = train is not None and plot_training(train, out)
    has_online = online is not None and len(online) > 0
    if has_online:
        plot_online(online, out)
    if len(a.tuning):
        plot_tuning(a.tuning, out)
    return {"training": has_training, "online": has_online, "budget": has_budget}


# -- tell ---------------------------------------------------------------------------------------
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


def _score_text(final: pd.DataFrame, declared: Declaration) -> str:
    points = sorted(final["points"].unique())
    return (
        f"**Run score**: the primary score is **{declared.primary_score}**, declared by the "
        "suite before its runs (" + "; ".join(declared.sources) + "). `last-k`: the return "
        "(or Meta-World success rate) after adaptation, mean over test tasks, averaged over "
        f"the run's last {'/'.join(map(str, points))} evaluation points after step 0 (the last "
        f"{LAST_K}, or the last half of a shorter curve); one point is one episode per task "
        "after one adaptation draw. `final-point`: the last point alone; `multi-draw` (where "
        "recorded): the final learner over several independent adaptation draws. Normalised: "
        "0 = uniform random policy (one score per family), 1 = best behaviour episodes of the "
        "test tasks' data. Per family: mean ± SE over seeds with a 95 % t-interval; across "
        "families: IQM and mean with 95 % stratified-bootstrap CIs (50 000 resamples)."
    )


def _claims_text(a: Analysis, declared: Declaration) -> list[str]:
    sizes = (
        a.findings[~a.findings["family"].astype(str).str.startswith("all ")]
        .groupby("hypothesis_family", sort=False)
        .size()
    )
    sources = hypothesis_families()
    families = "; ".join(
        f"`{hf}` ({sources.get(hf, 'claims of their own')}): {n} rows" for hf, n in sizes.items()
    )
    return [
        "## The claims, from these results",
        "",
        "Each claim belongs to a hypothesis family named after its source; Holm runs within "
        f"a hypothesis family at {ALPHA:g}, never across them, over the rows the claims file "
        "and the suite's declaration fix (a row not run counts, as p = 1): "
        + (families or "none")
        + ". Each (claim, family) row: a two-sided exact Mann–Whitney test of the two arms' "
        f"normalised **{declared.primary_score}** run scores (an exact permutation test where "
        f"scores tie). *holds* / *fails*: adjusted p ≤ {ALPHA:g} with the effect on / against "
        "the claimed side; *too few runs*: even a complete separation could not reach the "
        "level Holm needs here; *inconclusive*: it could have, and did not; *not run*: "
        "declared, no runs yet. A claim over several families holds only where every family's "
        "row holds (its `all N` row gives the breakdown). A `≥` claim is a non-inferiority "
        "test with the margin shown. P(X > Y) and its bootstrap CI are the effect size, not "
        "the rule. **fragile**: decided under the primary score but not the same under "
        f"another score ({', '.join(n for n in SCORES if n != declared.primary_score)}, where "
        "recorded); an arm **still rising** / **falling** at the end of its budget is named "
        "(the `trend` of `results.csv`); **unstable**: the decision at the last budget "
        "checkpoint differs from the one before (`findings_by_budget.csv`).",
        "",
        to_markdown(a.findings.drop(columns=["moving"])) if len(a.findings) else "No claim.",
        "",
    ]


def _code_section(provenance: dict[str, list[str]] | None, final: pd.DataFrame) -> list[str]:
    """Which commits the runs came from (``provenance.json`` of each run)."""
    if not provenance:
        return []
    counts: dict[str, int] = {}
    for codes in provenance.values():
        for c in codes or ["not recorded (made before runs recorded their code)"]:
            counts[c] = counts.get(c, 0) + 1
    return [
        "## Code",
        "",
        "The code each run's segments ran (`provenance.json`; a resumed run may span several): "
        + "; ".join(f"`{c}` ({n} runs)" for c, n in sorted(counts.items()))
        + ".",
        "",
    ]


def tell(
    out: Path,
    title: str,
    rows: pd.DataFrame,
    scored: Scored,
    a: Analysis,
    declared: Declaration,
    include_partial: bool,
    drawn: dict[str, bool],
    provenance: dict[str, list[str]] | None = None,
) -> None:
    final = scored.final
    n_runs = final.groupby(["algorithm", "family", "seed"]).ngroups
    notes = out / NOTES
    text = [
        f"# {title}",
        "",
        *([notes.read_text().strip(), ""] if notes.exists() else []),
        f"{n_runs} runs: {', '.join(sorted(final['algorithm'].unique()))} on "
        f"{', '.join(sorted(final['family'].unique()))}, seeds "
        f"{', '.join(str(s) for s in sorted(final['seed'].unique()))}. Every algorithm of a "
        "family adapted on byte-identical adaptation sets (sha256 in the metric rows).",
        "",
        _score_text(final, declared),
        "",
        "![learning curves](curves.png)",
        "",
        "## Run scores",
        "",
        "`trend`: the arm at the end of its budget, from each seed's least-squares slope of "
        "the normalised score over the last half of its curve (times that half's length), the "
        "seed as the replicate, a 95 % t-interval (`trend_low`, `trend_high`): *flat* when the "
        f"interval lies within ±{TREND_BAND:g}, else *rising* / *falling* when it excludes 0, "
        "else *undetermined*.",
        "",
        to_markdown(a.results),
        "",
        "![final](final.png)",
        "",
        "## Aggregate over families (normalised)",
        "",
        to_markdown(a.aggregate),
        "",
        "![aggregate](aggregate.png)",
        "",
        "![performance profile](profile.png)",
        "",
    ]
    if len(a.noise):
        text += [
            "## Where a run score's variance comes from",
            "",
            "From the final learners' independent adaptation draws (`final_draws.csv`), "
            "normalised: `eval_sd`, the draw-to-draw SD within a run (evaluation noise); "
            "`seed_sd`, the SD of the runs' true scores (one-way random effects); "
            "`eval_share_point`, the share of one evaluation point's variance that is "
            "evaluation noise; `eval_share_multi_draw`, the same for the mean over the draws; "
            "`draws_for_a_third`, the draws whose mean has an SE under a third of `seed_sd` "
            "(`noise.csv`).",
            "",
            to_markdown(a.noise),
            "",
        ]
    if len(a.tuning):
        choice = choose(a.tuning)
        text += [
            "## Learning-rate tuning",
            "",
            "Validation score (the primary score, normalised, on validation tasks held out "
            "from the train tasks; never a test task) per outer-rate grid value, mean ± SE over "
            "seeds (`tuning.csv`); the rule picks the highest mean (harness/tune.py). "
            f"**Choice**: {describe_choice(choice, tuple(sorted(a.tuning['lr'].unique())))}.",
            "",
            to_markdown(display(a.tuning)),
            "",
            "![tuning](tuning.png)",
            "",
        ]
    text += _claims_text(a, declared)
    if drawn["budget"]:
        text += [
            "## Verdicts per budget checkpoint",
            "",
            "Every row decided again on the curves up to each quarter of the budget (last-k "
            "score, Holm within the hypothesis family): `findings_by_budget.csv`.",
            "",
            "![verdicts per budget](budget.png)",
            "",
        ]
    text += [
        "## Seeds each claim needs",
        "",
        describe("exact", ALPHA, 0.8, declared.primary_score),
        "",
        to_markdown(a.plan) if len(a.plan) else "No claim is answerable here.",
        "",
    ]
    text += _cost_section(rows, out)
    text += _code_section(provenance, scored.final)
    if drawn["online"]:
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
    if drawn["training"]:
        text += [
            "## Training losses",
            "",
            "From each run's `train.csv`, mean over seeds.",
            "",
            "![training losses](training.png)",
            "",
        ]
    if len(scored.partial):
        text += [
            "## Partial runs",
            "",
            "Not finished, so "
            + ("included as they stand" if include_partial else "left out of the tables")
            + ": "
            + ", ".join(
                f"{r.algorithm} {r.family} seed {r.seed} (partial: stopped at step {r.step})"
                for r in scored.partial.itertuples()
            ),
            "",
        ]
    text += ["Rebuild from the result files with `python -m harness report <results>/<suite>`."]
    (out / "README.md").write_text("\n".join(text) + "\n")


def build_report(
    rows: pd.DataFrame,
    out: Path,
    title: str,
    include_partial: bool = False,
    train: pd.DataFrame | None = None,
    draws: pd.DataFrame | None = None,
    online: pd.DataFrame | None = None,
    declared: Declaration | None = None,
    claims: list[Claim] | None = None,
    provenance: dict[str, list[str]] | None = None,
) -> Path:
    """Figures, tables (CSV + markdown) and a README.md embedding them, under ``out``.

    Runs without ``done.json`` (column ``finished``) are drawn in the curves but left out of
    the score tables and the findings unless ``include_partial``; the README lists them.
    ``train``: the runs' training logs (:func:`harness.runner.load_train_logs`), drawn as loss
    curves when given; ``draws``: their multi-draw final rows
    (:func:`harness.runner.load_final_draws`), a score and the noise split when given;
    ``online``: their online fine-tuning rows (:func:`harness.runner.load_online`), drawn and
    tested; ``declared``: the suites' declaration (default: :func:`declaration` from the
    built-in suites); ``claims``: default the claims file's; ``provenance``: run folder → the
    code its segments ran (:func:`harness.runner.load_provenance`), listed when given.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    declared = declared or declaration(rows)
    scored = score(rows, draws, online, include_partial, title)
    a = analyse(scored, declared, draws, claims)
    write_tables(out, scored, a)
    drawn = draw(out, scored, a, train, online)
    tell(out, title, rows, scored, a, declared, include_partial, drawn, provenance)
    return out
