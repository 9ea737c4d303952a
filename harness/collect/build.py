"""Build a family's offline datasets: budgets, cache location, resumable chunked generation.

A build splits the family's tasks into chunks; each chunk is generated from its own seed (derived
from the build seed and the chunk's first task), written task by task with atomic renames, and
recorded in ``_progress.json``. An interrupted build therefore resumes at the first unfinished
chunk and, because a chunk's seed does not depend on what ran before it, produces the same bytes
as an uninterrupted one. Chunks run single-threaded, in a process pool when ``workers > 1``:
the bytes do not depend on the number of workers either.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import torch

from envs import make_family
from harness.collect.sac import SACBudget, SACConfig, collect_sac_chunk
from harness.collect.scripted import ScriptedBudget, collect_scripted_chunk
from harness.datasets import (
    FORMAT_VERSION,
    MANIFEST,
    DatasetError,
    assemble_buffer,
    package_versions,
    sha256_file,
    task_filename,
    verify_dataset,
    write_json_atomic,
    write_npz,
)

PROGRESS = "_progress.json"


def data_root() -> Path:
    """Where datasets are cached: ``$OMRL_DATA`` or ``./data``."""
    return Path(os.environ.get("OMRL_DATA", "data"))


_POINT_SAC = SACConfig(hidden=32, lr=1e-3, batch_size=128)  # a 2-D task: small, fast nets
# Budgets per collector. `tiny` is for tests, `small` for the quick suite, `default` for real use.
SAC_BUDGETS: dict[str, dict[str, SACBudget]] = {
    "point-robot": {
        "tiny": SACBudget(400, warmup_steps=100, chunk_size=50, sac=_POINT_SAC),
        "small": SACBudget(1000, warmup_steps=200, chunk_size=50, sac=_POINT_SAC),
        "default": SACBudget(3000, warmup_steps=400, chunk_size=50, sac=_POINT_SAC),
    },
    "_mujoco": {
        "tiny": SACBudget(400, warmup_steps=200, chunk_size=20, sac=SACConfig(hidden=32)),
        "small": SACBudget(4000, warmup_steps=1000, chunk_size=20, sac=SACConfig(hidden=64)),
        "default": SACBudget(30000, warmup_steps=2000, chunk_size=10, sac=SACConfig(hidden=128)),
    },
}
SCRIPTED_BUDGETS: dict[str, ScriptedBudget] = {
    "tiny": ScriptedBudget(episodes_per_task=2, chunk_size=5),
    "small": ScriptedBudget(episodes_per_task=6, chunk_size=5),
    "default": ScriptedBudget(episodes_per_task=20, chunk_size=5),
}
BUDGET_NAMES = ("tiny", "small", "default")


def budget_for(family, budget: str):
    if budget not in BUDGET_NAMES:
        raise ValueError(f"unknown budget {budget!r}; known budgets: {', '.join(BUDGET_NAMES)}")
    if family.collector == "scripted":
        return SCRIPTED_BUDGETS[budget]
    table = SAC_BUDGETS.get(family.name, SAC_BUDGETS["_mujoco"])
    return table[budget]


def generator_config(family, budget: str, seed: int) -> dict[str, Any]:
    b = budget_for(family, budget)
    return {
        "collector": family.collector,
        "budget_name": budget,
        "budget": dataclasses.asdict(b),
        "seed": seed,
        "format_version": FORMAT_VERSION,
    }


def dataset_dir(family_name: str, budget: str = "default", seed: int = 0, root: Path | None = None):
    """The cache folder of a dataset: keyed by family, budget and a hash of the generator config."""
    family = make_family(family_name)
    cfg = generator_config(family, budget, seed)
    key = hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:10]
    return Path(root or data_root()) / family_name / f"{budget}-seed{seed}-{key}"


def _chunks(indices: list[int], size: int) -> list[list[int]]:
    return [indices[i : i + size] for i in range(0, len(indices), size)]


def _run_chunk(family_name: str, chunk: list[int], budget, seed: int, out_dir: str, show: bool):
    """Generate and write one chunk (runs in a worker process or in-process)."""
    torch.set_num_threads(1)  # bytes must not depend on how many workers share the machine
    family = make_family(family_name)
    chunk_seed = seed * 100_003 + chunk[0]
    bar = None
    if show:
        from tqdm import tqdm

        total = (budget.steps_per_task if isinstance(budget, SACBudget)
                 else len(chunk) * budget.episodes_per_task * family.horizon)
        bar = tqdm(total=total, desc=f"{family_name} tasks {chunk[0]}–{chunk[-1]}", unit="step",
                   leave=False)
    tick = bar.update if bar is not None else None
    if isinstance(budget, SACBudget):
        per_task = collect_sac_chunk(family, chunk, budget, chunk_seed, tick)
    else:
        per_task = collect_scripted_chunk(family, chunk, budget, chunk_seed, tick)
    if bar is not None:
        bar.close()
    entries = {}
    for task_index, episodes in zip(chunk, per_task):
        path = Path(out_dir) / task_filename(task_index)
        arrays = assemble_buffer(episodes)
        digest = write_npz(path, arrays)
        entries[str(task_index)] = {
            "file": path.name,
            "sha256": digest,
            "bytes": path.stat().st_size,
            "n_transitions": int(len(arrays["reward"])),
            "n_episodes": int(len(arrays["episode_return"])),
        }
    return entries


def _load_progress(out: Path) -> dict[str, Any]:
    path = out / PROGRESS
    if not path.exists():
        return {}
    try:
        done = json.loads(path.read_text())
    except json.JSONDecodeError:
        return {}
    # keep only entries whose file is still intact
    return {
        k: v for k, v in done.items()
        if (out / v["file"]).exists() and sha256_file(out / v["file"]) == v["sha256"]
    }


def build(
    family_name: str,
    budget: str = "default",
    seed: int = 0,
    root: Path | None = None,
    workers: int = 1,
    progress: bool = True,
    force: bool = False,
    stop_after_chunks: int | None = None,
) -> Path:
    """Build (or finish building) a family's datasets; return the dataset folder.

    Args:
        family_name: a registered family.
        budget: ``tiny`` / ``small`` / ``default``.
        seed: the generator seed (fixes every byte on one machine).
        root: cache root (default :func:`data_root`).
        workers: processes that generate chunks in parallel (results do not depend on it).
        progress: show progress bars.
        force: discard an existing dataset and rebuild.
        stop_after_chunks: stop after this many new chunks (for testing interruption).
    """
    family = make_family(family_name)
    b = budget_for(family, budget)
    out = dataset_dir(family_name, budget, seed, root)
    if force and out.exists():
        shutil.rmtree(out)
    if (out / MANIFEST).exists():
        verify_dataset(out)
        return out
    out.mkdir(parents=True, exist_ok=True)
    done = _load_progress(out)
    todo = [c for c in _chunks(family.all_indices, b.chunk_size)
            if not all(str(t) in done for t in c)]
    if progress and done:
        print(f"resuming {family_name}: {len(done)} task(s) already built, {len(todo)} chunk(s) left")
    t0 = time.time()
    if stop_after_chunks is not None:
        todo = todo[:stop_after_chunks]
    if workers <= 1 or len(todo) <= 1:
        for chunk in todo:
            done.update(_run_chunk(family_name, chunk, b, seed, str(out), progress))
            write_json_atomic(out / PROGRESS, done)
    else:
        from tqdm import tqdm

        with ProcessPoolExecutor(max_workers=workers) as pool:
            futs = [pool.submit(_run_chunk, family_name, c, b, seed, str(out), False) for c in todo]
            for fut in tqdm(as_completed(futs), total=len(futs), desc=f"{family_name} chunks",
                            disable=not progress):
                done.update(fut.result())
                write_json_atomic(out / PROGRESS, done)
    if stop_after_chunks is not None and not all(str(t) in done for t in family.all_indices):
        return out
    manifest = {
        "format_version": FORMAT_VERSION,
        "family": family.describe(),
        "generator": generator_config(family, budget, seed),
        "versions": package_versions(),
        "files": {k: done[k] for k in sorted(done, key=int)},
    }
    write_json_atomic(out / MANIFEST, manifest)
    (out / PROGRESS).unlink(missing_ok=True)
    if progress:
        print(f"built {family_name} ({budget}) in {time.time() - t0:.1f} s → {out}")
    return out


def require_dataset(family_name: str, budget: str, seed: int, root: Path | None = None) -> Path:
    """The folder of a built dataset, verified; a clear error if it is not there."""
    out = dataset_dir(family_name, budget, seed, root)
    if not (out / MANIFEST).exists():
        raise DatasetError(
            f"no {budget} dataset for {family_name} (seed {seed}) at {out}; build it with "
            f"`python -m harness data build {family_name} --budget {budget} --seed {seed}`"
        )
    verify_dataset(out)
    return out
