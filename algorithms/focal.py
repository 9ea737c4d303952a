"""FOCAL: a deterministic task encoder trained by distance metric learning, decoupled from a
behaviour-regularised actor-critic (BRAC) that acts on the detached task embedding.

Reference: Li, Yang, Luo, ICLR 2021 ("FOCAL: Efficient Fully-Offline Meta-Reinforcement Learning
via Distance Metric Learning and Behavior Regularization") and the authors' code
(LanqingLi1993/FOCAL-ICLR: ``rlkit/torch/sac/sac.py`` ``_take_step`` and ``z_loss``,
``rlkit/torch/sac/agent.py``, ``rlkit/torch/brac/divergences.py``, ``configs/default.py``).

Per step, for each sampled task:

1. **Encoder** (trained by the metric loss alone): each context transition (s, a, r[, s′]) is
   embedded and squashed by tanh (the authors' ``MlpEncoder(output_activation=torch.tanh)``:
   the paper's metric loss lives on a bounded embedding space; unbounded, its inverse-power
   term is lowered by scaling every embedding up); the task embedding z is their mean.
   Same-task embeddings are pulled together (√(mean‖zᵢ − zᵢ′‖² + ε)), different-task ones
   pushed apart by the inverse-power term 1 / (mean‖zᵢ − zⱼ‖² + 100ε); weight 10.
2. **Dual critic** c(s, a, z) (``c_iter`` = 3 updates): the dual form of the divergence between
   the policy's and the data's actions (KL by default: −softplus(c(s, a_b)) +
   log softplus(c(s, a_π)) + 1), with BRAC's gradient penalty.
3. **Actor-critic on z.detach()** (SAC with a V net, as PEARL): Q to r·scale + γ(1−d)V̄(s′),
   minus α·D inside the target only with ``use_value_penalty``; V to min Q(s, π) − log π; π to
   log π − min Q + α·D, where D is the dual estimate of the divergence; α adapts towards a
   target divergence of 0.05.

At test time z is the mean embedding of the adaptation set; the policy acts with its mean.

**Settings as the authors' paper-reproducing HEAD** (their commit "configs for correctly
reproducing Fig 3 in the camera-ready"): ``configs/default.py`` has ``use_brac=True,
use_value_penalty=False``, α from 500 to at most 2000; per family (the suites set these):
cheetah-dir — the value penalty on, a meta-batch of 4 draws of its 2 tasks with replacement,
context 256; cheetah-vel — α from 50, context 100; walker — α from 50, at most 10⁴, next
observations in the context, context 100; point-robot — reward scale 100. Their two-task
ant-dir (forward/backward) uses α 10⁶–5·10⁶ with the value penalty; our ant-dir has 50
directions, a multi-task family, so it takes the authors' multi-task rule (cheetah-vel's and
walker's: no value penalty, α from 50, at most the default 2000). Contexts are drawn i.i.d. from
each task's buffer, as the authors' replay buffers are sampled; networks start from rlkit's
initialisation, the policy's log-std is clamped to [−20, 0].

Deviations *(ours)*:

- positive pairs: besides two slots of the same task (which the authors' draws with
  replacement give by chance), every slot's context is split in two halves whose embeddings
  are a positive pair — each meta-batch has positives;
- BRAC's gradient penalty is on ‖∂c/∂a‖ at interpolated actions, as in BRAC (Wu et al. 2019);
  the authors' port penalises the critic's *value* there instead;
- the dual critic's extra updates reuse the step's batch with fresh policy samples (the authors
  draw a new SAC batch for each); the divergence in the policy loss is re-estimated after the
  critic's update (the authors reuse the pre-update graph, which current PyTorch refuses);
- the prior policy acts with z = 0; observations are not normalised (the authors' released
  data was divided by each dimension's maximum; ours is generated and used as the
  environment gives it, the same for every learner).
  (The authors' ``dropout=0.1`` is never read by their encoder, so there is none here either.)
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from algorithms.base import OfflineMetaLearner, Policy, PositiveFloat, PositiveInt
from algorithms.batch import MetaBatch, Transitions
from algorithms.networks import mlp, rlkit_init_, soft_update_, tanh_gaussian_sample
from algorithms.policies import LatentPolicy

EPS = 1e-8


def _kl_dual(logits_p: torch.Tensor, logits_b: torch.Tensor) -> torch.Tensor:
    """Dual (Fenchel) estimate of KL(π ‖ β) from critic logits at policy and data actions."""
    return -F.softplus(logits_b) + torch.log(F.softplus(logits_p) + EPS) + 1.0


def _w_dual(logits_p: torch.Tensor, logits_b: torch.Tensor) -> torch.Tensor:
    """Dual estimate of the Wasserstein distance (a 1-Lipschitz critic by the penalty)."""
    return logits_p - logits_b


DIVERGENCES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "kl": _kl_dual,
    "w": _w_dual,
}


@dataclass(frozen=True)
class FOCALConfig:
    """The authors' ``configs/default.py`` values at HEAD (their per-env files change the
    context batch, α, the value penalty and the meta-batch; the suites set those per family)."""

    latent_size: PositiveInt = 20
    width: PositiveInt = 256
    """units per layer of policy, Q, V and dual critic (net_size)"""
    depth: PositiveInt = 3
    encoder_width: PositiveInt = 200
    reward_scale: float = 5.0
    discount: float = 0.99
    soft_target_tau: float = 0.005
    policy_lr: PositiveFloat = 3e-4
    qf_lr: PositiveFloat = 3e-4
    vf_lr: PositiveFloat = 3e-4
    context_lr: PositiveFloat = 3e-4
    c_lr: PositiveFloat = 1e-4
    """dual critic's learning rate"""
    c_iter: PositiveInt = 3
    """dual critic updates per step"""
    divergence: Literal["kl", "w"] = "kl"
    use_brac: bool = True
    """the divergence penalty in the policy loss (the paper's method)"""
    use_value_penalty: bool = False
    """also subtract α·D in the Bellman target (only with ``use_brac``; the authors turn it on
    for their two-task cheetah-dir and ant-dir only)"""
    train_alpha: bool = True
    alpha_init: float = 500.0
    alpha_max: float = 2000.0
    alpha_lr: float = 1.0
    target_divergence: float = 0.05
    gradient_penalty: float = 5.0
    """weight of the dual critic's gradient penalty (BRAC's γ)"""
    z_loss_weight: float = 10.0
    max_entropy: bool = True
    """SAC's −log π in the value target and the policy loss"""
    policy_mean_reg: float = 1e-3
    policy_std_reg: float = 1e-3
    use_next_obs_in_context: bool = False
    log_std_max: float = 0.0
    """upper clamp of the policy's log-std (the authors' ``LOG_SIG_MAX``)"""
    tasks_per_batch: PositiveInt = 16
    """meta_batch"""
    tasks_with_replacement: bool = False
    """draw the meta-batch's tasks with replacement (the authors' 4 draws of 2 tasks)"""
    inner_batch: PositiveInt = 64
    """context transitions per task (embedding_batch_size; 100 in the cheetah-vel config)"""
    inner_sampling: Literal["window", "iid"] = "iid"
    """the context: i.i.d. rows of each task's buffer, as the authors sample theirs"""
    outer_batch: PositiveInt = 256
    """actor-critic batch per task"""


