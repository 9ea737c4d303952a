"""Networks for the gradient-based meta-learners, evaluated for many tasks at once.

A :class:`MetaMLP` owns the *meta*-parameters. To evaluate or adapt it for ``T`` tasks we build a
:class:`NetState`: per layer, the per-task effective weights ``W [T, in, out]`` and ``b [T, out]``
as functions of the meta-parameters. An inner SGD step maps a state to a new state; losses are
summed over tasks, and since task ``t`` only touches slice ``t`` of every per-task tensor, one
``torch.autograd.grad`` gives every task its own gradient. Second-order meta-gradients flow
through the step with ``create_graph=True`` — this is MAML written with ``torch.func``-style pure
functions of the parameters (learn2learn's 0.2.0 release cannot be built on Python ≥ 3.11).

Layers (protocol §4, the authors' ``src/nn.py``):

* **Weight transform** (``WLinear``): a latent ``z ∈ R^k`` and a linear map ``θ = z A + c``
  (row-vector convention, ``A`` stored ``[k, P]`` so the products with it stream it row by row)
  whose output is reshaped into ``W (in×out)`` and ``b``. All of ``z, A, c`` are adapted. A naive
  inner step would materialise ``∂L/∂A = zᵀ g`` (``k × P``, a million entries per 100×100 layer)
  for every task; we never do. With ``A' = A − α_A zᵀg``, ``z' = z − α_z g Aᵀ``, ``c' = c − α_c g``:

      θ' = z' A' + c' = z' A + c' − α_A (z·z') g

  so the adapted weights need only vector–matrix products with the shared ``A``, batched over
  tasks as one matmul. We keep ``A'`` implicitly as ``A − Σ_j coef_j z_jᵀ g_j``. The maths is the
  same function of the meta-parameters, so autograd gives the same meta-gradient (a test checks
  it against the naive version), at a fraction of the memory traffic. Before the first step every
  task has the same ``z`` and ``c``, so ``z A`` is computed once, not once per task.
* **Bias transform** (``BiasLinear``, used without WT): ``y = x W + b_l + b M`` with a learned
  vector ``b ∈ R^out`` and matrix ``M ∈ R^(out×out)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from algorithms.products import task_bmm, task_rows

LOG_2PI = math.log(2 * math.pi)


def inverse_softplus(y: float) -> float:
    """ℓ such that softplus(ℓ) = y (learned learning rates start at lr₀ = softplus(ℓ₀))."""
    return math.log(math.expm1(y))


# ---------------------------------------------------------------------------------------------
# Products with a shared WT matrix, with deferred gradient accumulation
# ---------------------------------------------------------------------------------------------
class _SharedMatmul(torch.autograd.Function):
    """``X @ A`` (or ``X @ Aᵀ``) whose gradient for ``A`` is *deferred*.

    ``A`` appears in several products per inner step (θ = z A, g Aᵀ, θ' = z' A), each of which
    would make autograd write a ``[k, P]`` gradient and add it into ``A.grad``. Instead each
    backward records the two thin factors ``(L, R)`` of its rank-``r`` contribution ``Lᵀ R`` in
    ``sink``, and :meth:`WTLinear.flush_deferred_grads` adds them all with one matmul. The inner
    loop never differentiates through these nodes (its gradients are taken w.r.t. the effective
    weights downstream of them), so a first-order backward is all they need.
    """

    @staticmethod
    def forward(ctx, X, A, sink, transpose):
        ctx.save_for_backward(X, A)
        ctx.sink, ctx.transpose = sink, transpose
        return X @ A.T if transpose else X @ A

    @staticmethod
    def backward(ctx, dY):
        X, A = ctx.saved_tensors
        if ctx.transpose:  # Y = X Aᵀ: dX = dY A, dA = dYᵀ X
            ctx.sink.append((dY, X))
            return dY @ A, None, None, None
        ctx.sink.append((X, dY))  # Y = X A: dX = dY Aᵀ, dA = Xᵀ dY
        return dY @ A.T, None, None, None


def _shared_mm(X: torch.Tensor, A: torch.Tensor, sink: list | None, transpose: bool):
    """``X A`` (or ``X Aᵀ``), the rows of ``X`` being tasks (see :mod:`algorithms.products`)."""
    return task_rows(lambda x: _shared_mm_rows(x, A, sink, transpose), X)


def _shared_mm_rows(X: torch.Tensor, A: torch.Tensor, sink: list | None, transpose: bool):
    if sink is None or not torch.is_grad_enabled() or not A.requires_grad:
        return X @ A.T if transpose else X @ A
    return _SharedMatmul.apply(X, A, sink, transpose)


# ---------------------------------------------------------------------------------------------
# Layer states: per-task effective weights, and the inner SGD step on them
# ---------------------------------------------------------------------------------------------
@dataclass
class WTState:
    """Weight-transform layer for ``T`` tasks; ``A`` is shared, its updates kept low-rank.

    ``z``, ``c`` and ``Az`` have one row per task, or a single row shared by all tasks (the
    pre-adaptation state); ``theta`` always has ``T`` rows, so each task gets its own gradient.
    """

    fan_in: int
    fan_out: int
    n_tasks: int
    A: torch.Tensor  # [k, P] the shared (meta) matrix
    z: torch.Tensor  # [T or 1, k]
    c: torch.Tensor  # [T or 1, P]
    corr: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]  # (coef [1,1], g [T,P], z_j)
    sink: list | None = None  # deferred dA factors (see _SharedMatmul); None: plain autograd
    Az: torch.Tensor | None = None  # z A, kept so interpolations need no pass over A
    theta: torch.Tensor | None = None  # [T, P] effective weights (the handle)

    n_lrs = 3  # z, A, c

    def __post_init__(self) -> None:
        if self.Az is None:
            self.Az = _shared_mm(self.z, self.A, self.sink, False)  # z A, all tasks: one matmul
        if self.theta is None:
            theta = self.Az + self.c
            for coef, g, zj in self.corr:
                s = coef * (zj * self.z).sum(-1, keepdim=True)
                theta = torch.addcmul(theta, s, g, value=-1)
            if theta.shape[0] != self.n_tasks:
                theta = theta.expand(self.n_tasks, -1)
            self.theta = theta

    def handles(self) -> list[torch.Tensor]:
        return [self.theta]

    def weight_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Effective ``W [T, in, out]`` and ``b [T, out]``."""
        Wb = self.theta.view(self.n_tasks, self.fan_in + 1, self.fan_out)
        W, b = Wb.split([self.fan_in, 1], dim=1)
        return W, b.squeeze(1)

    def linear(self, x: torch.Tensor) -> torch.Tensor:
        """x: [T, B, in] → [T, B, out]. θ is ``W`` (row-major ``in × out``) then ``b``; split, not
        sliced, so its backward is one concatenation instead of a zero-filled buffer per slice."""
        Wb = self.theta.view(self.n_tasks, self.fan_in + 1, self.fan_out)  # rows: W, then b
        W, b = Wb.split([self.fan_in, 1], dim=1)
        return task_bmm(x, W).add_(b)  # in place is safe (bmm's backward needs x and W only)

    def _new(self, z, c, corr, Az=None) -> WTState:
        return WTState(self.fan_in, self.fan_out, self.n_tasks, self.A, z, c, corr, self.sink, Az)

    def step(self, grads: list[torch.Tensor], lrs: Sequence[torch.Tensor]) -> WTState:
        (g,) = grads  # [T, P] = dL/dθ per task
        lr_z, lr_a, lr_c = lrs
        g_z = _shared_mm(g, self.A, self.sink, True)  # g Aᵀ per task
        for coef, gj, zj in self.corr:
            g_z = torch.addcmul(g_z, coef * (gj * g).sum(-1, keepdim=True), zj, value=-1)
        corr = [*self.corr, (lr_a.reshape(1, 1), g, self.z)]
        z = torch.addcmul(self.z, lr_z, g_z, value=-1)
        return self._new(z, torch.addcmul(self.c, lr_c, g, value=-1), corr)

    def lerp(self, other: WTState, w: float) -> WTState:
        """(1 − w)·self + w·other in parameter space (for the soft target network). ``z A`` is
        linear in ``z``, so the interpolated state's ``z A`` needs no pass over ``A``."""
        corr = [((1 - w) * c, g, z) for c, g, z in self.corr]
        corr += [(w * c, g, z) for c, g, z in other.corr]
        return self._new(
            torch.lerp(self.z, other.z, w),
            torch.lerp(self.c, other.c, w),
            corr,
            torch.lerp(self.Az, other.Az, w),
        )

    def detach(self) -> WTState:
        corr = [(c.detach(), g.detach(), z.detach()) for c, g, z in self.corr]
        return WTState(
            self.fan_in,
            self.fan_out,
            self.n_tasks,
            self.A.detach(),
            self.z.detach(),
            self.c.detach(),
            corr,
            None,
            self.Az.detach(),
            self.theta.detach(),
        )


