"""The claims, checked from result files alone: an exact test per row, Holm over the report.

Why not the bootstrap of P(X > Y) as a decision rule: with 3 runs against 3 its percentile CI
is [1, 1] whenever the arms separate, so under no real difference it said "holds" 10 % of the
time and "fails" another 10 % (2 vs 2: 1/6 each). The rule here:

* per (claim, family) row, a **two-sided exact test** of the two arms' run scores: Mann–Whitney
  (``scipy.stats.mannwhitneyu(method="exact")``), or, where scores tie, the exact permutation
  distribution of the same U statistic (``scipy.stats.permutation_test``);
* **Holm** (``statsmodels``) over every row the report tests together;
* a row **holds** when its Holm-adjusted p ≤ α and the effect lies on the claimed side, **fails**
  when adjusted p ≤ α on the other side; a row that could not reach α whatever its runs showed
  (even its smallest attainable p, 2 / C(n + m, n), would not survive Holm beside the other
  rows) reads **too few runs**, with the seeds per arm that could; any other row is
  **inconclusive** with its adjusted p;
* a ``>=`` claim is a non-inferiority test: X's scores are shifted up by the claim's margin
  (normalised units) before the test, so "holds" means X is shown not worse than Y by more than
  the margin, "fails" that X is shown worse by more than it;
* a claim over several families also gets a whole-claim row, the intersection: it holds only
  where every family's row holds, fails where any fails.

P(X > Y) (Agarwal et al. 2021) and its bootstrap CI stay in the table as the effect size.
Tests run on normalised scores (one affine map per family, so the same ranks as raw returns;
the margin of a ``>=`` claim is in those units). Claims live in ``harness/claims.toml``;
nothing here is ever typed in by hand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import tomllib
from scipy import stats
from statsmodels.stats.multitest import multipletests

ALPHA = 0.05
BOOTSTRAP_REPS = 50_000  # rliable's default
CLAIMS_FILE = Path(__file__).parent / "claims.toml"
# beyond this many arrangements the permutation distribution (ties only) is sampled, not enumerated
EXACT_PERMUTATIONS = 200_000

NAMES = {
    "macaw": "MACAW",
    "mt-ft": "MT+FT",
    "meta-bc": "Meta-BC",
    "pearl": "offline PEARL",
    "prompt-dt": "Prompt-DT",
    "focal": "FOCAL",
}
"""Display names, in the order reports list algorithms; others show under their own names."""


@dataclass(frozen=True)
class Claim:
    text: str
    x: str
    y: str
    relation: str
    """``>`` (X beats Y), ``<`` (X loses to Y) or ``>=`` (X not worse than Y by the margin)"""
    families: tuple[str, ...] | None = None
    """where the claim is made; ``None``: every family in the results"""
    margin: float = 0.0
    """non-inferiority margin of a ``>=`` claim, in normalised score"""
    x_ref: str | None = None
    """if set, X's scores are taken relative to this algorithm's mean (a *change*, e.g. from
    35 train tasks to 3: "X degrades less than Y" is X − X_ref > Y − Y_ref)"""
    y_ref: str | None = None
    score: str = "normalized"
    """the per-run column tested: the normalised run score, or ``online_gain`` (what online
    fine-tuning added, harness.aggregate.online_gains)"""


def load_claims(path: Path = CLAIMS_FILE) -> list[Claim]:
    """The claims of a TOML file (``[[claim]]`` tables), plus the task-count ablation's."""
    raw = tomllib.loads(path.read_text())["claim"]
    claims = []
    for c in raw:
        fams = c.get("families")
        claims.append(Claim(**{**c, "families": tuple(fams) if fams else None}))
        if c["relation"] not in (">", "<", ">="):
            raise ValueError(f"{path}: claim {c['text']!r}: relation must be >, < or >=")
    return claims + _task_count_claims()


def _task_count_claims() -> list[Claim]:
    """The paper's Figure 6: "MACAW degrades least" as each algorithm's change from 35 tasks."""
    return [
        Claim(
            f"MACAW degrades less than {label} from 35 train tasks to {n}",
            f"macaw-{n}",
            f"{other}-{n}",
            ">",
            ("cheetah-vel",),
            x_ref="macaw",
            y_ref=other,
        )
        for other, label in ((a, NAMES[a]) for a in ("mt-ft", "pearl"))
        for n in (3, 5, 10, 20)
    ]


CLAIMS: list[Claim] = load_claims()


