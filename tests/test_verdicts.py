"""Verdicts that mean what they say: hypothesis families, scope, the primary score, the trend
of every arm at the end of its budget, and the verdict at each budget checkpoint."""

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.aggregate import arm_trends, classify_trend, per_seed_curves, run_scores
from harness.findings import (
    Claim,
    Declaration,
    findings_by_budget,
    findings_table,
    mark_unstable,
    whole_verdict,
)
from harness.report import build_report, declaration
from harness.runner import load_final_draws, load_results

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "reports" / "reference"
HI, LO = [10.0 + i for i in range(6)], [float(i) for i in range(6)]
MIXED_X, MIXED_Y = [0.0, 2, 4, 6, 8, 10], [1.0, 3, 5, 7, 9, 11]


def _final(scores: dict[tuple[str, str], list[float]], **columns) -> pd.DataFrame:
    rows = [
        {"algorithm": a, "family": f, "seed": s, "normalized": v}
        for (a, f), vals in scores.items()
        for s, v in enumerate(vals)
    ]
    out = pd.DataFrame(rows)
    for name, values in columns.items():
        out[name] = out.apply(lambda r, v=values: v[(r.algorithm, r.family)][r.seed], axis=1)
    return out


def _verdicts(folder: Path, families: tuple[str, ...]) -> pd.DataFrame:
    """The findings of a results folder under its declaration, restricted to some hypothesis
    families (cheap: the bootstrap effect size at few resamples)."""
    rows = load_results(folder)
    curves = per_seed_curves(rows)
    final = run_scores(curves, draws=load_final_draws(folder))
    declared = declaration(rows, [folder])
    table = findings_table(final, declared=declared, trends=arm_trends(curves), reps=100)
    cols = ["hypothesis_family", "claim", "family", "p", "p_holm", "decision", "verdict"]
    return table[table["hypothesis_family"].isin(families)][cols].reset_index(drop=True)


def _copy_run_as(src: Path, dst: Path, family: str, like: Path) -> None:
    """A FOCAL/Prompt-DT cheetah-vel run relabelled as a run on another family: its scores kept,
    its task ids, random scores, best behaviour and dataset identity those of ``like`` (a run
    of the same seed on that family), as a real run there would have them."""
    dst.mkdir(parents=True)
    m = pd.read_csv(src / "metrics.csv")
    ref = pd.read_csv(like / "metrics.csv")
    tasks = sorted(ref["task"].unique())
    m["task"] = m["task"].map(dict(zip(sorted(m["task"].unique()), tasks, strict=True)))
    m["family"] = family
    keys = ref.drop_duplicates("task").set_index("task")
    for col in ("random_return", "behaviour_best", "dataset_sha256"):
        m[col] = m["task"].map(keys[col])
    m.to_csv(dst / "metrics.csv", index=False)
    (dst / "done.json").write_text((src / "done.json").read_text())
    (dst / "config.json").write_text((src / "config.json").read_text())


def test_adding_focal_and_prompt_dt_runs_on_walker_and_ant_changes_no_macaw_paper_verdict(
    tmp_path,
):
    copy = tmp_path / "reference"
    shutil.copytree(REFERENCE / "runs", copy / "runs")
    macaw = ("macaw-figure-3", "macaw-ml45")
    before = _verdicts(copy, macaw)
    for algo in ("focal", "prompt-dt"):
        for fam in ("walker-params", "ant-dir"):
            for seed in range(6):
                src = copy / "runs" / f"{algo}__cheetah-vel__seed{seed}"
                like = copy / "runs" / f"macaw__{fam}__seed{seed}"
                _copy_run_as(src, copy / "runs" / f"{algo}__{fam}__seed{seed}", fam, like)
    after = _verdicts(copy, macaw)
    per_family = before[~before["family"].str.startswith("all ")]
    assert len(per_family) == 13 + 1  # Figure 3's rows on four families, the ML45 claim on ml10
    pd.testing.assert_frame_equal(before, after)
    # the new runs did reach their own hypothesis families
    theirs = _verdicts(copy, ("focal-paper", "prompt-dt-paper"))
    assert not (theirs["decision"] == "not run").any()