@dataclass
class BTState:
    """Bias-transform layer for ``T`` tasks: ``y = x W + b_l + b M`` (all per task)."""

    W: torch.Tensor  # [T, in, out]
    bl: torch.Tensor  # [T, out]
    b: torch.Tensor  # [T, out]
    M: torch.Tensor  # [T, out, out]
    bias: torch.Tensor | None = None  # [T, out] effective bias (a handle)

    n_lrs = 4  # W, b_l, b, M

    def __post_init__(self) -> None:
        if self.bias is None:
            self.bias = self.bl + task_bmm(self.b.unsqueeze(1), self.M).squeeze(1)

    def handles(self) -> list[torch.Tensor]:
        return [self.W, self.bias]

    def weight_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Effective ``W [T, in, out]`` and ``b [T, out]``."""
        return self.W, self.bias

    def linear(self, x: torch.Tensor) -> torch.Tensor:
        """x: [T, B, in] → [T, B, out] with each task's own weights."""
        return task_bmm(x, self.W).add_(self.bias.unsqueeze(1))

    def step(self, grads: list[torch.Tensor], lrs: Sequence[torch.Tensor]) -> BTState:
        g_w, g_bias = grads
        g_b = task_bmm(self.M, g_bias.unsqueeze(-1)).squeeze(-1)  # d bias / d b = M
        g_m = self.b.unsqueeze(-1) * g_bias.unsqueeze(1)  # b ⊗ g
        return BTState(
            *(
                torch.addcmul(p, lr, g, value=-1)
                for p, lr, g in zip((self.W, self.bl, self.b, self.M), lrs, (g_w, g_bias, g_b, g_m))
            )
        )

    def lerp(self, other: BTState, w: float) -> BTState:
        return BTState(
            *(
                torch.lerp(a, b, w)
                for a, b in (
                    (self.W, other.W),
                    (self.bl, other.bl),
                    (self.b, other.b),
                    (self.M, other.M),
                )
            )
        )

    def detach(self) -> BTState:
        return BTState(
            self.W.detach(), self.bl.detach(), self.b.detach(), self.M.detach(), self.bias.detach()
        )


