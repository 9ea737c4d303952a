"""Dataset storage, integrity, reproducibility and sampling."""

import json

import numpy as np
import pytest
import torch

from harness.collect.build import build, dataset_dir
from harness.datasets import (
    DatasetError,
    OfflineDataset,
    assemble_buffer,
    derived_fields,
    episode_fields,
    manifest_hash,
    read_manifest,
    transitions_hash,
    verify_dataset,
)


def test_mc_return_and_terminal_discount_on_a_hand_made_trajectory():
    obs = np.arange(4, dtype=np.float32)[:, None]
    nxt = obs + 1
    r = np.array([1.0, 2.0, 3.0])
    f = episode_fields(obs[:3], np.zeros((3, 1)), r, nxt[:3], terminated=False, gamma=0.5)
    np.testing.assert_allclose(f["mc_return"], [1 + 0.5 * 2 + 0.25 * 3, 2 + 0.5 * 3, 3])
    np.testing.assert_allclose(f["terminal_discount"], [0.125, 0.25, 0.5])
    np.testing.assert_allclose(f["terminal_obs"][:, 0], [3, 3, 3])
    assert f["done"].sum() == 0
    g = episode_fields(obs[:3], np.zeros((3, 1)), r, nxt[:3], terminated=True, gamma=0.5)
    np.testing.assert_allclose(g["terminal_discount"], 0)  # nothing to bootstrap after a fall
    np.testing.assert_allclose(g["done"], [0, 0, 1])


def test_assembled_buffer_marks_episode_boundaries_and_labels():
    ep = lambda n, s: {  # noqa: E731
        "obs": np.zeros((n, 2)),
        "action": np.zeros((n, 1)),
        "reward": np.ones(n),
        "next_obs": np.zeros((n, 2)),
        "terminated": False,
        "success": s,
    }
    buf = assemble_buffer([ep(3, 0.0), ep(2, 1.0)])
    assert buf["episode_start"].tolist() == [0, 3]
    assert buf["episode_length"].tolist() == [3, 2]
    assert buf["episode_return"].tolist() == [3.0, 2.0]
    assert buf["episode_success"].tolist() == [0.0, 1.0]
    assert buf["mc_return"][3] == pytest.approx(1 + 0.99)  # resets at the boundary


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_sac_budget):
    root = tmp_path_factory.mktemp("data")
    return build("point-robot", tiny_sac_budget, seed=3, root=root, progress=False)


def _file_bytes(directory):
    """Every data file's bytes, and the manifest's identity (its build record — wall time and
    training curves — differs between two builds of one seed)."""
    out = {
        p.name: p.read_bytes()
        for p in sorted(directory.glob("*"))
        if p.is_file() and p.name != "manifest.json"
    }
    if (directory / "manifest.json").exists():
        out["manifest"] = manifest_hash(directory)
    return out


def test_build_writes_a_manifest_with_checksums_versions_and_split(built):
    man = read_manifest(built)
    assert len(man["files"]) == 100
    assert man["family"]["test_indices"] == list(range(80, 100))
    assert man["generator"]["seed"] == 3 and "torch" in man["versions"]
    entry = man["files"]["0"]
    assert len(entry["sha256"]) == 64 and entry["n_transitions"] == 60
    verify_dataset(built)


def test_same_seed_reproduces_identical_files(built, tmp_path, tiny_sac_budget):
    again = build("point-robot", tiny_sac_budget, seed=3, root=tmp_path, progress=False)
    assert _file_bytes(again) == _file_bytes(built)
    other = build("point-robot", tiny_sac_budget, seed=4, root=tmp_path, progress=False)
    a = np.load(built / "task_0000.npz")["action"]
    b = np.load(other / "task_0000.npz")["action"]
    assert not np.array_equal(a, b)


def test_interrupted_build_resumes_and_gives_the_same_bytes(built, tmp_path, tiny_sac_budget):
    out = build(
        "point-robot", tiny_sac_budget, seed=3, root=tmp_path, progress=False, stop_after_chunks=2
    )
    assert not (out / "manifest.json").exists()
    progress = json.loads((out / "_progress.json").read_text())
    assert len(progress["files"]) == 50
    first = (out / "task_0000.npz").stat().st_mtime_ns
    build("point-robot", tiny_sac_budget, seed=3, root=tmp_path, progress=False)
    assert (out / "task_0000.npz").stat().st_mtime_ns == first  # finished tasks not regenerated
    assert _file_bytes(out) == _file_bytes(built)


def test_build_in_worker_processes_gives_the_same_bytes(built, tmp_path, tiny_sac_budget):
    out = build("point-robot", tiny_sac_budget, seed=3, root=tmp_path, progress=False, workers=2)
    assert _file_bytes(out) == _file_bytes(built)


@pytest.fixture()
def copy_of(built, tmp_path):
    import shutil

    dst = tmp_path / "copy"
    shutil.copytree(built, dst)
    return dst


def test_a_flipped_byte_is_detected_and_names_the_file(copy_of):
    path = copy_of / "task_0042.npz"
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(DatasetError, match="task_0042.npz: sha256"):
        OfflineDataset.load(copy_of)
    with pytest.raises(DatasetError, match="task_0042.npz"):
        verify_dataset(copy_of)


