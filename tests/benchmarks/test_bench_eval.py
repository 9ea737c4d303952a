"""One evaluation point on cheetah-vel: the batched evaluator against the sequential loop.

The reference (``tests/reference_evaluate.py``) rolls out each test task's prior and adapted
policies one after another, one forward per env step; the evaluator steps all ten environments
together with one forward per step. Both give the same rows (``tests/test_evaluation.py``); the
ratio we report is measured in the same run with the two loops alternating (``interleaved.py``:
a drift of the host cancels in it), besides each loop's own benchmark. The cost of one point
against the number of test tasks is ``test_evaluation_cost_vs_test_tasks``.
"""

import copy
from functools import partial

import pytest
import torch

from algorithms import learner_class
from envs import make_family
from harness.collect.build import build, dataset_dir
from harness.datasets import OfflineDataset
from harness.evaluate import EvalConfig, evaluate, make_eval_envs
from tests.benchmarks.interleaved import interleaved_ratio
from tests.reference_evaluate import evaluate_sequential

PAIRS = 6


@pytest.fixture(autouse=True)
def one_thread():
    """Runs evaluate on one thread (a run per core): measured so."""
    torch.set_num_threads(1)
    yield


@pytest.fixture(scope="module")
def cheetah(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    build("cheetah-vel", "tiny", 0, root, workers=1, progress=False)
    return make_family("cheetah-vel"), OfflineDataset.load(
        dataset_dir("cheetah-vel", "tiny", 0, root)
    )


def _learner(name, family):
    return learner_class(name)(family.obs_dim, family.act_dim, len(family.train_indices))


@pytest.mark.parametrize("name", ["macaw", "meta-bc", "mt-ft", "pearl"])
@pytest.mark.parametrize("loop", ["sequential", "batched", "batched-together"])
def test_evaluation_point(benchmark, cheetah, name, loop):
    """``batched``: the default, all test tasks adapted in one ``adapt_each`` call (per-task
    products, bit for bit as alone); ``batched-together``: ``adapt_all``, products fused across
    tasks too (``adapt_together``)."""
    family, ds = cheetah
    learner = _learner(name, family)
    tasks = list(family.test_indices)
    seq_envs = {t: family.make_env(t) for t in tasks}
    # the loop as first written: each task adapted alone when its turn comes
    sequential = partial(evaluate_sequential, learner, family, ds, 0, EvalConfig(), seq_envs)
    if loop == "sequential":
        benchmark.pedantic(sequential, rounds=5, warmup_rounds=1)
        return
    cfg = EvalConfig(adapt_together=loop == "batched-together")
    batched = partial(evaluate, learner, family, ds, 0, cfg, make_eval_envs(family, tasks))
    benchmark.pedantic(batched, rounds=5, warmup_rounds=1)
    ratio = interleaved_ratio(sequential, batched, PAIRS)
    benchmark.extra_info["speedup_vs_sequential"] = round(ratio, 2)
    benchmark.extra_info["ratio_pairs"] = PAIRS
    print(f"\n{name} evaluation point: {loop} {ratio:.2f}× faster than sequential (interleaved)")


@pytest.mark.parametrize("n_tasks", [1, 2, 5, 10, 20])
def test_evaluation_cost_vs_test_tasks(benchmark, cheetah, n_tasks):
    """MACAW, one evaluation point with ``n_tasks`` test tasks (cheetah-vel's velocities)."""
    family, ds = cheetah
    tasks = list(range(n_tasks))  # every cheetah-vel task has data in the tiny build
    fam = copy.copy(family)
    fam.test_indices = tasks  # the evaluator reads the split from here only
    learner = _learner("macaw", family)
    envs = make_eval_envs(fam, tasks)
    benchmark.pedantic(
        evaluate, args=(learner, fam, ds, 0, EvalConfig(), envs), rounds=3, warmup_rounds=1
    )
    benchmark.extra_info["sweep"] = "eval_tasks"
    benchmark.extra_info["x"] = n_tasks
