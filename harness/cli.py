"""``python -m harness …``: build, inspect and verify datasets; list what is registered.

Every user error (unknown name, missing or corrupt file) ends in one line on stderr and exit
status 2; nothing is overwritten on the way.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
import threading
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
    from harness.datasets import manifest_hash, read_manifest

    if args.against is not None:
        out = _check_against(args.family, args.budget, args.seed, args.root, args.against)
        print(
            f"ok: {args.family} ({args.budget}, seed {args.seed}) is the reference's dataset, "
            f"byte for byte: identity {manifest_hash(out)[:16]}, "
            f"{len(read_manifest(out)['files'])} task files as {args.against}"
        )
        return
    out = require_dataset(args.family, args.budget, args.seed, args.root)
    n = len(read_manifest(out)["files"])
    print(f"ok: {n} task files of {args.family} ({args.budget}) match their sha256 — {out}")


def _reference_manifest(against: Path, family: str) -> tuple[Path, dict]:
    """The reference manifest of ``family``: ``against`` itself (a .json) or
    ``against/<family>.json`` (a folder of them, e.g. reports/reference/data)."""
    path = against / f"{family}.json" if against.is_dir() else against
    if not path.exists():
        raise FileNotFoundError(f"no reference manifest for {family} at {path}")
    return path, json.loads(path.read_text())


def _check_against(family: str, budget: str, seed: int, root, against: Path) -> Path:
    """The built dataset's folder if it is the reference's byte for byte; else a one-line error
    naming what differs (the files first)."""
    from harness.collect.build import dataset_dir
    from harness.datasets import MANIFEST, DatasetError, differences_from

    path, reference = _reference_manifest(Path(against), family)
    out = dataset_dir(family, budget, seed, root)
    if not (out / MANIFEST).exists():
        raise DatasetError(
            f"no {budget} dataset for {family} (seed {seed}) at {out}; build it with "
            f"`python -m harness data build {family} --budget {budget} --seed {seed}`"
        )
    diff = differences_from(out, reference)
    if diff:
        shown = ", ".join(diff[:5]) + (f" and {len(diff) - 5} more" if len(diff) > 5 else "")
        raise DatasetError(f"{family} ({budget}) is not the dataset of {path}: {shown}")
    return out


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
    if gen["collector"] == "imported":
        print(
            f"  imported from a {gen['layout']} export (source {gen.get('source_manifest_sha256')})"
        )
    else:
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


def _cmd_data_export(args) -> None:
    from harness.collect.build import require_dataset
    from harness.interop import export_dataset

    src = require_dataset(args.family, args.budget, args.seed, args.root)
    out = export_dataset(src, args.out, args.format, budget=args.budget)
    print(f"exported {args.family} ({args.budget}) as {args.format} → {out}")


def _cmd_data_import(args) -> None:
    import json as _json

    from harness.collect.build import dataset_dir
    from harness.datasets import read_manifest
    from harness.interop import META, import_dataset

    src = Path(args.source)
    if (args.out is None) == (args.budget is None):
        raise ValueError("give --out DIR (a folder of your own) or --budget NAME (the cache slot)")
    out = args.out
    if args.budget is not None:
        if not (src / META).exists():
            raise FileNotFoundError(f"{src} has no {META}: not a finished export of this harness")
        family = _json.loads((src / META).read_text())["family"]["name"]
        out = dataset_dir(family, args.budget, args.seed, args.root)
    out = import_dataset(src, out)
    n = len(read_manifest(out)["files"])
    print(f"imported {n} task files → {out} (every load checks them against its manifest)")
    if args.budget is not None:
        print(f"suites with data_budget = {args.budget!r} (seed {args.seed}) now run on it")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer ≥ 1, got {text!r}")
    return value


def _csv(text: str | None) -> list[str] | None:
    return [x.strip() for x in text.split(",") if x.strip()] if text else None


def _seeds(text: str) -> list[int]:
    """``0,1,2`` or ``0..5`` (inclusive) or a mix; a typo is one line, not a traceback."""
    seeds: list[int] = []
    for part in _csv(text) or []:
        lo, sep, hi = part.partition("..")
        try:
            seeds += list(range(int(lo), int(hi) + 1)) if sep else [int(part)]
        except ValueError:
            raise ValueError(f"--seeds: {part!r} is not an integer or a range like 0..5") from None
    return seeds


def _measure_step_seconds(cfg, family) -> float:
    """Seconds per meta-step of ``cfg``'s learner, timed on a synthetic batch (1 thread)."""
    import time

    import torch

    from algorithms.base import learner_class, make_config
    from algorithms.batch import synthetic_meta_batch

    cls = learner_class(cfg.algorithm)
    lcfg = make_config(cls, cfg.learner)
    n_train = len(family.train_indices) if not cfg.train_tasks else cfg.train_tasks
    learner = cls(family.obs_dim, family.act_dim, n_train, lcfg, seed=0)
    batch = synthetic_meta_batch(
        min(lcfg.tasks_per_batch, n_train),
        lcfg.inner_batch,
        lcfg.outer_batch,
        family.obs_dim,
        family.act_dim,
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        learner.train_step(batch)  # warm-up
        t = time.perf_counter()
        for _ in range(2):
            learner.train_step(batch)
        return (time.perf_counter() - t) / 2
    finally:
        torch.set_num_threads(threads)


def _dry_run(name, runs, args) -> None:
    """The plan of a launch — runs, data to build, time from measured step costs; no writes."""
    import os
    from collections import Counter

    from envs import make_family
    from harness.collect.build import MANIFEST, dataset_dir
    from harness.runner import run_dir, run_state

    print(f"dry run of suite {name}: {len(runs)} runs, nothing is written")
    states = Counter(run_state(run_dir(args.results, r), r.steps).status for r in runs)
    print("  runs: " + ", ".join(f"{n} {s}" for s, n in sorted(states.items())))
    for fam, budget, dseed in sorted({(r.family, r.data_budget, r.data_seed) for r in runs}):
        d = dataset_dir(fam, budget, dseed, args.root)
        print(
            f"  data {fam} ({budget}, seed {dseed}): "
            + ("cached" if (d / MANIFEST).exists() else f"to build at {d}")
        )
    families: dict[str, object] = {}
    cost: dict[str, float] = {}
    total = 0.0
    for r in runs:
        st = run_state(run_dir(args.results, r), r.steps)
        if st.status == "done":
            continue
        key = json.dumps([r.algorithm, r.family, r.learner, r.train_tasks], sort_keys=True)
        if key not in cost:
            fam = families.setdefault(r.family, make_family(r.family))
            cost[key] = _measure_step_seconds(r, fam)
            print(f"  {r.label or r.algorithm} on {r.family}: {cost[key] * 1e3:.0f} ms/step")
        total += cost[key] * (r.steps - st.step)
    workers = max(1, min(args.workers or os.cpu_count() or 1, len(runs)))
    print(
        f"  estimated training time: {total / 60:.1f} CPU-min, ≈ {total / 60 / workers:.1f} min "
        f"on {workers} worker(s) (evaluation and data builds not included)"
    )


def _checked_device(name: str) -> str:
    """A torch device this machine has, or a one-line error."""
    import torch

    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise ValueError(f"--device {name!r}: {e}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: no CUDA device is available on this machine")
    return name


def _cmd_run(args) -> None:
    import os

    from tqdm import tqdm

    from harness.collect.build import build
    from harness.executors import RunOptions, SlurmOptions, run_all
    from harness.report import build_report, declaration
    from harness.runner import (
        check_run_folder,
        load_final_draws,
        load_online,
        load_provenance,
        load_results,
        load_train_logs,
        run_dir,
        run_state,
        write_plan,
    )
    from harness.suite import load_suite, record_declaration

    seeds = _seeds(args.seeds) if args.seeds else None
    name, runs, raw = load_suite(args.suite, _csv(args.algorithms), _csv(args.families), seeds)
    if args.device:
        runs = [dataclasses.replace(r, device=_checked_device(args.device)) for r in runs]
    if args.dry_run:
        _dry_run(name, runs, args)
        return
    for r in runs:  # a folder of another config is refused before anything is built or written
        check_run_folder(args.results, r)
    print(f"suite {name}: {len(runs)} runs — {raw.get('description', '').strip()}")
    for fam, budget, dseed in sorted({(r.family, r.data_budget, r.data_seed) for r in runs}):
        build(fam, budget, dseed, args.root, workers=os.cpu_count() or 1, progress=not args.quiet)
        if args.against is not None:  # refused before any run starts on foreign data
            _check_against(fam, budget, dseed, args.root, args.against)
    write_plan(args.results, name, runs)
    record_declaration(args.results / name, _launch_grid(raw, runs))
    steps = {i: run_state(run_dir(args.results, r), r.steps) for i, r in enumerate(runs)}
    at = {i: (r.steps if steps[i].status == "done" else steps[i].step) for i, r in enumerate(runs)}
    bar = tqdm(
        total=sum(r.steps for r in runs),
        initial=sum(at.values()),
        desc=f"{name} meta-steps",
        unit="step",
        disable=args.quiet,
        smoothing=0.05,
    )
    counts: dict[str, int] = {}

    def on_progress(i: int, step: int) -> None:
        bar.update(max(0, step - at[i]))
        at[i] = max(at[i], step)

    def on_done(cfg, status: str) -> None:
        counts[status] = counts.get(status, 0) + 1
        i = runs.index(cfg)
        if status == "done":
            on_progress(i, cfg.steps)
        bar.set_postfix_str(", ".join(f"{n} {s}" for s, n in sorted(counts.items())))

    opts = RunOptions(args.log_every, args.tensorboard, not args.no_keep_final)
    slurm = SlurmOptions(
        partition=args.slurm_partition,
        time_min=args.slurm_time,
        cpus=args.slurm_cpus,
        gpus=args.slurm_gpus,
        mem_gb=args.slurm_mem,
        cluster=os.environ.get("OMRL_SUBMITIT_CLUSTER"),  # "local": jobs run here (tests)
    )
    try:
        run_all(
            runs,
            args.results,
            args.root,
            args.executor,
            args.workers,
            args.address,
            on_done=on_done,
            on_progress=on_progress,
            options=opts,
            slurm=slurm,
        )
    finally:
        bar.close()
    if counts.get("busy"):
        print(f"{counts['busy']} run(s) skipped: another launch is executing them")
    try:
        rows = load_results(args.results / name)
        out = build_report(
            rows,
            args.reports / name,
            f"Suite: {name}",
            declared=declaration(rows, [args.results / name]),
            provenance=load_provenance(args.results / name),
            train=load_train_logs(args.results / name),
            draws=load_final_draws(args.results / name),
            online=load_online(args.results / name),
        )
    except (FileNotFoundError, ValueError):
        if not counts.get("busy"):
            raise
        print("no report yet: the other launch writes it when its runs finish")
        return
    print(f"report: {out / 'README.md'}")


def _cmd_status(args) -> None:
    import os

    from harness.runner import read_plan, run_state

    suite_dir = Path(args.results_dir)
    if not suite_dir.is_dir():
        raise FileNotFoundError(f"no results folder {suite_dir}")
    plan = {cfg.run_id: cfg.steps for cfg in read_plan(suite_dir)}
    folders = {p.name: p for p in sorted((suite_dir / "runs").glob("*")) if p.is_dir()}
    ids = sorted(set(plan) | set(folders))
    if not ids:
        raise FileNotFoundError(f"{suite_dir} holds no runs and no plan.json")
    states = [run_state(suite_dir / "runs" / rid, plan.get(rid)) for rid in ids]
    rates: dict[str, list[float]] = {}
    for st in states:
        if st.seconds_per_step:
            rates.setdefault(st.run_id.split("__seed")[0], []).append(st.seconds_per_step)
    left, unknown = 0.0, 0
    width = max(len(rid) for rid in ids)
    for st in states:
        line = f"{st.run_id:<{width}}  {st.status:<11}"
        if st.status in ("partial", "failed", "done") and st.steps:
            line += f" step {st.step:>7}/{st.steps}"
        if st.score is not None:
            line += f"  last score {st.score:9.2f}"
        if st.error:
            line += f"  {st.error}"
        print(line)
        if st.status != "done":
            r = rates.get(st.run_id.split("__seed")[0])
            if r and st.steps:
                left += (sum(r) / len(r)) * (st.steps - st.step)
            else:
                unknown += 1
    summary: dict[str, int] = {}
    for st in states:
        summary[st.status] = summary.get(st.status, 0) + 1
    workers = args.workers or os.cpu_count() or 1
    eta = f"ETA ≈ {left / 60 / workers:.0f} min on {workers} worker(s)"
    if unknown:
        eta += f" (+ {unknown} run(s) of no measured speed yet)"
    print(", ".join(f"{n} {s}" for s, n in sorted(summary.items())) + f"; {eta}")


def _cmd_evaluate(args) -> None:
    import torch

    from algorithms.base import learner_class, make_config
    from envs import make_family
    from harness.collect.build import require_dataset
    from harness.datasets import OfflineDataset
    from harness.evaluate import EvalConfig, evaluate, random_scores
    from harness.runner import RunConfig, select_train_tasks, split_view

    folder = Path(args.run_dir)
    final = folder / "final.pt"
    if not final.exists():
        raise FileNotFoundError(
            f"{final} does not exist: only finished runs keep their learner (not with "
            "--no-keep-final)"
        )
    cfg = RunConfig(**json.loads((folder / "config.json").read_text()))
    family = split_view(make_family(cfg.family), cfg.split)  # a tuning run: its validation tasks
    train = select_train_tasks(family.train_indices, cfg.train_tasks)
    test = family.test_indices
    data_dir = require_dataset(cfg.family, cfg.data_budget, cfg.data_seed, args.root)
    data = OfflineDataset.load(data_dir, tasks=sorted(set(train) | set(test)), skip=cfg.skip)
    cls = learner_class(cfg.algorithm)
    device = args.device or cfg.device
    learner = cls(
        family.obs_dim,
        family.act_dim,
        len(train),
        make_config(cls, cfg.learner),
        device,
        seed=cfg.seed,
    )
    learner.load_state_dict(torch.load(final, weights_only=True, map_location=device))
    ecfg = EvalConfig(**{**cfg.eval, "episodes": args.episodes})
    rows = evaluate(learner, family, data, cfg.seed, ecfg, step=cfg.steps)
    random = random_scores(family, test, ecfg.episodes, cfg.seed)
    col = "success" if family.score == "success" else "return"
    print(f"{cfg.run_id} after {cfg.steps} steps, {args.episodes} episode(s) per test task ({col})")
    print(f"  {'task':>5} {'prior':>10} {'adapted':>10} {'random':>10}")
    for r in rows:
        rnd = random[r["task"]][0 if col == "return" else 1]
        print(f"  {r['task']:>5} {r['pre_' + col]:10.2f} {r['post_' + col]:10.2f} {rnd:10.2f}")
    mean = sum(r["post_" + col] for r in rows) / len(rows)
    print(f"  mean adapted {col} over {len(rows)} test tasks: {mean:.2f}")
    if args.draws:
        from harness.datasets import manifest_hash
        from harness.runner import COLUMNS, FINAL_DRAWS, final_draw_rows, write_rows_atomically

        metric = "return" if family.score == "return" else "success"
        best = {t: data.best_episode_score([t], metric) for t in test}
        ecfg = EvalConfig(**{**cfg.eval, "final_draws": args.draws})
        draws = final_draw_rows(
            learner, family, data, cfg, ecfg, None, random, best, manifest_hash(data_dir)
        )
        write_rows_atomically(folder / FINAL_DRAWS, draws, ["draw", *COLUMNS])
        mean = sum(r["post_" + col] for r in draws) / len(draws)
        print(
            f"  multi-draw final {col} ({args.draws} adaptation draws × {len(test)} tasks): "
            f"{mean:.2f} → {folder / FINAL_DRAWS}"
        )


def _launch_grid(raw: dict, runs) -> dict:
    """The suite file's declaration, widened by what this launch adds (--algorithms, a plug-in
    learner named by its class, --families): results name algorithms by label or class name."""
    from algorithms.base import learner_class
    from harness.suite import declared_grid

    grid = declared_grid(raw)
    names = {r.label or learner_class(r.algorithm).name for r in runs}
    grid["algorithms"] = sorted({a for a in grid["algorithms"] if ":" not in a} | names)
    grid["families"] = list(dict.fromkeys([*grid["families"], *(r.family for r in runs)]))
    return grid


def _cmd_report(args) -> None:
    from harness.report import build_report, declaration
    from harness.runner import (
        load_final_draws,
        load_online,
        load_provenance,
        load_results,
        load_train_logs,
    )

    dirs = [Path(d) for d in args.results_dir]
    missing = [str(d) for d in dirs if not d.is_dir()]
    if missing:
        raise FileNotFoundError(f"no results folder {', '.join(missing)}")
    name = "+".join(d.name for d in dirs)
    out = args.out or Path("reports") / (dirs[0].name if len(dirs) == 1 else name)
    if args.readme is not None:  # a README without the block is refused before any work
        from harness.headline import splice

        splice(args.readme.read_text(), "")
    claims = None
    if args.claims is not None:  # refused before any work, in one line
        from harness.findings import CLAIMS, own_claims

        claims = CLAIMS + own_claims(args.claims)
    rows = load_results(dirs)
    if args.against is not None:
        _refuse_foreign_runs(rows, args.against)
    build_report(
        rows,
        out,
        f"Suite: {name}",
        args.include_partial,
        load_train_logs(dirs),
        load_final_draws(dirs),
        load_online(dirs),
        declared=declaration(rows, dirs),
        provenance=load_provenance(dirs),
        claims=claims,
    )
    print(f"report: {out / 'README.md'}")
    if args.readme is not None:
        write_headline(out, args.readme)
        print(f"headline: {args.readme}")


def write_headline(report: Path, readme: Path) -> None:
    """Rewrite ``readme``'s headline block from the report's results and findings files."""
    import pandas as pd

    from harness.headline import headline, splice
    from harness.plots import paper_levels

    block = headline(
        pd.read_csv(report / "results.csv"), pd.read_csv(report / "findings.csv"), paper_levels()
    )
    readme.write_text(splice(readme.read_text(), block))


def _refuse_foreign_runs(rows, against: Path) -> None:
    """One line naming the runs whose dataset is not the reference manifest's of their family."""
    from harness.datasets import DatasetError, manifest_identity

    foreign = []
    for fam, g in rows.groupby("family"):
        _, reference = _reference_manifest(Path(against), fam)
        want = manifest_identity(reference)[:16]
        bad = g[g["dataset_sha256"].astype(str) != want]
        foreign += sorted({f"{r.algorithm} seed {r.seed} on {fam}" for r in bad.itertuples()})
    if foreign:
        more = f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
        shown = ", ".join(foreign[:5]) + more
        raise DatasetError(f"{len(foreign)} run(s) were not made on the data of {against}: {shown}")


def _cmd_plan(args) -> None:
    from harness.aggregate import per_seed_curves, run_scores, to_markdown
    from harness.power import describe, plan_table
    from harness.report import declaration
    from harness.runner import load_final_draws, load_results

    dirs = [Path(d) for d in args.results_dir]
    missing = [str(d) for d in dirs if not d.is_dir()]
    if missing:
        raise FileNotFoundError(f"no results folder {', '.join(missing)}")
    rows = load_results(dirs)
    rows = rows[rows["finished"]] if "finished" in rows else rows
    if rows.empty:
        raise ValueError("no finished runs to plan from")
    declared = declaration(rows, dirs)
    plan = plan_table(
        run_scores(per_seed_curves(rows), draws=load_final_draws(dirs)),
        alpha=args.alpha,
        power=args.power,
        method=args.method,
        declared=declared,
    )
    print(describe(args.method, args.alpha, args.power, declared.primary_score))
    print(to_markdown(plan) if len(plan) else "No claim is answerable from these runs.")


def _cmd_tune(args) -> None:
    from harness.aggregate import per_seed_curves, run_scores, to_markdown
    from harness.findings import SCORES
    from harness.report import declaration
    from harness.runner import load_final_draws, load_results
    from harness.tune import choose, describe_choice, display, tuning_table, write_choice

    if not args.results_dir.is_dir():
        raise FileNotFoundError(f"no results folder {args.results_dir}")
    rows = load_results(args.results_dir)
    rows = rows[rows["finished"]]
    if rows.empty:
        raise ValueError(f"{args.results_dir}: no finished tuning runs yet")
    declared = declaration(rows, [args.results_dir])
    final = run_scores(per_seed_curves(rows), draws=load_final_draws(args.results_dir))
    table = tuning_table(final, SCORES[declared.primary_score])
    if table.empty:
        raise ValueError(f"{args.results_dir}: no runs labelled as grid points (e.g. macaw@3e-04)")
    choice = choose(table)
    grid = tuple(sorted(table["lr"].unique()))
    print(to_markdown(display(table)))
    print(f"choice ({declared.primary_score} on validation tasks): {describe_choice(choice, grid)}")
    if args.write is not None:
        pending = sorted(a for a, v in choice.items() if v is None)
        if pending:
            raise ValueError(
                f"not written: {', '.join(pending)} still lack finished runs at some grid point"
            )
        write_choice(args.write, {a: v for a, v in choice.items() if v is not None})
        print(f"written: {args.write}")


def _cmd_speed(args) -> None:
    from harness.speed import build_speed_report

    if not Path(args.bench_json).is_file():
        raise FileNotFoundError(f"no benchmark file {args.bench_json}")
    print(f"speed report: {build_speed_report(Path(args.bench_json), args.out)}")


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
    p.add_argument(
        "--debug", action="store_true", help="show the traceback of an error (default: one line)"
    )
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
        if name == "verify":
            d.add_argument(
                "--against",
                type=Path,
                default=None,
                help="a reference manifest (e.g. reports/reference/data/FAMILY.json): say whether "
                "this build is that dataset, byte for byte, and if not which files differ",
            )
        if name == "build":
            d.add_argument("--workers", type=int, default=2, help="parallel processes")
            d.add_argument("--force", action="store_true", help="discard and rebuild")
            d.add_argument("--quiet", action="store_true", help="no progress bars")
        d.set_defaults(fn=fn)

    ex = dsub.add_parser("export", help="write a dataset as D4RL-keyed .npz or Minari datasets")
    ex.add_argument("family")
    ex.add_argument("--format", required=True, choices=["d4rl", "minari"])
    ex.add_argument("--budget", default="default", help="tiny | small | default")
    ex.add_argument("--seed", type=int, default=0, help="generator seed")
    ex.add_argument("--root", type=Path, default=None, help="dataset cache root")
    ex.add_argument("--out", type=Path, required=True, help="an empty folder")
    ex.set_defaults(fn=_cmd_data_export)
    im = dsub.add_parser("import", help="turn an export (D4RL or Minari) into a harness dataset")
    im.add_argument("source", help="a folder written by `data export` (with its omrl.json)")
    im.add_argument("--out", type=Path, default=None, help="an empty folder")
    im.add_argument(
        "--budget",
        default=None,
        help="instead of --out: install it as this budget's dataset of its family, so suites "
        "run on it (refused if that slot holds data)",
    )
    im.add_argument("--seed", type=int, default=0, help="with --budget: the data seed slot")
    im.add_argument("--root", type=Path, default=None, help="with --budget: dataset cache root")
    im.set_defaults(fn=_cmd_data_import)

    run = sub.add_parser("run", help="run a suite (resumes what was interrupted) and report it")
    run.add_argument("--suite", default="quick", help="suite name or path to a .toml file")
    run.add_argument("--algorithms", help="comma-separated; overrides the suite's")
    run.add_argument("--families", help="comma-separated; overrides the suite's")
    run.add_argument(
        "--seeds", help="comma-separated integers or ranges (0,1,2 or 0..5); overrides the suite's"
    )
    run.add_argument("--executor", default="local", help="local | inprocess | ray | slurm")
    run.add_argument(
        "--device",
        default=None,
        help="torch device for every run, e.g. cuda (default: the suite's [run] device, cpu); "
        "part of a run's config, so a run resumes on the device it started on",
    )
    run.add_argument("--address", default=None, help="Ray cluster address (with --executor ray)")
    run.add_argument("--workers", type=int, default=None, help="parallel runs (default: cores)")
    run.add_argument("--slurm-partition", default=None, help="with --executor slurm")
    run.add_argument("--slurm-time", type=_positive, default=240, help="minutes per run's job")
    run.add_argument("--slurm-cpus", type=_positive, default=1, help="CPUs per run's job")
    run.add_argument("--slurm-gpus", type=int, default=0, help="GPUs per run's job")
    run.add_argument("--slurm-mem", type=_positive, default=None, help="GB per run's job")
    run.add_argument("--results", type=Path, default=Path("results"))
    run.add_argument("--reports", type=Path, default=Path("reports"))
    run.add_argument("--root", type=Path, default=None, help="dataset cache root")
    run.add_argument(
        "--against",
        type=Path,
        default=None,
        help="a folder of reference manifests (e.g. reports/reference/data): refuse to run on "
        "data that is not those datasets, byte for byte",
    )
    run.add_argument("--quiet", action="store_true")
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan and its estimated time; write nothing",
    )
    run.add_argument("--log-every", type=_positive, default=10, help="train.csv row every N steps")
    run.add_argument(
        "--tensorboard", action="store_true", help="also write train metrics to <run>/tb"
    )
    run.add_argument(
        "--no-keep-final", action="store_true", help="do not keep final.pt of finished runs"
    )
    run.set_defaults(fn=_cmd_run)

    st = sub.add_parser("status", help="each run of a results folder: done / partial / failed …")
    st.add_argument("results_dir", help="e.g. results/quick")
    st.add_argument("--workers", type=int, default=None, help="for the ETA (default: cores)")
    st.set_defaults(fn=_cmd_status)

    ev = sub.add_parser("evaluate", help="re-score a finished run's final.pt on its test tasks")
    ev.add_argument("run_dir", help="e.g. results/quick/runs/macaw__point-robot__seed0")
    ev.add_argument("--episodes", type=_positive, default=1)
    ev.add_argument(
        "--draws",
        type=int,
        default=0,
        help="also score N independent adaptation draws per test task and write "
        "final_draws.csv (the multi-draw final score the reports read)",
    )
    ev.add_argument("--root", type=Path, default=None, help="dataset cache root")
    ev.add_argument(
        "--device", default=None, help="torch device to score on (default: the run's own, cpu)"
    )
    ev.set_defaults(fn=_cmd_evaluate)

    rep = sub.add_parser("report", help="rebuild figures and tables from result files only")
    rep.add_argument(
        "results_dir", nargs="+", help="e.g. results/quick; several folders merge into one report"
    )
    rep.add_argument("--out", type=Path, default=None, help="default reports/<suite>")
    rep.add_argument(
        "--against",
        type=Path,
        default=None,
        help="a folder of reference manifests: refuse runs made on any other data",
    )
    rep.add_argument(
        "--include-partial",
        action="store_true",
        help="report unfinished runs' last evaluation as final (default: left out, listed)",
    )
    rep.add_argument(
        "--readme",
        type=Path,
        default=None,
        help="also rewrite this file's headline block (score and verdict tables) from the report",
    )
    rep.add_argument(
        "--claims",
        type=Path,
        default=None,
        help="a TOML file of your own [[claim]] tables (as harness/claims.toml), tested beside "
        "the built-in ones in hypothesis families of their own",
    )
    rep.set_defaults(fn=_cmd_report)

    pl = sub.add_parser(
        "plan", help="seeds per arm each claim needs for a given power, from a pilot's runs"
    )
    pl.add_argument("results_dir", nargs="+", help="e.g. results/reference")
    pl.add_argument("--alpha", type=float, default=0.05, help="family-wise level (Holm)")
    pl.add_argument("--power", type=float, default=0.8)
    pl.add_argument(
        "--method",
        choices=["exact", "t"],
        default="exact",
        help="exact: simulate the exact Mann–Whitney test; t: two-sample t-test (statsmodels)",
    )
    pl.set_defaults(fn=_cmd_plan)

    tu = sub.add_parser(
        "tune", help="the learning-rate choice of a tuning suite's runs (results/tune)"
    )
    tu.add_argument("results_dir", type=Path, help="e.g. results/tune or reports/tuning")
    tu.add_argument(
        "--write",
        type=Path,
        default=None,
        metavar="SUITE",
        help="write the chosen outer rates into this suite file (e.g. "
        "harness/suites/reference.toml); refused until every grid point has its seeds",
    )
    tu.set_defaults(fn=_cmd_tune)

    sp = sub.add_parser("speed", help="speed report (curves, ratios) from a benchmark JSON file")
    sp.add_argument("bench_json", help="pytest-benchmark --benchmark-json output")
    sp.add_argument("--out", type=Path, default=Path("reports/speed"), help="default reports/speed")
    sp.set_defaults(fn=_cmd_speed)

    lst = sub.add_parser("list", help="registered families, algorithms, suites and budgets")
    lst.set_defaults(fn=_cmd_list)
    return p


def _terminate_as_interrupt(_sig, _frame) -> None:
    raise KeyboardInterrupt  # `kill PID` stops as Ctrl-C does: checkpoints kept, workers stopped


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    from harness.datasets import DatasetError

    on_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate_as_interrupt) if on_main else None
    try:
        args.fn(args)
    except (DatasetError, ValueError, FileNotFoundError, RuntimeError) as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "interrupted — finished work is kept; run the same command again to resume",
            file=sys.stderr,
        )
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0