def test_a_six_against_six_separation_holds_in_a_hypothesis_family_of_twenty_rows():
    scores = {("x", "f0"): HI, ("y", "f0"): LO}
    for k in range(1, 20):
        scores[("x", f"f{k}")], scores[("y", f"f{k}")] = MIXED_X, MIXED_Y
    claim = Claim("X > Y", "x", "y", ">", hypothesis_family="src")
    table = findings_table(_final(scores), [claim], reps=100).set_index("family")
    assert table.loc["f0", "family_rows"] == 20
    assert table.loc["f0", "decision"] == "holds"
    # 24 rows: Holm's first threshold 0.05/24 < 2/924, so the same runs decide nothing
    for k in range(20, 24):
        scores[("x", f"f{k}")], scores[("y", f"f{k}")] = MIXED_X, MIXED_Y
    table = findings_table(_final(scores), [claim], reps=100).set_index("family")
    assert table.loc["f0", "decision"] == "too few runs"


def test_rows_of_another_hypothesis_family_never_move_a_verdict():
    own = Claim("X > Y", "x", "y", ">", ("f0",), hypothesis_family="paper A")
    other = Claim("Z > Y", "z", "y", ">", hypothesis_family="paper B")
    scores = {("x", "f0"): HI, ("y", "f0"): LO}
    alone = findings_table(_final(scores), [own, other], reps=100)
    for k in range(30):
        scores[("z", f"f{k}")], scores[("y", f"f{k}")] = MIXED_X, MIXED_Y
    scores[("y", "f0")] = LO
    crowded = findings_table(_final(scores), [own, other], reps=100)
    a, c = alone.iloc[0], crowded.iloc[0]
    assert a["claim"] == c["claim"] == "X > Y"
    assert (a["decision"], a["p_holm"]) == (c["decision"], c["p_holm"]) == ("holds", 2 / 924)


def test_declared_rows_whose_runs_are_missing_read_not_run_and_count_in_their_family():
    claims = [
        Claim("X > Y", "x", "y", ">", ("a", "b", "c"), hypothesis_family="src"),
    ]
    declared = Declaration(frozenset({"x", "y"}), ("a", "b", "c"))
    final = _final({("x", "a"): HI, ("y", "a"): LO})
    table = findings_table(final, claims, reps=100, declared=declared).set_index("family")
    assert table.loc["b", "decision"] == table.loc["c", "decision"] == "not run"
    assert table.loc["b", "verdict"] == "not run (0 vs 0)"
    assert (table.loc[["a", "b", "c"], "family_rows"] == 3).all()
    # Holm over 3 rows, the two not run at p = 1: a's adjusted p is 3 × 2/924
    assert table.loc["a", "p_holm"] == pytest.approx(3 * 2 / 924)
    assert table.loc["all 3", "verdict"] == "not established: holds on 1 of 3; b not run; c not run"


def test_a_whole_claim_row_gives_its_breakdown():
    rows = pd.DataFrame(
        {
            "family": ["cheetah-dir", "cheetah-vel", "walker-params", "ant-dir"],
            "decision": ["holds", "holds", "inconclusive", "holds"],
            "p_holm": [0.01, 0.01, 0.65, 0.01],
        }
    )
    assert whole_verdict(rows) == (
        "not established: holds on 3 of 4; walker-params inconclusive (adjusted p 0.65)"
    )
    assert whole_verdict(rows.assign(decision="holds")) == "holds on 4 of 4"
    failed = rows.assign(decision=["holds", "fails", "inconclusive", "holds"])
    assert whole_verdict(failed).startswith("fails on 1 of 4: holds on 2 of 4; cheetah-vel fails")


def test_a_row_decided_under_the_primary_score_only_is_fragile():
    scores = {("x", "f"): HI, ("y", "f"): LO}
    point = {("x", "f"): MIXED_X, ("y", "f"): MIXED_Y}  # the final point: no separation
    final = _final(scores, final_point_normalized=point, multi_draw_normalized=scores)
    row = findings_table(final, [Claim("X > Y", "x", "y", ">")], reps=100).iloc[0]
    assert row["decision"] == "holds" and row["fragile"] == "final-point"
    assert "fragile: inconclusive under final-point" in row["verdict"]
    robust = _final(scores, final_point_normalized=scores, multi_draw_normalized=scores)
    row = findings_table(robust, [Claim("X > Y", "x", "y", ">")], reps=100).iloc[0]
    assert row["fragile"] == "" and "fragile" not in row["verdict"]


