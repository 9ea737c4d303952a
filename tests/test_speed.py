"""The speed report is computed from a benchmark file alone, and refuses what is not one."""

import json

import pytest

from harness.cli import main
from harness.speed import build_speed_report, load_benchmarks, ratio_table, sweep_table
from tests.benchmarks.interleaved import interleaved_times, median_ratio


def _bench(name, median, **extra):
    return {"name": name, "stats": {"median": median}, "extra_info": extra}


@pytest.fixture
def bench_file(tmp_path):
    doc = {
        "machine_info": {"node": "ci", "cpu": {"brand_raw": "Test CPU"}},
        "benchmarks": [
            _bench("test_step_cost[macaw-tasks-1]", 0.01, learner="macaw", sweep="tasks", x=1),
            _bench("test_step_cost[macaw-tasks-4]", 0.03, learner="macaw", sweep="tasks", x=4),
            _bench("test_step_cost[pearl-tasks-1]", 0.10, learner="pearl", sweep="tasks", x=1),
            _bench("test_step_cost[pearl-tasks-4]", 0.40, learner="pearl", sweep="tasks", x=4),
            _bench("test_eval[batched-macaw]", 0.2, speedup_vs_sequential=2.5, ratio_pairs=6),
            _bench("test_step[macaw]", 0.06, speedup_vs_reference=4.6),
            _bench("test_reference", 0.5),
        ],
    }
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(doc))
    return path


def test_sweep_costs_are_relative_to_the_smallest_x_per_learner(bench_file):
    df, machine = load_benchmarks(bench_file)
    table = sweep_table(df)
    got = {(r.learner, r.x): round(r.relative, 6) for r in table.itertuples()}
    assert got == {("macaw", 1): 1.0, ("macaw", 4): 3.0, ("pearl", 1): 1.0, ("pearl", 4): 4.0}
    assert machine["node"] == "ci"
    ratios = ratio_table(df)
    assert ratios.to_dict("records") == [
        {
            "benchmark": "test_eval[batched-macaw]",
            "against": "sequential",
            "ratio": 2.5,
            "measured": "interleaved, 6 pairs",
        },
        {
            "benchmark": "test_step[macaw]",
            "against": "reference",
            "ratio": 4.6,
            "measured": "two medians",  # a file from before the benchmarks interleaved
        },
    ]


def test_speed_report_writes_table_plot_and_readme(bench_file, tmp_path):
    out = tmp_path / "speed"
    readme = build_speed_report(bench_file, out)
    text = readme.read_text()
    assert "Test CPU" in text and "| sequential |" in text.replace("  ", " ")
    assert (out / "scaling.png").stat().st_size > 1000
    assert (out / "speed.csv").read_text().count("\n") == 8


def test_a_file_that_is_not_a_benchmark_is_a_one_line_error(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"not": "benchmarks"')
    assert main(["speed", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "not a pytest-benchmark JSON file" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_interleaved_ratio_alternates_the_two_and_takes_the_median_of_round_ratios():
    calls = []
    ref, cand = interleaved_times(lambda: calls.append("r"), lambda: calls.append("c"), 4, 1)
    # one untimed warm-up round, then each goes first in every other round
    assert "".join(calls) == "rc" + "rc" + "cr" + "rc" + "cr"
    assert len(ref) == len(cand) == 4
    # a host slowing down 2x between rounds cancels: every round says 3x
    assert median_ratio([3.0, 6.0, 12.0, 24.0], [1.0, 2.0, 4.0, 8.0]) == 3.0
    assert median_ratio([1.0, 1.0, 1.0], [2.0, 0.5, 1.0]) == 1.0
