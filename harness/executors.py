"""Where runs execute: in-process, a local pool of worker processes (default), a Ray cluster, or
SLURM (through submitit).

Each run is independent and writes only inside its own folder, so any executor can run them in
any order and a re-run resumes whatever was interrupted. Results do not depend on the executor:
every run seeds itself and uses one torch thread (float results can depend on the thread count,
and the learners' steps gain little from a second thread — measured); runs parallelise instead.

What every executor guarantees while a researcher watches:

* **Ctrl-C**: the first one starts nothing new and asks each running run to checkpoint its
  current step and stop (within a step: ≤ 1 s for every learner here); workers still busy after
  :data:`GRACE_S` are killed, losing at most what their last checkpoint did not cover. A second
  Ctrl-C kills them at once. The same command resumes exactly.
* **One writer per run**: a run whose lock another process holds is skipped (``busy``), never
  executed twice at once — two launches into one folder give a lone launch's rows.
* **A failing run** writes its one-line error to ``error.txt`` and the others go on; the
  suite ends with :class:`SuiteFailed` naming it.
* **Progress**: ``on_progress(run_index, step)`` as runs advance, ``on_done(run, status)`` when
  one ends (``done``, ``busy``, ``failed``, ``stopped``).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.hugepages import use_huge_pages
from harness.results import atomic_write
from harness.runner import (
    RunBusy,
    RunConfig,
    RunError,
    RunInterrupted,
    clear_stop,
    execute_run,
    request_stop,
    run_dir,
    stop_requested,
)

GRACE_S = 8.0
"""seconds a stopping worker gets to checkpoint before it is killed"""


class SuiteFailed(RunError):
    """Some runs failed (each wrote ``error.txt``); the others finished or were skipped."""


@dataclass(frozen=True)
class RunOptions:
    """How runs are watched and what they keep — none of it changes a result."""

    log_every: int = 10
    tensorboard: bool = False
    keep_final: bool = True


ProgressFn = Callable[[int, int], None]
DoneFn = Callable[[RunConfig, str], None]


def _one_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {' '.join(str(e).split())}"


def _record_failure(cfg: RunConfig, results: Path, e: BaseException) -> str:
    """``error.txt``: the one line; ``error.log``: the whole traceback, for the learner's author."""
    import traceback

    line = " ".join(str(e).split()) if isinstance(e, ValueError | RunError) else _one_line(e)
    out = run_dir(results, cfg)
    if out.is_dir():
        atomic_write(out / "error.txt", line + "\n")
        atomic_write(out / "error.log", "".join(traceback.format_exception(e)))
    return line


def _execute(cfg, results, root, opts, on_step) -> tuple[str, str]:
    """(status, detail) of one run in this process."""
    try:
        out = execute_run(
            cfg,
            Path(results),
            Path(root) if root else None,
            on_step=on_step,
            log_every=opts.log_every,
            tensorboard=opts.tensorboard,
            keep_final=opts.keep_final,
        )
        return "done", str(out)
    except RunBusy as e:
        return "busy", str(e)
    except RunInterrupted as e:
        return "stopped", str(e)
    except Exception as e:  # noqa: BLE001 — reported per run; the suite goes on
        return "failed", _record_failure(cfg, Path(results), e)


# -- local pool ----------------------------------------------------------------------------------
ORPHAN_POLL_S = 0.5
"""how often a worker checks that the launch that started it is still alive"""


def _exit_with_parent(parent: int, events, is_busy: Callable[[], bool]) -> None:
    """A worker's watchdog thread: if its parent dies (``kill -9``, a SIGTERM to the parent
    alone, a closed terminal), the run checkpoints its current step and the worker exits —
    an orphan must not go on training, nor hang on a queue nobody reads."""
    while os.getppid() == parent:
        time.sleep(ORPHAN_POLL_S)
    events.cancel_join_thread()  # nobody reads the events any more: do not wait to flush them
    request_stop()
    deadline = time.monotonic() + GRACE_S
    while is_busy() and time.monotonic() < deadline:
        time.sleep(0.05)
    os._exit(0)


def _worker(tasks, events, results: str, root: str | None, opts: RunOptions, parent: int) -> None:
    """A pool process: runs what it is given until told to stop (None, SIGTERM, or its parent
    gone)."""
    import threading

    import torch

    busy = False

    def on_term(_sig, _frame):
        if busy:
            request_stop()  # checkpoint at the next step, then RunInterrupted
        else:
            raise SystemExit(0)

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides what a Ctrl-C means
    signal.signal(signal.SIGTERM, on_term)
    threading.Thread(
        target=_exit_with_parent, args=(parent, events, lambda: busy), daemon=True
    ).start()
    torch.set_num_threads(1)
    use_huge_pages()  # once per process; see harness/hugepages.py
    while True:
        item = tasks.get()
        if item is None:
            return
        i, cfg = item
        busy = True
        events.put(("start", i, os.getpid()))
        last = [0.0]

        def on_step(step, i=i, last=last):
            now = time.monotonic()
            if now - last[0] > 0.5:
                last[0] = now
                events.put(("step", i, step))

        status, detail = _execute(cfg, results, root, opts, on_step)
        busy = False
        events.put((status, i, detail))
        if status == "stopped" or stop_requested():  # a stop asked as the run finished: no more
            return


