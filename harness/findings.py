"""The paper's claims, checked from result files alone: P(X > Y) with a bootstrap CI, a verdict.

For a claim "X beats Y on family F" the statistic is the probability of improvement (Agarwal et
al. 2021): the chance that a random run of X scores above a random run of Y, ties counting half,
over the runs' final scores. Its 95 % CI comes from a stratified bootstrap (the runs of X and of
Y resampled with replacement, separately). Verdict: ``holds`` when the CI lies wholly on the
claimed side of 0.5, ``fails`` when wholly on the other side, else ``inconclusive``. A claim
"X ≥ Y" holds when the CI lies above 0.5, fails below it, and is inconclusive in between
(equality itself cannot be shown). Claims whose algorithms
or families are not in the results are left out; nothing here is ever typed in by hand.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Claim:
    text: str
    x: str
    y: str
    relation: str
    """``>`` (X beats Y), ``<`` (X loses to Y) or ``>=`` (X does not lose to Y)"""
    families: tuple[str, ...] | None = None
    """where the claim is made; ``None``: every family in the results"""
    x_ref: str | None = None
    """if set, X's scores are taken relative to this algorithm's mean (a *change*, e.g. from
    35 train tasks to 3: "X degrades less than Y" is X − X_ref > Y − Y_ref)"""
    y_ref: str | None = None


CHEETAHS = ("cheetah-vel", "cheetah-dir")
CLAIMS: list[Claim] = [
    Claim("MACAW > Meta-BC on every family", "macaw", "meta-bc", ">"),
    Claim("offline PEARL < Meta-BC", "pearl", "meta-bc", "<"),
    Claim("MT+FT ≥ Meta-BC on the cheetahs", "mt-ft", "meta-bc", ">=", CHEETAHS),
    Claim(
        "MT+FT < Meta-BC on walker and ant", "mt-ft", "meta-bc", "<", ("walker-params", "ant-dir")
    ),
    Claim("MACAW > MT+FT on cheetah-vel", "macaw", "mt-ft", ">", ("cheetah-vel",)),
    # the newcomers' own papers' comparisons
    Claim("FOCAL > offline PEARL (FOCAL's paper)", "focal", "pearl", ">"),
    Claim("Prompt-DT > Meta-BC (Prompt-DT's paper)", "prompt-dt", "meta-bc", ">"),
    # ablations
    Claim("the advantage head helps on poor data", "macaw", "macaw-no-head", ">"),
    Claim("WT beats no-WT at equal width", "macaw", "macaw-no-wt", ">"),
    Claim("WT beats no-WT at equal parameter count (725)", "macaw", "macaw-no-wt-725", ">"),
    *[
        Claim(
            f"MACAW degrades less than {label} from 35 train tasks to {n}",
            f"macaw-{n}",
            f"{other}-{n}",
            ">",
            ("cheetah-vel",),
            x_ref="macaw",
            y_ref=other,
        )
        for other, label in (("mt-ft", "MT+FT"), ("pearl", "offline PEARL"))
        for n in (3, 5, 10, 20)
    ],
]


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> float:
    """P(X > Y) + ½ P(X = Y) over all pairs of runs."""
    x, y = np.asarray(x, float)[:, None], np.asarray(y, float)[None, :]
    return float(np.mean((x > y) + 0.5 * (x == y)))


def bootstrap_poi(
    x: np.ndarray, y: np.ndarray, reps: int = 2000, rng: np.random.Generator | None = None
) -> tuple[float, float, float]:
    """Point estimate and 95 % CI of P(X > Y), resampling X's and Y's runs separately."""
    rng = rng or np.random.default_rng(0)
    x, y = np.asarray(x, float), np.asarray(y, float)
    xs = x[rng.integers(0, len(x), size=(reps, len(x)))]
    ys = y[rng.integers(0, len(y), size=(reps, len(y)))]
    stats = np.mean(
        (xs[:, :, None] > ys[:, None, :]) + 0.5 * (xs[:, :, None] == ys[:, None, :]), (1, 2)
    )
    lo, hi = np.percentile(stats, [2.5, 97.5])
    return probability_of_improvement(x, y), float(lo), float(hi)


def _verdict(relation: str, lo: float, hi: float) -> str:
    above, below = lo > 0.5, hi < 0.5
    table = {
        ">": "holds" if above else "fails" if below else "inconclusive",
        "<": "holds" if below else "fails" if above else "inconclusive",
        ">=": "fails" if below else "holds" if above else "inconclusive",
    }
    return table[relation]


def findings_table(
    final: pd.DataFrame, claims: list[Claim] = CLAIMS, seed: int = 0
) -> pd.DataFrame:
    """One row per (claim, family) that the results can answer. ``final``: one row per run with
    columns algorithm, family, seed, score (the last evaluation of finished runs)."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in claims:
        fams = c.families or tuple(sorted(final["family"].unique()))
        for fam in fams:
            sub = final[final["family"] == fam]

            def scores(algo: str | None, sub: pd.DataFrame = sub) -> np.ndarray:
                return sub.loc[sub["algorithm"] == algo, "score"].dropna().to_numpy()

            x, y = scores(c.x), scores(c.y)
            if len(x) == 0 or len(y) == 0:
                continue
            if c.x_ref or c.y_ref:  # changes relative to each one's reference
                x_ref, y_ref = scores(c.x_ref), scores(c.y_ref)
                if len(x_ref) == 0 or len(y_ref) == 0:
                    continue
                x, y = x - x_ref.mean(), y - y_ref.mean()
            p, lo, hi = bootstrap_poi(x, y, rng=rng)
            rows.append(
                {
                    "claim": c.text,
                    "family": fam,
                    "comparison": f"P({c.x} − {c.x_ref} > {c.y} − {c.y_ref})"
                    if c.x_ref
                    else f"P({c.x} > {c.y})",
                    "runs": f"{len(x)} vs {len(y)}",
                    "p_improvement": p,
                    "ci_low": lo,
                    "ci_high": hi,
                    "verdict": _verdict(c.relation, lo, hi),
                }
            )
    return pd.DataFrame(
        rows,
        columns=[
            "claim",
            "family",
            "comparison",
            "runs",
            "p_improvement",
            "ci_low",
            "ci_high",
            "verdict",
        ],
    )
