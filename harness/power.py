"""Seeds planned by power: how many runs per arm a claim needs, from a pilot's effect and spread.

A pilot of a few seeds gives each (claim, family) row a difference of means and a spread. From
them, under a normal model of run scores with the pooled standard deviation (a pilot's SD from
3 seeds is itself uncertain, so read the answers as lower bounds), two methods:

* ``exact`` (the default, the test the verdicts use): simulate the two-sided exact Mann–Whitney
  test at n runs per arm and take the smallest n whose simulated power reaches the target;
* ``t``: the textbook two-sample t-test answer (``statsmodels``' ``TTestIndPower``), rounded up.

Both at the Holm level a row must clear when it is tested first, α / m over the m rows of its
*hypothesis family* (Holm's first threshold within the family, whose size the claims file and
the suite fix: harness.findings; conservative, as later rows face looser ones), on the suite's
primary run score (its spread includes that score's measured evaluation noise).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.power import TTestIndPower

from harness.findings import (
    ALPHA,
    CLAIMS,
    SCORES,
    Claim,
    Declaration,
    claim_rows,
    seeds_to_reach,
)

MAX_SEEDS = 100
METHODS = ("exact", "t")


def ttest_seeds(
    effect_size: float, alpha: float, power: float = 0.8, alternative: str = "two-sided"
) -> float:
    """Runs per arm (real-valued) of a two-sample t-test with Cohen's d = ``effect_size``."""
    return float(
        TTestIndPower().solve_power(
            effect_size=abs(effect_size),
            alpha=alpha,
            power=power,
            ratio=1.0,
            alternative=alternative,
        )
    )


def exact_power(
    diff: float, sd: float, n: int, alpha: float, sims: int, rng: np.random.Generator
) -> float:
    """Simulated power of the two-sided exact Mann–Whitney test, n runs per arm, normal scores
    with means ``diff`` apart and a common ``sd``."""
    x = rng.normal(diff, sd, size=(sims, n))
    y = rng.normal(0.0, sd, size=(sims, n))
    method = "exact" if n <= 30 else "asymptotic"  # scipy's exact tables grow as n²·2ⁿ-ish
    p = stats.mannwhitneyu(x, y, alternative="two-sided", method=method, axis=1).pvalue
    return float(np.mean(p <= alpha))


def exact_seeds(
    diff: float,
    sd: float,
    alpha: float,
    power: float = 0.8,
    sims: int = 2000,
    seed: int = 0,
    limit: int = MAX_SEEDS,
) -> int | None:
    """Fewest runs per arm whose simulated exact-test power reaches ``power`` (None: more than
    ``limit``). Starts at the smallest design that can reach ``alpha`` at all."""
    if sd <= 0:
        return seeds_to_reach(alpha) if diff != 0 else None
    rng = np.random.default_rng(seed)
    lo = seeds_to_reach(alpha)
    if exact_power(diff, sd, lo, alpha, sims, rng) >= power:
        return lo
    hi = lo
    while exact_power(diff, sd, hi, alpha, sims, rng) < power:  # doubling, then bisection
        lo, hi = hi, hi * 2
        if hi > limit:
            if exact_power(diff, sd, limit, alpha, sims, rng) < power:
                return None
            hi = limit
            break
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if exact_power(diff, sd, mid, alpha, sims, rng) >= power:
            hi = mid
        else:
            lo = mid
    return hi


def plan_table(
    final: pd.DataFrame,
    claims: list[Claim] | None = None,
    alpha: float = ALPHA,
    power: float = 0.8,
    method: str = "exact",
    declared: Declaration | None = None,
) -> pd.DataFrame:
    """Per declared (claim, family) row: the measured difference and spread under the primary
    score, and the runs per arm that would give ``power`` under Holm within the row's
    hypothesis family (at α / m, m its declared rows; rows not run yet count in m)."""
    if method not in METHODS:
        raise ValueError(f"unknown power method {method!r}; known: {', '.join(METHODS)}")
    declared = declared or Declaration.of_runs(final)
    column = SCORES[declared.primary_score]
    rows = claim_rows(final, CLAIMS if claims is None else claims, declared, column)
    sizes: dict[str, int] = {}
    for r in rows:
        hf = r["claim"].hypothesis_family
        sizes[hf] = sizes.get(hf, 0) + 1
    out = []
    for r in rows:
        x, y = r["x"], r["y"]
        m = sizes[r["claim"].hypothesis_family]
        level = alpha / m
        ran = len(x) > 0 and len(y) > 0
        diff = float(x.mean() - y.mean()) if ran else float("nan")
        var = [np.var(a, ddof=1) if len(a) > 1 else np.nan for a in (x, y)]
        sd = float(np.sqrt(np.nanmean(var))) if not np.isnan(var).all() else float("nan")
        if not ran:
            need: int | None = None
        elif math.isnan(sd) or diff == 0:
            need = None
        elif method == "t":
            need = (
                seeds_to_reach(level)
                if sd == 0
                else max(math.ceil(ttest_seeds(diff / sd, level, power)), 2)
            )
            need = None if need > MAX_SEEDS else need
        else:
            need = exact_seeds(diff, sd, level, power)
        if not ran:
            words = f"not run: at least {seeds_to_reach(level)} per arm can decide it"
        elif diff == 0:
            words = "no difference measured"
        else:
            words = str(need) if need is not None else f"> {MAX_SEEDS}"
        out.append(
            {
                "hypothesis_family": r["claim"].hypothesis_family,
                "claim": r["claim"].text,
                "family": r["family"],
                "runs": f"{len(x)} vs {len(y)}",
                "family_rows": m,
                "difference": diff,
                "sd": sd,
                "seeds_needed": words,
            }
        )
    return pd.DataFrame(out, columns=PLAN_COLUMNS)


PLAN_COLUMNS = [
    "hypothesis_family",
    "claim",
    "family",
    "runs",
    "family_rows",
    "difference",
    "sd",
    "seeds_needed",
]


def describe(method: str, alpha: float, power: float, score: str = "last-k") -> str:
    """One line naming how the plan was computed (printed above every plan table)."""
    how = {
        "exact": "simulation of the two-sided exact Mann–Whitney test (normal scores, pooled SD)",
        "t": "two-sample t-test (statsmodels TTestIndPower, Cohen's d from the pooled SD)",
    }[method]
    return (
        f"Seeds per arm for {power:.0%} power at α/m = {alpha:g}/m, m the rows of the row's "
        f"hypothesis family (Holm's first threshold there), at the measured difference and "
        f"spread of the {score} score: {how}. A pilot's SD is uncertain: lower bounds."
    )
