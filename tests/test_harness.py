"""The suite runner: resume after kill -9, bad input, plug-in learners, executors, reports."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest

from harness.aggregate import iqm, per_seed_curves, run_scores, stratified_bootstrap_ci
from harness.cli import main
from harness.collect.build import build, dataset_dir
from harness.executors import run_all
from harness.runner import RunConfig, execute_run, load_final_draws, load_results, run_dir
from tests.conftest import ROOT

TINY_RUN = {"data_budget": "tiny", "steps": 12, "eval_every": 4}
SMALL_MACAW = {"width": 16, "wt_latent": 8, "inner_batch": 32, "outer_batch": 32}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    build("point-robot", "tiny", 0, root, workers=2, progress=False)
    return root


def macaw_and_mt_ft_runs(seed):
    """Two 2-step runs of different algorithms on the same family and seed."""
    return [
        RunConfig(
            suite="s",
            algorithm=a,
            family="point-robot",
            seed=seed,
            steps=2,
            eval_every=2,
            data_budget="tiny",
            learner=SMALL_MACAW if a == "macaw" else {"width": 16},
        )
        for a in ("macaw", "mt-ft")
    ]


def suite_file(tmp_path, text, name="t"):
    p = tmp_path / f"{name}.toml"
    p.write_text(textwrap.dedent(text))
    return p


def _rows(path):
    return pd.read_csv(path).drop(columns=["wall_time"])


def run_args(suite, tmp_path, data_root, *extra):
    """``python -m harness run`` arguments writing under ``tmp_path``."""
    return [
        "run",
        "--suite",
        str(suite),
        "--results",
        str(tmp_path / "r"),
        "--reports",
        str(tmp_path / "rep"),
        "--root",
        str(data_root),
        "--quiet",
        *extra,
    ]


def cli(*args, cwd=ROOT, env=None):
    return subprocess.run(
        [sys.executable, "-m", "harness", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )


# -- resume --------------------------------------------------------------------------------------
def test_resumed_run_writes_exactly_the_rows_of_an_uninterrupted_one(tmp_path, data_root):
    cfg = RunConfig(
        suite="s", algorithm="macaw", family="point-robot", seed=0, **TINY_RUN, learner=SMALL_MACAW
    )
    whole = execute_run(cfg, tmp_path / "a", data_root)
    part = execute_run(cfg, tmp_path / "b", data_root, stop_after_evals=1)
    assert not (part / "done.json").exists() and (part / "checkpoint.pt").exists()
    with open(part / "metrics.csv", "a") as f:  # killed after writing rows, before checkpoint
        f.write(open(part / "metrics.csv").read().splitlines()[-1] + "\n")
    execute_run(cfg, tmp_path / "b", data_root)
    a, b = _rows(whole / "metrics.csv"), _rows(part / "metrics.csv")
    assert len(a) == 4 * 20  # 4 evaluation points (steps 0, 4, 8, 12) × 20 test tasks
    pd.testing.assert_frame_equal(a, b)
    assert not (part / "checkpoint.pt").exists()  # removed once done
    done = json.loads((part / "done.json").read_text())  # the cost table's where and how long
    assert done["cpu"] and done["wall_time"] >= pd.read_csv(part / "metrics.csv")["wall_time"].max()


def test_kill_9_during_a_suite_then_rerun_loses_and_duplicates_nothing(tmp_path, data_root):
    suite = suite_file(
        tmp_path,
        """
        algorithms = ["macaw"]
        families = ["point-robot"]
        seeds = [0]
        [run]
        data_budget = "tiny"
        steps = 400
        eval_every = 20
        [learner.macaw]
        width = 64
        wt_latent = 32
    """,
    )
    args = run_args(suite, tmp_path, data_root, "--executor", "inprocess")
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    metrics = tmp_path / "r" / "t" / "runs" / "macaw__point-robot__seed0" / "metrics.csv"
    deadline = time.time() + 300
    while time.time() < deadline:
        if metrics.exists() and len(metrics.read_text().splitlines()) > 1 + 2 * 20:
            break
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (metrics.parent / "done.json").exists(), "finished before it could be killed"
    done = cli(*args)
    assert done.returncode == 0, done.stderr
    rows = pd.read_csv(metrics)
    assert len(rows) == 21 * 20  # 21 evaluation points (0, 20, …, 400) × 20 test tasks
    assert not rows.duplicated(["step", "task"]).any()
    assert sorted(rows["step"].unique()) == list(range(0, 401, 20))
    assert (tmp_path / "rep" / "t" / "README.md").exists()


# -- bad input -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, message",
    [
        (
            'algorithms = ["macaw", "maml"]\nfamilies = ["point-robot"]',
            "known algorithms: focal, macaw",
        ),
        ('algorithms = ["macaw"]\nfamilies = ["point-rob"]', "known families: ant-dir"),
        (
            'algorithms = ["macaw"]\nfamilies = ["point-robot"]\n[learner.macaw]\nwdth = 3',
            "unknown macaw config key",
        ),
        ('algorithms = ["macaw"]\nfamilies = ["point-robot"]\n[run]\nstepz = 3', "known: "),
        ('algorithms = ["macaw"\nfamilies = 3', "malformed TOML"),
        ('algorithms = ["macaw"]\nfamilies = ["point-robot"]\nseedz = [1]', "unknown key"),
        (
            'algorithms = ["macaw"]\nfamilies = ["point-robot"]\n[run]\nsteps = "100"',
            "[run] steps = '100': Input should be a valid integer",
        ),
        (
            'algorithms = ["macaw"]\nfamilies = ["point-robot"]\n[run]\neval_every = 0',
            "[run] eval_every = 0: Input should be greater than or equal to 1",
        ),
        (
            'algorithms = ["macaw"]\nfamilies = ["point-robot"]\n[run]\ndata_budget = "huge"',
            "data_budget = 'huge': Input should be 'tiny', 'small' or 'default'",
        ),
        (
            'algorithms = ["macaw"]\nfamilies = ["point-robot"]\n[run]\ninner_fraction = 1.5',
            "inner_fraction = 1.5: Input should be less than or equal to 1",
        ),
        (
            'algorithms = ["macaw"]\nfamilies = ["point-robot"]\n[eval]\nadapt_sampling = "random"',
            "adapt_sampling = 'random': Input should be 'iid' or 'window'",
        ),
        (
            'algorithms = ["macaw"]\nfamilies = ["point-robot"]\n'
            "[family.cheetah-vel.run]\nsteps = 3",
            "[family]: unknown key(s) ['cheetah-vel']",
        ),
        (
            'algorithms = ["macaw"]\nfamilies = ["point-robot"]\n[learner.pearl]\nwidth = 3',
            "[learner]: unknown key(s) ['pearl']",
        ),
        (
            'algorithms = ["macaw"]\nfamilies = ["point-robot"]\n[learner.macaw]\nwidth = "100"',
            "[learner.macaw]: macaw config width = '100'",
        ),
        (
            'algorithms = ["macaw"]\nfamilies = ["point-robot"]\n'
            "[learner.macaw]\ntasks_per_batch = 0",
            "tasks_per_batch = 0: Input should be greater than or equal to 1",
        ),
        (
            'algorithms = ["macaw"]\nfamilies = ["point-robot"]\n'
            '[variants.macaw-small]\nalgorithm = "macaw"',
            "[variants.macaw-small]: names no algorithm",
        ),
        ('algorithms = ["macaw"]\nfamilies = ["point-robot"]\nseeds = ["0"]', "list of ints"),
    ],
)
def test_bad_suite_is_a_one_line_error_and_writes_nothing(tmp_path, text, message):
    suite = suite_file(tmp_path, text)
    p = cli(
        "run",
        "--suite",
        str(suite),
        "--results",
        str(tmp_path / "r"),
        "--root",
        str(tmp_path / "d"),
        "--quiet",
    )
    assert p.returncode == 2
    assert p.stderr.startswith("error: ") and p.stderr.count("\n") == 1 and message in p.stderr
    assert not (tmp_path / "r").exists() and not (tmp_path / "d").exists()


def test_a_refused_suite_writes_nothing_so_the_corrected_one_runs_in_the_same_folder(
    tmp_path, data_root
):
    body = """
        algorithms = ["mt-ft"]
        families = ["point-robot"]
        [run]
        data_budget = "tiny"
        eval_every = 2
        steps = {steps}
        [learner.mt-ft]
        width = 16
        """
    bad = cli(*run_args(suite_file(tmp_path, body.format(steps='"2"')), tmp_path, data_root))
    assert bad.returncode == 2 and "steps = '2'" in bad.stderr
    assert not (tmp_path / "r").exists()
    good = cli(*run_args(suite_file(tmp_path, body.format(steps=2)), tmp_path, data_root))
    assert good.returncode == 0, good.stderr


def test_unknown_suite_name_lists_the_known_ones():
    p = cli("run", "--suite", "quik")
    assert p.returncode == 2 and "known suites: ablation-head" in p.stderr and "quick" in p.stderr


def test_missing_or_corrupt_dataset_and_foreign_checkpoint_are_refused(tmp_path, data_root):
    cfg = RunConfig(
        suite="s", algorithm="macaw", family="point-robot", seed=0, **TINY_RUN, learner=SMALL_MACAW
    )
    with pytest.raises(Exception, match="no tiny dataset for point-robot"):
        execute_run(cfg, tmp_path / "r", tmp_path / "empty")
    import shutil

    bad_root = tmp_path / "bad"
    shutil.copytree(data_root, bad_root)
    f = dataset_dir("point-robot", "tiny", 0, bad_root) / "task_0003.npz"
    f.write_bytes(f.read_bytes()[:-10])
    with pytest.raises(Exception, match="task_0003.npz: size"):
        execute_run(cfg, tmp_path / "r2", bad_root)
    # a checkpoint from a different config in the same folder
    out = execute_run(cfg, tmp_path / "r3", data_root, stop_after_evals=1)
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    other = RunConfig(**{**cfg.to_json(), "learner": {**SMALL_MACAW, "width": 17}})
    with pytest.raises(Exception, match="different config .*learner"):
        execute_run(other, tmp_path / "r3", data_root)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before  # nothing overwritten


# -- extension, executors, reports ---------------------------------------------------------------
def readme_baseline_example() -> str:
    """The python block of the README's 'Adding a baseline' section."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("**Adding a baseline**") :]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_readme_baseline_example_runs_through_a_suite_to_a_report(tmp_path, data_root):
    (tmp_path / "my_baselines.py").write_text(readme_baseline_example())
    suite = suite_file(
        tmp_path,
        """
        algorithms = ["my_baselines:MeanAction", "mt-ft"]
        families = ["point-robot"]
        seeds = [0, 1]
        [run]
        data_budget = "tiny"
        steps = 6
        eval_every = 3
        [learner.mt-ft]
        width = 16
        finetune_steps = 2
    """,
    )
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
    p = cli(*run_args(suite, tmp_path, data_root), env=env)
    assert p.returncode == 0, p.stderr
    report = (tmp_path / "rep" / "t" / "README.md").read_text()
    assert "mean-action" in report and "mt-ft" in report
    for fig in ("curves", "final", "aggregate", "profile"):
        assert (tmp_path / "rep" / "t" / f"{fig}.png").stat().st_size > 1000
        assert (tmp_path / "rep" / "t" / f"{fig}.pdf").exists()
    # the report is rebuilt from result files alone
    again = cli("report", str(tmp_path / "r" / "t"), "--out", str(tmp_path / "rep2"))
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "rep2" / "results.csv").read_text() == (
        tmp_path / "rep" / "t" / "results.csv"
    ).read_text()


