"""``python -m harness …``: build, inspect and verify datasets; list what is registered.

Every user error (unknown name, missing or corrupt file) ends in one line on stderr and exit
status 2; nothing is overwritten on the way.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def _cmd_data_build(args) -> None:
    from harness.collect.build import build

    out = build(
        args.family,
        args.budget,
        args.seed,
        args.root,
        workers=args.workers,
        progress=not args.quiet,
        force=args.force,
    )
    print(out)


def _cmd_data_verify(args) -> None:
    from harness.collect.build import require_dataset
    from harness.datasets import read_manifest

    out = require_dataset(args.family, args.budget, args.seed, args.root)
    n = len(read_manifest(out)["files"])
    print(f"ok: {n} task files of {args.family} ({args.budget}) match their sha256 — {out}")


def _cmd_data_info(args) -> None:
    from harness.collect.build import require_dataset
    from harness.datasets import load_task_arrays, manifest_hash, read_manifest, tenth_means

    out = require_dataset(args.family, args.budget, args.seed, args.root)
    man = read_manifest(out)
    fam = man["family"]
    print(f"{fam['name']}  ({args.budget}, seed {args.seed})  {out}")
    print(
        f"  obs {fam['obs_dim']}  act {fam['act_dim']}  horizon {fam['horizon']}  "
        f"score {fam['score']}  train {len(fam['train_indices'])}  test {len(fam['test_indices'])}"
    )
    print(f"  manifest sha256 {manifest_hash(out)}")
    gen = man["generator"]
    print(f"  generator {gen['collector']} {gen['budget']}")
    build = man.get("build", {})
    if build:
        size = sum(e["bytes"] for e in man["files"].values())
        print(
            f"  built in {build['wall_s']:.0f} s with {build['workers']} worker(s) on "
            f"{build['cpu_count']} CPUs; {size / 1e6:.1f} MB on disk"
        )
        for first, chunk in sorted(build.get("chunks", {}).items(), key=lambda kv: int(kv[0])):
            if chunk.get("curve"):
                pts = chunk["curve"]
                marks = [pts[int(round(f * (len(pts) - 1)))] for f in (0, 0.25, 0.5, 0.75, 1)]
                trace = "  ".join(f"{p['mean_return']:.0f}@{p['wall_s']:.0f}s" for p in marks)
                print(f"  training curve, tasks {first}–{chunk['tasks'][-1]}: {trace}")
    has_oracle = any("oracle_return" in e for e in man["files"].values())
    success = fam["score"] == "success"
    header = f"  {'task':>5} {'split':>5} {'rows':>7} {'eps':>4}  {'first 10%':>9} {'last 10%':>9}"
    header += f" {'random':>8}" + (f" {'oracle':>8}" if has_oracle else "")
    header += "   success first→last" if success else ""
    print(header)
    test = set(fam["test_indices"])
    by_split: dict[str, list[list[float]]] = {"train": [], "test": []}
    for key in sorted(man["files"], key=int):
        entry = man["files"][key]
        a = load_task_arrays(out, entry)
        first, last = tenth_means(a["episode_return"])
        s_first, s_last = tenth_means(a["episode_success"])
        rand = entry.get("random_return", float("nan"))
        orac = entry.get("oracle_return", float("nan"))
        split = "test" if int(key) in test else "train"
        # cheetah-dir's tasks are train and test at once: they count in both summaries
        for sp, members in (("train", fam["train_indices"]), ("test", test)):
            if int(key) in members:
                by_split[sp].append([first, last, rand, orac, s_first, s_last])
        line = (
            f"  {key:>5} {split:>5} {len(a['reward']):>7} {len(a['episode_return']):>4}  "
            f"{first:9.1f} {last:9.1f} {rand:8.1f}" + (f" {orac:8.1f}" if has_oracle else "")
        )
        if success:
            line += f"   {s_first:.2f} → {s_last:.2f}"
        print(line)
    for sp, rows in by_split.items():
        if not rows:
            continue
        arr = np.array(rows, dtype=np.float64)
        m = [float(np.nanmean(c)) if np.isfinite(c).any() else float("nan") for c in arr.T]
        line = (
            f"  mean over {len(rows)} {sp} tasks: first 10% {m[0]:.1f}, last 10% {m[1]:.1f}, "
            f"random {m[2]:.1f}" + (f", oracle {m[3]:.1f}" if has_oracle else "")
        )
        if success:
            line += f"; success {m[4]:.2f} → {m[5]:.2f}"
        print(line)


def _csv(text: str | None) -> list[str] | None:
    return [x.strip() for x in text.split(",") if x.strip()] if text else None


def _cmd_run(args) -> None:
    import os

    from tqdm import tqdm

    from harness.collect.build import build
    from harness.executors import run_all
    from harness.plots import build_report
    from harness.runner import load_results
    from harness.suite import load_suite

    seeds = [int(x) for x in _csv(args.seeds)] if args.seeds else None
    name, runs, raw = load_suite(args.suite, _csv(args.algorithms), _csv(args.families), seeds)
    print(f"suite {name}: {len(runs)} runs — {raw.get('description', '').strip()}")
    for fam, budget, dseed in sorted({(r.family, r.data_budget, r.data_seed) for r in runs}):
        build(fam, budget, dseed, args.root, workers=os.cpu_count() or 1, progress=not args.quiet)
    bar = tqdm(total=len(runs), desc=f"{name} runs", unit="run", disable=args.quiet)
    run_all(
        runs,
        args.results,
        args.root,
        args.executor,
        args.workers,
        args.address,
        on_done=lambda cfg: bar.update(1),
    )
    bar.close()
    out = build_report(load_results(args.results / name), args.reports / name, f"Suite: {name}")
    print(f"report: {out / 'README.md'}")


def _cmd_report(args) -> None:
    from harness.plots import build_report
    from harness.runner import load_results

    dirs = [Path(d) for d in args.results_dir]
    missing = [str(d) for d in dirs if not d.is_dir()]
    if missing:
        raise FileNotFoundError(f"no results folder {', '.join(missing)}")
    name = "+".join(d.name for d in dirs)
    out = args.out or Path("reports") / (dirs[0].name if len(dirs) == 1 else name)
    build_report(load_results(dirs), out, f"Suite: {name}", args.include_partial)
    print(f"report: {out / 'README.md'}")


def _cmd_list(args) -> None:
    from envs import known_families
    from harness.suite import known_suites

    print("families: " + ", ".join(known_families()))
    print("suites: " + ", ".join(known_suites()))
    try:
        from algorithms import known_learners

        print("algorithms: " + ", ".join(known_learners()))
    except ImportError:  # pragma: no cover
        pass
    from harness.collect.build import BUDGET_NAMES

    print("dataset budgets: " + ", ".join(BUDGET_NAMES))


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m harness", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="build, inspect and verify offline datasets")
    dsub = data.add_subparsers(dest="data_command", required=True)
    for name, fn, help_ in (
        ("build", _cmd_data_build, "generate a family's datasets (resumes an interrupted build)"),
        ("info", _cmd_data_info, "tasks, sizes and return quantiles early vs late in each buffer"),
        ("verify", _cmd_data_verify, "check every file against the manifest's sha256"),
    ):
        d = dsub.add_parser(name, help=help_)
        d.add_argument("family", help="task family, e.g. point-robot, cheetah-vel, ml1-reach")
        d.add_argument("--budget", default="default", help="tiny | small | default")
        d.add_argument("--seed", type=int, default=0, help="generator seed")
        d.add_argument(
            "--root", type=Path, default=None, help="cache root (default $OMRL_DATA or ./data)"
        )
        if name == "build":
            d.add_argument("--workers", type=int, default=2, help="parallel processes")
            d.add_argument("--force", action="store_true", help="discard and rebuild")
            d.add_argument("--quiet", action="store_true", help="no progress bars")
        d.set_defaults(fn=fn)

    run = sub.add_parser("run", help="run a suite (resumes what was interrupted) and report it")
    run.add_argument("--suite", default="quick", help="suite name or path to a .toml file")
    run.add_argument("--algorithms", help="comma-separated; overrides the suite's")
    run.add_argument("--families", help="comma-separated; overrides the suite's")
    run.add_argument("--seeds", help="comma-separated integers; overrides the suite's")
    run.add_argument("--executor", default="local", help="local | inprocess | ray")
    run.add_argument("--address", default=None, help="Ray cluster address (with --executor ray)")
    run.add_argument("--workers", type=int, default=None, help="parallel runs (default: cores)")
    run.add_argument("--results", type=Path, default=Path("results"))
    run.add_argument("--reports", type=Path, default=Path("reports"))
    run.add_argument("--root", type=Path, default=None, help="dataset cache root")
    run.add_argument("--quiet", action="store_true")
    run.set_defaults(fn=_cmd_run)

    rep = sub.add_parser("report", help="rebuild figures and tables from result files only")
    rep.add_argument(
        "results_dir", nargs="+", help="e.g. results/quick; several folders merge into one report"
    )
    rep.add_argument("--out", type=Path, default=None, help="default reports/<suite>")
    rep.add_argument(
        "--include-partial",
        action="store_true",
        help="report unfinished runs' last evaluation as final (default: left out, listed)",
    )
    rep.set_defaults(fn=_cmd_report)

    lst = sub.add_parser("list", help="registered families, algorithms, suites and budgets")
    lst.set_defaults(fn=_cmd_list)
    return p


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    from harness.datasets import DatasetError

    try:
        args.fn(args)
    except (DatasetError, ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "interrupted — finished work is kept; run the same command again to resume",
            file=sys.stderr,
        )
        return 130
    return 0
