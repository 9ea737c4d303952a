"""D4RL and Minari export → import round trips: identical transitions, identical draws."""

import numpy as np
import pandas as pd
import pytest

from harness.collect.build import build
from harness.datasets import (
    TRANSITION_FIELDS,
    OfflineDataset,
    load_task_arrays,
    read_manifest,
    transitions_hash,
)
from harness.interop import export_dataset, import_dataset


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return build("point-robot", "tiny", 0, root, workers=2, progress=False)


@pytest.mark.parametrize("fmt", ["d4rl", "minari"])
def test_export_then_import_gives_identical_transitions_and_adaptation_sets(fmt, source, tmp_path):
    if fmt == "minari":
        pytest.importorskip("minari")
    exported = export_dataset(source, tmp_path / "export", fmt, budget="tiny")
    back = import_dataset(exported, tmp_path / "imported")
    want, got = read_manifest(source), read_manifest(back)
    assert got["family"] == want["family"] and sorted(got["files"]) == sorted(want["files"])
    for key in want["files"]:
        a = load_task_arrays(source, want["files"][key])
        b = load_task_arrays(back, got["files"][key])
        for f in (*TRANSITION_FIELDS, "episode_start", "episode_length", "episode_success"):
            np.testing.assert_array_equal(a[f], b[f], err_msg=f"task {key} {f}")
    da, db = OfflineDataset.load(source), OfflineDataset.load(back)
    for t in want["family"]["test_indices"][:3]:
        for step in (0, 250):
            sa = da.adaptation_set(t, 0, step=step, family="point-robot")
            sb = db.adaptation_set(t, 0, step=step, family="point-robot")
            assert transitions_hash(sa) == transitions_hash(sb)


def test_d4rl_files_carry_the_keys_corl_and_d3rlpy_read(source, tmp_path):
    out = export_dataset(source, tmp_path / "x", "d4rl")
    with np.load(out / "task_0000.npz") as z:
        assert {
            "observations",
            "actions",
            "rewards",
            "next_observations",
            "terminals",
            "timeouts",
        } <= set(z.files)
        ends = z["terminals"] | z["timeouts"]
        assert ends[-1] and ends.sum() == read_manifest(source)["files"]["0"]["n_episodes"]


def test_minari_export_loads_with_minari_and_names_task_and_split(source, tmp_path, monkeypatch):
    minari = pytest.importorskip("minari")
    import json

    out = export_dataset(source, tmp_path / "m", "minari", budget="tiny")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(out))
    ds = minari.load_dataset("omrl/point-robot/task85-tiny-v0")
    about = json.loads(ds.storage.metadata["description"])
    assert about["task"] == 85 and about["split"] == "test" and "goal" in about["params"]
    env = ds.recover_environment()
    env.reset(seed=0)
    env.close()


def test_an_unfinished_or_foreign_export_is_refused(tmp_path):
    from harness.datasets import DatasetError

    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="has no omrl.json"):
        import_dataset(tmp_path / "empty", tmp_path / "out")


def test_metaworld_episodes_keep_their_noise_level_through_a_round_trip(tmp_path):
    src = build("ml1-reach", "tiny", 0, tmp_path / "data", workers=2, progress=False)
    man = read_manifest(src)
    key = sorted(man["files"], key=int)[0]
    a = load_task_arrays(src, man["files"][key])
    noise = a["episode_noise"]
    assert noise[0] == 1.0 and noise[-1] == 0.0 and np.all(np.diff(noise) <= 0)
    back = import_dataset(export_dataset(src, tmp_path / "x", "d4rl"), tmp_path / "in")
    b = load_task_arrays(back, read_manifest(back)["files"][key])
    np.testing.assert_array_equal(a["episode_noise"], b["episode_noise"])


def test_an_import_installed_as_a_budget_is_what_suites_run_on(source, tmp_path):
    from tests.test_harness import cli, run_args, suite_file

    exported = tmp_path / "x"
    assert (
        cli(
            "data",
            "export",
            "point-robot",
            "--budget",
            "tiny",
            "--root",
            str(source.parent.parent),
            "--format",
            "d4rl",
            "--out",
            str(exported),
        ).returncode
        == 0
    )
    root = tmp_path / "cache"
    p = cli("data", "import", str(exported), "--budget", "small", "--root", str(root))
    assert p.returncode == 0, p.stderr
    again = cli("data", "import", str(exported), "--budget", "small", "--root", str(root))
    assert again.returncode == 2 and "already holds a dataset" in again.stderr
    suite = suite_file(
        tmp_path,
        """
        algorithms = ["mt-ft"]
        families = ["point-robot"]
        [run]
        data_budget = "small"
        steps = 2
        eval_every = 2
        [learner.mt-ft]
        width = 16
        """,
    )
    run = cli(*run_args(suite, tmp_path, root))
    assert run.returncode == 0, run.stderr
    assert "built point-robot" not in run.stdout  # nothing generated: it ran on the import
    rows = pd.read_csv(tmp_path / "r" / "t" / "runs" / "mt-ft__point-robot__seed0" / "metrics.csv")
    from harness.collect.build import dataset_dir
    from harness.datasets import manifest_hash

    slot = dataset_dir("point-robot", "small", 0, root)
    assert rows["dataset_sha256"].iloc[0] == manifest_hash(slot)[:16]
    assert read_manifest(slot)["generator"]["collector"] == "imported"
    info = cli("data", "info", "point-robot", "--budget", "small", "--root", str(root))
    assert info.returncode == 0 and "imported from a d4rl export" in info.stdout
