"""A straightforward per-task autograd implementation of MACAW's meta-loss (protocol §4).

Written independently of ``algorithms/networks.py``: parameters as plain tensors, one task at a
time, weights generated explicitly (θ = z A + c), every parameter tensor stepped with
``torch.autograd.grad(create_graph=True)``, the target network as an explicit parameter
interpolation. The gradient test checks ``MACAW`` against it; the benchmark times it as the
reference a faster implementation must beat.
"""

import math

import torch
import torch.nn.functional as F

from algorithms.batch import MetaBatch, Transitions
from algorithms.macaw import MACAW


def layer_forward(kind, p, x, fan_in, fan_out):
    if kind == "wt":
        z, A, c = p
        theta = z @ A + c  # A stored [k, P]
        W = theta[: fan_in * fan_out].view(fan_in, fan_out)
        b = theta[fan_in * fan_out :]
        return x @ W + b
    W, bl, b, M = p
    return x @ W + bl + b @ M


def mlp_forward(kind, params, shapes, x, action=None, n_trunk=None):
    """params: flat list of tensors in module order; shapes: (fan_in, fan_out) per layer."""
    per = 3 if kind == "wt" else 4
    layers = [params[i * per : (i + 1) * per] for i in range(len(shapes))]
    n_trunk = n_trunk or len(shapes)
    h = x
    for i in range(n_trunk - 1):
        h = layer_forward(kind, layers[i], h, *shapes[i])
        if i < n_trunk - 2:
            h = torch.relu(h)
    out = layer_forward(kind, layers[n_trunk - 1], torch.relu(h), *shapes[n_trunk - 1])
    if action is None:
        return out
    a = torch.relu(torch.cat([h, action], -1))
    for j in range(n_trunk, len(shapes)):
        a = layer_forward(kind, layers[j], a, *shapes[j])
        if j < len(shapes) - 1:
            a = torch.relu(a)
    return out, a


def shapes_of(net):
    return [
        (m.fan_in, m.fan_out) if hasattr(m, "fan_in") else tuple(m.W.shape)
        for m in [*net.trunk, *net.head]
    ]


def reference_meta_loss(m: MACAW, batch: MetaBatch, leaves):
    cfg = m.config
    kind = "wt" if cfg.weight_transform else "bt"
    vp0, pp0, v_lrs, p_lrs, head_c = leaves
    v_shapes, p_shapes = shapes_of(m.value), shapes_of(m.policy)
    n_trunk = len(m.policy.trunk)
    sigma, steps = cfg.action_sigma, cfg.inner_steps

    def V(params, x):
        return mlp_forward(kind, params, v_shapes, x).squeeze(-1)

    def logp(mean, a):
        return (
            -0.5 * ((a - torch.tanh(mean)) / sigma) ** 2
            - math.log(sigma)
            - 0.5 * math.log(2 * math.pi)
        ).sum(-1)

    def weights(adv):
        norm = (adv - adv.mean()) / adv.std()
        return torch.exp(torch.clamp(norm / cfg.awr_temperature, max=math.log(cfg.max_weight)))

    def field(tr, t, lo=None, hi=None):
        return {
            k: getattr(tr, k)[t, lo:hi]
            for k in ("obs", "action", "mc_return", "terminal_obs", "terminal_discount")
        }

    total = 0.0
    for t in range(batch.n_tasks):
        B = batch.inner.reward.shape[1] // steps
        subs = [field(batch.inner, t, i * B, (i + 1) * B) for i in range(steps)]
        out = field(batch.outer, t)
        # value: inner MC steps, soft target
        vp = list(vp0)
        target = [p.detach() for p in vp0]
        for sub in subs:
            loss = ((V(vp, sub["obs"]) - sub["mc_return"]) ** 2).mean()
            grads = torch.autograd.grad(loss, vp, create_graph=True)
            vp = [p - F.softplus(v_lrs[i]) * g for i, (p, g) in enumerate(zip(vp, grads))]
            target = [0.9 * tp + 0.1 * p.detach() for tp, p in zip(target, vp)]
        with torch.no_grad():
            y = out["mc_return"] + out["terminal_discount"] * V(target, out["terminal_obs"])
        outer_v = ((V(vp, out["obs"]) - y) ** 2).mean()

        def adv_of(d, vp=vp):
            with torch.no_grad():
                return (
                    d["mc_return"]
                    + d["terminal_discount"] * V(vp, d["terminal_obs"])
                    - V(vp, d["obs"])
                )

        # policy: inner AWR + advantage head, outer AWR
        pp = list(pp0)
        for sub in subs:
            adv = adv_of(sub)
            mean, head = mlp_forward(kind, pp, p_shapes, sub["obs"], sub["action"], n_trunk)
            per_row = -weights(adv) * logp(mean, sub["action"])
            per_row = per_row + F.softplus(head_c) * (head.squeeze(-1) - adv) ** 2
            grads = torch.autograd.grad(per_row.mean(), pp, create_graph=True)
            pp = [p - F.softplus(p_lrs[i]) * g for i, (p, g) in enumerate(zip(pp, grads))]
        mean = mlp_forward(kind, pp, p_shapes, out["obs"], n_trunk=n_trunk)
        outer_p = (-weights(adv_of(out)) * logp(mean, out["action"])).mean()
        total = total + (outer_v + outer_p) / m.n_train_tasks
    return total


def make_batch(T, B, obs, act, seed=0):
    g = torch.Generator().manual_seed(seed)

    def f(*s):
        return torch.randn(*s, generator=g)

    def tr():
        return Transitions(
            f(T, B, obs),
            f(T, B, act).clamp(-0.9, 0.9),
            f(T, B),
            f(T, B, obs),
            torch.zeros(T, B),
            f(T, B),
            f(T, B, obs),
            torch.rand(T, B, generator=g),
            torch.arange(B).float().expand(T, B).contiguous(),  # one long episode
            torch.zeros(T, B),
        )

    return MetaBatch(tr(), tr(), torch.arange(T))


class ReferenceMACAWStep:
    """One meta-iteration the straightforward way: per-task loop, full second-order autograd,
    then the same Adam updates as MACAW. Only for timing against ``MACAW.meta_train_step``."""

    def __init__(self, m: MACAW):
        self.m = m
        self.vp = [p.detach().clone().requires_grad_() for p in m.value.parameters()]
        self.pp = [p.detach().clone().requires_grad_() for p in m.policy.parameters()]
        self.v_lrs = m.value_lrs.detach().clone().requires_grad_()
        self.p_lrs = m.policy_lrs.detach().clone().requires_grad_()
        self.head_c = m.head_coef.detach().clone().requires_grad_()
        cfg = m.config
        self.opts = [
            torch.optim.Adam(self.vp, lr=cfg.value_lr),
            torch.optim.Adam(self.pp, lr=cfg.policy_lr),
            torch.optim.Adam([self.v_lrs, self.p_lrs, self.head_c], lr=cfg.meta_lr),
        ]

    def __call__(self, batch: MetaBatch) -> float:
        loss = reference_meta_loss(
            self.m, batch, (self.vp, self.pp, self.v_lrs, self.p_lrs, self.head_c)
        )
        for o in self.opts:
            o.zero_grad(set_to_none=True)
        loss.backward()
        for o in self.opts:
            o.step()
        return loss.item()