ACT_DTYPE = torch.float64
"""Policies act in float64 and round each action to float32 once. A float32 product's bits
depend on how the BLAS kernel orders its sums, which it chooses by batch size and CPU (measured:
one row alone and the same row among 7 differ in the last bit on an AVX-512 Xeon, not on an
EPYC); after a float64 product the float32 rounding hides that order. So a policy gives the same
actions alone and in the batched evaluator, on any CPU."""


@dataclass
class RowLayer:
    """A linear layer frozen for acting: ``y = x W + b`` with one ``W`` per row of a batch,
    held in :data:`ACT_DTYPE` (``W`` stored transposed, ``Wt [N, out, in]``)."""

    Wt: torch.Tensor  # [N, out, in], contiguous
    b: torch.Tensor  # [N, 1, out]
    W: torch.Tensor = field(init=False, repr=False)  # the view ``Wt.transpose(1, 2)``, made once

    def __post_init__(self) -> None:
        self.W = self.Wt.transpose(1, 2)  # acting makes one call per layer and env step

    def linear(self, x: torch.Tensor) -> torch.Tensor:
        """x: [N, B, in] → [N, B, out]."""
        return torch.bmm(x, self.W).add_(self.b)

    def weight_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.W, self.b.squeeze(1)

    @staticmethod
    def from_weight_bias(W: torch.Tensor, b: torch.Tensor) -> RowLayer:
        """From ``W [N, in, out]`` and ``b [N, out]``."""
        return RowLayer(
            W.detach().transpose(1, 2).to(ACT_DTYPE).contiguous(),
            b.detach().unsqueeze(1).to(ACT_DTYPE),
        )

    @staticmethod
    def cat(layers: Sequence[RowLayer]) -> RowLayer:
        return RowLayer(torch.cat([x.Wt for x in layers]), torch.cat([x.b for x in layers]))