def test_every_algorithm_adapts_on_identical_data(tmp_path, data_root):
    runs = macaw_and_mt_ft_runs(seed=3)
    run_all(runs, tmp_path, data_root, executor="inprocess")
    rows = load_results(tmp_path / "s")
    per_algo = rows.groupby("algorithm").apply(
        lambda g: tuple(g.sort_values("task")["adaptation_sha256"]), include_groups=False
    )
    assert per_algo.nunique() == 1 and rows["dataset_sha256"].nunique() == 1


def test_finished_runs_record_the_multi_draw_final_score_on_shared_fresh_draws(tmp_path, data_root):
    runs = [dataclasses.replace(r, eval={"final_draws": 3}) for r in macaw_and_mt_ft_runs(seed=3)]
    run_all(runs, tmp_path, data_root, executor="inprocess")
    draws = pd.concat(
        pd.read_csv(run_dir(tmp_path, r) / "final_draws.csv").assign(algorithm=r.algorithm)
        for r in runs
    )
    assert sorted(draws["draw"].unique()) == [1, 2, 3] and (draws["step"] == 2).all()
    sets = draws.groupby("algorithm").apply(
        lambda g: tuple(g.sort_values(["draw", "task"])["adaptation_sha256"]), include_groups=False
    )
    assert sets.nunique() == 1  # every algorithm adapts on the same draws
    curve = load_results(tmp_path / "s")
    last = set(curve.loc[curve["step"] == 2, "adaptation_sha256"])
    per_task = draws[draws["algorithm"] == "macaw"].groupby("task")["adaptation_sha256"]
    assert (per_task.nunique() == 3).all() and not last & set(draws["adaptation_sha256"])
    final = run_scores(per_seed_curves(curve), draws=load_final_draws(tmp_path / "s"))
    assert final["multi_draw"].notna().all() and (final["draws"] == 3).all()


