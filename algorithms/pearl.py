"""Offline PEARL: probabilistic context variables with SAC, trained from fixed buffers only.

Reference: Rakelly et al., ICML 2019 ("Efficient Off-Policy Meta-RL via Probabilistic Context
Variables") and oyster (``rlkit/torch/sac/sac.py`` ``_take_step``, ``agent.py``,
``configs/default.py``). As the MACAW paper ran it, every batch — SAC's and the encoder's
context — comes from the offline buffers, and at test time the posterior over the latent task
variable is inferred from the adaptation set; the policy then acts with the posterior mean.

Per step, for each sampled task: the encoder maps every context transition to a Gaussian factor,
their product is q(z|c); z ~ q is appended to the observation of the policy π(a|s,z), twin
Q(s,a,z) and V(s,z). Losses (oyster): Q to r·scale + γ(1−d)·V̄(s′,z) (the encoder learns through
the Q loss, plus KL(q‖N(0,I))·0.1); V to min Q(s,π,z) − log π; π to log π − min Q, with oyster's
small mean/log-σ penalties; V̄ is a Polyak copy of V.

Contexts: the harness's inner batch drawn i.i.d. from each task's buffer (``inner_sampling =
"iid"``), as oyster's non-recurrent encoder samples its context and as the test-time adaptation
set is drawn; ``"window"`` gives consecutive rows instead.

Deviations *(ours)*: the context comes from the task's whole offline buffer rather than oyster's
separate encoder buffer of recent data (offline, there is no recent data).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from algorithms.base import (
    OfflineMetaLearner,
    OnlineConfig,
    OnlineFinetuner,
    Policy,
    PositiveFloat,
    PositiveInt,
)
from algorithms.batch import MetaBatch, Transitions
from algorithms.networks import soft_update_, tanh_gaussian_sample
from algorithms.policies import LatentPolicy


@dataclass(frozen=True)
class PEARLConfig:
    """oyster's ``configs/default.py`` defaults."""

    latent_size: PositiveInt = 5
    width: PositiveInt = 300
    """units per layer of policy, Q and V (3 layers)"""
    depth: PositiveInt = 3
    encoder_width: PositiveInt = 200
    """units per layer of the context encoder (oyster: 3 × 200)"""
    kl_lambda: float = 0.1
    """weight of KL(q(z|c) ‖ N(0, I)) (information bottleneck)"""
    reward_scale: float = 5.0
    """5 by default; oyster's per-env configs change it"""
    discount: float = 0.99
    soft_target_tau: float = 0.005
    policy_lr: PositiveFloat = 3e-4
    qf_lr: PositiveFloat = 3e-4
    vf_lr: PositiveFloat = 3e-4
    context_lr: PositiveFloat = 3e-4
    policy_mean_reg: float = 1e-3
    policy_std_reg: float = 1e-3
    use_next_obs_in_context: bool = False
    """context = (s, a, r, s′) instead of (s, a, r) (oyster's walker setting)"""
    tasks_per_batch: PositiveInt = 16
    """oyster's meta-batch"""
    inner_batch: PositiveInt = 64
    """context transitions per task: oyster's default 64; its per-env configs use 100 for
    cheetah-vel and walker, 256 for cheetah-dir and ant-dir (the suites set those)"""
    inner_sampling: Literal["window", "iid"] = "iid"
    """the context: i.i.d. rows of each task's buffer (oyster), or one window of consecutive rows"""
    outer_batch: PositiveInt = 256
    """SAC batch per task"""


def _mlp(inp: int, out: int, width: int, depth: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.Linear(inp if i == 0 else width, width), nn.ReLU()]
    layers.append(nn.Linear(width, out))
    return nn.Sequential(*layers)


def _oyster_init_(net: nn.Sequential, last_bound: float = 3e-3, hidden_bias: float = 0.1):
    """rlkit's Mlp init, which oyster's encoder uses: hidden biases 0.1, the last layer's
    weights and biases U(±3e-3) (hidden weights keep PyTorch's fan-in uniform)."""
    linears = [m for m in net if isinstance(m, nn.Linear)]
    with torch.no_grad():
        for m in linears[:-1]:
            m.bias.fill_(hidden_bias)
        linears[-1].weight.uniform_(-last_bound, last_bound)
        linears[-1].bias.uniform_(-last_bound, last_bound)
    return net


