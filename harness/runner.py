"""One run = (algorithm, family, seed, config): train, evaluate, checkpoint, resume.

A run lives in ``<results>/<suite>/runs/<algorithm>__<family>__seed<k>/``:

* ``config.json`` — the full run config; a different config in the same folder is refused;
* ``metrics.csv`` — tidy rows, one per (evaluation step, test task);
* ``train.csv`` — the learner's ``train/…`` metrics every ``log_every`` steps;
* ``checkpoint.pt`` — learner, optimizers, RNG states, step and the number of rows of both CSVs,
  written atomically after the rows it covers (at every evaluation, and when asked to stop);
* ``final.pt`` — the trained learner, kept after the run (``python -m harness evaluate``);
* ``final_draws.csv`` — the final learner on ``final_draws`` more adaptation draws per test task
  (the multi-draw final score), written once training is done;
* ``online.csv`` — with ``online_rounds``: the online fine-tuning curve per test task;
* ``done.json`` — written last; ``error.txt`` — the one-line error of a failed attempt;
* ``.lock`` — held while a process executes the run: a second process skips it (:class:`RunBusy`).

Resuming after a kill reloads the checkpoint and cuts both CSVs back to the rows it covers; the
steps after it are recomputed from the restored RNG states, so a resumed run writes exactly the
rows an uninterrupted one would — none lost, none duplicated. Nothing the run writes depends on
``log_every`` or TensorBoard, which are how a run is watched, not what it computes.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import functools
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch
from annotated_types import Interval
from filelock import FileLock, Timeout

from algorithms.base import (
    PositiveInt,
    inner_sampling,
    inner_segment,
    learner_class,
    make_config,
    outer_segment,
    pick_tasks,
)
from envs import make_family
from harness.collect.build import require_dataset
from harness.datasets import OfflineDataset, manifest_hash
from harness.evaluate import EvalConfig, evaluate, make_eval_envs, random_scores
from harness.online import ONLINE_COLUMNS, online_rows, supports_online
from harness.results import atomic_write, atomic_write_text, update_json, write_json

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
Split = Literal["test", "validation"]
LATER_FIELDS: dict[str, Any] = {"split": "test"}
"""RunConfig fields added after committed runs, with the default their identity omits."""
Slice = Literal["all", "first", "middle", "last"]
Fraction = Annotated[float, Interval(gt=0.0, le=1.0)]


class RunError(RuntimeError):
    """A run cannot start or resume as asked (config mismatch, bad checkpoint …)."""


class RunBusy(RunError):
    """Another process holds the run's lock: it is being executed elsewhere right now."""


class RunInterrupted(Exception):
    """A stop was requested (:func:`request_stop`); the run checkpointed its current step."""

    def __init__(self, out: Path, step: int):
        super().__init__(f"{out.name} stopped at step {step}")
        self.out, self.step = out, step


_STOP = threading.Event()


def request_stop() -> None:
    """Ask the run executing in this process to checkpoint at its next step and stop
    (what the executors do on the first Ctrl-C)."""
    _STOP.set()


def clear_stop() -> None:
    _STOP.clear()


def stop_requested() -> bool:
    """Whether :func:`request_stop` was called since the last :func:`clear_stop`."""
    return _STOP.is_set()


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
    split: Split = "test"
    """test: train on the family's train tasks, evaluate on its test tasks; validation: train on
    the train tasks less the validation tasks and evaluate on those (:func:`validation_tasks`;
    the learning-rate tuning, which never sees a test task)"""

    @property
    def run_id(self) -> str:
        algo = (self.label or self.algorithm).replace(":", "-").replace(".", "-").replace("/", "-")
        return f"{algo}__{self.family}__seed{self.seed}"

    def to_json(self) -> dict[str, Any]:
        """The run's identity. A field added after runs were made is left out at its default,
        so every earlier run folder keeps its identity and resumes."""
        out = dataclasses.asdict(self)
        for name, default in LATER_FIELDS.items():
            if out.get(name) == default:
                del out[name]
        return out

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


VALIDATION_TASKS = 5
"""How many train tasks a validation split holds out (as many as most families' test tasks)."""


def validation_tasks(train: list[int], test: list[int], n: int = VALIDATION_TASKS) -> list[int]:
    """``n`` train tasks evenly spaced over the train list, held out for validation: never a
    test task. A family whose train tasks are its test tasks (cheetah-dir) has none."""
    if set(train) & set(test):
        raise RunError(
            "this family's train tasks include its test tasks, so it has no validation tasks "
            "(tune on a family with separate test tasks)"
        )
    if len(train) <= n:
        raise RunError(f"{len(train)} train tasks are too few to hold {n} out for validation")
    held = select_train_tasks(train, n)
    assert not set(held) & set(test)
    return held


