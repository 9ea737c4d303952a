"""Products over stacked tasks, fused or one task at a time.

A learner that adapts ``T`` tasks at once stacks their weights ``[T, …]`` and multiplies them
with one ``torch.bmm``. Fused is fastest, but a BLAS kernel picks its summation order by the
batch size (measured: ``bmm`` over 1 task and over 5 differ in the last bit for a 1-column
output; ``z A`` for one row of ``z`` is a matrix-vector kernel, for five a matrix-matrix one),
so a task adapted among others comes out a few ulps away from the same task adapted alone.
Inside :func:`per_task_products` the same calls give each task's slice its own kernel call, as
``T = 1`` does, and every element-wise step around them is already per task: a stacked
adaptation then equals each task's own adaptation bit for bit, while keeping most of the
batching (the optimiser, the losses and the element-wise chains stay one call for all tasks).
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
    """``torch.bmm(a, b)`` over the task axis 0; one call per task inside
    :func:`per_task_products`, forward and backward."""
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


class _PerTaskBmm(torch.autograd.Function):
    """``bmm`` as one call per task, and its backward as the calls autograd makes for a task
    alone (``dA = dY Bᵀ``, ``dB = Aᵀ dY``), each on aligned operands."""

    @staticmethod
    def forward(ctx, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        xs = [_aligned(x) for x in a.split(1)]
        ys = [_aligned(y) for y in b.split(1)]
        ctx.save_for_backward(*xs, *ys)  # the aligned operands: backward needs no second copy
        return torch.cat([torch.bmm(x, y) for x, y in zip(xs, ys)])

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        saved = ctx.saved_tensors
        xs, ys = saved[: len(saved) // 2], saved[len(saved) // 2 :]
        dys = [_aligned(g) for g in dy.split(1)]
        da = db = None
        if ctx.needs_input_grad[0]:
            da = torch.cat([torch.bmm(g, y.transpose(1, 2)) for g, y in zip(dys, ys)])
        if ctx.needs_input_grad[1]:
            db = torch.cat([torch.bmm(x.transpose(1, 2), g) for x, g in zip(xs, dys)])
        return da, db
