"""Each learner's meta-step against this machine's own limit, measured in the same run.

One thread, as a harness run uses: the step's FLOPs (``FlopCounterMode``, forward and backward),
its median time, the achieved GFLOP/s, and the limit — the step's own matrix products replayed
alone (``harness/roofline.py``) — at one thread and at two. HalfCheetah dimensions and each
learner's default (paper) settings, as ``test_bench_learners.py``. An evaluation point on
cheetah-vel splits into simulator time and the learner's (adaptation and acting). ``python -m
harness speed`` turns the rows into ``reports/speed/``'s roofline table and bar chart.
"""

from functools import partial

import pytest
import torch

from algorithms import learner_class
from envs import make_family
from harness.collect.build import build, dataset_dir
from harness.datasets import OfflineDataset
from harness.evaluate import EvalConfig, evaluate, make_eval_envs
from harness.roofline import TimedEnv, against_limit, count_step, median_seconds
from tests.benchmarks.test_bench_learners import ACT, N_TRAIN, OBS, _batch

LEARNERS = ["macaw", "meta-bc", "mt-ft", "pearl", "focal", "prompt-dt"]
SLOW = ("pearl", "focal", "prompt-dt")


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)
    yield


@pytest.mark.parametrize("name", LEARNERS)
def test_roofline_meta_step(benchmark, name):
    learner = learner_class(name)(OBS, ACT, N_TRAIN)
    step = partial(learner.meta_train_step, _batch(learner))
    step()
    count = count_step(step)
    rounds = 5 if name in SLOW else 10
    benchmark.pedantic(step, rounds=rounds, warmup_rounds=1)
    seconds = benchmark.stats.stats.median
    one = against_limit(count, seconds)
    torch.set_num_threads(2)
    two = against_limit(count, seconds)
    benchmark.extra_info.update(
        roofline="meta_step",
        learner=name,
        gflop=round(one.gflop, 3),
        ms=round(one.step_ms, 2),
        gflops=round(one.gflops, 2),
        limit_gflops_1t=round(one.limit_gflops, 2),
        limit_gflops_2t=round(two.limit_gflops, 2),
        fraction=round(one.fraction, 3),
        dominant=one.dominant,
    )
    print(f"\n{name}: {one}")


@pytest.fixture(scope="module")
def cheetah(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    build("cheetah-vel", "tiny", 0, root, workers=1, progress=False)
    family = make_family("cheetah-vel")
    return family, OfflineDataset.load(dataset_dir("cheetah-vel", "tiny", 0, root))


@pytest.mark.parametrize("name", LEARNERS)
def test_roofline_evaluation_point(benchmark, cheetah, name):
    """One evaluation point (5 test tasks, prior and adapted policies): simulator seconds
    against the learner's, and the learner's FLOPs."""
    family, ds = cheetah
    learner = learner_class(name)(family.obs_dim, family.act_dim, len(family.train_indices))
    clock = [0.0]
    envs = {
        k: TimedEnv(env, clock) for k, env in make_eval_envs(family, family.test_indices).items()
    }
    point = partial(evaluate, learner, family, ds, 0, EvalConfig(), envs)
    point()
    count = count_step(point)
    clock[0] = 0.0
    seconds = median_seconds(point, repeats=3)
    sim = clock[0] / 4  # the warm-up call inside median_seconds and 3 timed calls
    benchmark.pedantic(point, rounds=1, iterations=1)
    one = against_limit(count, max(seconds - sim, 1e-9))
    benchmark.extra_info.update(
        roofline="evaluation_point",
        learner=name,
        ms=round(seconds * 1e3, 1),
        sim_ms=round(sim * 1e3, 1),
        learner_ms=round((seconds - sim) * 1e3, 1),
        gflop=round(one.gflop, 3),
        gflops=round(one.gflops, 2),
        limit_gflops_1t=round(one.limit_gflops, 2),
        fraction=round(one.fraction, 3),
    )
    print(f"\n{name} evaluation point: {seconds * 1e3:.0f} ms, simulator {sim * 1e3:.0f} ms")