# -- effect size --------------------------------------------------------------------------------
def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> float:
    """P(X > Y) + ½ P(X = Y) over all pairs of runs."""
    x, y = np.asarray(x, float)[:, None], np.asarray(y, float)[None, :]
    return float(np.mean((x > y) + 0.5 * (x == y)))


def bootstrap_poi(
    x: np.ndarray,
    y: np.ndarray,
    reps: int = BOOTSTRAP_REPS,
    rng: np.random.Generator | None = None,
) -> tuple[float, float, float]:
    """Point estimate and 95 % percentile CI of P(X > Y), resampling X's and Y's runs
    separately. An effect size only: at a few runs per arm its coverage is poor (a complete
    separation gives [1, 1]), which is why no verdict reads it."""
    rng = rng or np.random.default_rng(0)
    x, y = np.asarray(x, float), np.asarray(y, float)
    xs = x[rng.integers(0, len(x), size=(reps, len(x)))]
    ys = y[rng.integers(0, len(y), size=(reps, len(y)))]
    stat = np.mean(
        (xs[:, :, None] > ys[:, None, :]) + 0.5 * (xs[:, :, None] == ys[:, None, :]), (1, 2)
    )
    lo, hi = np.percentile(stat, [2.5, 97.5])
    return probability_of_improvement(x, y), float(lo), float(hi)