def test_ray_executor_gives_the_local_executors_results(tmp_path, data_root):
    pytest.importorskip("ray")
    runs = [
        RunConfig(
            suite="s",
            algorithm="macaw",
            family="point-robot",
            seed=s,
            steps=6,
            eval_every=3,
            data_budget="tiny",
            learner=SMALL_MACAW,
        )
        for s in (0, 1)
    ]
    run_all(runs, tmp_path / "local", data_root, executor="local", workers=2)
    run_all(runs, tmp_path / "ray", data_root, executor="ray", workers=2)
    for r in runs:
        a = _rows(run_dir(tmp_path / "local", r) / "metrics.csv")
        b = _rows(run_dir(tmp_path / "ray", r) / "metrics.csv")
        pd.testing.assert_frame_equal(a, b)


def test_slurm_executor_through_submitits_local_cluster_gives_the_local_pools_results(
    tmp_path, data_root
):
    pytest.importorskip("submitit")
    suite = suite_file(
        tmp_path,
        """
        algorithms = ["macaw"]
        families = ["point-robot"]
        seeds = [0, 1]
        [run]
        data_budget = "tiny"
        steps = 6
        eval_every = 3
        [learner.macaw]
        width = 16
        wt_latent = 8
        inner_batch = 32
        outer_batch = 32
        """,
    )
    local = cli(*run_args(suite, tmp_path / "local", data_root, "--workers", "2"))
    assert local.returncode == 0, local.stderr
    env = {**os.environ, "OMRL_SUBMITIT_CLUSTER": "local"}
    slurm = cli(
        *run_args(suite, tmp_path / "slurm", data_root, "--executor", "slurm", "--slurm-time", "5"),
        env=env,
    )
    assert slurm.returncode == 0, slurm.stderr
    assert (tmp_path / "slurm" / "r" / "t" / "slurm").is_dir()  # submitit's job logs
    for seed in (0, 1):
        name = f"macaw__point-robot__seed{seed}"
        a = _rows(tmp_path / "local" / "r" / "t" / "runs" / name / "metrics.csv")
        b = _rows(tmp_path / "slurm" / "r" / "t" / "runs" / name / "metrics.csv")
        pd.testing.assert_frame_equal(a, b)


