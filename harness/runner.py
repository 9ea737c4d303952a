"""One run = (algorithm, family, seed, config): train, evaluate, checkpoint, resume.

A run lives in ``<results>/<suite>/runs/<algorithm>__<family>__seed<k>/``:

* ``config.json`` — the full run config; a different config in the same folder is refused;
* ``metrics.csv`` — tidy rows, one per (evaluation step, test task);
* ``checkpoint.pt`` — learner, optimizers, RNG states, step and the number of metric rows,
  written atomically after the rows it covers;
* ``done.json`` — written last.

Resuming after a kill reloads the checkpoint and cuts ``metrics.csv`` back to the rows it
covers; the evaluation points after it are recomputed from the restored RNG states, so a resumed
run writes exactly the rows an uninterrupted one would — none lost, none duplicated.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from annotated_types import Interval

from algorithms.base import PositiveInt, learner_class, make_config
from envs import make_family
from harness.collect.build import require_dataset
from harness.datasets import OfflineDataset, manifest_hash
from harness.evaluate import EvalConfig, evaluate, random_scores

COLUMNS = [
    "suite",
    "algorithm",
    "family",
    "seed",
    "step",
    "wall_time",
    "task",
    "pre_return",
    "post_return",
    "pre_success",
    "post_success",
    "random_return",
    "random_success",
    "behaviour_best",
    "adaptation_sha256",
    "dataset_sha256",
]


Budget = Literal["tiny", "small", "default"]
Slice = Literal["all", "first", "middle", "last"]
Fraction = Annotated[float, Interval(gt=0.0, le=1.0)]


class RunError(RuntimeError):
    """A run cannot start or resume as asked (config mismatch, bad checkpoint …)."""


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines one run (the learner's own hyperparameters are in ``learner``)."""

    suite: str
    algorithm: str
    """registered name or ``module.path:ClassName``"""
    family: str
    seed: int
    steps: PositiveInt = 1000
    """meta-training steps"""
    eval_every: PositiveInt = 250
    data_budget: Budget = "small"
    data_seed: int = 0
    skip: PositiveInt = 1
    """keep every k-th transition of each buffer (the original uses 7)"""
    train_tasks: PositiveInt | None = None
    """use only n train tasks, evenly spaced over the train list (the number-of-tasks ablation;
    as the authors' configs, which take e.g. tasks {0, 16, 32} for 3)"""
    inner_quality: Slice = "all"
    """all | first | middle | last: the buffer slice meta-training *inner* batches come from
    (the quality ablations; outer batches always use the whole buffer, as the authors')"""
    inner_fraction: Fraction = 1.0 / 3.0
    learner: dict[str, Any] = field(default_factory=dict)
    """overrides of the learner's Config"""
    eval: dict[str, Any] = field(default_factory=dict)
    """overrides of EvalConfig"""
    device: str = "cpu"
    keep_checkpoint: bool = False
    """keep checkpoint.pt after the run finishes"""
    label: str = ""
    """the name in results and plots (a suite variant such as "macaw-no-head"); default: the
    algorithm's registered name"""

    @property
    def run_id(self) -> str:
        algo = (self.label or self.algorithm).replace(":", "-").replace(".", "-").replace("/", "-")
        return f"{algo}__{self.family}__seed{self.seed}"

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()


def select_train_tasks(train: list[int], n: int | None) -> list[int]:
    """``n`` train tasks evenly spaced over the family's train list (all of them for ``None``).

    Taking the *first* n would leave most test tasks outside the trained range (on cheetah-vel
    the first 3 reach only 0.30 m/s): that measures extrapolation, not the number of tasks.
    """
    if not n or n >= len(train):
        return list(train)
    if n < 1:
        raise ValueError(f"train_tasks must be ≥ 1, got {n}")
    positions = [round(i * (len(train) - 1) / (n - 1)) for i in range(n)] if n > 1 else [0]
    return [train[p] for p in positions]


