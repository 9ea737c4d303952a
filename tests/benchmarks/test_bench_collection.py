"""Behaviour-agent training throughput: task-updates per second of per-task SAC, four ways.

* ``per-task loop``: one single-task learner per task, updated one after another (the reference);
* ``batched``: one stacked learner for all tasks (one process, batched matmuls);
* ``per-task, 2 processes``: single-task learners split over two worker processes;
* ``batched, 2 processes``: two stacked learners, one per worker — what ``data build`` does.

Widths as the ``small`` (64) and ``default`` (128) budgets; 20 tasks, batch 256.
"""

from concurrent.futures import ProcessPoolExecutor

import pytest
import torch

from harness.collect.sac import BatchedSAC, SACConfig

TASKS, UPDATES, OBS, ACT = 20, 10, 20, 6
_ref: dict[int, float] = {}


def _train(n_learners: int, tasks_each: int, hidden: int, updates: int = UPDATES) -> int:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread per learner process, as `data build` runs them
    try:
        return _updates(n_learners, tasks_each, hidden, updates)
    finally:
        torch.set_num_threads(threads)  # in-process modes must not leave later benchmarks at 1


def _updates(n_learners: int, tasks_each: int, hidden: int, updates: int) -> int:
    torch.manual_seed(0)
    learners = [
        BatchedSAC(tasks_each, OBS, ACT, 1.0, SACConfig(hidden=hidden)) for _ in range(n_learners)
    ]
    B = 256
    o, a = torch.randn(tasks_each, B, OBS), torch.rand(tasks_each, B, ACT) * 2 - 1
    r, d = torch.randn(tasks_each, B), torch.zeros(tasks_each, B)
    for _ in range(updates):
        for learner in learners:
            learner.update(o, a, r, o, d)
    return n_learners * tasks_each * updates


@pytest.fixture(scope="module")
def pool():
    with ProcessPoolExecutor(2) as p:
        list(p.map(_train, [1, 1], [1, 1], [16, 16], [1, 1]))  # warm the workers
        yield p


def _two_processes(pool, n_learners, tasks_each, hidden):
    return sum(pool.map(_train, [n_learners] * 2, [tasks_each] * 2, [hidden] * 2))


@pytest.mark.parametrize("hidden", [64, 128])
@pytest.mark.parametrize(
    "mode", ["per-task loop", "batched", "per-task, 2 processes", "batched, 2 processes"]
)
def test_collection_updates_per_second(benchmark, pool, mode, hidden):
    if mode == "per-task loop":
        fn, args = _train, (TASKS, 1, hidden)
    elif mode == "batched":
        fn, args = _train, (1, TASKS, hidden)
    elif mode == "per-task, 2 processes":
        fn, args = _two_processes, (pool, TASKS // 2, 1, hidden)
    else:
        fn, args = _two_processes, (pool, 1, TASKS // 2, hidden)
    task_updates = benchmark.pedantic(fn, args=args, rounds=3, warmup_rounds=1)
    rate = task_updates / benchmark.stats.stats.median
    benchmark.extra_info["task_updates_per_s"] = round(rate)
    if mode == "per-task loop":
        _ref[hidden] = rate
    elif hidden in _ref:
        benchmark.extra_info["ratio_vs_per_task_loop"] = round(rate / _ref[hidden], 2)