def split_view(family, split: str):
    """The family as a run of ``split`` sees it: for ``validation``, a copy whose test tasks
    are the validation tasks and whose train tasks are the rest."""
    if split == "test":
        return family
    held = validation_tasks(family.train_indices, family.test_indices)
    view = copy.copy(family)
    view.train_indices = [t for t in family.train_indices if t not in held]
    view.test_indices = held
    return view


def code_version() -> str:
    """The code a run segment was made with: ``git describe --always --dirty`` of the
    project's repository (a dirty tree adds a hash of its diff) as this process loaded it
    (read once, when this module is imported: a long-lived worker keeps running the code it
    imported, whatever the checkout says later), else the installed package's version."""
    return _loaded_code()


@functools.cache
def _loaded_code() -> str:
    import subprocess
    from importlib import metadata

    root = Path(__file__).resolve().parents[1]
    try:

        def git(*args: str) -> str:
            return subprocess.run(
                ["git", *args], cwd=root, capture_output=True, timeout=10, check=True
            ).stdout.decode(errors="replace")

        version = git("describe", "--always", "--dirty").strip()
        if version.endswith("-dirty"):  # which uncommitted state: a hash of the diff
            diff = git("diff", "HEAD", "--binary").encode()
            version += "+" + hashlib.sha256(diff).hexdigest()[:10]
        return version
    except (OSError, subprocess.SubprocessError):
        try:
            return "package " + metadata.version("offline-meta-rl-bench")
        except metadata.PackageNotFoundError:
            return "unknown"


PROVENANCE = "provenance.json"
"""``segments``: per execution of a run (a resumed run spans several), the step it started
from and the code it ran (:func:`code_version`). Outside the run's identity: a run started at
one commit resumes at a later one."""


def record_segment(out: Path, step: int, version: str | None = None) -> None:
    """Append this execution's segment to the run's provenance."""
    entry = {"from_step": int(step), "code": version or code_version()}

    def merge(old: dict[str, Any]) -> dict[str, Any]:
        return {"segments": [*old.get("segments", []), entry]}

    update_json(out / PROVENANCE, merge)


_loaded_code()  # at import: the code this process runs


def run_codes(out: Path) -> list[str]:
    """The distinct code versions of a run's segments, in the order they ran ([] before
    provenance was recorded)."""
    path = Path(out) / PROVENANCE
    if not path.exists():
        return []
    segments = json.loads(path.read_text()).get("segments", [])
    return list(dict.fromkeys(seg["code"] for seg in segments))


def load_provenance(results_suite_dir) -> dict[str, list[str]]:
    """run folder name → :func:`run_codes`, for every run of one folder or several."""
    dirs = [results_suite_dir] if isinstance(results_suite_dir, str | Path) else results_suite_dir
    return {
        p.name: run_codes(p) for d in dirs for p in sorted(Path(d).glob("runs/*")) if p.is_dir()
    }


def run_dir(results: Path, cfg: RunConfig) -> Path:
    return Path(results) / cfg.suite / "runs" / cfg.run_id


def _atomic_torch_save(obj: Any, path: Path) -> None:
    atomic_write(path, lambda f: torch.save(obj, f))


def _truncate_rows(path: Path, n_rows: int) -> None:
    """Keep the header and the first ``n_rows`` data rows of a CSV (none at all for 0)."""
    if not path.exists():
        return
    with open(path, newline="") as f:
        lines = f.readlines()
    if n_rows == 0:
        path.unlink()
        return
    keep = lines[: 1 + n_rows]
    atomic_write_text(path, lambda f: f.writelines(keep))


def _append_rows(path: Path, rows: list[dict[str, Any]], columns: list[str] = COLUMNS) -> None:
    if not rows:
        return
    new = not path.exists()
    if not new:  # the header of the first rows fixes the columns (train metrics are per learner)
        with open(path, newline="") as f:
            columns = next(csv.reader(f))
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        if new:
            w.writeheader()
        w.writerows(rows)
        f.flush()
        os.fsync(f.fileno())


def check_run_folder(results: Path, cfg: RunConfig) -> None:
    """Refuse, writing nothing, a run folder that holds a run of another config."""
    _check_config(run_dir(results, cfg), cfg, create=False)