def test_truncated_and_missing_files_are_refused(copy_of):
    path = copy_of / "task_0007.npz"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DatasetError, match="task_0007.npz: size"):
        OfflineDataset.load(copy_of, tasks=[7])
    path.unlink()
    with pytest.raises(DatasetError, match="task_0007.npz: missing"):
        OfflineDataset.load(copy_of, tasks=[7])
    OfflineDataset.load(copy_of, tasks=[1, 2])  # untouched tasks still load


def test_dataset_dir_depends_on_budget_and_seed(tiny_sac_budget, tmp_path):
    a = dataset_dir("point-robot", tiny_sac_budget, 0, tmp_path)
    assert a != dataset_dir("point-robot", tiny_sac_budget, 1, tmp_path)
    assert a != dataset_dir("point-robot", "tiny", 0, tmp_path)


# -- sampling ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ds(built):
    return OfflineDataset.load(built)


def test_loaded_data_is_contiguous_float_tensors(ds):
    assert ds.data["obs"].is_contiguous() and ds.data["obs"].dtype == torch.float32
    assert ds.data["obs"].shape == (100 * 60, 2)
    t = ds.task_transitions(5)
    assert len(t) == 60


def test_uniform_and_contiguous_batches_have_task_batch_shape(ds):
    g = torch.Generator().manual_seed(0)
    u = ds.sample_uniform([0, 5, 9], 16, g)
    assert u.obs.shape == (3, 16, 2) and u.reward.shape == (3, 16)
    c = ds.sample_contiguous([0, 5], 16, g)
    own = ds.task_transitions(5)
    start = int(torch.nonzero((own.obs == c.obs[1, 0]).all(-1))[0])
    torch.testing.assert_close(c.obs[1], own.obs[start : start + 16])
    mb = ds.meta_batch([1, 2], [1, 2], 8, 12, g)
    assert mb.inner.obs.shape == (2, 8, 2) and mb.outer.obs.shape == (2, 12, 2)


def test_timestep_and_return_to_go_restart_at_each_episode():
    r = np.array([1.0, 2.0, 3.0, 10.0, 20.0, 5.0])
    f = derived_fields(r, np.array([0, 3, 5]))
    np.testing.assert_allclose(f["timestep"], [0, 1, 2, 0, 1, 0])
    np.testing.assert_allclose(f["return_to_go"], [6, 5, 3, 30, 20, 5])


def test_segments_are_runs_of_consecutive_rows_of_their_own_task(ds):
    g = torch.Generator().manual_seed(0)
    seg = ds.sample_segments([0, 5], segments=4, length=3, generator=g)
    assert seg.obs.shape == (2, 12, 2)
    own = ds.task_transitions(5)
    for k in range(4):
        run = seg.obs[1, 3 * k : 3 * k + 3]
        start = int(torch.nonzero((own.obs == run[0]).all(-1))[0])
        end = min(start + 3, len(own))
        torch.testing.assert_close(run[: end - start], own.obs[start:end])
    mb = ds.meta_batch([1, 2], [1, 2], 8, 12, g, outer_segment=4)
    assert mb.outer.obs.shape == (2, 12, 2)


def test_every_k_subsampling_keeps_every_kth_row(built):
    full = OfflineDataset.load(built, tasks=[3])
    sub = OfflineDataset.load(built, tasks=[3], skip=7)
    torch.testing.assert_close(sub.data["obs"], full.data["obs"][::7])
    torch.testing.assert_close(sub.data["mc_return"], full.data["mc_return"][::7])
    # derived on the full trajectories: exact under sub-sampling too
    torch.testing.assert_close(sub.data["return_to_go"], full.data["return_to_go"][::7])
    torch.testing.assert_close(sub.data["timestep"], full.data["timestep"][::7])


def test_quality_slices_pick_first_middle_last_parts(ds):
    assert ds.slice_bounds(0, "first", 0.25) == (0, 15)
    assert ds.slice_bounds(0, "last", 0.25) == (45, 60)
    assert ds.slice_bounds(0, "middle", 0.5) == (15, 45)
    with pytest.raises(ValueError, match="known: all, first, middle, last"):
        ds.slice_bounds(0, "best", 0.5)


def test_adaptation_set_is_deterministic_in_its_seed(ds):
    a = ds.adaptation_set(85, seed=1, n_transitions=32)
    b = ds.adaptation_set(85, seed=1, n_transitions=32)
    c = ds.adaptation_set(85, seed=2, n_transitions=32)
    assert transitions_hash(a) == transitions_hash(b) != transitions_hash(c)
    assert len(a) == 32
    trajs = ds.adaptation_set(85, seed=1, n_trajectories=2)
    assert len(trajs) == 2 * 20  # point-robot episodes are 20 steps
    last = ds.adaptation_set(85, seed=1, n_transitions=10, quality="last", fraction=0.25)
    own = ds.task_transitions(85)
    assert any(torch.equal(last.obs[0], own.obs[i]) for i in range(45, 60))


def test_stored_actions_are_normalised_to_the_unit_box(ds):
    # point-robot acts in [-0.1, 0.1]; learners act in [-1, 1]: the data must be in their units
    a = ds.data["action"]
    assert a.abs().max() <= 1.0 + 1e-6 and a.abs().max() > 0.5
