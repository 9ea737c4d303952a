"""Where runs execute: in-process, a local process pool (default), or a Ray cluster.

Each run is independent and writes only inside its own folder, so any executor can run them in
any order and a re-run resumes whatever was interrupted. Results do not depend on the executor:
every run seeds itself and uses one torch thread (float results can depend on the thread count,
and the learners' steps gain little from a second thread — measured); runs parallelise instead.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from harness.hugepages import use_huge_pages
from harness.runner import RunConfig, execute_run

EXECUTORS = ("local", "inprocess", "ray")


def _work(cfg: RunConfig, results: str, data_root: str | None, threads: int) -> str:
    import torch

    torch.set_num_threads(threads)
    use_huge_pages()  # once per process; see harness/hugepages.py
    return str(execute_run(cfg, Path(results), Path(data_root) if data_root else None))


def run_all(
    runs: list[RunConfig],
    results: Path,
    data_root: Path | None = None,
    executor: str = "local",
    workers: int | None = None,
    address: str | None = None,
    on_done: Callable[[RunConfig], None] | None = None,
) -> list[Path]:
    """Execute every run; return their folders (in the order given).

    Args:
        executor: ``local`` (process pool sized to the machine), ``inprocess`` (debugging), or
            ``ray`` (``address`` of an existing cluster, or a local Ray if None).
        workers: parallel runs (default: the machine's cores, at most the number of runs).
    """
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; known executors: {', '.join(EXECUTORS)}")
    cores = os.cpu_count() or 1
    workers = max(1, min(workers or cores, len(runs) or 1))
    threads = 1
    from harness.collect.build import data_root as default_data_root

    root = str(Path(data_root or default_data_root()).resolve())
    out: dict[int, Path] = {}
    if executor == "inprocess" or (executor == "local" and workers == 1):
        for i, cfg in enumerate(runs):
            out[i] = Path(_work(cfg, str(results), root, threads))
            if on_done:
                on_done(cfg)
    elif executor == "local":
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futs = {
                pool.submit(_work, cfg, str(results), root, threads): i
                for i, cfg in enumerate(runs)
            }
            for fut in as_completed(futs):
                out[futs[fut]] = Path(fut.result())
                if on_done:
                    on_done(runs[futs[fut]])
    else:
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
        try:
            remote = ray.remote(num_cpus=1)(_work)
            refs = {
                remote.remote(cfg, str(Path(results).resolve()), root, threads): i
                for i, cfg in enumerate(runs)
            }
            pending = list(refs)
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                i = refs[ready[0]]
                out[i] = Path(ray.get(ready[0]))
                if on_done:
                    on_done(runs[i])
        finally:
            if started:
                ray.shutdown()
    return [out[i] for i in range(len(runs))]
