"""A learner step against the machine's own limit, measured in the same process.

A step's speed means most beside what this CPU can do with the same arithmetic. ``count_step``
runs the step once under ``torch.utils.flop_counter.FlopCounterMode`` (matrix products and
attention, forward and backward) and records every matrix product's shape; ``replay_products``
times exactly those products as plain float32 ``mm``/``bmm`` on contiguous operands — the step
with everything but its products taken away — which gives the **limit**: the GFLOP/s this
machine reaches on this step's mix of shapes at a given thread count. ``fraction`` = achieved
GFLOP/s over that limit: 1 means the step runs at the speed of its own products, and what is
missing is elementwise work, optimiser updates, allocation and Python. ``TimedEnv`` splits an
evaluation point into simulator time and the learner's (adaptation and acting).
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import gymnasium
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

aten = torch.ops.aten
_PRODUCTS = {aten.mm: (0, 1), aten.addmm: (1, 2), aten.bmm: (0, 1), aten.baddbmm: (1, 2)}
"""the matrix products recorded, and where their two operands sit in the call's arguments"""


@dataclass(frozen=True)
class Product:
    """One matrix-product shape of a step: ``batch`` × (m × k) @ (k × n), ``count`` times."""

    batch: int
    m: int
    k: int
    n: int
    count: int

    @property
    def flops(self) -> int:
        return 2 * self.batch * self.m * self.k * self.n * self.count


@dataclass(frozen=True)
class StepCount:
    """What one call of a step computes: FLOPs as FlopCounterMode counts them (products and
    attention) and the products by shape, largest share first."""

    flops: int
    products: tuple[Product, ...]

    @property
    def product_flops(self) -> int:
        return sum(p.flops for p in self.products)


class _ProductRecorder(TorchDispatchMode):
    """Records the (batch, m, k, n) of every matrix product that reaches the dispatcher."""

    def __init__(self) -> None:
        super().__init__()
        self.shapes: Counter[tuple[int, int, int, int]] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        where = _PRODUCTS.get(func.overloadpacket)
        if where is not None:
            a, b = args[where[0]], args[where[1]]
            if a.dim() == 3:
                self.shapes[(a.shape[0], a.shape[1], a.shape[2], b.shape[2])] += 1
            else:
                self.shapes[(1, a.shape[0], a.shape[1], b.shape[1])] += 1
        return out


def count_step(step: Callable[[], object]) -> StepCount:
    """Run ``step`` once and count what it computes (call it after a warm-up call, so that
    lazily built state is not counted)."""
    recorder = _ProductRecorder()
    with FlopCounterMode(display=False) as counter, recorder:
        step()
    products = tuple(
        sorted(
            (Product(*shape, count) for shape, count in recorder.shapes.items()),
            key=lambda p: -p.flops,
        )
    )
    return StepCount(int(counter.get_total_flops()), products)


def median_seconds(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Median wall time of ``fn`` over ``repeats`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def replay_products(products: tuple[Product, ...], repeats: int = 5) -> float:
    """Seconds the products alone take on this machine at the current thread count: each shape
    timed as a plain float32 product of contiguous random operands, times its count."""
    total = 0.0
    with torch.no_grad():
        for p in products:
            a = torch.randn(p.batch, p.m, p.k)
            b = torch.randn(p.batch, p.k, p.n)
            if p.batch == 1:
                a0, b0 = a[0], b[0]
                out = torch.empty(p.m, p.n)

                def one(a0=a0, b0=b0, out=out) -> None:
                    torch.mm(a0, b0, out=out)

            else:
                out = torch.empty(p.batch, p.m, p.n)

                def one(a=a, b=b, out=out) -> None:
                    torch.bmm(a, b, out=out)

            inner = max(1, min(p.count, 200))  # time a burst, as the step issues them

            def burst(one=one, inner=inner) -> None:
                for _ in range(inner):
                    one()

            total += median_seconds(burst, repeats) / inner * p.count
    return total


@dataclass(frozen=True)
class Roofline:
    """A step's place against this machine's limit for its own products."""

    gflop: float
    step_ms: float
    gflops: float
    """achieved: the step's counted FLOPs over its median time"""
    limit_gflops: float
    """the same products replayed alone (the machine's limit on this step's shapes)"""
    fraction: float
    dominant: str
    """the product shape with the largest FLOP share, and that share"""


def against_limit(count: StepCount, seconds: float, repeats: int = 5) -> Roofline:
    """Place a step that computes ``count`` in ``seconds`` against the limit of its own
    products, replayed now at the current torch thread count."""
    limit_s = replay_products(count.products, repeats)
    limit = count.product_flops / limit_s / 1e9 if limit_s > 0 else float("nan")
    achieved = count.flops / seconds / 1e9
    top = count.products[0] if count.products else None
    share = top.flops / max(count.product_flops, 1) if top else 0.0
    dominant = f"{top.batch}x{top.m}x{top.k}x{top.n} ({share:.0%})" if top else "-"
    return Roofline(count.flops / 1e9, seconds * 1e3, achieved, limit, achieved / limit, dominant)


def roofline(step: Callable[[], object], repeats: int = 5) -> Roofline:
    """Count, time and replay ``step`` at the current torch thread count."""
    step()  # warm-up: optimiser state, caches
    count = count_step(step)
    return against_limit(count, median_seconds(step, repeats), repeats)


class TimedEnv(gymnasium.Wrapper):
    """Adds the seconds spent inside ``step`` and ``reset`` to ``clock[0]``: the simulator's
    share of an evaluation point (everything else is the learner's adaptation and acting)."""

    def __init__(self, env: gymnasium.Env, clock: list[float]) -> None:
        super().__init__(env)
        self.clock = clock

    def step(self, action):
        t = time.perf_counter()
        try:
            return self.env.step(action)
        finally:
            self.clock[0] += time.perf_counter() - t

    def reset(self, **kwargs):
        t = time.perf_counter()
        try:
            return self.env.reset(**kwargs)
        finally:
            self.clock[0] += time.perf_counter() - t
