"""Meta-iteration cost of each learner at the paper's settings, with a reference in the same run.

HalfCheetah dimensions (obs 20, act 6), batch 256 per task, 5 tasks (PEARL and FOCAL: their 16;
Prompt-DT: 16 windows of 20 steps from each of 5 tasks), MACAW with weight transform. The
reference is a plain per-task autograd loop of the same MACAW equations
(``tests/reference_macaw.py``), PEARL's its step as first written (``tests/reference_pearl.py``),
Prompt-DT's its step on the first version's ``nn.TransformerEncoder``
(``tests/reference_prompt_dt.py``); the ratio we report is measured with the two alternating
(``interleaved.py``: this run's drift cancels in it), besides each one's own benchmark.

``OMRL_BENCH_DEVICE=cuda`` runs the same benchmarks on a GPU (every step ends in ``.item()``
calls, so the timings include the device work).
"""

import os
from functools import partial

import pytest

from algorithms import learner_class
from algorithms.macaw import MACAW
from tests.benchmarks.interleaved import interleaved_ratio
from tests.reference_macaw import ReferenceMACAWStep, make_batch
from tests.reference_pearl import reference_pearl_step
from tests.reference_prompt_dt import reference_prompt_dt

OBS, ACT, N_TRAIN = 20, 6, 35
DEVICE = os.environ.get("OMRL_BENCH_DEVICE", "cpu")


def _batch(learner):
    cfg = learner.config
    batch = make_batch(cfg.tasks_per_batch, cfg.outer_batch, OBS, ACT)
    if cfg.inner_batch != cfg.outer_batch:
        inner = make_batch(cfg.tasks_per_batch, cfg.inner_batch, OBS, ACT)
        batch = type(batch)(inner.inner, batch.outer, batch.task_ids)
    return batch.to(DEVICE)


SLOW = ("pearl", "focal", "prompt-dt")


def _macaw_reference():
    step = ReferenceMACAWStep(MACAW(OBS, ACT, N_TRAIN, device=DEVICE))
    batch = make_batch(5, 256, OBS, ACT).to(DEVICE)
    return partial(step, batch)


def _pearl_reference():
    learner = learner_class("pearl")(OBS, ACT, N_TRAIN, device=DEVICE)
    batch = _batch(learner)
    return partial(reference_pearl_step, learner, batch)


def _prompt_dt_reference():
    learner = reference_prompt_dt(OBS, ACT, N_TRAIN, device=DEVICE)
    return partial(learner.meta_train_step, _batch(learner))


REFERENCES = {
    "macaw": _macaw_reference,
    "pearl": _pearl_reference,
    "prompt-dt": _prompt_dt_reference,
}
"""The in-run reference of a learner's step (on a learner of its own), where it has one."""


def test_reference_per_task_autograd_macaw_step(benchmark):
    benchmark.pedantic(_macaw_reference(), rounds=10, warmup_rounds=2)


def test_reference_pearl_step_with_every_gradient(benchmark):
    """PEARL's step as first written (the Q nets' discarded gradients computed)."""
    benchmark.pedantic(_pearl_reference(), rounds=5, warmup_rounds=2)


def test_reference_prompt_dt_step_on_the_first_transformer(benchmark):
    """Prompt-DT's step on ``nn.TransformerEncoder`` with ``nn.Dropout``, as first written."""
    benchmark.pedantic(_prompt_dt_reference(), rounds=5, warmup_rounds=2)


@pytest.mark.parametrize("name", ["macaw", "meta-bc", "mt-ft", "pearl", "focal", "prompt-dt"])
def test_meta_train_step(benchmark, name):
    learner = learner_class(name)(OBS, ACT, N_TRAIN, device=DEVICE)
    batch = _batch(learner)
    rounds = 5 if name in SLOW else 10
    benchmark.pedantic(learner.meta_train_step, args=(batch,), rounds=rounds, warmup_rounds=2)
    median = benchmark.stats.stats.median
    benchmark.extra_info["ms_per_step"] = round(median * 1e3, 1)
    if name in REFERENCES:
        pairs = 6 if name in SLOW else 8
        step = partial(learner.meta_train_step, batch)
        ratio = interleaved_ratio(REFERENCES[name](), step, pairs)
        benchmark.extra_info["speedup_vs_reference"] = round(ratio, 2)
        benchmark.extra_info["ratio_pairs"] = pairs
        print(
            f"\n{name} step {median * 1e3:.1f} ms on {DEVICE}; {ratio:.2f}× faster than its "
            f"reference (interleaved, {pairs} pairs)"
        )