def _check_config(out: Path, cfg: RunConfig, create: bool = True) -> None:
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
    elif create:
        write_json(path, cfg.to_json())


def execute_run(
    cfg: RunConfig,
    results: Path,
    data_root: Path | None = None,
    progress: bool = False,
    stop_after_evals: int | None = None,
    on_step: Callable[[int], None] | None = None,
    log_every: int = 10,
    tensorboard: bool = False,
    keep_final: bool = True,
) -> Path:
    """Run (or resume, or skip if finished) one run; return its folder.

    Args:
        cfg: the run.
        results: results root (``results/``).
        data_root: dataset cache root (default ``$OMRL_DATA`` or ``./data``).
        progress: show a progress bar.
        stop_after_evals: stop after this many new evaluation points (tests of resuming).
        on_step: called with the step count after every meta-step (progress bars).
        log_every: write the learner's training metrics to ``train.csv`` every this many steps.
        tensorboard: also write them as TensorBoard events under ``tb/``.
        keep_final: keep the trained learner as ``final.pt``.

    Raises:
        RunBusy: another process is executing this run.
        RunInterrupted: :func:`request_stop` was called; the current step is checkpointed.
    """
    out = run_dir(results, cfg)
    _check_config(out, cfg)
    lock = FileLock(out / ".lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise RunBusy(
            f"{out.name} is being executed by another process (lock {out / '.lock'})"
        ) from None
    try:
        (out / "error.txt").unlink(missing_ok=True)
        watch = _Watch(progress, on_step, log_every, tensorboard)
        return _execute_locked(cfg, out, data_root, watch, stop_after_evals, keep_final)
    finally:
        lock.release()


@dataclass(frozen=True)
class _Watch:
    """How a run is watched — never what it computes."""

    progress: bool = False
    on_step: Callable[[int], None] | None = None
    log_every: int = 10
    tensorboard: bool = False


def _execute_locked(
    cfg: RunConfig,
    out: Path,
    data_root: Path | None,
    watch: _Watch,
    stop_after_evals: int | None,
    keep_final: bool,
) -> Path:
    """The protocol of one run, phase by phase: prepare (or see it is finished), resume from
    the checkpoint, score the untrained learner, then train a segment and evaluate until the
    step budget; finish by scoring the final learner on more draws and marking it done."""
    run = _RunLoop.prepare(cfg, out, data_root, watch)
    if run is None:  # finished before, on this very dataset
        return out
    try:
        run.resume()
        if run.step == 0 and run.n_rows == 0:  # the start of every curve: the untrained learner
            run.evaluate_and_checkpoint()
        evals_done = 0
        while run.step < cfg.steps:
            run.train_segment()  # up to the next evaluation step, the last step, or a stop
            if run.at_evaluation_step():
                run.evaluate_and_checkpoint()
                evals_done += 1
                if stop_after_evals is not None and evals_done >= stop_after_evals:
                    break
            elif _STOP.is_set():
                run.checkpoint()
            if _STOP.is_set() and run.step < cfg.steps:
                raise RunInterrupted(out, run.step)
        if run.step >= cfg.steps:
            run.finish(keep_final)
    finally:
        run.close()
    return out


