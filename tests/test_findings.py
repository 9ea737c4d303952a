"""Findings and statistics on synthetic results with known answers."""

import numpy as np
import pandas as pd

from harness.aggregate import iqm
from harness.findings import bootstrap_poi, findings_table, probability_of_improvement
from harness.plots import build_report, paper_levels


def _final(scores: dict[tuple[str, str], list[float]]) -> pd.DataFrame:
    rows = [
        {"algorithm": a, "family": f, "seed": s, "score": v}
        for (a, f), vals in scores.items()
        for s, v in enumerate(vals)
    ]
    return pd.DataFrame(rows)


def test_probability_of_improvement_counts_pairs_and_ties_half():
    assert probability_of_improvement([2, 3], [1, 1]) == 1.0
    assert probability_of_improvement([1, 1], [2, 3]) == 0.0
    assert probability_of_improvement([1, 2], [1, 2]) == 0.5
    p, lo, hi = bootstrap_poi(np.array([5.0, 6, 7]), np.array([1.0, 2, 3]))
    assert p == lo == hi == 1.0


def test_verdicts_on_a_synthetic_table_with_known_answers():
    sep = {"a": [10, 11, 12, 13, 14], "b": [0, 1, 2, 3, 4]}
    final = _final(
        {
            ("macaw", "cheetah-vel"): sep["a"],  # MACAW clearly above Meta-BC: holds
            ("meta-bc", "cheetah-vel"): sep["b"],
            ("macaw", "ant-dir"): sep["b"],  # clearly below on ant: fails
            ("meta-bc", "ant-dir"): sep["a"],
            ("mt-ft", "cheetah-vel"): [0, 3, 1, 4, 2],  # the same as Meta-BC: ≥ is not refuted
            ("pearl", "cheetah-vel"): [1, 12, 2, 13, 3],  # overlapping: inconclusive
        }
    )
    f = findings_table(final).set_index(["claim", "family"])["verdict"]
    assert f[("MACAW > Meta-BC on every family", "cheetah-vel")] == "holds"
    assert f[("MACAW > Meta-BC on every family", "ant-dir")] == "fails"
    assert f[("offline PEARL < Meta-BC", "cheetah-vel")] == "inconclusive"
    assert f[("MT+FT ≥ Meta-BC on the cheetahs", "cheetah-vel")] == "inconclusive"
    assert f[("MACAW > MT+FT on cheetah-vel", "cheetah-vel")] == "holds"
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


def test_the_task_count_claim_compares_changes_from_35_tasks_not_levels():
    # MACAW falls by 10 from 35 tasks to 3, MT+FT by 50: MACAW degrades less although MT+FT's
    # 35-task level is higher; PEARL falls by 100
    final = _final(
        {
            ("macaw", "cheetah-vel"): [-100, -101, -99],
            ("macaw-3", "cheetah-vel"): [-110, -111, -109],
            ("mt-ft", "cheetah-vel"): [-50, -51, -49],
            ("mt-ft-3", "cheetah-vel"): [-100, -101, -99],
            ("pearl", "cheetah-vel"): [-100, -101, -99],
            ("pearl-3", "cheetah-vel"): [-200, -201, -199],
        }
    )
    table = findings_table(final).set_index("claim")
    mt = table.loc["MACAW degrades less than MT+FT from 35 train tasks to 3"]
    assert mt["verdict"] == "holds" and mt["comparison"] == "P(macaw-3 − macaw > mt-ft-3 − mt-ft)"
    assert (
        table.loc["MACAW degrades less than offline PEARL from 35 train tasks to 3"]["verdict"]
        == "holds"
    )
    assert "MACAW > MT+FT on cheetah-vel" in table.index  # the levels say the opposite
    assert table.loc["MACAW > MT+FT on cheetah-vel"]["verdict"] == "fails"
