"""Runs that survive real use, through the CLI as a user calls it: Ctrl-C in the pool, two
launches at once, kill -9 and train.csv, a failing run, status, --dry-run, evaluate; and the
statistics cross-checked against rliable."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.collect.build import build
from harness.runner import RunConfig, execute_run, run_dir, write_plan
from tests.conftest import ROOT
from tests.test_harness import cli, run_args, suite_file

MACAW_SUITE = """
    algorithms = ["macaw"]
    families = ["point-robot"]
    seeds = [0, 1]
    [run]
    data_budget = "tiny"
    steps = {steps}
    eval_every = 20
    [learner.macaw]
    width = 32
    wt_latent = 16
    inner_batch = 64
    outer_batch = 64
"""


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    build("point-robot", "tiny", 0, root, workers=2, progress=False)
    return root


def _all_rows(results, suite="t", name="metrics.csv"):
    frames = []
    for p in sorted((results / suite / "runs").glob(f"*/{name}")):
        frames.append(pd.read_csv(p).drop(columns=["wall_time"]).assign(run=p.parent.name))
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def lone(tmp_path_factory, data_root):
    """The uninterrupted reference: the pool suite run once, alone."""
    tmp = tmp_path_factory.mktemp("lone")
    suite = suite_file(tmp, MACAW_SUITE.format(steps=240))
    p = cli(*run_args(suite, tmp, data_root, "--workers", "2"))
    assert p.returncode == 0, p.stderr
    return tmp / "r"


def _terminal_signals() -> None:
    """A terminal's foreground job takes Ctrl-C. A shell without job control (a CI script, a
    `cmd &` in a script) starts its children with SIGINT ignored, and Python then keeps it
    ignored: the launch would never see the test's Ctrl-C (seen: rc 0 after a full run)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _launch(args, quiet=False, **kw):
    """``python -m harness ARGS`` in the background, as a user's terminal would start it."""
    out = subprocess.DEVNULL if quiet else subprocess.PIPE
    return subprocess.Popen(
        [sys.executable, "-m", "harness", *args],
        cwd=ROOT,
        stdout=out,
        stderr=out,
        text=True,
        preexec_fn=_terminal_signals,
        **kw,
    )