LayerState = WTState | BTState | RowLayer


@dataclass
class NetState:
    """A whole network's per-task state: one layer state per linear layer."""

    layers: list[LayerState]

    def handles(self, n_layers: int | None = None) -> list[torch.Tensor]:
        """The tensors inner gradients are taken w.r.t., of the first ``n_layers`` layers."""
        return [h for layer in self.layers[:n_layers] for h in layer.handles()]

    def step(
        self, grads: list[torch.Tensor], lrs: torch.Tensor, n_layers: int | None = None
    ) -> NetState:
        """One SGD step of the first ``n_layers`` layers (all by default; the rest are kept);
        ``lrs`` holds one (already positive) rate per meta-parameter tensor."""
        out, gi, li = [], 0, 0
        rates = lrs.unbind()  # one autograd node, not one select per rate
        for layer in self.layers[:n_layers]:
            nh = len(layer.handles())
            out.append(layer.step(grads[gi : gi + nh], rates[li : li + layer.n_lrs]))
            gi, li = gi + nh, li + layer.n_lrs
        return NetState(out + self.layers[len(out) :])

    def lerp(self, other: NetState, w: float) -> NetState:
        return NetState([a.lerp(b, w) for a, b in zip(self.layers, other.layers)])

    def detach(self) -> NetState:
        return NetState([layer.detach() for layer in self.layers])

    def frozen(self) -> NetState:
        """The effective weights as :class:`RowLayer` s, for acting (no graph, row-exact)."""
        if all(isinstance(x, RowLayer) for x in self.layers):
            return self  # already frozen (a split batch): no second copy
        with torch.no_grad():
            return NetState([RowLayer.from_weight_bias(*x.weight_bias()) for x in self.layers])

    @staticmethod
    def cat(states: Sequence[NetState]) -> NetState:
        """Frozen states of the same network stacked along the task axis."""
        return NetState([RowLayer.cat(ls) for ls in zip(*(s.layers for s in states))])

    def split(self) -> list[NetState]:
        """One frozen one-task state per task (a batched adaptation's policies, one each)."""
        rows = self.frozen()
        return [
            NetState([RowLayer(x.Wt[i : i + 1], x.b[i : i + 1]) for x in rows.layers])
            for i in range(rows.layers[0].Wt.shape[0])
        ]

    @property
    def n_tasks(self) -> int:
        return self.layers[0].handles()[0].shape[0]


# ---------------------------------------------------------------------------------------------
# Meta-parameters
# ---------------------------------------------------------------------------------------------
class WTLinear(nn.Module):
    """Weight-transform linear layer's meta-parameters (authors' ``WLinear``)."""

    def __init__(self, fan_in: int, fan_out: int, latent: int = 100):
        super().__init__()
        self.fan_in, self.fan_out = fan_in, fan_out
        self.z = nn.Parameter(torch.empty(latent).normal_(0, 1.0 / fan_out))
        fc = nn.Linear(latent, fan_in * fan_out + fan_out)  # default init, as the authors
        self.A = nn.Parameter(fc.weight.detach().T.contiguous())  # [k, P]: θ = z A + c
        self.c = fc.bias  # [P]
        self.deferred: list[tuple[torch.Tensor, torch.Tensor]] = []

    def state(self, T: int) -> WTState:
        z, c = self.z.unsqueeze(0), self.c.unsqueeze(0)  # shared by all tasks until a step
        return WTState(self.fan_in, self.fan_out, T, self.A, z, c, [], self.deferred)

    @torch.no_grad()  # a factor may require grad (z does); the gradient itself must not
    def flush_deferred_grads(self) -> None:
        """Add the recorded rank-r factors into ``A.grad`` with one matmul."""
        if not self.deferred:
            return
        L = torch.cat([u for u, _ in self.deferred])
        R = torch.cat([v for _, v in self.deferred])
        self.deferred.clear()
        if self.A.grad is None:
            self.A.grad = L.T @ R
        else:
            self.A.grad.addmm_(L.T, R)  # in place: no fresh 4 MB buffer per step