def run_dir(results: Path, cfg: RunConfig) -> Path:
    return Path(results) / cfg.suite / "runs" / cfg.run_id


def _atomic_torch_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _truncate_rows(path: Path, n_rows: int) -> None:
    """Keep the header and the first ``n_rows`` data rows of a metrics CSV."""
    if not path.exists():
        return
    with open(path, newline="") as f:
        lines = f.readlines()
    keep = lines[: 1 + n_rows]
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        f.writelines(keep)
    os.replace(tmp, path)


def _append_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        if new:
            w.writeheader()
        w.writerows(rows)
        f.flush()
        os.fsync(f.fileno())


def _check_config(out: Path, cfg: RunConfig) -> None:
    path = out / "config.json"
    if path.exists():
        old = json.loads(path.read_text())
        if old != cfg.to_json():
            diff = sorted(
                k for k in set(old) | set(cfg.to_json()) if old.get(k) != cfg.to_json().get(k)
            )
            raise RunError(
                f"{out} holds a run with a different config (differs in: {', '.join(diff)}); "
                "use another --results folder or suite name, or delete that run"
            )
    else:
        out.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name("config.json.tmp")
        tmp.write_text(json.dumps(cfg.to_json(), indent=2, sort_keys=True) + "\n")
        os.replace(tmp, path)


