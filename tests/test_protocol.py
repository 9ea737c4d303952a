"""The paper's protocol: task selection, quality slices, adaptation draws, evaluation at 0."""

import pandas as pd
import pytest
import torch

from envs import make_family
from harness.collect.build import build, dataset_dir
from harness.datasets import OfflineDataset, transitions_hash
from harness.runner import RunConfig, execute_run, run_dir, select_train_tasks


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    build("point-robot", "tiny", 0, root, workers=2, progress=False)
    return root


@pytest.fixture(scope="module")
def ds(data_root):
    return OfflineDataset.load(dataset_dir("point-robot", "tiny", 0, data_root))


def test_task_ablation_takes_evenly_spaced_train_tasks_spanning_the_range():
    train = make_family("cheetah-vel").train_indices  # 35 tasks, 0..39 without the test ones
    assert select_train_tasks(train, 3) == [train[0], train[17], train[34]]
    five = select_train_tasks(train, 5)
    assert five[0] == train[0] and five[-1] == train[-1] and len(set(five)) == 5
    pos = [train.index(t) for t in five]
    assert sorted(b - a for a, b in zip(pos, pos[1:])) == [8, 8, 9, 9]  # evenly spaced
    assert select_train_tasks(train, None) == train
    assert select_train_tasks(train, 35) == train


def test_inner_batches_come_from_the_quality_slice_outer_from_the_whole_buffer(ds):
    g = torch.Generator().manual_seed(0)
    tasks = [0, 1, 2]
    for quality, (lo_frac, _hi) in {"first": (0, 1 / 3), "last": (2 / 3, 1)}.items():
        for _ in range(20):
            b = ds.meta_batch(tasks, [0, 1, 2], 16, 64, g, inner_quality=quality)
            for i, t in enumerate(tasks):
                whole = ds.task_transitions(t)
                n = len(whole.reward)
                lo, hi = ds.slice_bounds(ds.position(t), quality, 1 / 3)
                assert lo == round(lo_frac * n) or quality == "last"
                # every inner row is one of the slice's rows (obs are unique per row here)
                sl = whole.obs[lo:hi]
                inner = b.inner.obs[i]
                assert all((sl == row).all(-1).any() for row in inner)
        outer_rows = b.outer.obs[0]
        first_third = ds.task_transitions(0).obs[: len(ds.task_transitions(0).reward) // 3]
        outside = sum(not (first_third == r).all(-1).any() for r in outer_rows)
        assert outside > 0  # the outer batch is not confined to the slice


def test_adaptation_draws_depend_on_step_not_on_the_learner(ds):
    a0 = ds.adaptation_set(80, seed=1, step=0, family="point-robot")
    again = ds.adaptation_set(80, seed=1, step=0, family="point-robot")
    a50 = ds.adaptation_set(80, seed=1, step=50, family="point-robot")
    assert transitions_hash(a0) == transitions_hash(again)
    assert transitions_hash(a0) != transitions_hash(a50)  # fresh i.i.d. rows every evaluation
    assert len(a0.reward) == 256
    w0 = ds.adaptation_set(80, seed=1, step=0, sampling="window")
    w50 = ds.adaptation_set(80, seed=1, step=50, sampling="window")
    assert transitions_hash(w0) == transitions_hash(w50)  # the fixed window stays available
    with pytest.raises(ValueError, match="known: iid, window"):
        ds.adaptation_set(80, seed=1, sampling="fixed")


def _run(tmp_path, data_root, algorithm, learner):
    cfg = RunConfig(
        suite="p",
        algorithm=algorithm,
        family="point-robot",
        seed=0,
        steps=4,
        eval_every=2,
        data_budget="tiny",
        learner=learner,
    )
    execute_run(cfg, tmp_path / "r", data_root)
    return pd.read_csv(run_dir(tmp_path / "r", cfg) / "metrics.csv")


def test_every_algorithm_gets_the_same_draw_per_step_and_a_curve_starts_at_step_0(
    tmp_path, data_root
):
    macaw = _run(tmp_path, data_root, "macaw", {"width": 16, "wt_latent": 8})
    mtft = _run(tmp_path, data_root, "mt-ft", {"width": 16})
    assert sorted(macaw["step"].unique()) == [0, 2, 4]
    key = ["step", "task"]
    m = macaw.set_index(key)["adaptation_sha256"]
    f = mtft.set_index(key)["adaptation_sha256"]
    assert (m == f.loc[m.index]).all()
    assert macaw.groupby("task")["adaptation_sha256"].nunique().min() == 3
