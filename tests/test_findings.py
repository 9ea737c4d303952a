"""Findings and statistics on synthetic results with known answers."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestIndPower

from harness.aggregate import iqm, points_used, run_scores
from harness.findings import (
    Claim,
    bootstrap_poi,
    exact_p,
    findings_table,
    holm,
    load_claims,
    probability_of_improvement,
    seeds_to_reach,
    smallest_p,
    whole_verdict,
)
from harness.plots import paper_levels
from harness.power import exact_seeds, plan_table, ttest_seeds
from harness.report import build_report

BEATS = Claim("X > Y", "x", "y", ">")


def _final(scores: dict[tuple[str, str], list[float]]) -> pd.DataFrame:
    rows = [
        {"algorithm": a, "family": f, "seed": s, "normalized": v}
        for (a, f), vals in scores.items()
        for s, v in enumerate(vals)
    ]
    return pd.DataFrame(rows)


def _verdict(x, y, claims=(BEATS,)) -> str:
    table = findings_table(_final({("x", "f"): x, ("y", "f"): y}), list(claims), reps=200)
    return table.loc[0, "verdict"]


def _decision(x, y, claims=(BEATS,)) -> str:
    table = findings_table(_final({("x", "f"): x, ("y", "f"): y}), list(claims), reps=200)
    return table.loc[0, "decision"]


def test_probability_of_improvement_counts_pairs_and_ties_half():
    assert probability_of_improvement([2, 3], [1, 1]) == 1.0
    assert probability_of_improvement([1, 1], [2, 3]) == 0.0
    assert probability_of_improvement([1, 2], [1, 2]) == 0.5
    p, lo, hi = bootstrap_poi(np.array([5.0, 6, 7]), np.array([1.0, 2, 3]), reps=500)
    assert p == lo == hi == 1.0


@pytest.mark.parametrize(
    "x, y",
    [
        ([1, 2, 3], [4, 5, 6]),  # complete separation: 2/20
        ([1, 2, 5], [3, 4, 6]),  # 8 of 9 pairs... the other way round
        ([0.1, 0.7, 0.3, 0.9], [0.5, 0.2, 0.8]),
        (list(range(6)), [10 + i for i in range(6)]),
    ],
)
def test_exact_p_equals_scipys_exact_mann_whitney(x, y):
    want = stats.mannwhitneyu(x, y, alternative="two-sided", method="exact").pvalue
    assert exact_p(x, y) == pytest.approx(want)


def test_exact_p_by_hand_the_floors_of_small_designs():
    assert exact_p([4, 5, 6], [1, 2, 3]) == pytest.approx(2 / 20)  # 3 vs 3: at best 0.10
    assert exact_p([3, 5, 6], [1, 2, 4]) == pytest.approx(4 / 20)  # 8 of 9 pairs: 0.20
    assert exact_p([3, 4], [1, 2]) == pytest.approx(2 / 6)  # 2 vs 2: at best 0.33
    assert smallest_p(6, 6) == pytest.approx(2 / 924)
    assert seeds_to_reach(0.05 / 13) == 6 and seeds_to_reach(0.05) == 4


def test_tied_scores_use_the_exact_permutation_distribution_of_u():
    # x = [1, 2, 2], y = [2, 3, 3]: enumerate all 20 splits of the pooled six by hand
    from itertools import combinations

    pooled = [1, 2, 2, 2, 3, 3]

    def u(a, b):
        return sum((i > j) + 0.5 * (i == j) for i in a for j in b)

    observed = u([1, 2, 2], [2, 3, 3])
    null = []
    for idx in combinations(range(6), 3):
        a = [pooled[i] for i in idx]
        b = [pooled[i] for i in range(6) if i not in idx]
        null.append(u(a, b))
    null = np.array(null)
    want = min(1.0, 2 * min(np.mean(null <= observed), np.mean(null >= observed)))
    assert exact_p([1, 2, 2], [2, 3, 3]) == pytest.approx(want)


def test_holm_equals_statsmodels_and_a_hand_table():
    p = np.array([0.01, 0.04, 0.03, 0.005])
    assert holm(p) == pytest.approx(multipletests(p, method="holm")[1])
    # by hand: sorted 0.005·4, 0.01·3, 0.03·2, 0.04·1, running maximum
    assert holm(p) == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_three_against_three_and_two_against_two_never_hold_or_fail():
    assert _verdict([4, 5, 6], [1, 2, 3]).startswith("too few runs (3 vs 3)")
    assert _verdict([3, 5, 6], [1, 2, 4]).startswith("too few runs")  # 8 of 9 pairs
    assert _verdict([3, 4], [1, 2]).startswith("too few runs (2 vs 2)")
    assert _verdict([1, 2, 3], [4, 5, 6]).startswith("too few runs")  # the other side too
    assert "4 per arm can reach it" in _verdict([4, 5, 6], [1, 2, 3])


def test_six_against_six_complete_separation_holds_for_one_row_and_fails_the_other_way():
    hi, lo = [10 + i for i in range(6)], list(range(6))
    assert _decision(hi, lo) == "holds"
    assert _verdict(hi, lo) == "holds (adjusted p 0.0022)"
    assert _decision(lo, hi) == "fails"
    assert _decision(hi, lo, [Claim("X < Y", "x", "y", "<")]) == "fails"


def test_an_overlapping_six_against_six_is_inconclusive_with_its_adjusted_p():
    v = _verdict([0, 2, 4, 6, 8, 10], [1, 3, 5, 7, 9, 11])
    assert v.startswith("inconclusive (adjusted p")


def test_holm_over_many_rows_turns_a_lone_hold_into_too_few_runs():
    # 6 vs 6 complete separation (p = 0.0022) holds alone; beside 25 undecided rows Holm's
    # first threshold is 0.05/26 = 0.0019, which 6 per arm cannot reach
    hi, lo = [10 + i for i in range(6)], list(range(6))
    scores = {("x", "f0"): hi, ("y", "f0"): lo}
    for k in range(1, 26):
        scores[("x", f"f{k}")] = [0, 2, 4, 6, 8, 10]
        scores[("y", f"f{k}")] = [1, 3, 5, 7, 9, 11]
    table = findings_table(_final(scores), [BEATS], reps=100).set_index("family")
    assert table.loc["f0", "verdict"].startswith("too few runs (6 vs 6)")
    assert "7 per arm can reach it" in table.loc["f0", "verdict"]


def test_a_claim_over_every_family_holds_only_where_every_family_holds():
    hi, lo = [10 + i for i in range(6)], list(range(6))
    both = _final({("x", "a"): hi, ("y", "a"): lo, ("x", "b"): hi, ("y", "b"): lo})
    table = findings_table(both, [BEATS], reps=100).set_index("family")
    assert table.loc["all 2", "decision"] == "holds"
    assert table.loc["all 2", "verdict"] == "holds on 2 of 2"
    one = _final({("x", "a"): hi, ("y", "a"): lo, ("x", "b"): lo, ("y", "b"): hi})
    table = findings_table(one, [BEATS], reps=100).set_index("family")
    assert table.loc["a", "decision"] == "holds" and table.loc["all 2", "decision"] == "fails"
    assert table.loc["all 2", "verdict"].startswith("fails on 1 of 2: holds on 1 of 2; b fails")
    few = pd.DataFrame(
        {"family": ["a", "b"], "decision": ["holds", "too few runs"], "p_holm": [0.01, 1.0]}
    )
    assert whole_verdict(few) == "not established: holds on 1 of 2; b too few runs"


def test_non_inferiority_holds_within_the_margin_and_fails_beyond_it():
    ge = Claim("X ≥ Y", "x", "y", ">=", margin=0.1)
    base = [0.50, 0.51, 0.52, 0.53, 0.54, 0.55]
    slightly_below = [v - 0.04 for v in base]  # worse, but by less than the margin
    assert _decision(slightly_below, base, [ge]) == "holds"
    far_below = [v - 0.5 for v in base]
    assert _decision(far_below, base, [ge]) == "fails"


def test_the_claims_file_loads_with_margins_and_the_task_count_claims():
    claims = {c.text: c for c in load_claims()}
    assert claims["MT+FT ≥ Meta-BC on the cheetahs"].margin == 0.05
    assert claims["MT+FT ≥ Meta-BC on the cheetahs"].families == ("cheetah-vel", "cheetah-dir")
    assert "MACAW degrades less than MT+FT from 35 train tasks to 3" in claims


def test_power_planner_t_mode_gives_the_textbook_n():
    n = ttest_seeds(1.5, alpha=0.05, power=0.8, alternative="larger")
    assert n == pytest.approx(6.3, abs=0.05) and math.ceil(n) == 7
    want = TTestIndPower().solve_power(effect_size=1.5, alpha=0.05, power=0.8, alternative="larger")
    assert n == pytest.approx(want)


def test_power_planner_exact_mode_needs_more_seeds_for_a_smaller_effect():
    big = exact_seeds(8.0, 1.0, alpha=0.05 / 13, sims=400)
    small = exact_seeds(1.0, 1.0, alpha=0.05 / 13, sims=400)
    assert big == 6  # the floor: only a complete separation reaches 0.0038 at 6 per arm
    assert small is not None and small > big


def test_plan_table_names_the_seeds_each_row_needs():
    final = _final({("macaw", "f"): [0.5, 0.6, 0.7], ("meta-bc", "f"): [0.1, 0.2, 0.3]})
    claims = [Claim("MACAW > Meta-BC", "macaw", "meta-bc", ">")]
    plan = plan_table(final, claims, method="t")
    assert plan.loc[0, "difference"] == pytest.approx(0.4)
    n = math.ceil(ttest_seeds(0.4 / 0.1, alpha=0.05))
    assert plan.loc[0, "seeds_needed"] == str(max(n, 2))


def test_the_run_score_averages_the_last_points_after_step_zero():
    assert points_used(16) == 5 and points_used(4) == 2 and points_used(3) == 2
    curves = pd.DataFrame(
        {
            "suite": "s",
            "algorithm": "a",
            "family": "f",
            "seed": 0,
            "step": range(0, 700, 100),
            "score": [100.0, 1, 2, 3, 4, 5, 60],
            "normalized": [1.0, 0, 0, 0, 0, 0, 1],
            "pre_score": 0.0,
            "pre_normalized": 0.0,
            "random_score": -1.0,
            "behaviour_best": 1.0,
        }
    )
    row = run_scores(curves).iloc[0]
    assert row["points"] == 5 and row["score"] == pytest.approx((2 + 3 + 4 + 5 + 60) / 5)
    assert row["final_point"] == 60.0


def test_verdicts_on_a_synthetic_table_with_known_answers():
    hi, lo = [10 + i for i in range(6)], list(range(6))
    final = _final(
        {
            ("macaw", "cheetah-vel"): hi,  # clearly above Meta-BC
            ("meta-bc", "cheetah-vel"): lo,
            ("mt-ft", "cheetah-vel"): [0, 1, 2, 3, 4, 5],
            ("pearl", "cheetah-vel"): [1, 12, 2, 13, 3, 14],  # overlapping
        }
    )
    f = findings_table(final, reps=200).set_index(["claim", "family"])["verdict"]
    assert f[("offline PEARL < Meta-BC", "cheetah-vel")].startswith("inconclusive")
    # claims whose algorithms or families are absent are left out, not guessed
    assert not any("walker" in fam for _, fam in f.index)


def test_iqm_with_a_missing_seed_equals_the_iqm_of_the_finished_seeds():
    finished = np.array([0.1, 0.2, 0.3, 0.9])
    assert iqm(np.append(finished, np.nan)) == iqm(finished)


def test_paper_levels_come_from_the_data_file():
    levels = paper_levels()
    assert levels["cheetah-vel"] == {
        "macaw": -128.0,
        "mt-ft": -171.0,
        "meta-bc": -194.1,
        "pearl": -306.0,
    }
    assert levels["ant-dir"]["meta-bc"] == 313.6


def _rows(algo, seed, steps, finished, value):
    return [
        {
            "suite": "s",
            "algorithm": algo,
            "family": "cheetah-vel",
            "seed": seed,
            "step": st,
            "task": t,
            "pre_return": value,
            "post_return": value + st,
            "pre_success": np.nan,
            "post_success": np.nan,
            "random_return": -300.0,
            "random_success": np.nan,
            "behaviour_best": -20.0,
            "finished": finished,
        }
        for st in steps
        for t in (2, 7)
    ]


def test_a_partial_run_is_flagged_and_left_out_of_the_final_tables(tmp_path):
    rows = pd.DataFrame(
        _rows("macaw", 0, [0, 10], True, -100.0)
        + _rows("macaw", 1, [0, 10], True, -110.0)
        + _rows("macaw", 2, [0, 5], False, 500.0)  # stopped at step 5, would dominate
    )
    out = build_report(rows, tmp_path / "rep", "t")
    table = pd.read_csv(out / "results.csv")
    assert table.loc[0, "seeds"] == 2 and table.loc[0, "mean"] == -95.0
    readme = (out / "README.md").read_text()
    assert "macaw cheetah-vel seed 2 (partial: stopped at step 5)" in readme
    both = build_report(rows, tmp_path / "rep2", "t", include_partial=True)
    assert pd.read_csv(both / "results.csv").loc[0, "seeds"] == 3


def test_the_report_costs_finished_runs_from_their_last_wall_time(tmp_path):
    rows = pd.DataFrame(
        _rows("macaw", 0, [0, 10], True, -100.0)
        + _rows("macaw", 1, [0, 10], True, -110.0)
        + _rows("pearl", 0, [0, 10], True, -150.0)
        + _rows("pearl", 1, [0, 5], False, -150.0)  # partial: not in the bill
    )
    # wall seconds grow with the step; the runs' last rows: macaw 1800 and 3600, pearl 7200
    rows["wall_time"] = rows["step"] * 180.0
    rows.loc[(rows["algorithm"] == "macaw") & (rows["seed"] == 1), "wall_time"] *= 2
    rows.loc[rows["algorithm"] == "pearl", "wall_time"] *= 4
    out = build_report(rows, tmp_path / "rep", "t")
    costs = pd.read_csv(out / "costs.csv").set_index("algorithm")
    assert costs.loc["macaw", "runs"] == 2 and costs.loc["pearl", "runs"] == 1
    assert costs.loc["macaw", "run_min"] == 45.0 and costs.loc["macaw", "longest_min"] == 60.0
    assert costs.loc["macaw", "cpu_hours"] == 1.5 and costs.loc["pearl", "cpu_hours"] == 2.0
    readme = (out / "README.md").read_text()
    # 3.5 CPU-hours would be 1.75 h on 2 workers, but no worker count beats pearl's 2-hour run
    assert "**3.5 CPU-hours**" in readme
    assert "2 workers ≈ 2.0 h, 16 workers ≈ 2.0 h" in readme


def test_the_task_count_claim_compares_changes_from_35_tasks_not_levels():
    # MACAW falls by 0.1 from 35 tasks to 3, MT+FT by 0.5: MACAW degrades less although MT+FT's
    # 35-task level is higher
    jitter = np.linspace(-0.01, 0.01, 6)
    final = _final(
        {
            ("macaw", "cheetah-vel"): list(0.3 + jitter),
            ("macaw-3", "cheetah-vel"): list(0.2 + jitter),
            ("mt-ft", "cheetah-vel"): list(0.8 + jitter),
            ("mt-ft-3", "cheetah-vel"): list(0.3 + jitter[::-1] * 0.5),
        }
    )
    claims = [c for c in load_claims() if c.text.endswith("to 3") or c.x == "macaw"]
    table = findings_table(final, claims, reps=200).set_index("claim")
    mt = table.loc["MACAW degrades less than MT+FT from 35 train tasks to 3"]
    assert mt["decision"] == "holds" and mt["comparison"] == "macaw-3 − macaw vs mt-ft-3 − mt-ft"
    assert table.loc["MACAW > MT+FT on cheetah-vel"]["decision"] == "fails"  # levels: opposite


def test_the_trial_holm_of_needed_threshold_equals_statsmodels():
    from harness.findings import holm_adjusted

    rng = np.random.default_rng(0)
    for m in (1, 2, 5, 13, 30):
        p = rng.uniform(0, 0.2, m)
        p[: m // 3] = 2 / 924  # ties, as complete separations give
        assert holm_adjusted(p) == pytest.approx(multipletests(p, method="holm")[1])
