"""Suites: checked-in TOML files naming algorithms × families × seeds and their budgets.

```toml
description = "..."
algorithms = ["macaw", "meta-bc", "mt-ft", "pearl"]
families = ["point-robot", "cheetah-vel"]
seeds = [0, 1]

[run]                      # RunConfig fields for every run
steps = 500
eval_every = 100

[eval]                     # EvalConfig fields
episodes = 1

[learner.pearl]            # learner Config overrides, per algorithm
width = 64

[family.cheetah-vel.run]   # per-family RunConfig overrides
steps = 400
[family.walker-params.learner.pearl]
use_next_obs_in_context = true

[variants.macaw-no-head]   # a named configuration, usable in `algorithms`
algorithm = "macaw"
learner = { advantage_head = false }
# also: run = {...}, eval = {...}

primary_score = "multi-draw"  # the run score the verdicts test, declared before the runs:
                              # last-k (default) | multi-draw | final-point (harness.findings)

[tune]                     # the learning-rate tuning protocol (harness/tune.py): every run at
grid = [1e-4, 3e-4, 1e-3]  # each grid value of its outer rates, labelled e.g. macaw@3e-04
```
Every key is checked: an unknown one is an error naming the file and listing the known keys.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

from algorithms.base import check_value, field_hints, learner_class, make_config
from envs import make_family
from harness.evaluate import EvalConfig
from harness.findings import DEFAULT_PRIMARY, SCORES
from harness.runner import RunConfig
from harness.tune import GRID, grid_label, grid_runs

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SUITES_DIR = Path(__file__).parent / "suites"
TOP_KEYS = {
    "description",
    "algorithms",
    "families",
    "seeds",
    "run",
    "eval",
    "learner",
    "family",
    "variants",
    "primary_score",
    "tune",
}
RUN_KEYS = {f.name for f in dataclasses.fields(RunConfig)} - {
    "suite",
    "algorithm",
    "family",
    "seed",
    "learner",
    "eval",
}
EVAL_KEYS = {f.name for f in dataclasses.fields(EvalConfig)}


class SuiteError(ValueError):
    """A suite file is malformed or names something unknown."""


def known_suites() -> list[str]:
    return sorted(p.stem for p in SUITES_DIR.glob("*.toml"))


def suite_path(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if p.suffix == ".toml":
        if not p.exists():
            raise SuiteError(f"suite file {p} does not exist")
        return p
    p = SUITES_DIR / f"{name_or_path}.toml"
    if not p.exists():
        raise SuiteError(
            f"unknown suite {name_or_path!r}; known suites: "
            f"{', '.join(known_suites())} (or give a path to a .toml file)"
        )
    return p


def _check_keys(where: str, got: dict, known: set[str]) -> None:
    if not isinstance(got, dict):
        raise SuiteError(f"{where}: expected a table, got {got!r}")
    unknown = sorted(set(got) - known)
    if unknown:
        raise SuiteError(f"{where}: unknown key(s) {unknown}; known: {', '.join(sorted(known))}")


def _check_values(where: str, got: dict, config_cls: type, known: set[str]) -> None:
    """Every key known, every value of its field's type and range (pydantic, strict)."""
    _check_keys(where, got, known)
    hints = field_hints(config_cls)
    for key, value in got.items():
        reason = check_value(hints[key], value)
        if reason:
            raise SuiteError(f"{where} {key} = {value!r}: {reason}")


def _check_learner(where: str, cls, overrides: dict) -> None:
    if not isinstance(overrides, dict):
        raise SuiteError(f"{where}: expected a table, got {overrides!r}")
    try:
        make_config(cls, overrides)
    except ValueError as e:
        raise SuiteError(f"{where}: {e}") from e


def _check_list(path: Path, raw: dict, key: str, kind: type) -> list:
    value = raw.get(key, [])
    if not isinstance(value, list) or not all(
        isinstance(v, kind) and not isinstance(v, bool) for v in value
    ):
        raise SuiteError(f"{path} {key} = {value!r}: expected a list of {kind.__name__}s")
    return value