def execute_run(
    cfg: RunConfig,
    results: Path,
    data_root: Path | None = None,
    progress: bool = False,
    stop_after_evals: int | None = None,
) -> Path:
    """Run (or resume, or skip if finished) one run; return its folder.

    Args:
        cfg: the run.
        results: results root (``results/``).
        data_root: dataset cache root (default ``$OMRL_DATA`` or ``./data``).
        progress: show a progress bar.
        stop_after_evals: stop after this many new evaluation points (tests of resuming).
    """
    out = run_dir(results, cfg)
    _check_config(out, cfg)
    family = make_family(cfg.family)
    data_dir = require_dataset(cfg.family, cfg.data_budget, cfg.data_seed, data_root)
    dataset_sha = manifest_hash(data_dir)
    if (out / "done.json").exists():
        done = json.loads((out / "done.json").read_text())
        if done.get("dataset_sha256") != dataset_sha:
            raise RunError(
                f"{out} finished on dataset {str(done.get('dataset_sha256'))[:12]}… "
                f"but {data_dir} now holds {dataset_sha[:12]}…; results from "
                "different data are not comparable — use another results folder"
            )
        return out
    train = select_train_tasks(family.train_indices, cfg.train_tasks)
    test = family.test_indices
    data = OfflineDataset.load(data_dir, tasks=sorted(set(train) | set(test)), skip=cfg.skip)
    cls = learner_class(cfg.algorithm)
    lcfg = make_config(cls, cfg.learner)
    ecfg = EvalConfig(**cfg.eval)
    learner = cls(family.obs_dim, family.act_dim, len(train), lcfg, cfg.device, seed=cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)

    metrics_path, ckpt_path = out / "metrics.csv", out / "checkpoint.pt"
    step, n_rows, wall = 0, 0, 0.0
    if ckpt_path.exists():
        try:
            ckpt = torch.load(ckpt_path, weights_only=False)
        except Exception as e:  # a torn or foreign file
            raise RunError(f"{ckpt_path}: unreadable checkpoint ({e}); delete it to restart") from e
        if ckpt.get("config_digest") != cfg.digest():
            raise RunError(
                f"{ckpt_path} was written by a different run config; delete it or "
                "use another results folder"
            )
        learner.load_state_dict(ckpt["learner"])
        gen.set_state(ckpt["generator"])
        torch.set_rng_state(ckpt["torch_rng"])
        step, n_rows, wall = ckpt["step"], ckpt["rows"], ckpt["wall_time"]
    _truncate_rows(metrics_path, n_rows)
    if n_rows == 0 and metrics_path.exists():
        metrics_path.unlink()

    random = random_scores(family, test, ecfg.episodes, cfg.seed)
    metric = "return" if family.score == "return" else "success"
    best = {t: data.best_episode_score([t], metric) for t in test}
    envs = {t: family.make_env(t) for t in test}
    k = lcfg.tasks_per_batch
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, initial=step, desc=cfg.run_id, unit="step", leave=False)
    t0 = time.perf_counter() - wall

    def evaluate_and_checkpoint() -> None:
        """Score the learner at ``step``, append the rows, then checkpoint what they cover."""
        nonlocal n_rows
        rows = evaluate(learner, family, data, cfg.seed, ecfg, envs, step=step)
        now = time.perf_counter() - t0
        for r in rows:
            t = r["task"]
            r.update(
                suite=cfg.suite,
                algorithm=cfg.label or cls.name,
                family=cfg.family,
                seed=cfg.seed,
                step=step,
                wall_time=round(now, 3),
                random_return=random[t][0],
                random_success=random[t][1],
                behaviour_best=best[t],
                dataset_sha256=dataset_sha[:16],
            )
        _append_rows(metrics_path, rows)
        n_rows += len(rows)
        _atomic_torch_save(
            {
                "learner": learner.state_dict(),
                "generator": gen.get_state(),
                "torch_rng": torch.get_rng_state(),
                "step": step,
                "rows": n_rows,
                "wall_time": now,
                "config_digest": cfg.digest(),
            },
            ckpt_path,
        )

    evals_done = 0
    if step == 0 and n_rows == 0:  # the start of every curve: the untrained learner
        evaluate_and_checkpoint()
    while step < cfg.steps:
        pick = torch.randperm(len(train), generator=gen)[:k].tolist()
        batch = data.meta_batch(
            [train[i] for i in pick],
            pick,
            lcfg.inner_batch,
            lcfg.outer_batch,
            gen,
            inner_quality=cfg.inner_quality,
            inner_fraction=cfg.inner_fraction,
        )
        learner.train_step(batch)  # train_step moves it to the learner's device
        step += 1
        if bar is not None:
            bar.update(1)
        if step % cfg.eval_every == 0 or step == cfg.steps:
            evaluate_and_checkpoint()
            evals_done += 1
            if stop_after_evals is not None and evals_done >= stop_after_evals:
                break
    if bar is not None:
        bar.close()
    for env in envs.values():
        env.close()
    if step >= cfg.steps:
        (out / "done.json").write_text(
            json.dumps({"steps": step, "rows": n_rows, "dataset_sha256": dataset_sha}) + "\n"
        )
        if not cfg.keep_checkpoint:
            ckpt_path.unlink(missing_ok=True)
    return out


def load_results(results_suite_dir):
    """All metric rows of a suite's runs (one folder, or several to merge) as one DataFrame,
    with a ``finished`` column (the run wrote ``done.json``)."""
    import pandas as pd

    dirs = [results_suite_dir] if isinstance(results_suite_dir, str | Path) else results_suite_dir
    paths = sorted(p for d in dirs for p in Path(d).glob("runs/*/metrics.csv"))
    if not paths:
        raise FileNotFoundError(f"no runs with metrics under {', '.join(map(str, dirs))}")
    rows = pd.concat(
        [pd.read_csv(p).assign(finished=(p.parent / "done.json").exists()) for p in paths],
        ignore_index=True,
    )
    # identical splits: every algorithm of a family must have seen byte-identical data
    for fam, g in rows.groupby("family"):
        hashes = sorted(g["dataset_sha256"].astype(str).unique())
        if len(hashes) > 1:
            raise RunError(
                f"{', '.join(map(str, dirs))}: runs on {fam} used different datasets "
                f"({', '.join(hashes)}); refusing to compare them"
            )
    return rows
