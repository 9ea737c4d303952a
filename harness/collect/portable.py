"""The behaviour agents' arithmetic, the same bits on every x86-64 CPU (``harness.numerics``).

PyTorch's CPU wheel sends float32 matrix products and its ``tanh``, ``exp``, ``log`` and
``sqrt`` kernels to Intel MKL, whose results depend on the CPU vendor (measured: the same
inputs give other bits on an Intel Xeon and under MKL's AMD code path). The data generator
computes those here instead:

* products by numpy's OpenBLAS with its kernel pinned (``OPENBLAS_CORETYPE=Haswell``, one
  thread), forward and backward;
* ``tanh`` from ``expm1`` and ``exp`` from ``exp2`` (PyTorch's own vectorised kernels, not MKL's);
* Adam's square root by numpy (IEEE, correctly rounded).

What is left — element-wise arithmetic, ``sigmoid``/``softplus``-class kernels and reductions —
gives the same bits under PyTorch's AVX2 and AVX-512 kernels (checked on both kinds of CPU).
The learners keep PyTorch's fastest arithmetic: only the data must be the same bytes everywhere.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from algorithms.optim import LeanAdam

LOG2_E = 1.0 / math.log(2.0)
LOG_2PI = math.log(2.0 * math.pi)


class PortableBaddbmm(torch.autograd.Function):
    """``bias + x @ w`` over stacked members (``[m, B, in] @ [m, in, out]``), the forward and
    backward products by numpy's pinned OpenBLAS; the bias gradient, a sum over the batch, is
    PyTorch's (its order does not depend on the CPU)."""

    @staticmethod
    def forward(ctx, bias: torch.Tensor, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, w)
        out = np.matmul(np.ascontiguousarray(x.detach().numpy()), w.detach().numpy())
        out += bias.detach().numpy()
        return torch.from_numpy(out)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, w = ctx.saved_tensors
        g = np.ascontiguousarray(grad.numpy())
        need_b, need_x, need_w = ctx.needs_input_grad
        gb = grad.sum(1, keepdim=True) if need_b else None
        gx = gw = None
        if need_x:
            gx = torch.from_numpy(np.matmul(g, w.detach().numpy().transpose(0, 2, 1)))
        if need_w:
            xt = np.ascontiguousarray(x.detach().numpy()).transpose(0, 2, 1)
            gw = torch.from_numpy(np.matmul(xt, g))
        return gb, gx, gw


def portable_tanh(x: torch.Tensor) -> torch.Tensor:
    """tanh(x) = sign(x)·(−e)/(2 + e) with e = expm1(−2|x|): accurate near 0, finite at ±∞."""
    e = torch.expm1(-2.0 * x.abs())
    return torch.sign(x) * (-e / (2.0 + e))


def portable_exp(x: torch.Tensor) -> torch.Tensor:
    """exp(x) as 2^(x·log₂e)."""
    return torch.exp2(x * LOG2_E)


def gaussian_log_prob_diag(mean: torch.Tensor, log_std: torch.Tensor, x: torch.Tensor):
    """log N(x; mean, diag(exp(log_std)²)) summed over the last dim."""
    z = (x - mean) * portable_exp(-log_std)
    return (-0.5 * z.pow(2) - log_std - 0.5 * LOG_2PI).sum(-1)


def tanh_gaussian_sample(mean: torch.Tensor, log_std: torch.Tensor):
    """Reparameterised sample of tanh(N(mean, σ²)) and its log-probability (summed over dims);
    the tanh correction log(1 − tanh²u) as 2(log 2 − u − softplus(−2u))."""
    u = mean + portable_exp(log_std) * torch.randn_like(mean)
    logp = gaussian_log_prob_diag(mean, log_std, u)
    logp = logp - (2 * (math.log(2) - u - F.softplus(-2 * u))).sum(-1)
    return portable_tanh(u), logp


def _numpy_sqrt(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    return [torch.from_numpy(np.sqrt(t.numpy())) for t in tensors]


class PortableAdam(LeanAdam):
    """:class:`LeanAdam` with numpy's exact square root."""

    sqrt = staticmethod(_numpy_sqrt)