def load_suite(
    name_or_path: str,
    algorithms: list[str] | None = None,
    families: list[str] | None = None,
    seeds: list[int] | None = None,
) -> tuple[str, list[RunConfig], dict[str, Any]]:
    """Parse and validate a suite; return (suite name, runs, raw table). CLI lists override."""
    path = suite_path(name_or_path)
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise SuiteError(f"{path}: malformed TOML: {e}") from e
    _check_keys(str(path), raw, TOP_KEYS)
    name = path.stem
    file_algos = _check_list(path, raw, "algorithms", str)
    file_fams = _check_list(path, raw, "families", str)
    file_seeds = _check_list(path, raw, "seeds", int) if "seeds" in raw else [0]
    if "description" in raw and not isinstance(raw["description"], str):
        raise SuiteError(f"{path} description: expected a string")
    primary = raw.get("primary_score", DEFAULT_PRIMARY)
    if primary not in SCORES:
        raise SuiteError(f"{path} primary_score = {primary!r}: known: {', '.join(SCORES)}")
    algos = algorithms or file_algos
    fams = families or file_fams
    seed_list = seeds if seeds is not None else file_seeds
    if not algos or not fams or not seed_list:
        raise SuiteError(f"{path}: needs non-empty 'algorithms', 'families' and 'seeds'")
    _check_values(f"{path} [run]", raw.get("run", {}), RunConfig, RUN_KEYS)
    _check_values(f"{path} [eval]", raw.get("eval", {}), EvalConfig, EVAL_KEYS)
    variants = raw.get("variants", {})
    if not isinstance(variants, dict):
        raise SuiteError(f"{path} [variants]: expected a table")
    for v, table in variants.items():
        where = f"{path} [variants.{v}]"
        if v not in file_algos:
            raise SuiteError(f"{where}: names no algorithm of the suite ({', '.join(file_algos)})")
        _check_keys(where, table, {"algorithm", "learner", "eval", "run"})
        if "algorithm" not in table:
            raise SuiteError(f"{where}: needs 'algorithm'")
        _check_values(f"{where}.run", table.get("run", {}), RunConfig, RUN_KEYS)
        _check_values(f"{where}.eval", table.get("eval", {}), EvalConfig, EVAL_KEYS)
    try:
        classes = {
            a: learner_class(variants[a]["algorithm"] if a in variants else a) for a in algos
        }
        file_classes = {
            learner_class(variants[a]["algorithm"] if a in variants else a).name for a in file_algos
        }
        for f in fams:
            make_family(f)  # validates the name (the file's other families are built when used)
    except (KeyError, ValueError) as e:
        raise SuiteError(f"{path}: {e.args[0] if e.args else e}") from e
    file_classes |= {c.name for c in classes.values()}
    by_name = {c.name: c for c in classes.values()}

    def check_learner_tables(where: str, tables: dict) -> None:
        _check_keys(f"{where}]", tables, file_classes)  # it must name an algorithm of the suite
        for lname, table in tables.items():
            cls = by_name.get(lname) or learner_class(lname)
            _check_learner(f"{where}.{lname}]", cls, table)

    check_learner_tables(f"{path} [learner", raw.get("learner", {}))
    for v, table in variants.items():
        cls = learner_class(table["algorithm"])
        _check_learner(f"{path} [variants.{v}] learner", cls, table.get("learner", {}))
    fam_tables = raw.get("family", {})
    _check_keys(f"{path} [family]", fam_tables, set(file_fams) | set(fams))
    for f, table in fam_tables.items():
        _check_keys(f"{path} [family.{f}]", table, {"run", "learner", "eval"})
        _check_values(f"{path} [family.{f}.run]", table.get("run", {}), RunConfig, RUN_KEYS)
        _check_values(f"{path} [family.{f}.eval]", table.get("eval", {}), EvalConfig, EVAL_KEYS)
        check_learner_tables(f"{path} [family.{f}.learner", table.get("learner", {}))
    runs = []
    for f in fams:
        ft = fam_tables.get(f, {})
        for a, cls in classes.items():
            var = variants.get(a, {})
            learner_over = {
                **raw.get("learner", {}).get(cls.name, {}),
                **ft.get("learner", {}).get(cls.name, {}),
                **var.get("learner", {}),
            }
            _check_learner(f"{path} [{f} × {a}]", cls, learner_over)
            for s in seed_list:
                runs.append(
                    RunConfig(
                        suite=name,
                        algorithm=var.get("algorithm", a),
                        family=f,
                        seed=int(s),
                        label=a if a in variants else "",
                        learner=learner_over,
                        eval={**raw.get("eval", {}), **ft.get("eval", {}), **var.get("eval", {})},
                        **{**raw.get("run", {}), **ft.get("run", {}), **var.get("run", {})},
                    )
                )
    if "tune" in raw:
        runs = grid_runs(runs, _tune_grid(path, raw["tune"]))
    return name, runs, raw


