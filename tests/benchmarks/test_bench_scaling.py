"""How a meta-iteration's cost grows: MACAW and offline PEARL against tasks per batch, batch size
and width, one axis at a time around the paper's settings, on one thread (what a run uses).

HalfCheetah dimensions (obs 20, act 6). MACAW's paper point is 5 tasks × 256 rows (inner and
outer), width 100 with weight transform; PEARL's is 16 tasks × 256 rows (context 64), width 300.
``python -m harness speed`` plots these curves from ``--benchmark-json`` (``reports/speed/``).
"""

import os

import pytest
import torch

from algorithms import learner_class, make_config
from tests.reference_macaw import make_batch

OBS, ACT, N_TRAIN = 20, 6, 35
DEVICE = os.environ.get("OMRL_BENCH_DEVICE", "cpu")
PAPER = {
    "macaw": {"tasks_per_batch": 5, "inner_batch": 256, "outer_batch": 256, "width": 100},
    "pearl": {"tasks_per_batch": 16, "inner_batch": 64, "outer_batch": 256, "width": 300},
}
SWEEPS = {
    "tasks": ("tasks_per_batch", [1, 2, 5, 10, 20]),
    "batch": ("outer_batch", [64, 128, 256, 512, 1024]),
    "width": ("width", [100, 200, 300, 400, 725]),
}


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)
    yield


def _case(name: str, sweep: str, value: int):
    overrides = dict(PAPER[name])
    key, _ = SWEEPS[sweep]
    overrides[key] = value
    if name == "macaw" and sweep == "batch":
        overrides["inner_batch"] = value  # MACAW adapts on as many rows as it meta-trains on
    cls = learner_class(name)
    learner = cls(OBS, ACT, N_TRAIN, make_config(cls, overrides), device=DEVICE)
    cfg = learner.config
    batch = make_batch(cfg.tasks_per_batch, cfg.outer_batch, OBS, ACT)
    if cfg.inner_batch != cfg.outer_batch:
        inner = make_batch(cfg.tasks_per_batch, cfg.inner_batch, OBS, ACT)
        batch = type(batch)(inner.inner, batch.outer, batch.task_ids)
    return learner, batch.to(DEVICE)


CASES = [(n, s, v) for n in PAPER for s, (_, values) in SWEEPS.items() for v in values]


@pytest.mark.parametrize(("name", "sweep", "value"), CASES)
def test_step_cost(benchmark, name, sweep, value):
    learner, batch = _case(name, sweep, value)
    benchmark.pedantic(learner.meta_train_step, args=(batch,), rounds=3, warmup_rounds=1)
    benchmark.extra_info.update(learner=name, sweep=sweep, x=value)
