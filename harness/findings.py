"""The claims, checked from result files alone: an exact test per row, Holm per hypothesis family.

Why not the bootstrap of P(X > Y) as a decision rule: with 3 runs against 3 its percentile CI
is [1, 1] whenever the arms separate, so under no real difference it said "holds" 10 % of the
time and "fails" another 10 % (2 vs 2: 1/6 each). The rule here:

* every claim belongs to a **hypothesis family** named after its source (the MACAW paper's
  Figure 3, FOCAL's paper, …; ``harness/claims.toml``). Each source's claims are a separate
  question, so the family-wise error is controlled per source: Holm runs *within* a hypothesis
  family at 5 %, never across them, and adding another source's runs can never move a verdict;
* the rows of a hypothesis family are fixed **before any run**: one per (claim, task family)
  where the claim's paper has evidence, the report's suite declares the task family and every
  algorithm of the claim (:class:`Declaration`). A declared row whose runs are missing reads
  **not run** and still counts (its p is taken as 1), so the family's size — and so every
  threshold — does not depend on which runs happen to be present;
* per row, a **two-sided exact test** of the two arms' run scores: Mann–Whitney
  (``scipy.stats.mannwhitneyu(method="exact")``), or, where scores tie, the exact permutation
  distribution of the same U statistic (``scipy.stats.permutation_test``);
* a row **holds** when its Holm-adjusted p ≤ α and the effect lies on the claimed side, **fails**
  when adjusted p ≤ α on the other side; a row that could not reach α whatever its runs showed
  (even its smallest attainable p, 2 / C(n + m, n), would not survive Holm beside the other
  rows) reads **too few runs**, with the seeds per arm that could; any other row is
  **inconclusive** with its adjusted p;
* a ``>=`` claim is a non-inferiority test: X's scores are shifted up by the claim's margin
  (normalised units) before the test;
* a claim over several task families also gets a whole-claim row, the intersection, with its
  breakdown: ``holds on 4 of 4``, or ``not established: holds on 3 of 4; walker-params
  inconclusive (adjusted p 0.65)``; it fails where any row fails;
* the test reads the suite's **primary score** (:data:`SCORES`, declared before the runs); a
  decisive row is recomputed under every other score the report has, and is **fragile** where
  one of them does not give the same decision;
* each row's verdict names an arm that is still **rising** or **falling** at the end of its
  budget (:func:`harness.aggregate.arm_trends`), and :func:`findings_by_budget` gives the
  decision at each quarter of the budget: a row whose last two checkpoints differ is
  **unstable**.

P(X > Y) (Agarwal et al. 2021) and its bootstrap CI stay in the table as the effect size.
Tests run on normalised scores (one affine map per family, so the same ranks as raw returns;
the margin of a ``>=`` claim is in those units). Nothing here is ever typed in by hand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import tomllib
from scipy import stats
from statsmodels.stats.multitest import multipletests

from harness.labels import LABELS

ALPHA = 0.05
BOOTSTRAP_REPS = 50_000  # rliable's default
CLAIMS_FILE = Path(__file__).parent / "claims.toml"
# beyond this many arrangements the permutation distribution (ties only) is sampled, not enumerated
EXACT_PERMUTATIONS = 200_000

NAMES = {key: label.name for key, label in LABELS.items()}
"""Display names (harness.labels), in the order reports list algorithms."""

SCORES = {
    "last-k": "normalized",
    "multi-draw": "multi_draw_normalized",
    "final-point": "final_point_normalized",
}
"""The run scores a report computes (name → column of :func:`harness.aggregate.run_scores`).
``last-k``: the mean of the last evaluation points; ``multi-draw``: the final learner over
several fresh adaptation draws; ``final-point``: the last evaluation point alone."""
DEFAULT_PRIMARY = "last-k"
"""The primary score of a suite that declares none: what every run before the declaration was
planned with."""

OWN_FAMILY = "own claims"
"""The hypothesis family of a claim that names none (a user's own claims)."""


@dataclass(frozen=True)
class Claim:
    text: str
    x: str
    y: str
    relation: str
    """``>`` (X beats Y), ``<`` (X loses to Y) or ``>=`` (X not worse than Y by the margin)"""
    families: tuple[str, ...] | None = None
    """the task families the claim's source has evidence on; ``None``: every declared family"""
    margin: float = 0.0
    """non-inferiority margin of a ``>=`` claim, in normalised score"""
    x_ref: str | None = None
    """if set, X's scores are taken relative to this algorithm's mean (a *change*, e.g. from
    35 train tasks to 3: "X degrades less than Y" is X − X_ref > Y − Y_ref)"""
    y_ref: str | None = None
    score: str = "normalized"
    """the per-run column tested: ``normalized`` (the suite's primary run score) or
    ``online_gain`` (what online fine-tuning added, harness.aggregate.online_gains)"""
    hypothesis_family: str = OWN_FAMILY
    """the claim's source: Holm runs within it, never across sources"""

    @property
    def arms(self) -> tuple[str, ...]:
        """Every algorithm (or variant label) the claim needs runs of."""
        return tuple(a for a in (self.x, self.y, self.x_ref, self.y_ref) if a)


@dataclass(frozen=True)
class Declaration:
    """What a report was planned to answer, fixed before any run: the suite's algorithms
    (variant labels included) and task families, and its primary score."""

    algorithms: frozenset[str]
    families: tuple[str, ...]
    primary_score: str = DEFAULT_PRIMARY
    sources: tuple[str, ...] = field(default=(), compare=False)
    """where it was read from (suite files, plans), for the report's text"""

    @classmethod
    def of_runs(cls, final: pd.DataFrame, primary_score: str = DEFAULT_PRIMARY) -> Declaration:
        """The fallback for ad-hoc tables: what the runs present cover."""
        return cls(
            frozenset(final["algorithm"].unique()),
            tuple(sorted(final["family"].unique())),
            primary_score,
            ("the runs present",),
        )


CLAIM_KEYS = {f for f in Claim.__dataclass_fields__}


def load_claims(path: Path = CLAIMS_FILE, with_task_count: bool = True) -> list[Claim]:
    """The claims of a TOML file (``[[claim]]`` tables), plus the task-count ablation's. A
    malformed claim is refused in one line naming the file, the claim and the key."""
    raw = tomllib.loads(Path(path).read_text()).get("claim", [])
    claims = []
    for c in raw:
        where = f"{path}: claim {c.get('text', '?')!r}"
        unknown = sorted(set(c) - CLAIM_KEYS)
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {unknown}; known: {sorted(CLAIM_KEYS)}")
        missing = sorted({"text", "x", "y", "relation"} - set(c))
        if missing:
            raise ValueError(f"{where}: missing key(s) {missing}")
        if c["relation"] not in (">", "<", ">="):
            raise ValueError(f"{where}: relation must be >, < or >=")
        fams = c.get("families")
        claims.append(Claim(**{**c, "families": tuple(fams) if fams else None}))
    return claims + (_task_count_claims() if with_task_count else [])


def hypothesis_families(path: Path = CLAIMS_FILE) -> dict[str, str]:
    """hypothesis family → its source, as the claims file describes it."""
    return dict(tomllib.loads(Path(path).read_text()).get("hypothesis_families", {}))


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
            hypothesis_family="macaw-figure-6",
        )
        for other, label in ((a, NAMES[a]) for a in ("mt-ft", "pearl"))
        for n in (3, 5, 10, 20)
    ]


