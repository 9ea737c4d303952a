"""Products over stacked tasks, fused or one task at a time.

A learner that adapts ``T`` tasks at once stacks their weights ``[T, …]`` and multiplies them
with one ``torch.bmm``. Fused is fastest, but a BLAS kernel picks its summation order by the
batch size (measured: ``bmm`` over 1 task and over 5 differ in the last bit for a 1-column
output; ``z A`` for one row of ``z`` is a matrix-vector kernel, for five a matrix-matrix one),
so a task adapted among others comes out a few ulps away from the same task adapted alone.
Inside :func:`per_task_products` each product gives each task's slice the bits of its own
kernel call, as ``T = 1`` does: the first time a layout of operands is met the fused call and
one call per task are both made and compared, and the layout is fused from then on only where
they agreed (a kernel's summation order follows shapes, strides, alignment and threads, never
values). Every element-wise step around the products is already per task, so a stacked
adaptation equals each task's own adaptation bit for bit, while keeping most of the batching.
Training keeps the fused products: its numbers never depended on a task alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch

_PER_TASK: ContextVar[bool] = ContextVar("per_task_products", default=False)


@contextmanager
def per_task_products(on: bool = True) -> Iterator[None]:
    """Within: :func:`task_bmm` and :func:`task_rows` compute each task's slice on its own."""
    token = _PER_TASK.set(on)
    try:
        yield
    finally:
        _PER_TASK.reset(token)


def task_bmm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``torch.bmm(a, b)`` over the task axis 0; inside :func:`per_task_products`, forward and
    backward, every task's slice as its own call gives it (:func:`_bmm_as_alone`)."""
    if not _PER_TASK.get() or a.shape[0] == 1:
        return torch.bmm(a, b)
    return _PerTaskBmm.apply(a, b)


def task_rows(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """``fn(x)`` for a product whose rows are tasks (``x [T, k]`` times a shared matrix); one
    row at a time inside :func:`per_task_products` (forward only: no caller differentiates
    through these rows while adapting)."""
    if not _PER_TASK.get() or x.shape[0] == 1:
        return fn(x)
    return torch.cat([fn(_aligned(row)) for row in x.split(1)])


def _aligned(t: torch.Tensor) -> torch.Tensor:
    """``t``, or a copy of it (same strides) where it does not start on a 64-byte boundary.
    A task's slice of a stacked tensor starts anywhere, while the tensors of a task adapted
    alone are fresh allocations, which start on one; a kernel may choose how it sums by the
    address (Intel MKL documents run-to-run differences from alignment), so each call gets
    the alignment it gets alone."""
    return t if t.data_ptr() % 64 == 0 else t.clone()


_FUSED_EXACT: dict[tuple, bool] = {}
"""Per operand layout (shapes, strides, addresses mod 64, dtype, device, threads): whether
the fused ``bmm`` gave every task the bits of the task's own call the first time it was seen."""


def _bmm_as_alone(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``torch.bmm(a, b)`` whose slice ``t`` has the bits of ``torch.bmm`` on task ``t``'s
    operands alone (aligned, as fresh tensors are).

    A BLAS kernel's summation order follows the operands' shapes, strides and alignment and
    the thread count, never their values: so the first product of a layout is computed both
    ways and compared, and from then on that layout is fused where they agreed (measured on an
    AVX-512 Xeon: all of Meta-BC's, all of MT+FT's and MACAW's but their 1-column products)
    and one call per task where they did not."""
    key = (
        a.shape,
        a.stride(),
        a.data_ptr() % 64,
        b.shape,
        b.stride(),
        b.data_ptr() % 64,
        a.dtype,
        a.device,
        torch.get_num_threads(),
    )  # every slice's address mod 64 follows from the first's and the strides
    exact = _FUSED_EXACT.get(key)
    if exact:
        return torch.bmm(a, b)
    alone = torch.cat(
        [torch.bmm(_aligned(x), _aligned(y)) for x, y in zip(a.split(1), b.split(1), strict=True)]
    )
    if exact is None:
        _FUSED_EXACT[key] = torch.equal(torch.bmm(a, b), alone)
    return alone


class _PerTaskBmm(torch.autograd.Function):
    """``bmm`` and its backward (the products autograd makes for a task alone, ``dA = dY Bᵀ``,
    ``dB = Aᵀ dY``), each with every task's slice as alone (:func:`_bmm_as_alone`)."""

    @staticmethod
    def forward(ctx, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(a, b)
        return _bmm_as_alone(a, b)

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        a, b = ctx.saved_tensors
        da = db = None
        if ctx.needs_input_grad[0]:
            da = _bmm_as_alone(dy, b.transpose(1, 2))
        if ctx.needs_input_grad[1]:
            db = _bmm_as_alone(a.transpose(1, 2), dy)
        return da, db