class OfflinePEARL(OfflineMetaLearner):
    name = "pearl"
    outer_rates = ("policy_lr", "qf_lr", "vf_lr", "context_lr")
    Config = PEARLConfig

    def __init__(self, obs_dim, act_dim, n_train_tasks, config=None, device="cpu", seed=0):
        super().__init__(obs_dim, act_dim, n_train_tasks, config, device, seed)
        cfg = self.config
        w, d, zdim = cfg.width, cfg.depth, cfg.latent_size
        ctx = 2 * obs_dim + act_dim + 1 if cfg.use_next_obs_in_context else obs_dim + act_dim + 1
        self.encoder = _oyster_init_(_mlp(ctx, 2 * zdim, cfg.encoder_width, d)).to(self.device)
        self.policy = _mlp(obs_dim + zdim, 2 * act_dim, w, d).to(self.device)
        self.qf1 = _mlp(obs_dim + act_dim + zdim, 1, w, d).to(self.device)
        self.qf2 = _mlp(obs_dim + act_dim + zdim, 1, w, d).to(self.device)
        self.vf = _mlp(obs_dim + zdim, 1, w, d).to(self.device)
        self.vf_target = copy.deepcopy(self.vf).requires_grad_(False)
        self.policy_opt = torch.optim.Adam(self.policy.parameters(), lr=cfg.policy_lr, foreach=True)
        self.qf_opt = torch.optim.Adam(
            [*self.qf1.parameters(), *self.qf2.parameters()], lr=cfg.qf_lr, foreach=True
        )
        self.vf_opt = torch.optim.Adam(self.vf.parameters(), lr=cfg.vf_lr, foreach=True)
        self.context_opt = torch.optim.Adam(
            self.encoder.parameters(), lr=cfg.context_lr, foreach=True
        )

    # -- context → posterior -------------------------------------------------------------------
    def _context(self, tr: Transitions) -> torch.Tensor:
        parts = [tr.obs, tr.action, tr.reward.unsqueeze(-1)]
        if self.config.use_next_obs_in_context:
            parts.append(tr.next_obs)
        return torch.cat(parts, -1)  # [T, N, ctx]

    def posterior(self, tr: Transitions) -> tuple[torch.Tensor, torch.Tensor]:
        """Product of per-transition Gaussians: mean and variance, each [T, latent]."""
        mu, raw = self.encoder(self._context(tr)).chunk(2, -1)
        var = F.softplus(raw).clamp(min=1e-7)
        post_var = 1.0 / (1.0 / var).sum(1)
        post_mu = post_var * (mu / var).sum(1)
        return post_mu, post_var

    # -- SAC pieces ----------------------------------------------------------------------------
    def _pi(self, obs_z: torch.Tensor):
        """Tanh-Gaussian sample, its log-prob, and the pre-tanh mean / log σ."""
        mean, log_std = self.policy(obs_z).chunk(2, -1)
        log_std = log_std.clamp(-20.0, 2.0)
        a, logp = tanh_gaussian_sample(mean, log_std)
        return a, logp, mean, log_std

    def meta_train_step(self, batch: MetaBatch) -> dict[str, float]:
        cfg = self.config
        tr = batch.outer  # [T, B, ...] SAC batch
        T, B = tr.reward.shape
        mu, var = self.posterior(batch.inner)
        z = mu + var.sqrt() * torch.randn_like(mu)  # [T, latent] (reparameterised)
        kl = 0.5 * (var + mu.pow(2) - 1.0 - var.log()).sum(-1).sum()
        zb = z.unsqueeze(1).expand(T, B, -1)

        obs_z = torch.cat([tr.obs, zb], -1)
        q_in = torch.cat([tr.obs, tr.action, zb], -1)
        q1, q2 = self.qf1(q_in).squeeze(-1), self.qf2(q_in).squeeze(-1)
        with torch.no_grad():
            v_next = self.vf_target(torch.cat([tr.next_obs, zb], -1)).squeeze(-1)
            q_target = tr.reward * cfg.reward_scale + (1.0 - tr.done) * cfg.discount * v_next
        q_loss = (q1 - q_target).pow(2).mean() + (q2 - q_target).pow(2).mean()
        self.context_opt.zero_grad(set_to_none=True)
        self.qf_opt.zero_grad(set_to_none=True)
        (q_loss + cfg.kl_lambda * kl).backward()  # the encoder learns through Q and the KL
        self.qf_opt.step()
        self.context_opt.step()

        obs_zd = obs_z.detach()
        zd = zb.detach()
        a, logp, mean, log_std = self._pi(obs_zd)
        q_new_in = torch.cat([tr.obs, a, zd], -1)
        # the Q nets are frozen for this pass: only the policy learns through it, and their
        # weight gradients (discarded anyway) would cost two of the step's ~19 network passes
        self.qf1.requires_grad_(False)
        self.qf2.requires_grad_(False)
        min_q = torch.min(self.qf1(q_new_in), self.qf2(q_new_in)).squeeze(-1)
        self.qf1.requires_grad_(True)
        self.qf2.requires_grad_(True)
        v = self.vf(obs_zd).squeeze(-1)
        v_loss = (v - (min_q - logp).detach()).pow(2).mean()
        self.vf_opt.zero_grad(set_to_none=True)
        v_loss.backward()
        self.vf_opt.step()
        soft_update_(self.vf_target, self.vf, cfg.soft_target_tau)

        policy_loss = (logp - min_q).mean()
        policy_loss = policy_loss + cfg.policy_mean_reg * mean.pow(2).mean()
        policy_loss = policy_loss + cfg.policy_std_reg * log_std.pow(2).mean()
        self.policy_opt.zero_grad(set_to_none=True)
        policy_loss.backward()
        self.policy_opt.step()
        return {
            "train/q_loss": q_loss.item(),
            "train/v_loss": v_loss.item(),
            "train/policy_loss": policy_loss.item(),
            "train/kl": kl.item() / T,
            "train/z_var": var.mean().item(),
        }

    def adapt(self, support: Transitions) -> Policy:
        with torch.no_grad():
            mu, _ = self.posterior(support.to(self.device).map(lambda x: x.unsqueeze(0)))
        return LatentPolicy(self.policy, mu[0])

    def prior_policy(self) -> Policy:
        """Acts with the prior mean z = 0 (no context seen)."""
        return LatentPolicy(self.policy, torch.zeros(self.config.latent_size, device=self.device))

    def online_finetuner(self, support: Transitions, config: OnlineConfig) -> OnlineFinetuner:
        return PEARLOnline(self, support)