class BTLinear(nn.Module):
    """Bias-transform linear layer's meta-parameters (authors' ``BiasLinear``)."""

    def __init__(self, fan_in: int, fan_out: int):
        super().__init__()
        lin = nn.Linear(fan_in, fan_out)
        self.W = nn.Parameter(lin.weight.detach().T.contiguous())  # [in, out]: y = x W
        self.bl = lin.bias
        self.b = nn.Parameter(torch.empty(fan_out).normal_(0, 1.0 / fan_out))
        self.M = nn.Parameter(nn.init.xavier_normal_(torch.empty(fan_out, fan_out)))

    def state(self, T: int) -> BTState:
        return BTState(
            self.W.expand(T, -1, -1),
            self.bl.expand(T, -1),
            self.b.expand(T, -1),
            self.M.expand(T, -1, -1),
        )


class MetaMLP(nn.Module):
    """An MLP of WT or BT layers, optionally with MACAW's advantage head.

    Args:
        sizes: ``[in, hidden…, out]`` widths.
        transform: ``"wt"`` (weight transform) or ``"bt"`` (bias transform, the no-WT layer).
        head: widths after the trunk for the advantage head, e.g. ``[32, 1]``; its input is the
            last hidden pre-activation concatenated with the action, passed through a ReLU
            (as the authors' ``MLP``: ``head_seq`` starts with a ReLU).
        latent: WT latent size (100 in the paper).
    """

    def __init__(
        self,
        sizes: list[int],
        transform: str = "wt",
        head: list[int] | None = None,
        latent: int = 100,
    ):
        super().__init__()
        if transform not in ("wt", "bt"):
            raise ValueError(f"unknown layer transform {transform!r}; known: wt, bt")

        def make(i, o):
            return WTLinear(i, o, latent) if transform == "wt" else BTLinear(i, o)

        self.trunk = nn.ModuleList(make(i, o) for i, o in zip(sizes[:-1], sizes[1:]))
        self.head = nn.ModuleList()
        if head:
            widths = [sizes[-2] + sizes[-1], *head]
            self.head.extend(make(i, o) for i, o in zip(widths[:-1], widths[1:]))

    @property
    def n_lr_slots(self) -> int:
        """One learned inner learning rate per meta-parameter tensor."""
        return sum(len(list(m.parameters())) for m in [*self.trunk, *self.head])

    def state(self, T: int) -> NetState:
        return NetState([m.state(T) for m in [*self.trunk, *self.head]])

    def flush_deferred_grads(self) -> None:
        """Complete ``.grad`` after a backward pass (WT layers defer part of it)."""
        for m in [*self.trunk, *self.head]:
            if isinstance(m, WTLinear):
                m.flush_deferred_grads()

    def run(self, state: NetState, x: torch.Tensor, action: torch.Tensor | None = None):
        """Evaluate for every task. x: [T, B, in]. Returns the trunk output ``[T, B, out]``, and
        with ``action`` and a head also the head output ``[T, B, 1]``.

        ReLUs run in place on fresh layer outputs (autograd keeps the activated tensor, which is
        all ReLU's backward needs): one activation-sized buffer fewer per layer."""
        n = len(self.trunk)
        with_head = action is not None and len(self.head) > 0
        h = x
        for i in range(n - 1):
            h = state.layers[i].linear(h)
            if i < n - 2:
                h = h.relu_()
        pre = h  # last hidden layer's pre-activation: the head's input
        out = state.layers[n - 1].linear(F.relu(pre) if with_head else pre.relu_())
        if not with_head:
            return out
        a = torch.cat([pre, action], -1).relu_()
        for j in range(len(self.head)):
            a = state.layers[n + j].linear(a)
            if j < len(self.head) - 1:
                a = a.relu_()
        return out, a


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def gaussian_log_prob(mean: torch.Tensor, action: torch.Tensor, sigma: float) -> torch.Tensor:
    """log N(action; mean, σ²I) summed over the action dims: [..., act] → [...]."""
    const = action.shape[-1] * (math.log(sigma) + 0.5 * LOG_2PI)
    return (action - mean).pow(2).sum(-1) * (-0.5 / sigma**2) - const