class _RunLoop:
    """The state of one executing run and its phases, each one screen long."""

    # -- prepare -----------------------------------------------------------------------------------
    @classmethod
    def prepare(
        cls, cfg: RunConfig, out: Path, data_root: Path | None, watch: _Watch
    ) -> _RunLoop | None:
        """Load the family, the data and a fresh learner; ``None`` if the run is finished
        (refused if it finished on other data)."""
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
            return None
        return cls(cfg, out, data_dir, dataset_sha, watch)

    def __init__(
        self, cfg: RunConfig, out: Path, data_dir: Path, dataset_sha: str, watch: _Watch
    ) -> None:
        self.cfg, self.out, self.watch, self.dataset_sha = cfg, out, watch, dataset_sha
        self.family = family = split_view(make_family(cfg.family), cfg.split)
        self.train = select_train_tasks(family.train_indices, cfg.train_tasks)
        self.test = family.test_indices
        tasks = sorted(set(self.train) | set(self.test))
        self.data = OfflineDataset.load(data_dir, tasks=tasks, skip=cfg.skip)
        self.cls = learner_class(cfg.algorithm)
        self.lcfg = make_config(self.cls, cfg.learner)
        self.ecfg = EvalConfig(**cfg.eval)
        self.learner = self.cls(
            family.obs_dim, family.act_dim, len(self.train), self.lcfg, cfg.device, seed=cfg.seed
        )
        # train tasks only, never test data
        self.learner.observe_train_data(self.data.train_statistics(self.train))
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.metrics_path, self.ckpt_path = out / "metrics.csv", out / "checkpoint.pt"
        self.train_path = out / "train.csv"
        self.step, self.n_rows, self.n_train, self.t0 = 0, 0, 0, time.perf_counter()
        self.pending: list[dict[str, Any]] = []  # train rows not yet on disk
        self.random = random_scores(family, self.test, self.ecfg.episodes, cfg.seed)
        metric = "return" if family.score == "return" else "success"
        self.best = {t: self.data.best_episode_score([t], metric) for t in self.test}
        self.envs = make_eval_envs(family, self.test)
        self.writer: Any = None
        self.bar: Any = None

    # -- resume ------------------------------------------------------------------------------------
    def resume(self) -> None:
        """Restore the checkpoint, if any, and cut both CSVs back to the rows it covers."""
        cfg, wall = self.cfg, 0.0
        if self.ckpt_path.exists():
            try:
                ckpt = torch.load(self.ckpt_path, weights_only=True)
            except Exception as e:  # a torn or foreign file
                raise RunError(
                    f"{self.ckpt_path}: unreadable checkpoint ({e}); delete it to restart"
                ) from e
            if ckpt.get("config_digest") != cfg.digest():
                raise RunError(
                    f"{self.ckpt_path} was written by a different run config; delete it or "
                    "use another results folder"
                )
            self.learner.load_state_dict(ckpt["learner"])
            self.gen.set_state(ckpt["generator"])
            torch.set_rng_state(ckpt["torch_rng"])
            self.step, self.n_rows, wall = ckpt["step"], ckpt["rows"], ckpt["wall_time"]
            self.n_train = ckpt.get("train_rows", 0)
        _truncate_rows(self.metrics_path, self.n_rows)
        _truncate_rows(self.train_path, self.n_train)
        record_segment(self.out, self.step)
        if self.watch.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step drops events a killed attempt wrote after the checkpoint
            purge = self.step + 1 if self.step else None
            self.writer = SummaryWriter(str(self.out / "tb"), purge_step=purge)
        if self.watch.progress:
            from tqdm import tqdm

            self.bar = tqdm(
                total=cfg.steps, initial=self.step, desc=cfg.run_id, unit="step", leave=False
            )
        self.t0 = time.perf_counter() - wall

    # -- train a segment ---------------------------------------------------------------------------
    def train_segment(self) -> None:
        """Meta-train until an evaluation step, the last step, or a stop request."""
        while True:
            self._train_one_step()
            if self.at_evaluation_step() or _STOP.is_set():
                return

    def at_evaluation_step(self) -> bool:
        return self.step % self.cfg.eval_every == 0 or self.step == self.cfg.steps

    def _train_one_step(self) -> None:
        cfg, lcfg, train = self.cfg, self.lcfg, self.train
        pick = pick_tasks(lcfg, len(train), self.gen)
        batch = self.data.meta_batch(
            [train[i] for i in pick],
            pick,
            lcfg.inner_batch,
            lcfg.outer_batch,
            self.gen,
            inner_quality=cfg.inner_quality,
            inner_fraction=cfg.inner_fraction,
            outer_segment=outer_segment(lcfg),
            inner_sampling=inner_sampling(lcfg),
            inner_segment=inner_segment(lcfg),
        )
        try:
            train_metrics = self.learner.train_step(batch)  # moves the batch to its device
        except Exception as e:
            raise RunError(
                f"learner {self.cls.name} failed in meta_train_step at step {self.step + 1}: "
                f"{type(e).__name__}: {e}"
            ) from e
        self.step += 1
        step, watch = self.step, self.watch
        if step % watch.log_every == 0:
            row = {n.removeprefix("train/"): float(v) for n, v in sorted(train_metrics.items())}
            wall = round(time.perf_counter() - self.t0, 3)
            self.pending.append({"step": step, "wall_time": wall, **row})
            if self.writer is not None:
                for name, value in train_metrics.items():
                    self.writer.add_scalar(name, float(value), step)
        if self.bar is not None:
            self.bar.update(1)
        if watch.on_step is not None:
            watch.on_step(step)

    # -- evaluate and checkpoint -------------------------------------------------------------------
    def evaluate_and_checkpoint(self) -> None:
        """Score the learner at this step, append the rows, then checkpoint what they cover."""
        cfg, step = self.cfg, self.step
        rows = evaluate(self.learner, self.family, self.data, cfg.seed, self.ecfg, self.envs, step)
        now = time.perf_counter() - self.t0
        for r in rows:
            t = r["task"]
            r.update(
                suite=cfg.suite,
                algorithm=cfg.label or self.cls.name,
                family=cfg.family,
                seed=cfg.seed,
                step=step,
                wall_time=round(now, 3),
                random_return=self.random[t][0],
                random_success=self.random[t][1],
                behaviour_best=self.best[t],
                dataset_sha256=self.dataset_sha[:16],
            )
        _append_rows(self.metrics_path, rows)
        self.n_rows += len(rows)
        self.checkpoint()

    def checkpoint(self) -> None:
        """Append the pending training rows, then save what both CSVs' rows cover."""
        if self.pending:
            names = sorted(k for k in self.pending[0] if k not in ("step", "wall_time"))
            _append_rows(self.train_path, self.pending, ["step", "wall_time", *names])
        self.n_train += len(self.pending)
        self.pending.clear()
        state = {
            "learner": self.learner.state_dict(),
            "generator": self.gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            "step": self.step,
            "rows": self.n_rows,
            "train_rows": self.n_train,
            "wall_time": time.perf_counter() - self.t0,
            "config_digest": self.cfg.digest(),
        }
        _atomic_torch_save(state, self.ckpt_path)

    # -- finish ------------------------------------------------------------------------------------
    def finish(self, keep_final: bool) -> None:
        """Score the final learner on more adaptation draws, keep it, mark the run done."""
        cfg, out = self.cfg, self.out
        if self.ecfg.final_draws:
            draws = final_draw_rows(
                self.learner,
                self.family,
                self.data,
                cfg,
                self.ecfg,
                self.envs,
                self.random,
                self.best,
                self.dataset_sha,
            )
            write_rows_atomically(out / FINAL_DRAWS, draws, ["draw", *COLUMNS])
        if self.ecfg.online_rounds and supports_online(self.learner):
            rows = online_rows(self.learner, self.family, self.data, cfg.seed, self.ecfg, self.step)
            for r in rows:
                t = r["task"]
                r.update(
                    suite=cfg.suite,
                    algorithm=cfg.label or self.cls.name,
                    family=cfg.family,
                    seed=cfg.seed,
                    random_return=self.random[t][0] if t in self.random else np.nan,
                    behaviour_best=self.best.get(t, np.nan),
                )
            write_rows_atomically(out / ONLINE, rows, ONLINE_COLUMNS)
        if keep_final:
            _atomic_torch_save(self.learner.state_dict(), out / "final.pt")
        done = {
            "steps": self.step,
            "rows": self.n_rows,
            "dataset_sha256": self.dataset_sha,
            # where and how long (with the final scoring): the costs of pooled machines
            "cpu": cpu_model(),
            "wall_time": round(time.perf_counter() - self.t0, 3),
            "code": run_codes(out),
        }
        atomic_write(out / "done.json", json.dumps(done) + "\n")
        if not cfg.keep_checkpoint:
            self.ckpt_path.unlink(missing_ok=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        for env in self.envs.values():
            env.close()
        if self.writer is not None:
            self.writer.close()


FINAL_DRAWS = "final_draws.csv"
ONLINE = "online.csv"


def cpu_model() -> str:
    """The CPU's model name, as ``/proc/cpuinfo`` or the platform reports it."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def final_draw_rows(learner, family, data, cfg, ecfg, envs, random, best, dataset_sha):
    """The finished learner scored on draws 1..``final_draws``: per draw and test task, a fresh
    i.i.d. adaptation set and episode start, the same for every algorithm (draw 0 is the last
    point of the curve)."""
    rows = []
    for d in range(1, ecfg.final_draws + 1):
        for r in evaluate(learner, family, data, cfg.seed, ecfg, envs, step=cfg.steps, draw=d):
            t = r["task"]
            r.update(
                draw=d,
                suite=cfg.suite,
                algorithm=cfg.label or learner.name,
                family=cfg.family,
                seed=cfg.seed,
                step=cfg.steps,
                wall_time=0.0,
                random_return=random[t][0],
                random_success=random[t][1],
                behaviour_best=best[t],
                dataset_sha256=dataset_sha[:16],
            )
            rows.append(r)
    return rows


def write_rows_atomically(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    """A whole CSV at once (temporary file, then rename): it is there complete or not at all."""

    def write(f) -> None:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)

    atomic_write_text(path, write)


def load_online(results_suite_dir):
    """The ``online.csv`` rows of a suite's finished runs (empty when none fine-tuned online)."""
    import pandas as pd

    dirs = [results_suite_dir] if isinstance(results_suite_dir, str | Path) else results_suite_dir
    paths = sorted(p for d in dirs for p in Path(d).glob(f"runs/*/{ONLINE}"))
    if not paths:
        return pd.DataFrame()
    return pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)