class FOCAL(OfflineMetaLearner):
    name = "focal"
    outer_rates = ("policy_lr", "qf_lr", "vf_lr", "context_lr", "c_lr")
    Config = FOCALConfig

    def __init__(self, obs_dim, act_dim, n_train_tasks, config=None, device="cpu", seed=0):
        super().__init__(obs_dim, act_dim, n_train_tasks, config, device, seed)
        cfg = self.config
        w, d, zdim = cfg.width, cfg.depth, cfg.latent_size
        ctx = 2 * obs_dim + act_dim + 1 if cfg.use_next_obs_in_context else obs_dim + act_dim + 1
        dev = self.device
        # rlkit's initialisation, as the authors' networks; the encoder's output squashed by tanh
        self.encoder = torch.nn.Sequential(
            *rlkit_init_(mlp(ctx, zdim, cfg.encoder_width, d)), torch.nn.Tanh()
        ).to(dev)
        self.policy = rlkit_init_(mlp(obs_dim + zdim, 2 * act_dim, w, d), 1e-3).to(dev)
        self.qf1 = rlkit_init_(mlp(obs_dim + act_dim + zdim, 1, w, d)).to(dev)
        self.qf2 = rlkit_init_(mlp(obs_dim + act_dim + zdim, 1, w, d)).to(dev)
        self.vf = rlkit_init_(mlp(obs_dim + zdim, 1, w, d)).to(dev)
        self.vf_target = copy.deepcopy(self.vf).requires_grad_(False)
        # BRAC's dual critic c
        self.critic = rlkit_init_(mlp(obs_dim + act_dim + zdim, 1, w, d)).to(dev)
        self.alpha_raw = torch.tensor(float(cfg.alpha_init), device=dev)  # α, unclipped
        self.policy_opt = torch.optim.Adam(self.policy.parameters(), lr=cfg.policy_lr, foreach=True)
        self.qf_opt = torch.optim.Adam(
            [*self.qf1.parameters(), *self.qf2.parameters()], lr=cfg.qf_lr, foreach=True
        )
        self.vf_opt = torch.optim.Adam(self.vf.parameters(), lr=cfg.vf_lr, foreach=True)
        self.context_opt = torch.optim.Adam(
            self.encoder.parameters(), lr=cfg.context_lr, foreach=True
        )
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=cfg.c_lr, foreach=True)
        self._dual = DIVERGENCES[cfg.divergence]

    # -- the task embedding ----------------------------------------------------------------------
    def _context(self, tr: Transitions) -> torch.Tensor:
        parts = [tr.obs, tr.action, tr.reward.unsqueeze(-1)]
        if self.config.use_next_obs_in_context:
            parts.append(tr.next_obs)
        return torch.cat(parts, -1)

    def embed(self, tr: Transitions) -> torch.Tensor:
        """Mean embedding of each task's context: [T, N, …] → [T, latent]."""
        return self.encoder(self._context(tr)).mean(-2)

    @staticmethod
    def metric_loss(
        z_a: torch.Tensor,
        z_b: torch.Tensor,
        labels: torch.Tensor | None = None,
        eps: float = 1e-3,
    ) -> torch.Tensor:
        """The distance metric loss over a meta-batch: z_a, z_b [T, latent] are two halves'
        embeddings of T task slots (positive pairs); ``labels`` [T] name each slot's task (the
        same task drawn twice is also a positive pair; default: all different). Every pair of
        slots of different tasks is a negative pair, pushed apart by the inverse-power term."""
        T = z_a.shape[0]
        labels = torch.arange(T, device=z_a.device) if labels is None else labels
        halves = (z_a - z_b).pow(2).mean(-1)  # [T]
        z = 0.5 * (z_a + z_b)
        i, j = torch.triu_indices(T, T, offset=1, device=z.device)
        d2 = (z[i] - z[j]).pow(2).mean(-1)
        same = labels[i] == labels[j]
        pos = torch.sqrt(torch.cat([halves, d2[same]]) + eps).mean()
        if not bool((~same).any()):
            return pos
        neg = (1.0 / (d2[~same] + 100 * eps)).mean()
        return pos + neg

    # -- BRAC pieces -----------------------------------------------------------------------------
    def _pi(self, obs_z: torch.Tensor):
        mean, log_std = self.policy(obs_z).chunk(2, -1)
        log_std = log_std.clamp(-20.0, self.config.log_std_max)
        a, logp = tanh_gaussian_sample(mean, log_std)
        return a, logp, mean, log_std

    def _divergence(self, obs_z_parts, a_p: torch.Tensor, a_b: torch.Tensor) -> torch.Tensor:
        obs, z = obs_z_parts
        logits_p = self.critic(torch.cat([obs, a_p, z], -1)).squeeze(-1)
        logits_b = self.critic(torch.cat([obs, a_b, z], -1)).squeeze(-1)
        return self._dual(logits_p, logits_b)

    def _critic_step(self, obs: torch.Tensor, z: torch.Tensor, a_b: torch.Tensor) -> float:
        """One update of the dual critic: maximise the dual estimate, with BRAC's penalty on
        ‖∂c/∂a‖ > 1 at actions between the policy's and the data's."""
        cfg = self.config
        with torch.no_grad():
            a_p, *_ = self._pi(torch.cat([obs, z], -1))
        est = self._divergence((obs, z), a_p, a_b).mean()
        u = torch.rand(*a_b.shape[:-1], 1, device=a_b.device)
        a_mix = (a_p + u * (a_b - a_p)).requires_grad_(True)
        c_mix = self.critic(torch.cat([obs, a_mix, z], -1))
        (grad,) = torch.autograd.grad(c_mix.sum(), a_mix, create_graph=True)
        slope = torch.sqrt(EPS + grad.pow(2).sum(-1))
        penalty = cfg.gradient_penalty * F.relu(slope - 1.0).pow(2).mean()
        loss = -est + penalty
        self.critic_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.critic_opt.step()
        return loss.item()

    @property
    def alpha(self) -> torch.Tensor:
        return self.alpha_raw.clamp(0.0, self.config.alpha_max)

    # -- one step ----------------------------------------------------------------------------------
    def meta_train_step(self, batch: MetaBatch) -> dict[str, float]:
        cfg = self.config
        tr = batch.outer  # [T, B, ...]
        T, B = tr.reward.shape

        # 1. encoder, by the metric loss alone
        half = batch.inner.reward.shape[1] // 2
        emb = self.encoder(self._context(batch.inner))  # [T, N, latent]
        z_a, z_b = emb[:, :half].mean(1), emb[:, half:].mean(1)
        z_loss = cfg.z_loss_weight * self.metric_loss(z_a, z_b, batch.task_ids)
        self.context_opt.zero_grad(set_to_none=True)
        z_loss.backward()
        self.context_opt.step()
        z = emb.mean(1).detach()  # the actor-critic sees the embedding, never its gradient
        zb = z.unsqueeze(1).expand(T, B, -1)

        # 2. dual critic
        for _ in range(cfg.c_iter):
            c_loss = self._critic_step(tr.obs, zb, tr.action)

        # 3. actor-critic on z
        obs_z = torch.cat([tr.obs, zb], -1)
        a, logp, mean, log_std = self._pi(obs_z)
        self.critic.requires_grad_(False)  # only the policy learns through D
        div = self._divergence((tr.obs, zb), a, tr.action)  # [T, B]
        self.critic.requires_grad_(True)
        alpha = self.alpha if cfg.use_brac else torch.zeros((), device=self.device)

        q_in = torch.cat([tr.obs, tr.action, zb], -1)
        q1, q2 = self.qf1(q_in).squeeze(-1), self.qf2(q_in).squeeze(-1)
        with torch.no_grad():
            v_next = self.vf_target(torch.cat([tr.next_obs, zb], -1)).squeeze(-1)
            if cfg.use_brac and cfg.use_value_penalty:
                v_next = v_next - alpha * div
            q_target = tr.reward * cfg.reward_scale + (1.0 - tr.done) * cfg.discount * v_next
        q_loss = (q1 - q_target).pow(2).mean() + (q2 - q_target).pow(2).mean()
        self.qf_opt.zero_grad(set_to_none=True)
        q_loss.backward()
        self.qf_opt.step()

        q_new_in = torch.cat([tr.obs, a, zb], -1)
        self.qf1.requires_grad_(False)
        self.qf2.requires_grad_(False)
        min_q = torch.min(self.qf1(q_new_in), self.qf2(q_new_in)).squeeze(-1)
        self.qf1.requires_grad_(True)
        self.qf2.requires_grad_(True)
        entropy = logp if cfg.max_entropy else torch.zeros_like(logp)
        v = self.vf(obs_z).squeeze(-1)
        v_loss = (v - (min_q - entropy).detach()).pow(2).mean()
        self.vf_opt.zero_grad(set_to_none=True)
        v_loss.backward()
        self.vf_opt.step()
        soft_update_(self.vf_target, self.vf, cfg.soft_target_tau)

        policy_loss = (entropy - min_q + alpha.detach() * div).mean()
        policy_loss = policy_loss + cfg.policy_mean_reg * mean.pow(2).mean()
        policy_loss = policy_loss + cfg.policy_std_reg * log_std.pow(2).mean()
        self.policy_opt.zero_grad(set_to_none=True)
        policy_loss.backward()
        self.policy_opt.step()

        div_mean = div.detach().mean()
        if cfg.train_alpha:  # α rises while the divergence exceeds its target, falls below it
            self.alpha_raw += cfg.alpha_lr * (div_mean - cfg.target_divergence)
        return {
            "train/z_loss": z_loss.item(),
            "train/c_loss": c_loss,
            "train/q_loss": q_loss.item(),
            "train/v_loss": v_loss.item(),
            "train/policy_loss": policy_loss.item(),
            "train/divergence": div_mean.item(),
            "train/alpha": self.alpha.item(),
            "train/z_norm": z.norm(dim=-1).mean().item() / math.sqrt(cfg.latent_size),
        }

    def adapt(self, support: Transitions) -> Policy:
        with torch.no_grad():
            z = self.embed(support.to(self.device).map(lambda x: x.unsqueeze(0)))
        return LatentPolicy(self.policy, z[0])

    def prior_policy(self) -> Policy:
        """Acts with z = 0 (no context seen)."""
        return LatentPolicy(self.policy, torch.zeros(self.config.latent_size, device=self.device))