def tanh_gaussian_sample(mean: torch.Tensor, log_std: torch.Tensor):
    """Reparameterised sample of tanh(N(mean, σ²)) and its log-probability (summed over dims).

    The tanh correction log(1 − tanh²u) is written as 2(log 2 − u − softplus(−2u)), which stays
    finite where tanh saturates. Shared by offline PEARL and the SAC behaviour agents.
    """
    u = mean + log_std.exp() * torch.randn_like(mean)
    logp = gaussian_log_prob_diag(mean, log_std, u)
    logp = logp - (2 * (math.log(2) - u - F.softplus(-2 * u))).sum(-1)
    return torch.tanh(u), logp


@torch.no_grad()
def soft_update_(target: nn.Module, source: nn.Module, tau: float) -> None:
    """Polyak averaging of a target network, in place: target ← (1 − τ)·target + τ·source.
    Shared by offline PEARL and the SAC behaviour agents."""
    for p, tp in zip(source.parameters(), target.parameters(), strict=True):
        tp.lerp_(p, tau)


def gaussian_log_prob_diag(mean: torch.Tensor, log_std: torch.Tensor, x: torch.Tensor):
    """log N(x; mean, diag(exp(log_std)²)) summed over the last dim."""
    z = (x - mean) * torch.exp(-log_std)
    return (-0.5 * z.pow(2) - log_std - 0.5 * LOG_2PI).sum(-1)


def awr_weights(adv: torch.Tensor, temperature: float = 1.0, max_weight: float = 20.0):
    """exp(min(standardise(A)/T, ln max_weight)), standardised within each task's batch."""
    norm = (adv - adv.mean(-1, keepdim=True)) / adv.std(-1, keepdim=True)
    return (norm / temperature).clamp(max=math.log(max_weight)).exp()


def inner_grads(
    loss: torch.Tensor, state: NetState, create_graph: bool, n_layers: int | None = None
) -> list[torch.Tensor]:
    """Per-task gradients w.r.t. the effective weights (the handles) of the first ``n_layers``."""
    handles = state.handles(n_layers)
    return list(torch.autograd.grad(loss, handles, create_graph=create_graph))


def mlp(inp: int, out: int, width: int, depth: int) -> nn.Sequential:
    """``depth`` ReLU layers of ``width`` units and a linear output (PyTorch's default init)."""
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.Linear(inp if i == 0 else width, width), nn.ReLU()]
    layers.append(nn.Linear(width, out))
    return nn.Sequential(*layers)


@torch.no_grad()
def rlkit_init_(net: nn.Sequential, last_w: float = 3e-3) -> nn.Sequential:
    """rlkit's initialisation (the PEARL and FOCAL authors' ``Mlp``), in place: hidden weights
    U(±1/√n) with n = the weight's *first* dimension (rlkit's ``fanin_init`` reads
    ``size[0]``, the output width of a ``Linear``), hidden biases 0.1, the output layer's
    weights and biases U(±``last_w``) (3e-3; the policies 1e-3)."""
    linears = [m for m in net if isinstance(m, nn.Linear)]
    for m in linears[:-1]:
        bound = 1.0 / math.sqrt(m.weight.shape[0])
        m.weight.uniform_(-bound, bound)
        m.bias.fill_(0.1)
    linears[-1].weight.uniform_(-last_w, last_w)
    linears[-1].bias.uniform_(-last_w, last_w)
    return net