def load_final_draws(results_suite_dir):
    """The ``final_draws.csv`` rows of a suite's finished runs (empty when none recorded them)."""
    import pandas as pd

    dirs = [results_suite_dir] if isinstance(results_suite_dir, str | Path) else results_suite_dir
    paths = sorted(p for d in dirs for p in Path(d).glob(f"runs/*/{FINAL_DRAWS}"))
    if not paths:
        return pd.DataFrame()
    return pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)


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


PLAN = "plan.json"
"""``<results>/<suite>/plan.json``: the run configs of the last launch (what ``status`` expects)."""


def write_plan(results: Path, suite: str, runs: list[RunConfig]) -> None:
    """Record which runs a launch asked for, merged with earlier launches' (atomic, and under
    the plan's lock: simultaneous launches keep each other's entries)."""
    entries = {cfg.run_id: cfg.to_json() for cfg in runs}
    update_json(Path(results) / suite / PLAN, lambda old: {**old, **entries})


def read_plan(suite_dir: Path) -> list[RunConfig]:
    path = Path(suite_dir) / PLAN
    if not path.exists():
        return []
    return [RunConfig(**c) for c in json.loads(path.read_text()).values()]


@dataclass(frozen=True)
class RunState:
    """What a run folder says about its run, read from its files alone (cheap: no checkpoint)."""

    run_id: str
    status: str
    """done | partial | failed | not started"""
    step: int = 0
    """the last evaluated step"""
    steps: int | None = None
    score: float | None = None
    """mean over test tasks at the last evaluated step (return, or success where scored so)"""
    seconds_per_step: float | None = None
    error: str = ""


