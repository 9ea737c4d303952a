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
```
Every key is checked: an unknown one is an error naming the file and listing the known keys.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

from algorithms.base import learner_class, make_config
from envs import make_family
from harness.evaluate import EvalConfig
from harness.runner import RunConfig

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
    unknown = sorted(set(got) - known)
    if unknown:
        raise SuiteError(f"{where}: unknown key(s) {unknown}; known: {', '.join(sorted(known))}")


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
    algos = algorithms or raw.get("algorithms", [])
    fams = families or raw.get("families", [])
    seed_list = seeds if seeds is not None else raw.get("seeds", [0])
    if not algos or not fams:
        raise SuiteError(f"{path}: needs non-empty 'algorithms' and 'families'")
    _check_keys(f"{path} [run]", raw.get("run", {}), RUN_KEYS)
    _check_keys(f"{path} [eval]", raw.get("eval", {}), EVAL_KEYS)
    variants = raw.get("variants", {})
    for v, table in variants.items():
        _check_keys(f"{path} [variants.{v}]", table, {"algorithm", "learner", "eval", "run"})
        if "algorithm" not in table:
            raise SuiteError(f"{path} [variants.{v}]: needs 'algorithm'")
        _check_keys(f"{path} [variants.{v}.run]", table.get("run", {}), RUN_KEYS)
        _check_keys(f"{path} [variants.{v}.eval]", table.get("eval", {}), EVAL_KEYS)
    classes = {a: learner_class(variants[a]["algorithm"] if a in variants else a) for a in algos}
    fam_tables = raw.get("family", {})
    for f in fams:
        make_family(f)  # validates the name
    for f, table in fam_tables.items():
        _check_keys(f"{path} [family.{f}]", table, {"run", "learner", "eval"})
        _check_keys(f"{path} [family.{f}.run]", table.get("run", {}), RUN_KEYS)
        _check_keys(f"{path} [family.{f}.eval]", table.get("eval", {}), EVAL_KEYS)
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
            make_config(cls, learner_over)  # an unknown key is an error listing the known ones
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
    return name, runs, raw