CLAIMS: list[Claim] = load_claims()


def own_claims(path: Path) -> list[Claim]:
    """A user's claims file (``[[claim]]`` tables as ``harness/claims.toml``), tested beside the
    built-in claims. Its claims are in ``own claims`` unless they name a hypothesis family of
    their own; joining a built-in family is refused, since it would move that source's verdicts."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no claims file {path}")
    try:
        claims = load_claims(path, with_task_count=False)
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{path}: malformed TOML: {e}") from None
    builtin = {c.hypothesis_family for c in CLAIMS}
    for c in claims:
        if c.hypothesis_family in builtin:
            raise ValueError(
                f"{path}: claim {c.text!r} names the built-in hypothesis family "
                f"{c.hypothesis_family!r}; a claim of your own goes in a family of its own"
            )
    return claims


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


def holm_adjusted(pvalues: np.ndarray) -> np.ndarray:
    """Holm's adjusted p-values by the step-down formula (the running maximum of
    (m − k + 1)·p₍ₖ₎, clipped at 1): the numbers of :func:`holm`, for the many trial
    adjustments of :func:`needed_threshold` (statsmodels' call runs a garbage collection each
    time, seconds over a report's rows)."""
    p = np.asarray(pvalues, float)
    m = len(p)
    order = np.argsort(p, kind="stable")
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adjusted
    return out


def needed_threshold(pvalues: np.ndarray, i: int, alpha: float = ALPHA) -> float:
    """The largest p row ``i`` could have and still be decided under Holm beside the other rows'
    p-values as they are: Holm's α/(m − r + 1) at the best rank r where that works (α/m, the
    first threshold, always does)."""
    p = np.asarray(pvalues, float).copy()
    m = len(p)
    for r in range(m, 0, -1):
        t = alpha / (m - r + 1)
        p[i] = t * (1 - 1e-9)
        if holm_adjusted(p)[i] <= alpha:
            return t
    return alpha / m


# -- the rows -----------------------------------------------------------------------------------
def _direction(relation: str, effect: float) -> str | None:
    """Which side of "no difference" the effect lies on, as a verdict: the claimed side holds."""
    if effect == 0.5:
        return None
    claimed_side = {">": effect > 0.5, ">=": effect > 0.5, "<": effect < 0.5}[relation]
    return "holds" if claimed_side else "fails"


def _scores(sub: pd.DataFrame, algo: str | None, column: str) -> np.ndarray:
    if column not in sub:
        return np.array([])
    return sub.loc[sub["algorithm"] == algo, column].dropna().to_numpy(float)


@dataclass(frozen=True)
class Row:
    """One declared (claim, task family) row of a hypothesis family."""

    claim: Claim
    family: str

    @property
    def comparison(self) -> str:
        c = self.claim
        text = f"{c.x} − {c.x_ref} vs {c.y} − {c.y_ref}" if c.x_ref else f"{c.x} vs {c.y}"
        return text + (f" (margin {c.margin:g})" if c.margin else "")

    def arms(self, final: pd.DataFrame, column: str) -> tuple[np.ndarray, np.ndarray]:
        """X's scores (shifted by the margin) and Y's under ``column``; empty where not run.
        A claim on ``online_gain`` reads that column whatever the primary score."""
        c = self.claim
        column = c.score if c.score != "normalized" else column
        sub = final[final["family"] == self.family]
        x, y = _scores(sub, c.x, column), _scores(sub, c.y, column)
        if c.x_ref or c.y_ref:  # changes relative to each one's reference
            x_ref, y_ref = _scores(sub, c.x_ref, column), _scores(sub, c.y_ref, column)
            if len(x_ref) == 0 or len(y_ref) == 0:
                return np.array([]), np.array([])
            x, y = x - x_ref.mean(), y - y_ref.mean()
        return x + c.margin, y


def declared_rows(claims: list[Claim], declared: Declaration) -> list[Row]:
    """Every row the declaration fixes, in claim order: a claim's task families that the suite
    declares, for claims whose algorithms the suite declares — whatever runs exist."""
    rows = []
    for c in claims:
        if not set(c.arms) <= declared.algorithms:
            continue
        fams = c.families or declared.families
        rows += [Row(c, f) for f in fams if f in declared.families]
    return rows


def claim_rows(
    final: pd.DataFrame,
    claims: list[Claim],
    declared: Declaration | None = None,
    column: str = "normalized",
) -> list[dict]:
    """The declared rows with both arms' test scores (empty arrays for a row not run)."""
    declared = declared or Declaration.of_runs(final)
    out = []
    for r in declared_rows(claims, declared):
        x, y = r.arms(final, column)
        out.append(
            {"claim": r.claim, "family": r.family, "comparison": r.comparison, "x": x, "y": y}
        )
    return out


# -- the decision -------------------------------------------------------------------------------
def decide(rows: list[dict], alpha: float = ALPHA) -> list[dict]:
    """Per row: p, Holm-adjusted p and the decision, Holm within each hypothesis family (a row
    not run counts with p = 1). Adds ``p``, ``p_holm``, ``family_rows``, ``decision`` and
    ``detail`` (the verdict's words)."""
    out = [dict(r) for r in rows]
    by_family: dict[str, list[int]] = {}
    for i, r in enumerate(out):
        by_family.setdefault(r["claim"].hypothesis_family, []).append(i)
    for members in by_family.values():
        ran = [len(out[i]["x"]) > 0 and len(out[i]["y"]) > 0 for i in members]
        p = np.array(
            [exact_p(out[i]["x"], out[i]["y"]) if ok else 1.0 for i, ok in zip(members, ran)]
        )
        adjusted = holm(p, alpha)
        for j, (i, ok) in enumerate(zip(members, ran)):
            r = out[i]
            x, y = r["x"], r["y"]
            r["family_rows"] = len(members)
            if not ok:
                r.update(p=np.nan, p_holm=np.nan, decision="not run")
                r["detail"] = f"not run ({len(x)} vs {len(y)})"
                continue
            r.update(p=float(p[j]), p_holm=float(adjusted[j]))
            need = needed_threshold(p, j, alpha)
            floor = smallest_p(len(x), len(y))
            side = _direction(r["claim"].relation, probability_of_improvement(x, y))
            if floor > need * (1 + 1e-9):
                r["decision"] = "too few runs"
                r["detail"] = (
                    f"too few runs ({len(x)} vs {len(y)}): smallest attainable p {floor:.2g} > "
                    f"{need:.2g} needed; {seeds_to_reach(need)} per arm can reach it"
                )
            elif adjusted[j] <= alpha and side:
                r["decision"] = side
                r["detail"] = f"{side} (adjusted p {adjusted[j]:.2g})"
            else:
                r["decision"] = "inconclusive"
                r["detail"] = f"inconclusive (adjusted p {adjusted[j]:.2g})"
    return out


DECISIVE = ("holds", "fails")

FINDINGS_COLUMNS = [
    "hypothesis_family",
    "claim",
    "family",
    "comparison",
    "runs",
    "family_rows",
    "p_improvement",
    "ci_low",
    "ci_high",
    "p",
    "p_holm",
    "decision",
    "fragile",
    "moving",
    "verdict",
]


def available_scores(final: pd.DataFrame) -> dict[str, str]:
    """The scores of :data:`SCORES` the table has for some run (name → column)."""
    return {name: col for name, col in SCORES.items() if col in final and final[col].notna().any()}


def findings_table(
    final: pd.DataFrame,
    claims: list[Claim] | None = None,
    alpha: float = ALPHA,
    seed: int = 0,
    reps: int = BOOTSTRAP_REPS,
    declared: Declaration | None = None,
    trends: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per declared (claim, family), plus a whole-claim row for each claim over several
    families. ``final``: one row per run with columns algorithm, family, seed and the score
    columns of :data:`SCORES` (at least the declared primary one); ``trends``: per (algorithm,
    family) the end-of-budget ``trend`` (:func:`harness.aggregate.arm_trends`), named in the
    verdicts of rows whose arm moves."""
    claims = CLAIMS if claims is None else claims
    declared = declared or Declaration.of_runs(final)
    primary = SCORES.get(declared.primary_score)
    if primary is None:
        raise ValueError(
            f"unknown primary score {declared.primary_score!r}; known: {', '.join(SCORES)}"
        )
    if primary not in final:
        raise ValueError(
            f"the primary score {declared.primary_score!r} ({primary}) is not in the run table"
        )
    rng = np.random.default_rng(seed)
    rows = decide(claim_rows(final, claims, declared, primary), alpha)
    others = {
        name: decide(claim_rows(final, claims, declared, col), alpha)
        for name, col in available_scores(final).items()
        if col != primary
    }
    moving = _moving_arms(trends)
    out = []
    for i, r in enumerate(rows):
        x, y = r["x"], r["y"]
        ran = len(x) > 0 and len(y) > 0
        effect, lo, hi = bootstrap_poi(x, y, reps=reps, rng=rng) if ran else (np.nan,) * 3
        fragile = [  # only where the other score exists for every run of the row
            name
            for name, alt in others.items()
            if r["decision"] in DECISIVE
            and (len(alt[i]["x"]), len(alt[i]["y"])) == (len(x), len(y))
            and alt[i]["decision"] != r["decision"]
        ]
        c = r["claim"]
        notes = [moving[(a, r["family"])] for a in (c.x, c.y) if ran and (a, r["family"]) in moving]
        fragile_note = [f"{others[n][i]['decision']} under {n}" for n in fragile]
        verdict = "; ".join(
            [r["detail"], *notes] + ([f"fragile: {', '.join(fragile_note)}"] if fragile else [])
        )
        out.append(
            {
                "hypothesis_family": c.hypothesis_family,
                "claim": c.text,
                "family": r["family"],
                "comparison": r["comparison"],
                "runs": f"{len(x)} vs {len(y)}",
                "family_rows": r["family_rows"],
                "p_improvement": effect,
                "ci_low": lo,
                "ci_high": hi,
                "p": r["p"],
                "p_holm": r["p_holm"],
                "decision": r["decision"],
                "fragile": ", ".join(fragile),
                "moving": "; ".join(notes),
                "verdict": verdict,
            }
        )
    table = pd.DataFrame(out, columns=FINDINGS_COLUMNS)
    return pd.concat([table, _whole_claims(table)], ignore_index=True)


def _moving_arms(trends: pd.DataFrame | None) -> dict[tuple[str, str], str]:
    """(algorithm, family) → "Meta-BC still rising" / "MACAW falling" for moving arms."""
    if trends is None or trends.empty:
        return {}
    words = {"rising": "still rising", "falling": "falling"}
    return {
        (t.algorithm, t.family): f"{NAMES.get(t.algorithm, t.algorithm)} {words[t.trend]}"
        for t in trends.itertuples()
        if t.trend in words
    }


def whole_verdict(rows: pd.DataFrame) -> str:
    """A claim over several families: holds only where every family's row holds; else its
    breakdown. ``rows``: the claim's per-family rows (family, decision, p_holm)."""
    n = len(rows)
    held = int((rows["decision"] == "holds").sum())
    others = [
        f"{r.family} {r.decision}"
        + (
            f" (adjusted p {r.p_holm:.2g})"
            if pd.notna(r.p_holm) and r.decision in ("fails", "inconclusive")
            else ""
        )
        for r in rows.itertuples()
        if r.decision != "holds"
    ]
    if held == n:
        return f"holds on {n} of {n}"
    failed = rows[rows["decision"] == "fails"]
    head = f"fails on {len(failed)} of {n}" if len(failed) else "not established"
    return f"{head}: holds on {held} of {n}; " + "; ".join(others)


def _whole_claims(table: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (hf, claim), g in table.groupby(["hypothesis_family", "claim"], sort=False):
        if len(g) < 2:
            continue
        verdict = whole_verdict(g[["family", "decision", "p_holm"]])
        decision = (
            "holds"
            if verdict.startswith("holds")
            else ("fails" if verdict.startswith("fails") else "not established")
        )
        rows.append(
            {
                "hypothesis_family": hf,
                "claim": claim,
                "family": f"all {len(g)}",
                "comparison": "every family's row",
                "runs": "",
                "family_rows": g["family_rows"].iloc[0],
                "decision": decision,
                "fragile": ", ".join(
                    sorted({f.strip() for v in g["fragile"] if v for f in v.split(",")})
                ),
                "moving": "",
                "verdict": verdict
                + (
                    "; fragile rows: " + ", ".join(g.loc[g["fragile"] != "", "family"])
                    if (g["fragile"] != "").any()
                    else ""
                ),
            }
        )
    return pd.DataFrame(rows, columns=FINDINGS_COLUMNS)


# -- verdicts per budget checkpoint -------------------------------------------------------------
CHECKPOINTS = (0.25, 0.5, 0.75, 1.0)
"""The budget checkpoints at which every row is decided again (fractions of each run's steps)."""

BUDGET_COLUMNS = [
    "hypothesis_family",
    "claim",
    "family",
    "checkpoint",
    "step",
    "runs",
    "p",
    "p_holm",
    "decision",
]


def findings_by_budget(
    scores_at: dict[float, pd.DataFrame],
    claims: list[Claim] | None = None,
    declared: Declaration | None = None,
    alpha: float = ALPHA,
) -> pd.DataFrame:
    """Every declared row decided at each checkpoint. ``scores_at``: checkpoint fraction → the
    run table scored on each curve up to that point (last-k; the caller truncates the curves),
    with a ``step`` column (the last step used). Holm within each hypothesis family, as at the
    end; rows on a per-run score without a curve (``online_gain``) are left out."""
    claims = CLAIMS if claims is None else claims
    out = []
    for q, final in sorted(scores_at.items()):
        decl = declared or Declaration.of_runs(final)
        rows = claim_rows(final, claims, decl, "normalized")
        for r in rows:  # a per-run score without a curve counts in its family as not run
            if r["claim"].score != "normalized":
                r["x"], r["y"] = np.array([]), np.array([])
        for r in decide(rows, alpha):
            if r["claim"].score != "normalized":
                continue
            sub = final[final["family"] == r["family"]]
            out.append(
                {
                    "hypothesis_family": r["claim"].hypothesis_family,
                    "claim": r["claim"].text,
                    "family": r["family"],
                    "checkpoint": q,
                    "step": int(sub["step"].max()) if len(sub) else 0,
                    "runs": f"{len(r['x'])} vs {len(r['y'])}",
                    "p": r["p"],
                    "p_holm": r["p_holm"],
                    "decision": r["decision"],
                }
            )
    return pd.DataFrame(out, columns=BUDGET_COLUMNS)


def unstable_rows(by_budget: pd.DataFrame) -> dict[tuple[str, str, str], tuple[str, str]]:
    """(hypothesis family, claim, family) → (decision at the checkpoint before the last, at the
    last) for the rows whose two differ (both under last-k)."""
    out = {}
    for key, g in by_budget.groupby(["hypothesis_family", "claim", "family"], sort=False):
        d = g.sort_values("checkpoint")["decision"].tolist()
        if len(d) >= 2 and d[-1] != d[-2]:
            out[key] = (d[-2], d[-1])
    return out


def mark_unstable(findings: pd.DataFrame, by_budget: pd.DataFrame) -> pd.DataFrame:
    """``findings`` with an ``unstable`` column and the change in the verdicts of those rows.
    The checkpoints read the last-k score (the only one every point of a curve has), so the
    note names it."""
    unstable = unstable_rows(by_budget)
    f = findings.copy()
    keys = list(zip(f["hypothesis_family"], f["claim"], f["family"], strict=True))
    f["unstable"] = [k in unstable for k in keys]
    f["verdict"] = [
        f"{v}; unstable: {unstable[k][0]} at 3/4 of the budget, {unstable[k][1]} at its end "
        "(last-k)"
        if k in unstable
        else v
        for v, k in zip(f["verdict"], keys, strict=True)
    ]
    return f