def _wait_for_rows(path, n, proc, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.exists() and len(path.read_text().splitlines()) > n:
            return
        assert proc.poll() is None, "the run ended before it could be interrupted"
        time.sleep(0.1)
    raise AssertionError(f"{path} never reached {n} rows")


def test_ctrl_c_to_a_pool_run_stops_within_10_s_and_the_rerun_gives_identical_rows(
    tmp_path, data_root, lone
):
    suite = suite_file(tmp_path, MACAW_SUITE.format(steps=240))
    args = run_args(suite, tmp_path, data_root, "--workers", "2")
    # its own process group, as a terminal's foreground job
    proc = _launch(args, start_new_session=True)
    metrics = tmp_path / "r" / "t" / "runs" / "macaw__point-robot__seed0" / "metrics.csv"
    _wait_for_rows(metrics, 1 + 2 * 20, proc)
    t0 = time.time()
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does: the whole group gets it
    out, err = proc.communicate(timeout=30)
    assert time.time() - t0 <= 10.0
    assert proc.returncode == 130
    lines = [ln for ln in (out + err).splitlines() if ln.strip()]
    assert len(lines) <= 3, lines
    assert not (metrics.parent / "done.json").exists()
    again = cli(*args)
    assert again.returncode == 0, again.stderr
    pd.testing.assert_frame_equal(_all_rows(tmp_path / "r"), _all_rows(lone))
    pd.testing.assert_frame_equal(
        _all_rows(tmp_path / "r", name="train.csv"), _all_rows(lone, name="train.csv")
    )


def _children(pid: int) -> list[int]:
    """Pids whose parent is ``pid`` (Linux /proc)."""
    out = []
    for stat in os.listdir("/proc"):
        if stat.isdigit():
            try:
                fields = Path(f"/proc/{stat}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(stat))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "kill-9"])
def test_a_pool_launch_killed_alone_leaves_no_worker_running_and_resumes_exactly(
    tmp_path, data_root, lone, sig
):
    """`kill PID` stops a launch as Ctrl-C does; after `kill -9 PID` its workers notice the
    parent is gone, checkpoint and exit — no orphan trains on, and the rerun loses nothing."""
    suite = suite_file(tmp_path, MACAW_SUITE.format(steps=240))
    args = run_args(suite, tmp_path, data_root, "--workers", "2")
    proc = _launch(args, quiet=True, start_new_session=True)
    metrics = tmp_path / "r" / "t" / "runs" / "macaw__point-robot__seed0" / "metrics.csv"
    _wait_for_rows(metrics, 1 + 2 * 20, proc)
    workers = _children(proc.pid)
    assert workers
    t0 = time.time()
    os.kill(proc.pid, sig)  # the launch alone, not its process group
    proc.wait(timeout=30)
    assert proc.returncode == (130 if sig == signal.SIGTERM else -signal.SIGKILL)
    while any(_alive(w) for w in workers) and time.time() - t0 < 15:
        time.sleep(0.1)
    assert not any(_alive(w) for w in workers), "a worker outlived its launch"
    assert not (metrics.parent / "done.json").exists()
    again = cli(*args)
    assert again.returncode == 0, again.stderr
    pd.testing.assert_frame_equal(_all_rows(tmp_path / "r"), _all_rows(lone))


def test_two_launches_at_once_give_the_rows_of_a_lone_launch(tmp_path, data_root, lone):
    suite = suite_file(tmp_path, MACAW_SUITE.format(steps=240))
    args = run_args(suite, tmp_path, data_root, "--workers", "2")
    procs = [_launch(args) for _ in range(2)]
    results = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [r[1] for r in results]
    rows = _all_rows(tmp_path / "r")
    assert not rows.duplicated(["run", "step", "task"]).any()
    pd.testing.assert_frame_equal(rows, _all_rows(lone))


def test_train_csv_survives_kill_9_and_resume_without_duplicate_or_missing_steps(
    tmp_path, data_root, lone
):
    suite = suite_file(tmp_path, MACAW_SUITE.format(steps=240))
    args = run_args(suite, tmp_path, data_root, "--executor", "inprocess", "--seeds", "0")
    proc = _launch(args, quiet=True)
    train = tmp_path / "r" / "t" / "runs" / "macaw__point-robot__seed0" / "train.csv"
    _wait_for_rows(train, 5, proc)
    time.sleep(0.3)  # mid-way between two checkpoints
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (train.parent / "done.json").exists()
    again = cli(*args)
    assert again.returncode == 0, again.stderr
    got = pd.read_csv(train)
    assert got["step"].tolist() == list(range(10, 241, 10))
    want = pd.read_csv(lone / "t" / "runs" / train.parent.name / "train.csv")
    pd.testing.assert_frame_equal(got.drop(columns="wall_time"), want.drop(columns="wall_time"))


def test_a_failing_run_writes_its_error_the_others_finish_and_status_shows_it(tmp_path, data_root):
    suite = suite_file(
        tmp_path,
        """
        algorithms = ["tests.plugins:BrokenLearner", "mt-ft"]
        families = ["point-robot"]
        [run]
        data_budget = "tiny"
        steps = 6
        eval_every = 2
        [learner.broken]
        width = 16
        [learner.mt-ft]
        width = 16
        """,
    )
    p = cli(*run_args(suite, tmp_path, data_root, "--workers", "2"))
    assert p.returncode == 2
    assert p.stderr.count("\n") == 1 and "1 of 2 run(s) failed" in p.stderr
    assert "boom at step 3" in p.stderr
    runs = tmp_path / "r" / "t" / "runs"
    assert (runs / "mt-ft__point-robot__seed0" / "done.json").exists()
    broken = "tests-plugins-BrokenLearner__point-robot__seed0"
    assert "boom at step 3" in (runs / broken / "error.txt").read_text()
    st = cli("status", str(tmp_path / "r" / "t"))
    assert st.returncode == 0, st.stderr
    line = next(ln for ln in st.stdout.splitlines() if ln.startswith(broken))
    assert "failed" in line and "boom at step 3" in line


def test_status_and_dry_run_on_a_half_finished_suite(tmp_path, data_root):
    suite = suite_file(tmp_path, MACAW_SUITE.format(steps=40).replace("[0, 1]", "[0, 1, 2]"))
    from harness.suite import load_suite

    name, runs, _ = load_suite(str(suite))
    results = tmp_path / "r"
    write_plan(results, name, runs)
    execute_run(runs[0], results, data_root)  # done
    execute_run(runs[1], results, data_root, stop_after_evals=1)  # partial at step 20
    before = sorted(p.relative_to(results) for p in results.rglob("*"))
    st = cli("status", str(results / name), "--workers", "2")
    assert st.returncode == 0, st.stderr
    lines = st.stdout.splitlines()
    assert "done" in lines[0] and "step      40/40" in lines[0]
    assert "partial" in lines[1] and "step      20/40" in lines[1] and "last score" in lines[1]
    assert "not started" in lines[2]
    assert lines[-1].startswith("1 done, 1 not started, 1 partial; ETA ≈")
    dry = cli(*run_args(suite, tmp_path, data_root, "--dry-run"))
    assert dry.returncode == 0, dry.stderr
    assert "runs: 1 done, 1 not started, 1 partial" in dry.stdout
    assert "macaw on point-robot:" in dry.stdout and "ms/step" in dry.stdout
    assert "data point-robot (tiny, seed 0): cached" in dry.stdout
    assert "estimated training time" in dry.stdout
    assert sorted(p.relative_to(results) for p in results.rglob("*")) == before  # no writes
    assert not (tmp_path / "rep").exists()


def test_evaluate_rescores_the_kept_final_learner_as_the_last_evaluation(tmp_path, data_root):
    cfg = RunConfig(
        suite="s",
        algorithm="mt-ft",
        family="point-robot",
        seed=0,
        data_budget="tiny",
        steps=4,
        eval_every=2,
        learner={"width": 16},
    )
    out = execute_run(cfg, tmp_path, data_root)
    assert (out / "final.pt").exists() and not (out / "checkpoint.pt").exists()
    p = cli("evaluate", str(out), "--root", str(data_root), "--episodes", "1")
    assert p.returncode == 0, p.stderr
    last = pd.read_csv(out / "metrics.csv").query("step == 4")
    mean = float(p.stdout.strip().splitlines()[-1].rsplit(":", 1)[1])
    assert mean == pytest.approx(last["post_return"].mean(), abs=0.01)
    none = execute_run(
        RunConfig(**{**cfg.to_json(), "seed": 1}), tmp_path, data_root, keep_final=False
    )
    assert not (none / "final.pt").exists()
    missing = cli("evaluate", str(none), "--root", str(data_root))
    assert missing.returncode == 2 and "final.pt does not exist" in missing.stderr


def test_a_run_held_by_another_process_is_skipped_not_executed_twice(tmp_path, data_root):
    from filelock import FileLock

    cfg = RunConfig(
        suite="s",
        algorithm="mt-ft",
        family="point-robot",
        seed=0,
        data_budget="tiny",
        steps=2,
        eval_every=2,
        learner={"width": 16},
    )
    out = run_dir(tmp_path, cfg)
    out.mkdir(parents=True)
    with FileLock(out / ".lock"):
        held = subprocess.run(
            [
                sys.executable,
                "-c",
                (
                    "import sys; from pathlib import Path; from harness.runner import *; "
                    f"cfg = RunConfig(**{cfg.to_json()!r}); "
                    f"execute_run(cfg, Path({str(tmp_path)!r}), Path({str(data_root)!r}))"
                ),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert held.returncode != 0 and "RunBusy" in held.stderr
    assert not (out / "metrics.csv").exists()
    execute_run(cfg, tmp_path, data_root)  # once released, it runs
    assert (out / "done.json").exists()


def test_our_statistics_agree_with_rliable():
    """IQM and P(X > Y) against rliable's own functions. rliable's bootstrap and profile
    functions (``rliable.library``) cannot run here: they need ``arch`` < 8, whose 7.x releases
    fail to import under pandas 3, and arch 8 renamed the argument rliable passes — measured
    with rliable 1.2.0. So our stratified bootstrap keeps its known-answer tests."""
    rliable_metrics = pytest.importorskip("rliable.metrics")
    from harness.aggregate import iqm
    from harness.findings import probability_of_improvement

    rng = np.random.default_rng(0)
    for _ in range(5):
        x = rng.normal(0.5, 0.2, size=(10, 4))  # runs × tasks
        y = rng.normal(0.4, 0.2, size=(7, 4))
        assert iqm(x) == pytest.approx(float(rliable_metrics.aggregate_iqm(x)))
        # rliable averages the per-task probabilities over tasks
        ours = np.mean([probability_of_improvement(x[:, t], y[:, t]) for t in range(4)])
        assert ours == pytest.approx(float(rliable_metrics.probability_of_improvement(x, y)))


def test_tensorboard_events_hold_the_train_csv_metrics(tmp_path, data_root):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = RunConfig(
        suite="s",
        algorithm="mt-ft",
        family="point-robot",
        seed=0,
        data_budget="tiny",
        steps=6,
        eval_every=3,
        learner={"width": 16},
    )
    out = execute_run(cfg, tmp_path, data_root, log_every=2, tensorboard=True)
    acc = EventAccumulator(str(out / "tb"))
    acc.Reload()
    train = pd.read_csv(out / "train.csv")
    events = acc.Scalars("train/value_loss")
    assert [e.step for e in events] == train["step"].tolist() == [2, 4, 6]
    np.testing.assert_allclose([e.value for e in events], train["value_loss"], rtol=1e-6)


def test_a_worker_killed_from_outside_fails_its_run_only_and_the_rerun_resumes_it(
    tmp_path, data_root, lone
):
    suite = suite_file(tmp_path, MACAW_SUITE.format(steps=240))
    args = run_args(suite, tmp_path, data_root, "--workers", "2")
    proc = _launch(args)
    runs = tmp_path / "r" / "t" / "runs"
    _wait_for_rows(runs / "macaw__point-robot__seed0" / "metrics.csv", 1 + 20, proc)
    children = subprocess.run(
        ["pgrep", "-P", str(proc.pid), "-f", "spawn_main"], capture_output=True, text=True
    ).stdout.split()
    assert len(children) == 2, children
    os.kill(int(children[0]), signal.SIGKILL)  # as the OOM killer would
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2 and "1 of 2 run(s) failed" in err and "worker process died" in err
    failed = [p for p in runs.glob("*/error.txt")]
    assert len(failed) == 1 and not (failed[0].parent / "done.json").exists()
    again = cli(*args)
    assert again.returncode == 0, again.stderr
    pd.testing.assert_frame_equal(_all_rows(tmp_path / "r"), _all_rows(lone))