def test_unknown_executor_lists_the_known_ones(tmp_path):
    with pytest.raises(ValueError, match="known executors: local, inprocess, ray, slurm"):
        run_all([], tmp_path, executor="pbs")


# -- statistics on hand-checkable arrays ---------------------------------------------------------
def test_iqm_is_the_mean_of_the_middle_half():
    assert iqm(np.array([0.0, 1, 2, 3, 4, 5, 6, 100])) == pytest.approx(np.mean([2, 3, 4, 5]))


def test_stratified_bootstrap_ci_brackets_the_estimate_and_shrinks_with_more_runs():
    rng = np.random.default_rng(0)
    small = rng.normal(size=(4, 3))
    big = rng.normal(size=(64, 3))
    p, lo, hi = stratified_bootstrap_ci(small, iqm, reps=500, rng=np.random.default_rng(1))
    assert lo <= p <= hi
    _, lo2, hi2 = stratified_bootstrap_ci(big, iqm, reps=500, rng=np.random.default_rng(1))
    assert hi2 - lo2 < hi - lo
    const = np.ones((5, 2))
    assert stratified_bootstrap_ci(const, iqm, reps=50) == (1.0, 1.0, 1.0)


def test_cli_main_returns_2_on_bad_input():
    assert main(["run", "--suite", "definitely-not-a-suite"]) == 2