def _run_pool(runs, results, root, workers, opts, on_progress, on_done) -> dict[int, tuple]:
    ctx = mp.get_context("spawn")  # no inherited torch or OpenMP state
    tasks, events = ctx.Queue(), ctx.Queue()
    procs = [
        ctx.Process(
            target=_worker,
            args=(tasks, events, str(results), root, opts, os.getpid()),
            daemon=True,
        )
        for _ in range(workers)
    ]
    for p in procs:
        p.start()
    todo = list(enumerate(runs))
    outcome: dict[int, tuple] = {}
    running = 0
    held: dict[int, int] = {}  # worker pid → the run it executes

    def feed() -> None:
        nonlocal running
        while todo and running < workers:
            tasks.put(todo.pop(0))
            running += 1

    def handle(event) -> None:
        nonlocal running
        kind, i, detail = event
        if kind == "start":
            held[detail] = i
            return
        if kind == "step":
            if on_progress:
                on_progress(i, detail)
            return
        running -= 1
        held.pop(next((pid for pid, j in held.items() if j == i), -1), None)
        outcome[i] = (kind, detail)
        if on_done:
            on_done(runs[i], kind)

    try:
        feed()
        while running:
            try:
                handle(events.get(timeout=1.0))
            except queue.Empty:
                for p in procs:  # a worker killed from outside (OOM): its run failed
                    if not p.is_alive() and p.pid in held:
                        i = held[p.pid]
                        err = RunError(f"its worker process died (exit code {p.exitcode})")
                        handle(("failed", i, _record_failure(runs[i], Path(results), err)))
                if running and not any(p.is_alive() for p in procs):
                    raise RunError("every worker process died") from None
            feed()
        for _ in procs:
            tasks.put(None)
        for p in procs:
            p.join(timeout=10)
    except KeyboardInterrupt:
        todo.clear()
        _stop_workers(procs, events, handle)
        raise
    return outcome