def _tune_grid(path: Path, table: Any) -> tuple[float, ...]:
    _check_keys(f"{path} [tune]", table, {"grid"})
    grid = table.get("grid", list(GRID))
    if (
        not isinstance(grid, list)
        or not grid
        or not all(isinstance(g, float) and g > 0 for g in grid)
    ):
        raise SuiteError(f"{path} [tune] grid = {grid!r}: expected a list of positive floats")
    inexact = [g for g in grid if float(f"{g:.0e}") != g]
    if inexact:  # a label names its grid point exactly (macaw@3e-04)
        raise SuiteError(
            f"{path} [tune] grid: {inexact} have more than one significant digit; use values "
            "such as 1e-4, 3e-4, 1e-3"
        )
    return tuple(grid)


def declared_grid(raw: dict[str, Any]) -> dict[str, Any]:
    """What a suite declares for its verdicts before any run: its algorithms (variant labels
    as results name them), task families and primary score (``harness.findings.Declaration``)."""
    algorithms = list(raw.get("algorithms", []))
    if (
        "tune" in raw
    ):  # a tuning suite's runs are its grid points (macaw@3e-04), never the bare names
        grid = raw["tune"].get("grid", list(GRID))
        algorithms = [grid_label(a, g) for a in algorithms for g in grid]
    return {
        "algorithms": sorted(algorithms),
        "families": list(raw.get("families", [])),
        "primary_score": raw.get("primary_score", DEFAULT_PRIMARY),
    }


def builtin_grid(name: str) -> dict[str, Any] | None:
    """:func:`declared_grid` of a built-in suite (``None`` when there is no such suite)."""
    path = SUITES_DIR / f"{name}.toml"
    return declared_grid(tomllib.loads(path.read_text())) if path.exists() else None


DECLARATION = "suite.json"
"""``<results>/<suite>/suite.json``: what the suite's launches declared (:func:`declared_grid`),
read by ``report`` so that a report's hypothesis families do not depend on the runs present."""


def record_declaration(suite_dir: Path, grid: dict[str, Any]) -> None:
    """Merge ``grid`` into the suite folder's declaration (under its lock); a launch with
    another primary score than the one declared before is refused: the score is fixed before
    the runs."""
    from harness.results import update_json

    def merge(old: dict[str, Any]) -> dict[str, Any]:
        if old and old.get("primary_score") != grid["primary_score"]:
            raise SuiteError(
                f"{suite_dir / DECLARATION} declares primary_score "
                f"{old.get('primary_score')!r}; this launch asks {grid['primary_score']!r}: use "
                "another --results folder or suite name"
            )
        return {
            "suite": Path(suite_dir).name,
            "algorithms": sorted(set(old.get("algorithms", [])) | set(grid["algorithms"])),
            "families": list(dict.fromkeys([*old.get("families", []), *grid["families"]])),
            "primary_score": grid["primary_score"],
        }

    update_json(Path(suite_dir) / DECLARATION, merge)