def test_results_from_different_datasets_are_refused(tmp_path, data_root):
    from harness.runner import RunError

    runs = macaw_and_mt_ft_runs(seed=0)
    run_all(runs, tmp_path, data_root, executor="inprocess")
    metrics = run_dir(tmp_path, runs[1]) / "metrics.csv"
    df = pd.read_csv(metrics)
    df["dataset_sha256"] = "0123456789abcdef"
    df.to_csv(metrics, index=False)
    with pytest.raises(RunError, match="used different datasets"):
        load_results(tmp_path / "s")
    done = run_dir(tmp_path, runs[0]) / "done.json"
    done.write_text(done.read_text().replace('"dataset_sha256": "', '"dataset_sha256": "x'))
    with pytest.raises(RunError, match="not comparable"):
        execute_run(runs[0], tmp_path, data_root)


def test_cli_refuses_a_corrupt_dataset_and_a_run_folder_of_another_config(tmp_path, data_root):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(data_root, root)
    suite = suite_file(
        tmp_path,
        """
        algorithms = ["mt-ft"]
        families = ["point-robot"]
        seeds = [0]
        [run]
        data_budget = "tiny"
        steps = 2
        eval_every = 2
        [learner.mt-ft]
        width = 16
        """,
    )
    ok = cli(*run_args(suite, tmp_path, root))
    assert ok.returncode == 0, ok.stderr
    results = sorted(p.stat().st_mtime_ns for p in (tmp_path / "r").rglob("*") if p.is_file())
    # the same suite name with another learner config must not touch the finished run
    suite.write_text(suite.read_text().replace("width = 16", "width = 17"))
    p = cli(*run_args(suite, tmp_path, root))
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "different config" in p.stderr
    # a dataset file cut short is named, and nothing is used or overwritten
    suite.write_text(suite.read_text().replace("width = 17", "width = 16"))
    f = dataset_dir("point-robot", "tiny", 0, root) / "task_0090.npz"
    f.write_bytes(f.read_bytes()[:-7])
    p = cli(*run_args(suite, tmp_path, root))
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "task_0090.npz: size" in p.stderr
    assert sorted(p.stat().st_mtime_ns for p in (tmp_path / "r").rglob("*") if p.is_file()) == (
        results
    )
