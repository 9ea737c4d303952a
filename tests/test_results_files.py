"""The results folder's writers under concurrency: unique temporary names, locked merges."""

import json
import multiprocessing as mp
from pathlib import Path

from harness.results import atomic_write, update_json
from harness.runner import PLAN, RunConfig, read_plan, write_plan

WRITERS = 8
ENTRIES_EACH = 5


def _launch_plan(args: tuple[str, int]) -> None:
    """One launch recording its own runs in the shared plan, several times over."""
    results, k = args
    for j in range(ENTRIES_EACH):
        cfg = RunConfig("s", "macaw", "point-robot", seed=k * 100 + j)
        write_plan(Path(results), "s", [cfg])


def test_eight_simultaneous_launches_lose_no_plan_entry_and_raise_nothing(tmp_path):
    ctx = mp.get_context("spawn")
    with ctx.Pool(WRITERS) as pool:
        pool.map(_launch_plan, [(str(tmp_path), k) for k in range(WRITERS)])
    seeds = sorted(cfg.seed for cfg in read_plan(tmp_path / "s"))
    assert seeds == sorted(k * 100 + j for k in range(WRITERS) for j in range(ENTRIES_EACH))
    left = [p.name for p in (tmp_path / "s").iterdir() if p.name not in (PLAN, PLAN + ".lock")]
    assert left == []  # no temporary file survives


def _bump(path: str) -> None:
    for _ in range(20):
        update_json(Path(path), lambda d: {**d, "n": d.get("n", 0) + 1})


def test_locked_updates_from_eight_processes_count_every_increment(tmp_path):
    path = tmp_path / "counter.json"
    ctx = mp.get_context("spawn")
    with ctx.Pool(WRITERS) as pool:
        pool.map(_bump, [str(path)] * WRITERS)
    assert json.loads(path.read_text())["n"] == WRITERS * 20


def test_a_failing_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "x.json"
    atomic_write(path, "old\n")

    def boom(f):
        f.write(b"half")
        raise RuntimeError("disk full")

    try:
        atomic_write(path, boom)
    except RuntimeError:
        pass
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]
