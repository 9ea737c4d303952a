"""Meta-BC: MAML with a behaviour-cloning loss in both loops (the paper's Meta-BC baseline).

Reference: Mitchell et al. 2021, §5 baselines; the authors' ``--imitation`` mode of
``src/macaw.py`` (``imitation_loss_on_batch``): the MACAW machinery — WT layers, learned
per-tensor inner lrs, one inner step on consecutive rows, outer step on uniform rows, losses
divided by the number of train tasks — with the Gaussian log-likelihood of the data's actions as
the only loss. No value function, no advantage head. It imitates whatever behaviour the
adaptation data shows, so it is only as good as that data.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from algorithms.base import Policy, PositiveFloat, PositiveInt, StackedAdaptLearner
from algorithms.batch import MetaBatch, Transitions, batch_part
from algorithms.networks import MetaMLP, NetState, gaussian_log_prob, inner_grads, inverse_softplus
from algorithms.policies import StatePolicy


@dataclass(frozen=True)
class MetaBCConfig:
    """Meta-BC hyperparameters (MACAW's, less everything that concerns values)."""

    width: PositiveInt = 100
    depth: PositiveInt = 3
    weight_transform: bool = True
    """WT layers as MACAW"""
    wt_latent: PositiveInt = 100
    action_sigma: float = 0.2
    """fixed σ of the Gaussian policy"""
    inner_steps: PositiveInt = 1
    test_inner_steps: PositiveInt = 1
    inner_lr: PositiveFloat = 1e-3
    learn_inner_lrs: bool = True
    first_order: bool = False
    policy_lr: PositiveFloat = 1e-4
    meta_lr: PositiveFloat = 1e-3
    """Adam lr of the learned inner lrs"""
    tasks_per_batch: PositiveInt = 5
    inner_batch: PositiveInt = 256
    outer_batch: PositiveInt = 256


class MetaBC(StackedAdaptLearner):
    name = "meta-bc"
    outer_rates = ("policy_lr",)
    Config = MetaBCConfig

    def __init__(self, obs_dim, act_dim, n_train_tasks, config=None, device="cpu", seed=0):
        super().__init__(obs_dim, act_dim, n_train_tasks, config, device, seed)
        cfg = self.config
        kind = "wt" if cfg.weight_transform else "bt"
        sizes = [obs_dim, *[cfg.width] * cfg.depth, act_dim]
        self.policy = MetaMLP(sizes, kind, latent=cfg.wt_latent).to(self.device)
        self.policy_lrs = torch.full(
            (self.policy.n_lr_slots,),
            inverse_softplus(cfg.inner_lr),
            device=self.device,
            requires_grad=cfg.learn_inner_lrs,
        )
        self.policy_opt = torch.optim.Adam(self.policy.parameters(), lr=cfg.policy_lr, fused=True)
        self.meta_opt = (
            torch.optim.Adam([self.policy_lrs], lr=cfg.meta_lr) if cfg.learn_inner_lrs else None
        )

    def _nll(self, state: NetState, tr: Transitions) -> torch.Tensor:
        """Per-task mean negative log-likelihood of the data's actions: [T]."""
        mean = torch.tanh(self.policy.run(state, tr.obs))
        return -gaussian_log_prob(mean, tr.action, self.config.action_sigma).mean(-1)

    def _adapt(self, tr: Transitions, steps: int, create_graph: bool) -> tuple[NetState, float]:
        lrs = F.softplus(self.policy_lrs)
        state = self.policy.state(tr.reward.shape[0])
        losses = []
        for i in range(steps):
            loss = self._nll(state, batch_part(tr, steps, i)).sum()
            state = state.step(inner_grads(loss, state, create_graph), lrs)
            losses.append(loss.item())
        return state, sum(losses) / len(losses)

    def meta_loss(self, batch: MetaBatch) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.config
        state, inner = self._adapt(batch.inner, cfg.inner_steps, not cfg.first_order)
        outer = self._nll(state, batch.outer)
        loss = outer.sum() / self.n_train_tasks
        return loss, {
            "train/inner_bc_loss": inner / batch.n_tasks,
            "train/outer_bc_loss": outer.mean().item(),
            "train/policy_inner_lr": F.softplus(self.policy_lrs).mean().item(),
        }

    def meta_train_step(self, batch: MetaBatch) -> dict[str, float]:
        loss, metrics = self.meta_loss(batch)
        opts = [o for o in (self.policy_opt, self.meta_opt) if o is not None]
        for opt in opts:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        self.policy.flush_deferred_grads()
        for opt in opts:
            opt.step()
        return metrics

    def adapt_stacked(self, tr: Transitions) -> list[Policy]:
        """The test-time inner steps of ``T`` tasks in one batched pass."""
        with torch.enable_grad():
            state, _ = self._adapt(tr, self.config.test_inner_steps, create_graph=False)
        return [StatePolicy(self.policy, s) for s in state.detach().split()]

    def prior_policy(self) -> Policy:
        with torch.no_grad():
            return StatePolicy(self.policy, self.policy.state(1).detach())
