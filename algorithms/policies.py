"""The policies the built-in learners hand back, and how several act in one forward.

Policies act in float64 (:data:`algorithms.networks.ACT_DTYPE`) and round each action to float32
once, so a batch of them gives every row the bits that policy gives alone (docs/algorithms.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from algorithms.base import Policy, PolicyBatch
from algorithms.networks import ACT_DTYPE, MetaMLP, NetState


def _acting_layers(net: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor] | None] | None:
    """A plain MLP's (Linear and ReLU layers) weights in :data:`ACT_DTYPE` — ``(W, b)`` per
    Linear, ``None`` per ReLU — or ``None`` for any other module (it then acts as it is)."""
    if not isinstance(net, nn.Sequential) or not all(
        isinstance(m, nn.Linear | nn.ReLU) for m in net
    ):
        return None
    with torch.no_grad():
        return [
            (m.weight.to(ACT_DTYPE), m.bias.to(ACT_DTYPE)) if isinstance(m, nn.Linear) else None
            for m in net
        ]


def _run_layers(layers: list[tuple[torch.Tensor, torch.Tensor] | None], x: torch.Tensor):
    h = x.to(ACT_DTYPE)
    for layer in layers:
        h = F.linear(h, *layer) if layer is not None else h.relu_()
    return h


def _same_layers(a: list, b: list) -> bool:
    def same(x, y) -> bool:
        if x is None or y is None:
            return x is y
        return all(map(torch.equal, x, y))

    return len(a) == len(b) and all(map(same, a, b))


class LatentPolicy(Policy):
    """Acts with the tanh of the mean of a policy net fed ``[obs, z]`` for one fixed task
    latent ``z`` (offline PEARL's posterior mean, FOCAL's embedding). A plain MLP acts in
    :data:`ACT_DTYPE` with a copy of its weights taken now."""

    def __init__(self, policy: nn.Module, z: torch.Tensor):
        self.policy, self.z = policy, z  # z: [latent]
        self.layers = _acting_layers(policy)

    def act(self, obs: torch.Tensor) -> torch.Tensor:
        x = torch.cat([obs, self.z.expand(obs.shape[0], -1)], -1)
        if self.layers is None:
            return torch.tanh(self.policy(x).chunk(2, -1)[0])
        return torch.tanh(_run_layers(self.layers, x).chunk(2, -1)[0]).to(obs.dtype)

    @classmethod
    def batch(cls, policies: Sequence[Policy]) -> PolicyBatch:
        first = policies[0].layers
        if first is None or any(
            p.layers is None or not _same_layers(first, p.layers) for p in policies[1:]
        ):
            return PolicyBatch(policies)
        return _LatentBatch(policies)


class _LatentBatch(PolicyBatch):
    """Latent policies with the same weights: one forward for all rows, row-exact."""

    stateless = True

    def __init__(self, policies: Sequence[LatentPolicy]):
        super().__init__(policies)
        self.layers = policies[0].layers
        self.z = torch.stack([p.z for p in policies])

    def act(self, obs: torch.Tensor, active: Sequence[bool]) -> torch.Tensor:
        with torch.no_grad():
            x = torch.cat([obs.to(self.z.device), self.z], -1)
            return torch.tanh(_run_layers(self.layers, x).chunk(2, -1)[0]).to(obs.dtype)


class StatePolicy(Policy):
    """Acts with a :class:`MetaMLP` policy's state for one task (MACAW's and Meta-BC's adapted
    weights; MT+FT's fine-tuned copy); ``extra_zeros`` zero inputs are appended to the
    observation (MT+FT's task id of a new task)."""

    def __init__(self, net: MetaMLP, state: NetState, extra_zeros: int = 0):
        self.net, self.rows, self.extra = net, state.frozen(), extra_zeros

    def inputs(self, obs: torch.Tensor) -> torch.Tensor:
        if self.extra:
            obs = torch.cat([obs, obs.new_zeros(obs.shape[0], self.extra)], -1)
        return obs

    def act(self, obs: torch.Tensor) -> torch.Tensor:
        x = self.inputs(obs.to(self.rows.layers[0].Wt)).unsqueeze(0)
        return torch.tanh(self.net.run(self.rows, x)[0]).to(obs.dtype)

    @classmethod
    def batch(cls, policies: Sequence[Policy]) -> PolicyBatch:
        shapes = {tuple(tuple(x.Wt.shape[1:]) for x in p.rows.layers) for p in policies}
        if len(shapes) > 1 or len({p.extra for p in policies}) > 1:
            return PolicyBatch(policies)
        return _StateBatch(policies)


class _StateBatch(PolicyBatch):
    """MetaMLP states of one architecture stacked: one forward for all rows, row-exact."""

    stateless = True

    def __init__(self, policies: Sequence[StatePolicy]):
        super().__init__(policies)
        self.first = policies[0]
        self.rows = NetState.cat([p.rows for p in policies])

    def act(self, obs: torch.Tensor, active: Sequence[bool]) -> torch.Tensor:
        with torch.no_grad():
            x = self.first.inputs(obs.to(self.rows.layers[0].Wt)).unsqueeze(1)
            return torch.tanh(self.first.net.run(self.rows, x)[:, 0]).to(obs.dtype)


class NoisyPolicy(Policy):
    """A policy's actions plus Gaussian noise, clipped to [−1, 1]: online exploration. Its own
    seeded generator, so a trajectory depends on the seed alone."""

    def __init__(self, policy: Policy, sigma: float, seed: int):
        self.policy, self.sigma = policy, sigma
        self.gen = torch.Generator().manual_seed(seed)

    def act(self, obs: torch.Tensor) -> torch.Tensor:
        a = self.policy.act(obs)
        noise = torch.randn(a.shape, generator=self.gen, dtype=a.dtype)
        return (a + self.sigma * noise.to(a.device)).clamp(-1.0, 1.0)

    def reset(self) -> None:
        self.policy.reset()

    def observe(self, reward: torch.Tensor) -> None:
        self.policy.observe(reward)
