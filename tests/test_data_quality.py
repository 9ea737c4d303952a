"""Behaviour data: the generators learn, resume exactly, and old formats are refused."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from algorithms.optim import LeanAdam
from envs import make_family
from harness.collect.build import build, reference_returns
from harness.collect.sac import (
    SACBudget,
    SACConfig,
    StackedMLP,
    collect_conditioned_chunk,
)
from harness.datasets import DatasetError, OfflineDataset, read_manifest, tenth_means


@pytest.fixture(scope="module")
def point_tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("quality")
    return build("point-robot", "tiny", seed=0, root=root, progress=False, workers=2)


def test_point_robot_generator_learns_from_random_toward_the_oracle(point_tiny):
    man = read_manifest(point_tiny)
    firsts, lasts, rand, orac = [], [], [], []
    for entry in man["files"].values():
        with np.load(point_tiny / entry["file"]) as z:
            first, last = tenth_means(z["episode_return"])
        firsts.append(first)
        lasts.append(last)
        rand.append(entry["random_return"])
        orac.append(entry["oracle_return"])
    gap = np.mean(orac) - np.mean(rand)
    assert gap > 5  # the oracle is far better than random on this family
    assert abs(np.mean(firsts) - np.mean(rand)) < 0.15 * gap  # the buffers start random
    assert np.mean(lasts) - np.mean(firsts) > 0.25 * gap  # and end clearly better


def test_manifest_records_build_time_curves_and_reference_returns(point_tiny):
    man = read_manifest(point_tiny)
    assert man["build"]["wall_s"] > 0 and man["build"]["workers"] == 2
    chunks = man["build"]["chunks"]
    assert sorted(chunks) == ["0", "50"]
    curve = chunks["0"]["curve"]
    assert [p["env_steps"] for p in curve] == [200, 400]
    assert all(np.isfinite(p["mean_return"]) for p in curve)
    assert not any(p.name.startswith("_chunk") for p in point_tiny.iterdir())  # state cleaned


def _budget(steps: int = 90) -> SACBudget:
    return SACBudget(
        steps,
        warmup_steps=20,
        chunk_size=3,
        agent="conditioned",
        segment_steps=30,
        sac=SACConfig(hidden=16, batch_size=16, lr=1e-3),
    )


class _Interrupt(Exception):
    pass


def test_conditioned_collection_killed_mid_chunk_resumes_to_the_same_data(tmp_path):
    fam = make_family("cheetah-vel")
    tasks = [0, 5, 9]
    whole, info = collect_conditioned_chunk(fam, tasks, _budget(), seed=11)

    seen = {"steps": 0}

    def die_in_third_segment(n):
        seen["steps"] += n // len(tasks)
        if seen["steps"] == 75:
            raise _Interrupt

    state = tmp_path / "state"
    state.mkdir()
    with pytest.raises(_Interrupt):
        collect_conditioned_chunk(fam, tasks, _budget(), 11, die_in_third_segment, state)
    assert (state / "state.pt").exists() and len(list(state.glob("segment_*.npz"))) == 2
    resumed, info2 = collect_conditioned_chunk(fam, tasks, _budget(), 11, None, state)
    for a, b in zip(whole, resumed):
        assert len(a) == len(b)
        for ea, eb in zip(a, b):
            for k in ("obs", "action", "reward", "next_obs"):
                np.testing.assert_array_equal(ea[k], eb[k])
            assert ea["terminated"] == eb["terminated"]
    assert [p["mean_return"] for p in info["curve"]] == [p["mean_return"] for p in info2["curve"]]


def test_each_task_keeps_its_own_chronological_buffer_cut_at_segments():
    fam = make_family("cheetah-vel")
    per_task, info = collect_conditioned_chunk(fam, [0, 39], _budget(60), seed=1)
    for eps in per_task:
        assert sum(len(e["reward"]) for e in eps) == 60
        assert [len(e["reward"]) for e in eps] == [30, 30]  # horizon 200 > segment 30
    # the stored observations do not reveal the task: both tasks start from the same kind of state
    assert per_task[0][0]["obs"].shape[1] == fam.obs_dim


def test_random_and_oracle_returns_bracket_point_robot():
    fam = make_family("point-robot")
    ref = reference_returns(fam, 3, episodes=3, seed=0)
    assert ref["oracle_return"] > ref["random_return"] + 5


def test_a_dataset_of_an_older_format_version_is_refused_by_version(point_tiny, tmp_path):
    import shutil

    old = tmp_path / "old"
    shutil.copytree(point_tiny, old)
    man = json.loads((old / "manifest.json").read_text())
    man["format_version"] = 2
    (old / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(DatasetError, match="format version 2, this harness reads version 3"):
        OfflineDataset.load(old)


def test_copies_of_a_task_merge_into_its_buffer_segment_by_segment():
    fam = make_family("cheetah-dir")
    b = dataclasses.replace(_budget(60), envs_per_task=3)
    per_task, _ = collect_conditioned_chunk(fam, [0, 1], b, seed=2)
    for eps in per_task:
        assert [len(e["reward"]) for e in eps] == [30] * 6  # 2 segments × 3 copies
    again, _ = collect_conditioned_chunk(fam, [0, 1], b, seed=2)
    np.testing.assert_array_equal(per_task[1][4]["obs"], again[1][4]["obs"])


def _twin_critics_with_grads(seed: int) -> tuple[StackedMLP, list[torch.Tensor]]:
    torch.manual_seed(seed)
    net = StackedMLP(2, [9, 16, 16, 1])
    grads = [[torch.randn_like(p) for p in net.parameters()] for _ in range(60)]
    return net, grads


def test_lean_adam_steps_exactly_as_torch_adam_and_resumes_from_its_state():
    """The behaviour agents' optimiser is part of the data: it must be torch's Adam bit for bit,
    including after resuming from a state torch's Adam saved (a build of older code)."""
    ref, grads = _twin_critics_with_grads(0)
    lean, _ = _twin_critics_with_grads(0)
    torch_opt = torch.optim.Adam(ref.parameters(), lr=1e-3)
    lean_opt = LeanAdam(lean.parameters(), lr=1e-3)
    for i, g in enumerate(grads):
        for net, opt in ((ref, torch_opt), (lean, lean_opt)):
            opt.zero_grad()
            for p, gi in zip(net.parameters(), g):
                p.grad = gi.clone()
            opt.step()
        if i == 29:  # hand the lean optimiser torch's state half-way: the rest must still match
            resumed = LeanAdam(lean.parameters(), lr=1.0)
            resumed.load_state_dict(torch_opt.state_dict())
            assert resumed.t == 30 and resumed.lr == 1e-3
            lean_opt = resumed
    for a, b in zip(ref.parameters(), lean.parameters()):
        assert torch.equal(a, b)
    back = torch.optim.Adam(ref.parameters(), lr=1e-3)  # and torch's Adam reads the lean state
    back.load_state_dict(lean_opt.state_dict())
    assert int(back.state_dict()["state"][0]["step"]) == 60
    with pytest.raises(RuntimeError, match="every parameter needs a gradient"):
        lean_opt.zero_grad()
        lean_opt.step()