# -- the test -----------------------------------------------------------------------------------
def _u_statistic(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """Mann–Whitney U of X (pairs won, ties half), vectorised along ``axis``."""
    x, y = np.moveaxis(x, axis, -1), np.moveaxis(y, axis, -1)
    diff = x[..., :, None] - y[..., None, :]
    return np.sum((diff > 0) + 0.5 * (diff == 0), axis=(-2, -1))


def exact_p(x: np.ndarray, y: np.ndarray) -> float:
    """Two-sided exact p of "X and Y come from one distribution", by the rank-sum statistic.

    No ties: ``scipy.stats.mannwhitneyu(method="exact")``. Ties: the exact permutation
    distribution of the same U (every split of the pooled runs into groups of len(X) and
    len(Y); sampled, 200 000 splits, beyond that many)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    pooled = np.concatenate([x, y])
    if len(np.unique(pooled)) == len(pooled):
        return float(stats.mannwhitneyu(x, y, alternative="two-sided", method="exact").pvalue)
    n_splits = math.comb(len(pooled), len(x))
    res = stats.permutation_test(
        (x, y),
        _u_statistic,
        permutation_type="independent",
        alternative="two-sided",
        vectorized=True,
        n_resamples=np.inf if n_splits <= EXACT_PERMUTATIONS else EXACT_PERMUTATIONS,
        rng=np.random.default_rng(0),
    )
    return float(min(1.0, res.pvalue))


def smallest_p(n: int, m: int) -> float:
    """The smallest two-sided p the exact test can give with n runs against m: a complete
    separation, 2 of the C(n + m, n) equally likely splits."""
    return min(1.0, 2.0 / math.comb(n + m, n))


def seeds_to_reach(threshold: float, limit: int = 1000) -> int:
    """Fewest runs per arm (equal arms) whose smallest attainable p is ≤ ``threshold``."""
    n = 1
    while smallest_p(n, n) > threshold * (1 + 1e-9):
        n += 1
        if n > limit:
            raise ValueError(f"no design up to {limit} runs per arm reaches p ≤ {threshold}")
    return n


def holm(pvalues: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    """Holm-adjusted p-values (statsmodels' ``multipletests(method="holm")``)."""
    pvalues = np.asarray(pvalues, float)
    if len(pvalues) == 0:
        return pvalues
    return multipletests(pvalues, alpha=alpha, method="holm")[1]


def needed_threshold(pvalues: np.ndarray, i: int, alpha: float = ALPHA) -> float:
    """The largest p row ``i`` could have and still be decided under Holm beside the other rows'
    p-values as they are: Holm's α/(m − r + 1) at the best rank r where that works (α/m, the
    first threshold, always does)."""
    p = np.asarray(pvalues, float).copy()
    m = len(p)
    for r in range(m, 0, -1):
        t = alpha / (m - r + 1)
        p[i] = t * (1 - 1e-9)
        if holm(p, alpha)[i] <= alpha:
            return t
    return alpha / m


# -- the table ----------------------------------------------------------------------------------
def _direction(relation: str, effect: float) -> str | None:
    """Which side of "no difference" the effect lies on, as a verdict: the claimed side holds."""
    if effect == 0.5:
        return None
    claimed_side = {">": effect > 0.5, ">=": effect > 0.5, "<": effect < 0.5}[relation]
    return "holds" if claimed_side else "fails"


def _scores(sub: pd.DataFrame, algo: str | None, column: str) -> np.ndarray:
    return sub.loc[sub["algorithm"] == algo, column].dropna().to_numpy(float)


def claim_rows(final: pd.DataFrame, claims: list[Claim]) -> list[dict]:
    """The (claim, family) rows the results can answer, with both arms' test scores."""
    rows = []
    for c in claims:
        fams = c.families or tuple(sorted(final["family"].unique()))
        for fam in fams:
            sub = final[final["family"] == fam]
            if c.score not in sub:
                continue
            x, y = _scores(sub, c.x, c.score), _scores(sub, c.y, c.score)
            if len(x) == 0 or len(y) == 0:
                continue
            if c.x_ref or c.y_ref:  # changes relative to each one's reference
                x_ref = _scores(sub, c.x_ref, "normalized")
                y_ref = _scores(sub, c.y_ref, "normalized")
                if len(x_ref) == 0 or len(y_ref) == 0:
                    continue
                x, y = x - x_ref.mean(), y - y_ref.mean()
            comparison = f"{c.x} − {c.x_ref} vs {c.y} − {c.y_ref}" if c.x_ref else f"{c.x} vs {c.y}"
            if c.margin:
                comparison += f" (margin {c.margin:g})"
            rows.append(
                {"claim": c, "family": fam, "comparison": comparison, "x": x + c.margin, "y": y}
            )
    return rows


FINDINGS_COLUMNS = [
    "claim",
    "family",
    "comparison",
    "runs",
    "p_improvement",
    "ci_low",
    "ci_high",
    "p",
    "p_holm",
    "verdict",
]


def findings_table(
    final: pd.DataFrame,
    claims: list[Claim] | None = None,
    alpha: float = ALPHA,
    seed: int = 0,
    reps: int = BOOTSTRAP_REPS,
) -> pd.DataFrame:
    """One row per (claim, family) the results can answer, plus a whole-claim row for each
    claim over several families. ``final``: one row per run with columns algorithm, family,
    seed, normalized (its run score, normalised)."""
    claims = CLAIMS if claims is None else claims
    rng = np.random.default_rng(seed)
    rows = claim_rows(final, claims)
    p = np.array([exact_p(r["x"], r["y"]) for r in rows])
    adjusted = holm(p, alpha)
    out = []
    for i, r in enumerate(rows):
        x, y = r["x"], r["y"]
        effect, lo, hi = bootstrap_poi(x, y, reps=reps, rng=rng)
        need = needed_threshold(p, i, alpha)
        floor = smallest_p(len(x), len(y))
        if floor > need * (1 + 1e-9):
            verdict = (
                f"too few runs ({len(x)} vs {len(y)}): smallest attainable p {floor:.2g} > "
                f"{need:.2g} needed; {seeds_to_reach(need)} per arm can reach it"
            )
        elif adjusted[i] <= alpha and _direction(r["claim"].relation, effect):
            verdict = _direction(r["claim"].relation, effect)
        else:
            verdict = f"inconclusive (adjusted p {adjusted[i]:.2g})"
        out.append(
            {
                "claim": r["claim"].text,
                "family": r["family"],
                "comparison": r["comparison"],
                "runs": f"{len(x)} vs {len(y)}",
                "p_improvement": effect,
                "ci_low": lo,
                "ci_high": hi,
                "p": p[i],
                "p_holm": adjusted[i],
                "verdict": verdict,
            }
        )
    table = pd.DataFrame(out, columns=FINDINGS_COLUMNS)
    return pd.concat([table, _whole_claims(table)], ignore_index=True)


def whole_verdict(verdicts: list[str]) -> str:
    """A claim over several families: holds only where every family's row holds."""
    if any(v == "fails" for v in verdicts):
        return "fails"
    if all(v == "holds" for v in verdicts):
        return "holds"
    if any(v.startswith("too few runs") for v in verdicts):
        return "too few runs"
    return "inconclusive"


def _whole_claims(table: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for claim, g in table.groupby("claim", sort=False):
        if len(g) < 2:
            continue
        rows.append(
            {
                "claim": claim,
                "family": f"all {len(g)}",
                "comparison": "every family's row",
                "runs": "",
                "verdict": whole_verdict(list(g["verdict"])),
            }
        )
    return pd.DataFrame(rows, columns=FINDINGS_COLUMNS)