def _last_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return []
    last = rows[-1]["step"]
    return [r for r in rows if r["step"] == last]


def run_state(folder: Path, steps: int | None = None) -> RunState:
    """The state of the run in ``folder`` (which may not exist yet)."""
    folder = Path(folder)
    if steps is None and (folder / "config.json").exists():
        steps = json.loads((folder / "config.json").read_text()).get("steps")
    metrics = folder / "metrics.csv"
    rows = _last_rows(metrics) if metrics.exists() else []
    step, score, rate = 0, None, None
    if rows:
        step = int(rows[0]["step"])
        col = "post_success" if rows[0]["post_success"] not in ("", "nan") else "post_return"
        score = sum(float(r[col]) for r in rows) / len(rows)
        wall = float(rows[0]["wall_time"])
        rate = wall / step if step else None
    if (folder / "done.json").exists():
        return RunState(folder.name, "done", step, steps, score, rate)
    if (folder / "error.txt").exists():
        err = (folder / "error.txt").read_text().strip()
        return RunState(folder.name, "failed", step, steps, score, rate, err)
    if rows:
        return RunState(folder.name, "partial", step, steps, score, rate)
    return RunState(folder.name, "not started", 0, steps)


def load_train_logs(results_suite_dir):
    """Every run's ``train.csv`` (one folder, or several) as one long DataFrame: suite,
    algorithm, family, seed, step, metric, value. Empty if no run logged anything."""
    import pandas as pd

    dirs = [results_suite_dir] if isinstance(results_suite_dir, str | Path) else results_suite_dir
    frames = []
    for p in sorted(p for d in dirs for p in Path(d).glob("runs/*/train.csv")):
        cfg = json.loads((p.parent / "config.json").read_text())
        df = pd.read_csv(p).drop(columns=["wall_time"])
        long = df.melt(id_vars="step", var_name="metric", value_name="value")
        frames.append(
            long.assign(
                suite=cfg["suite"],
                algorithm=cfg.get("label") or learner_class(cfg["algorithm"]).name,
                family=cfg["family"],
                seed=cfg["seed"],
            )
        )
    cols = ["suite", "algorithm", "family", "seed", "step", "metric", "value"]
    return pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)