class PEARLOnline(OnlineFinetuner):
    """Offline PEARL online, as the MACAW paper compares it: no gradient steps; the posterior
    over the task latent is recomputed from the offline adaptation set and every online
    transition after each round, and exploration acts with a latent sampled from
    the posterior (PEARL's posterior sampling)."""

    def __init__(self, learner: OfflinePEARL, support: Transitions) -> None:
        self.learner, self.support = learner, support
        self.gen = torch.Generator().manual_seed(int(torch.randint(2**62, (1,))))
        self._observe(support)

    def _observe(self, context: Transitions) -> None:
        with torch.no_grad():
            tr = context.to(self.learner.device).map(lambda x: x.unsqueeze(0))
            mu, var = self.learner.posterior(tr)
        self.mu, self.var = mu[0], var[0]

    def policy(self) -> Policy:
        return LatentPolicy(self.learner.policy, self.mu)

    def explore(self) -> Policy:
        noise = torch.randn(self.mu.shape, generator=self.gen).to(self.mu.device)
        return LatentPolicy(self.learner.policy, self.mu + self.var.sqrt() * noise)

    def update(self, buffer: Transitions, round_index: int) -> dict[str, float]:
        self._observe(Transitions.cat([self.support, buffer]))
        return {"online/z_var": self.var.mean().item()}