def test_the_primary_score_declared_by_the_suite_is_the_one_tested():
    scores = {("x", "f"): MIXED_X, ("y", "f"): MIXED_Y}
    draws = {("x", "f"): HI, ("y", "f"): LO}
    final = _final(scores, multi_draw_normalized=draws, final_point_normalized=scores)
    declared = Declaration(frozenset({"x", "y"}), ("f",), "multi-draw")
    row = findings_table(final, [Claim("X > Y", "x", "y", ">")], reps=100, declared=declared)
    assert row.loc[0, "decision"] == "holds"
    assert row.loc[0, "fragile"] == "last-k, final-point"
    with pytest.raises(ValueError, match="unknown primary score 'best'"):
        findings_table(final, declared=Declaration(frozenset(), ("f",), "best"))


def test_a_row_whose_last_two_checkpoints_differ_is_unstable():
    claim = Claim("X > Y", "x", "y", ">")
    at = {
        0.75: _final({("x", "f"): MIXED_X, ("y", "f"): MIXED_Y}).assign(step=3000),
        1.0: _final({("x", "f"): HI, ("y", "f"): LO}).assign(step=4000),
    }
    by_budget = findings_by_budget(at, [claim])
    assert by_budget["decision"].tolist() == ["inconclusive", "holds"]
    findings = mark_unstable(findings_table(at[1.0], [claim], reps=100), by_budget)
    assert bool(findings.loc[0, "unstable"])
    assert findings.loc[0, "verdict"].endswith(
        "unstable: inconclusive at 3/4 of the budget, holds at its end (last-k)"
    )
    steady = {q: at[1.0] for q in (0.75, 1.0)}
    findings = mark_unstable(
        findings_table(at[1.0], [claim], reps=100), findings_by_budget(steady, [claim])
    )
    assert not findings.loc[0, "unstable"]


def _linear_rows(algo: str, slope: float, seeds: int = 4) -> list[dict]:
    """Constant-slope curves (per step, normalised 0..1 by random −100 and best 100)."""
    out = []
    for seed in range(seeds):
        for step in range(0, 4001, 250):
            value = -100 + 200 * (0.5 + slope * step + 0.001 * seed)
            out.append(
                {
                    "suite": "synthetic",
                    "algorithm": algo,
                    "family": "f",
                    "seed": seed,
                    "step": step,
                    "task": 0,
                    "pre_return": value,
                    "post_return": value,
                    "pre_success": np.nan,
                    "post_success": np.nan,
                    "random_return": -100.0,
                    "random_success": np.nan,
                    "behaviour_best": 100.0,
                    "finished": True,
                }
            )
    return out


def test_flat_rising_and_falling_arms_are_named_and_the_findings_say_which_moves(tmp_path):
    rows = pd.DataFrame(
        _linear_rows("flat", 0.0) + _linear_rows("up", 1e-4) + _linear_rows("down", -1e-4)
    )
    claims = [Claim("up > flat", "up", "flat", ">"), Claim("flat > down", "flat", "down", ">")]
    out = build_report(rows, tmp_path / "rep", "t", claims=claims)
    trend = pd.read_csv(out / "results.csv").set_index("algorithm")["trend"]
    assert trend.to_dict() == {"down": "falling", "flat": "flat", "up": "rising"}
    findings = pd.read_csv(out / "findings.csv").set_index("claim")
    assert findings.loc["up > flat", "verdict"].endswith("; up still rising")
    assert findings.loc["flat > down", "verdict"].endswith("; down falling")
    by_budget = pd.read_csv(out / "findings_by_budget.csv")
    assert sorted(by_budget["checkpoint"].unique()) == [0.25, 0.5, 0.75, 1.0]
    assert (out / "budget.png").exists()


def test_identical_slopes_across_seeds_give_an_interval_not_nan():
    trend, mean, lo, hi = classify_trend(np.array([0.2, 0.2, 0.2]))
    assert trend == "rising" and (mean, lo, hi) == pytest.approx((0.2, 0.2, 0.2))
    assert classify_trend(np.zeros(3))[0] == "flat"
    assert classify_trend(np.array([0.3]))[0] == "undetermined"
    assert classify_trend(np.array([-0.3, 0.4, 0.1]))[0] == "undetermined"