def _stop_workers(procs, events, handle) -> None:
    """First Ctrl-C: SIGTERM (checkpoint and exit); after GRACE_S, or a second Ctrl-C, SIGKILL."""
    alive = [p for p in procs if p.is_alive()]
    print(
        f"stopping: {len(alive)} worker(s) checkpoint their runs (Ctrl-C again to kill now)",
        flush=True,
    )
    for p in alive:
        os.kill(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + GRACE_S
    try:
        while any(p.is_alive() for p in procs) and time.monotonic() < deadline:
            try:
                handle(events.get(timeout=0.2))
            except queue.Empty:
                pass
    except KeyboardInterrupt:
        pass
    for p in procs:
        if p.is_alive():
            p.kill()
        p.join(timeout=5)


# -- in this process -----------------------------------------------------------------------------
def _run_inprocess(runs, results, root, opts, on_progress, on_done) -> dict[int, tuple]:
    import torch

    torch.set_num_threads(1)
    use_huge_pages()
    outcome: dict[int, tuple] = {}
    asked = [False]

    def on_int(_sig, _frame):
        if asked[0]:
            raise KeyboardInterrupt  # the second Ctrl-C: now
        asked[0] = True
        print("stopping: the run checkpoints its step (Ctrl-C again to stop now)", flush=True)
        request_stop()

    previous = {sig: signal.signal(sig, on_int) for sig in (signal.SIGINT, signal.SIGTERM)}
    clear_stop()
    try:
        for i, cfg in enumerate(runs):
            status, detail = _execute(
                cfg,
                results,
                root,
                opts,
                (lambda s, i=i: on_progress(i, s)) if on_progress else None,
            )
            outcome[i] = (status, detail)
            if on_done:
                on_done(cfg, status)
            if status == "stopped":
                raise KeyboardInterrupt
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        clear_stop()
    return outcome


# -- Ray -----------------------------------------------------------------------------------------
def _ray_work(cfg, results, root, opts) -> tuple[str, str]:
    import torch

    torch.set_num_threads(1)
    use_huge_pages()
    return _execute(cfg, results, root, opts, None)


def _run_ray(runs, results, root, workers, address, opts, on_done) -> dict[int, tuple]:
    try:
        import ray
    except ImportError as e:
        raise ValueError("the ray executor needs Ray: pip install 'ray>=2.9'") from e
    started = False
    if not ray.is_initialized():
        ray.init(
            address=address,
            num_cpus=None if address else workers,
            include_dashboard=False,
            log_to_driver=False,
        )
        started = True
    outcome: dict[int, tuple] = {}
    try:
        remote = ray.remote(num_cpus=1)(_ray_work)
        refs = {
            remote.remote(cfg, str(Path(results).resolve()), root, opts): i
            for i, cfg in enumerate(runs)
        }
        pending = list(refs)
        try:
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                i = refs[ready[0]]
                outcome[i] = ray.get(ready[0])
                if on_done:
                    on_done(runs[i], outcome[i][0])
        except KeyboardInterrupt:
            print("stopping: cancelling the Ray tasks (each resumes from its checkpoint)")
            for ref in pending:
                ray.cancel(ref)
            raise
    finally:
        if started:
            ray.shutdown()
    return outcome


# -- SLURM (submitit) -----------------------------------------------------------------------------
@dataclass(frozen=True)
class SlurmOptions:
    """What each run's SLURM job asks for (``--executor slurm``); one job array per launch."""

    partition: str | None = None
    time_min: int = 240
    cpus: int = 1
    gpus: int = 0
    mem_gb: int | None = None
    parallelism: int = 64
    """array jobs running at once"""
    cluster: str | None = None
    """submitit's cluster: None picks SLURM when it is there; "local" runs the jobs here (tests)"""


def _run_slurm(runs, results, root, slurm: SlurmOptions, opts, on_done) -> dict[int, tuple]:
    try:
        import submitit
    except ImportError as e:
        raise ValueError("the slurm executor needs submitit: pip install '.[slurm]'") from e
    logs = Path(results) / (runs[0].suite if runs else "suite") / "slurm"
    ex = submitit.AutoExecutor(folder=str(logs), cluster=slurm.cluster)
    params = {"timeout_min": slurm.time_min, "cpus_per_task": slurm.cpus, "name": "omrl"}
    if slurm.gpus:
        params["gpus_per_node"] = slurm.gpus
    if slurm.mem_gb:
        params["mem_gb"] = slurm.mem_gb
    if ex.cluster == "slurm":
        params["slurm_array_parallelism"] = slurm.parallelism
        if slurm.partition:
            params["slurm_partition"] = slurm.partition
    ex.update_parameters(**params)
    n = len(runs)
    jobs = ex.map_array(
        _ray_work,
        runs,
        [str(Path(results).resolve())] * n,
        [root] * n,
        [opts] * n,
    )
    outcome: dict[int, tuple] = {}
    try:
        pending = dict(enumerate(jobs))
        while pending:
            for i, job in list(pending.items()):
                if job.done():
                    del pending[i]
                    try:
                        outcome[i] = job.result()
                    except Exception as e:  # noqa: BLE001 — the job died (time limit, node)
                        outcome[i] = ("failed", _record_failure(runs[i], Path(results), e))
                    if on_done:
                        on_done(runs[i], outcome[i][0])
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("stopping: cancelling the SLURM jobs (each resumes from its checkpoint)")
        for job in jobs:
            job.cancel(check=False)
        raise
    return outcome


EXECUTORS = ("local", "inprocess", "ray", "slurm")


def run_all(
    runs: list[RunConfig],
    results: Path,
    data_root: Path | None = None,
    executor: str = "local",
    workers: int | None = None,
    address: str | None = None,
    on_done: DoneFn | None = None,
    on_progress: ProgressFn | None = None,
    options: RunOptions | None = None,
    slurm: SlurmOptions | None = None,
) -> list[Path]:
    """Execute every run; return their folders (in the order given).

    Args:
        executor: ``local`` (a pool of worker processes sized to the machine), ``inprocess``
            (debugging), ``ray`` (``address`` of an existing cluster, or a local Ray if None),
            or ``slurm`` (one SLURM job per run, as a job array, through submitit: ``slurm``).
        workers: parallel runs (default: the machine's cores, at most the number of runs).

    Raises:
        SuiteFailed: some runs failed (the others are finished); KeyboardInterrupt on Ctrl-C.
    """
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; known executors: {', '.join(EXECUTORS)}")
    opts = options or RunOptions()
    cores = os.cpu_count() or 1
    workers = max(1, min(workers or cores, len(runs) or 1))
    from harness.collect.build import data_root as default_data_root

    root = str(Path(data_root or default_data_root()).resolve())
    if executor == "local" and workers == 1:
        executor = "inprocess"  # one worker: no pool to start, Ctrl-C handled in this process
    run_with = {
        "inprocess": lambda: _run_inprocess(runs, results, root, opts, on_progress, on_done),
        "local": lambda: _run_pool(runs, results, root, workers, opts, on_progress, on_done),
        "ray": lambda: _run_ray(runs, results, root, workers, address, opts, on_done),
        "slurm": lambda: _run_slurm(runs, results, root, slurm or SlurmOptions(), opts, on_done),
    }
    outcome = run_with[executor]()
    failed = [(runs[i], d) for i, (s, d) in sorted(outcome.items()) if s == "failed"]
    if failed:
        cfg, line = failed[0]
        raise SuiteFailed(
            f"{len(failed)} of {len(runs)} run(s) failed; first: {cfg.run_id}: {line} "
            f"(see error.txt in each run folder)"
        )
    return [run_dir(results, cfg) for cfg in runs]
