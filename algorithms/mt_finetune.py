"""MT+FT: multi-task offline RL, then fine-tuning on the adaptation set (the paper's baseline).

Reference: Mitchell et al. 2021, §5; the authors' ``--multitask`` mode of ``src/macaw.py``
(``train_step`` multitask branch, ``eval_multitask``) with ``config/alg/multitask_standard.json``.
One value function and one policy for all train tasks, observations concatenated with a one-hot
task id; MC value regression and AWR (advantage from the bootstrapped MC estimate) with no inner
loop; 3×100 bias-transform layers, no WT. Test time: the task id is all zeros, and copies of V
and π are fine-tuned for 20 Adam steps (value lr 1e-5, policy lr 1e-3) on the adaptation set,
each step a value step then a policy step; the score is after step 20.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from algorithms.base import Policy, PositiveFloat, PositiveInt, StackedAdaptLearner
from algorithms.batch import MetaBatch, Transitions
from algorithms.networks import BTState, MetaMLP, NetState, awr_weights, gaussian_log_prob
from algorithms.optim import LeanAdam
from algorithms.policies import StatePolicy


@dataclass(frozen=True)
class MTFinetuneConfig:
    """MT+FT hyperparameters; defaults from the authors' ``multitask_standard.json``."""

    width: PositiveInt = 100
    depth: PositiveInt = 3
    action_sigma: float = 0.2
    awr_temperature: float = 1.0
    max_weight: float = 20.0
    value_lr: PositiveFloat = 1e-5
    policy_lr: PositiveFloat = 1e-4
    finetune_steps: PositiveInt = 20
    """Adam steps on the adaptation set at test time (each: value then policy)"""
    finetune_value_lr: PositiveFloat = 1e-5
    finetune_policy_lr: PositiveFloat = 1e-3
    tasks_per_batch: PositiveInt = 5
    inner_batch: PositiveInt = 256
    """unused by MT+FT's training (no inner loop), kept so the harness batches all alike"""
    outer_batch: PositiveInt = 256


class MTFinetune(StackedAdaptLearner):
    name = "mt-ft"
    outer_rates = ("policy_lr", "value_lr")
    Config = MTFinetuneConfig

    def __init__(self, obs_dim, act_dim, n_train_tasks, config=None, device="cpu", seed=0):
        super().__init__(obs_dim, act_dim, n_train_tasks, config, device, seed)
        cfg = self.config
        hidden = [cfg.width] * cfg.depth
        inp = obs_dim + n_train_tasks
        self.value = MetaMLP([inp, *hidden, 1], "bt").to(self.device)
        self.policy = MetaMLP([inp, *hidden, act_dim], "bt").to(self.device)
        self.value_opt = torch.optim.Adam(self.value.parameters(), lr=cfg.value_lr, foreach=True)
        self.policy_opt = torch.optim.Adam(self.policy.parameters(), lr=cfg.policy_lr, foreach=True)

    # -- losses (shared by training and fine-tuning) ------------------------------------------
    def _run(self, net: MetaMLP, state: NetState, obs, task_ids) -> torch.Tensor:
        """obs [T, B, d] with each row's one-hot id (zeros if None) → ``net``'s output
        [T, B, out]. A state of T tasks (fine-tuned copies) maps task t's rows with its own
        weights; the shared weights (a one-task state) take all T·B rows in one product."""
        T, B, _ = obs.shape
        onehot = obs.new_zeros(T, B, self.n_train_tasks)
        if task_ids is not None:
            onehot[torch.arange(T), :, task_ids] = 1.0
        x = torch.cat([obs, onehot], -1)
        if state.n_tasks == T:
            return net.run(state, x)
        return net.run(state, x.reshape(1, T * B, -1)).reshape(T, B, -1)

    def _value_loss(self, value: NetState, tr: Transitions, task_ids) -> torch.Tensor:
        """Per-task MSE of V to the Monte-Carlo return (no bootstrap in multitask mode): [T]."""
        v = self._run(self.value, value, tr.obs, task_ids).squeeze(-1)
        return (v - tr.mc_return).pow(2).mean(-1)

    def _policy_loss(self, policy: NetState, value: NetState, tr: Transitions, task_ids):
        """Per-task AWR loss with A = mc + γ^(T−t)·V(s_T) − V(s): [T]."""
        cfg = self.config
        with torch.no_grad():
            v_end = self._run(self.value, value, tr.terminal_obs, task_ids).squeeze(-1)
            v = self._run(self.value, value, tr.obs, task_ids).squeeze(-1)
            adv = tr.mc_return + tr.terminal_discount * v_end - v
            w = awr_weights(adv, cfg.awr_temperature, cfg.max_weight)
        mean = self._run(self.policy, policy, tr.obs, task_ids)
        logp = gaussian_log_prob(torch.tanh(mean), tr.action, cfg.action_sigma)
        return -(w * logp).mean(-1)

    # -- the interface -------------------------------------------------------------------------
    def meta_train_step(self, batch: MetaBatch) -> dict[str, float]:
        tr, ids = batch.outer, batch.task_ids
        v_loss = self._value_loss(self.value.state(1), tr, ids)
        self.value_opt.zero_grad(set_to_none=True)
        (v_loss.sum() / self.n_train_tasks).backward()
        self.value_opt.step()
        p_loss = self._policy_loss(self.policy.state(1), self.value.state(1), tr, ids)
        self.policy_opt.zero_grad(set_to_none=True)
        (p_loss.sum() / self.n_train_tasks).backward()
        self.policy_opt.step()
        return {"train/value_loss": v_loss.mean().item(), "train/policy_loss": p_loss.mean().item()}

    def adapt_stacked(self, tr: Transitions) -> list[Policy]:
        """Fine-tune a copy of V and π per task, every task's copies in one batched pass: the
        copies are stacked ``[T, …]`` leaves, the per-task losses summed (each copy sees only its
        own) and Adam is element-wise, so this is T independent fine-tunings."""
        cfg, T = self.config, tr.reward.shape[0]
        value, v_leaves = _copies(self.value, T)
        policy, p_leaves = _copies(self.policy, T)
        v_opt = LeanAdam(v_leaves, lr=cfg.finetune_value_lr)
        p_opt = LeanAdam(p_leaves, lr=cfg.finetune_policy_lr)
        with torch.enable_grad():
            for _ in range(cfg.finetune_steps):
                v_opt.zero_grad()
                self._value_loss(value(), tr, None).sum().backward()
                v_opt.step()
                p_opt.zero_grad()
                self._policy_loss(policy(), value(), tr, None).sum().backward()
                p_opt.step()
        return [  # task id: all zeros
            StatePolicy(self.policy, s, self.n_train_tasks) for s in policy().detach().split()
        ]

    def prior_policy(self) -> Policy:
        return StatePolicy(self.policy, self.policy.state(1), self.n_train_tasks)


def _copies(net: MetaMLP, T: int):
    """``T`` trainable copies of a BT network's parameters, stacked ``[T, …]``: the leaves to
    optimise, and a function building their current :class:`NetState`."""
    layers = [m.state(T) for m in net.trunk]
    leaves = [[x.detach().clone().requires_grad_() for x in (s.W, s.bl, s.b, s.M)] for s in layers]
    return (lambda: NetState([BTState(*p) for p in leaves])), [x for p in leaves for x in p]
