"""Speed ratios measured interleaved: for hosts whose speed drifts.

pytest-benchmark times one benchmark after another, so a host that slows down for a minute
(measured: up to 2× on a shared 2-core Xeon) skews the ratio of two benchmarks' medians — one
``tox -e bench`` run there put MACAW's evaluation point at 1.26× the sequential loop while
alternating the two loops gave 1.76×. A ratio the benchmarks report is therefore the median of
per-round ratios, the reference and the candidate alternating (each going first in every other
round, so neither always meets the other's cache): a drift slower than a round cancels in it.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

PAIRS = 8


def _timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def interleaved_times(
    reference: Callable[[], object],
    candidate: Callable[[], object],
    pairs: int = PAIRS,
    warmup: int = 1,
) -> tuple[list[float], list[float]]:
    """Seconds of ``reference()`` and of ``candidate()`` in each of ``pairs`` rounds, the two
    alternating (after ``warmup`` untimed rounds)."""
    for _ in range(warmup):
        reference()
        candidate()
    ref, cand = [], []
    for i in range(pairs):
        if i % 2:
            cand.append(_timed(candidate))
            ref.append(_timed(reference))
        else:
            ref.append(_timed(reference))
            cand.append(_timed(candidate))
    return ref, cand


def median_ratio(reference: list[float], candidate: list[float]) -> float:
    """The median over rounds of reference time / candidate time (> 1: the candidate is faster)."""
    return statistics.median(r / c for r, c in zip(reference, candidate, strict=True))


def interleaved_ratio(
    reference: Callable[[], object],
    candidate: Callable[[], object],
    pairs: int = PAIRS,
    warmup: int = 1,
) -> float:
    """How many times faster ``candidate`` runs than ``reference``, measured interleaved."""
    return median_ratio(*interleaved_times(reference, candidate, pairs, warmup))
