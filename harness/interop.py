"""Datasets in the formats the field already reads: D4RL-keyed ``.npz`` and Minari.

``export_dataset`` writes each task's buffer of a harness dataset as

* ``d4rl``: ``task_XXXX.npz`` with D4RL's keys — ``observations, actions, rewards,
  next_observations, terminals, timeouts`` — plus ``infos/success`` (the episode's success on
  every row), and ``omrl.json`` with the family (tasks, parameters, split) and each task's
  index, split and parameters: what CORL or d3rlpy read, one file per task;
* ``minari``: one Minari dataset per task (``omrl/<family>/task<k>-<budget>-v0``) under the
  output folder, loadable with ``minari.load_dataset`` once ``MINARI_DATASETS_PATH`` points
  there; the task's index, split and parameters are in the dataset's description, and
  ``omrl.json`` beside them as for D4RL. The environment is this harness's gymnasium id
  (``omrl/<family>-v0`` with ``task=k``), so ``dataset.recover_environment()`` works.

``import_dataset`` turns either back into a harness dataset (files + manifest) — so a
researcher can bring their own buffers, such as the paper's where they have them. Episodes are
cut at ``terminals | timeouts``; the Monte-Carlo fields are recomputed exactly as for generated
data, so an export → import round trip gives identical transitions and adaptation sets.
Actions are in [-1, 1] as everywhere in the harness.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from harness.datasets import (
    FORMAT_VERSION,
    MANIFEST,
    DatasetError,
    assemble_buffer,
    load_task_arrays,
    manifest_hash,
    package_versions,
    read_manifest,
    task_filename,
    write_json_atomic,
    write_npz,
)

META = "omrl.json"


def _episodes_of(a: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    out = []
    for i, (start, length, success) in enumerate(
        zip(a["episode_start"], a["episode_length"], a["episode_success"])
    ):
        s = slice(int(start), int(start + length))
        noise = {"noise": float(a["episode_noise"][i])} if "episode_noise" in a else {}
        out.append(
            {
                "obs": a["obs"][s],
                "action": a["action"][s],
                "reward": a["reward"][s],
                "next_obs": a["next_obs"][s],
                "terminated": bool(a["done"][s][-1] > 0.5),
                "success": float(success),
                **noise,
            }
        )
    return out


def _meta(man: dict, source: Path) -> dict[str, Any]:
    fam = man["family"]
    test = set(fam["test_indices"])
    return {
        "format": "omrl-export-1",
        "family": fam,
        "generator": man["generator"],
        "source_manifest_sha256": manifest_hash(source),
        "tasks": {
            k: {
                "split": "test" if int(k) in test else "train",
                "params": fam["tasks"][int(k)]["params"],
                **{r: e[r] for r in ("random_return", "oracle_return") if r in e},
            }
            for k, e in man["files"].items()
        },
    }


def _export_d4rl(data_dir: Path, man: dict, out: Path, budget: str) -> None:
    for key, entry in man["files"].items():
        a = load_task_arrays(data_dir, entry)
        ends = np.zeros(len(a["reward"]), dtype=bool)
        ends[a["episode_start"] + a["episode_length"] - 1] = True
        terminals = a["done"] > 0.5
        success = np.repeat(a["episode_success"], a["episode_length"])
        extra = {}
        if "episode_noise" in a:
            extra["infos/noise"] = np.repeat(a["episode_noise"], a["episode_length"])
        np.savez(
            out / task_filename(int(key)),
            observations=a["obs"],
            actions=a["action"],
            rewards=a["reward"],
            next_observations=a["next_obs"],
            terminals=terminals,
            timeouts=ends & ~terminals,
            **{"infos/success": success.astype(np.float32)},
            **extra,
        )


def _minari_id(family: str, task: int, budget: str) -> str:
    return f"omrl/{family}/task{task}-{budget}-v0"


def _export_minari(data_dir: Path, man: dict, out: Path, budget: str) -> None:
    import os

    import gymnasium as gym
    import minari
    from minari.data_collector import EpisodeBuffer

    import envs

    os.environ["MINARI_DATASETS_PATH"] = str(out.resolve())
    fam = man["family"]
    for key, entry in man["files"].items():
        a = load_task_arrays(data_dir, entry)
        buffers = []
        for i, ep in enumerate(_episodes_of(a)):
            n = len(ep["reward"])
            buffers.append(
                EpisodeBuffer(
                    id=i,
                    observations=np.concatenate([ep["obs"], ep["next_obs"][-1:]]),
                    actions=ep["action"],
                    rewards=list(ep["reward"]),
                    terminations=[False] * (n - 1) + [ep["terminated"]],
                    truncations=[False] * (n - 1) + [not ep["terminated"]],
                    infos={
                        k: np.full(n + 1, ep[k], dtype=np.float32)
                        for k in ("success", "noise")
                        if k in ep
                    },
                )
            )
        task = int(key)
        split = "test" if task in set(fam["test_indices"]) else "train"
        env = gym.make(envs.env_id(fam["name"]), task=task)
        minari.create_dataset_from_buffers(
            dataset_id=_minari_id(fam["name"], task, budget),
            buffer=buffers,
            env=env,
            algorithm_name=man["generator"].get("collector", "unknown"),
            action_space=gym.spaces.Box(-1.0, 1.0, shape=(fam["act_dim"],), dtype=np.float32),
            observation_space=gym.spaces.Box(
                -np.inf, np.inf, shape=(fam["obs_dim"],), dtype=np.float32
            ),
            description=json.dumps(
                {
                    "family": fam["name"],
                    "task": task,
                    "split": split,
                    "params": fam["tasks"][task]["params"],
                }
            ),
        )
        env.close()


def export_dataset(data_dir: Path, out: Path, fmt: str, budget: str = "default") -> Path:
    """Write the dataset in ``data_dir`` to ``out`` as ``fmt`` (``d4rl`` or ``minari``)."""
    if fmt not in EXPORTERS:
        raise ValueError(f"unknown format {fmt!r}; known formats: {', '.join(EXPORTERS)}")
    man = read_manifest(data_dir)
    out = Path(out)
    if (out / META).exists():
        raise DatasetError(f"{out} already holds an export; choose an empty folder")
    out.mkdir(parents=True, exist_ok=True)
    meta = {**_meta(man, data_dir), "layout": fmt, "budget": budget}
    EXPORTERS[fmt](data_dir, man, out, budget)
    write_json_atomic(out / META, meta)  # last: a folder without it is an unfinished export
    return out


EXPORTERS = {"d4rl": _export_d4rl, "minari": _export_minari}


def _read_d4rl(src: Path, key: str, meta: dict) -> list[dict[str, Any]]:
    path = src / task_filename(int(key))
    if not path.exists():
        raise DatasetError(f"{path} is missing from the export")
    with np.load(path) as z:
        d = {k: z[k] for k in z.files}
    missing = [
        k
        for k in (
            "observations",
            "actions",
            "rewards",
            "next_observations",
            "terminals",
            "timeouts",
        )
        if k not in d
    ]
    if missing:
        raise DatasetError(f"{path}: not D4RL-keyed, lacks {', '.join(missing)}")
    ends = np.flatnonzero(d["terminals"] | d["timeouts"])
    if len(ends) == 0 or ends[-1] != len(d["rewards"]) - 1:
        raise DatasetError(f"{path}: the last episode has no terminal or timeout")
    success = d.get("infos/success", np.zeros(len(d["rewards"]), np.float32))
    noise = d.get("infos/noise")
    episodes, start = [], 0
    for end in ends:
        s = slice(start, end + 1)
        episodes.append(
            {
                "obs": d["observations"][s],
                "action": d["actions"][s],
                "reward": d["rewards"][s],
                "next_obs": d["next_observations"][s],
                "terminated": bool(d["terminals"][end]),
                "success": float(success[start]),
                **({"noise": float(noise[start])} if noise is not None else {}),
            }
        )
        start = end + 1
    return episodes


def _read_minari(src: Path, key: str, meta: dict) -> list[dict[str, Any]]:
    import os

    import minari

    os.environ["MINARI_DATASETS_PATH"] = str(src.resolve())
    ds = minari.load_dataset(_minari_id(meta["family"]["name"], int(key), meta["budget"]))
    episodes = []
    for ep in ds.iterate_episodes():
        obs = np.asarray(ep.observations, dtype=np.float32)
        infos = ep.infos if isinstance(ep.infos, dict) else {}
        success = infos.get("success")
        noise = {"noise": float(infos["noise"][0])} if "noise" in infos else {}
        episodes.append(
            {
                "obs": obs[:-1],
                "action": np.asarray(ep.actions, dtype=np.float32),
                "reward": np.asarray(ep.rewards, dtype=np.float32),
                "next_obs": obs[1:],
                "terminated": bool(ep.terminations[-1]),
                "success": float(success[0]) if success is not None else 0.0,
                **noise,
            }
        )
    return episodes


READERS = {"d4rl": _read_d4rl, "minari": _read_minari}


def import_dataset(src: Path, out: Path) -> Path:
    """A harness dataset (task files + manifest) in ``out`` from an export in ``src``."""
    src, out = Path(src), Path(out)
    if not (src / META).exists():
        raise DatasetError(f"{src} has no {META}: not a finished export of this harness")
    meta = json.loads((src / META).read_text())
    if meta.get("layout") not in READERS:
        raise DatasetError(f"{src / META}: unknown layout {meta.get('layout')!r}")
    if (out / MANIFEST).exists():
        raise DatasetError(f"{out} already holds a dataset; choose an empty folder")
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for key, info in meta["tasks"].items():
        arrays = assemble_buffer(READERS[meta["layout"]](src, key, meta))
        path = out / task_filename(int(key))
        digest = write_npz(path, arrays)
        files[key] = {
            "file": path.name,
            "sha256": digest,
            "bytes": path.stat().st_size,
            "n_transitions": int(len(arrays["reward"])),
            "n_episodes": int(len(arrays["episode_return"])),
            **{r: info[r] for r in ("random_return", "oracle_return") if r in info},
        }
    manifest = {
        "format_version": FORMAT_VERSION,
        "family": meta["family"],
        "generator": {
            "collector": "imported",
            "layout": meta["layout"],
            "source_generator": meta.get("generator"),
            "source_manifest_sha256": meta.get("source_manifest_sha256"),
        },
        "versions": package_versions(),
        "files": {k: files[k] for k in sorted(files, key=int)},
    }
    write_json_atomic(out / MANIFEST, manifest)
    return out
