"""MACAW: Meta-Actor Critic with Advantage Weighting (Mitchell et al., ICML 2021).

Reference: arXiv 2008.06043 and the authors' code (github.com/eric-mitchell/macaw, ``src/macaw.py``
``train_step`` / ``eval_macaw``, config ``config/alg/standard.json``). Every detail kept
here: protocol §4. One meta-iteration, for each sampled train task (all tasks at once, see
``algorithms/networks.py``):

1. inner value step (SGD, learned per-tensor lrs) on MSE(V(s), mc_return) — pure Monte Carlo;
2. a target value net = 0.9·(pre-adaptation V) + 0.1·(adapted V′), detached;
3. outer value loss MSE(V′(s), mc_return + γ^(T−t)·V_target(s_T)) on the outer batch;
4. advantages A = mc_return + γ^(T−t)·V′(s_T) − V′(s) (no gradient); AWR weights
   exp(min(standardise(A)/T, ln 20));
5. inner policy step on mean(−w·log π(a|s) + λ·(Â(s,a) − A)²), λ = softplus(c) learned;
6. outer policy loss: plain AWR with the adapted policy on the outer batch;
7. outer losses divided by the number of train tasks; second-order gradients; Adam with
   value 1e-5, policy 1e-4, learned lrs and c 1e-3; no gradient clipping.

Test time: one value step and one policy step on the adaptation set.

Deviations: none in the maths. The WT inner step is computed in low-rank form (same function,
far less memory traffic — see ``networks.py``), all tasks of a meta-batch are adapted in one
batched pass instead of a Python loop with ``higher``, and the last inner policy step leaves the
advantage head unadapted, since nothing reads the adapted head (same meta-gradient, tested).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from algorithms.base import (
    OnlineConfig,
    OnlineFinetuner,
    Policy,
    PositiveFloat,
    PositiveInt,
    StackedAdaptLearner,
)
from algorithms.batch import MetaBatch, Transitions, batch_part
from algorithms.networks import (
    ACT_DTYPE,
    MetaMLP,
    NetState,
    RowLayer,
    awr_weights,
    gaussian_log_prob,
    inner_grads,
    inverse_softplus,
)
from algorithms.policies import NoisyPolicy, StatePolicy


@dataclass(frozen=True)
class MACAWConfig:
    """MACAW hyperparameters; defaults are the authors' ``standard.json``."""

    width: PositiveInt = 100
    """hidden width (725 for the parameter-matched no-WT ablation)"""
    depth: PositiveInt = 3
    """hidden layers"""
    weight_transform: bool = True
    """WT layers; False → the authors' bias-transform layers ("no WT" ablation)"""
    wt_latent: PositiveInt = 100
    """size of each WT layer's latent z"""
    advantage_head: bool = True
    """inner policy loss regresses the advantage through a head; False = "MAML+AWR" ablation"""
    head_coef: float = 0.01
    """λ₀ = softplus(c₀) weight of the advantage-head loss"""
    action_sigma: float = 0.2
    """fixed σ of the Gaussian policy"""
    awr_temperature: float = 1.0
    max_weight: float = 20.0
    """cap on AWR weights"""
    inner_steps: PositiveInt = 1
    """inner SGD steps in meta-training (the inner batch is split between them)"""
    test_inner_steps: PositiveInt = 1
    """inner steps at test time (the authors' eval_maml_steps)"""
    inner_lr: PositiveFloat = 1e-3
    """initial inner learning rate of every parameter tensor"""
    learn_inner_lrs: bool = True
    """meta-learn the per-tensor inner lrs (False: fixed at inner_lr)"""
    first_order: bool = False
    """drop second-order terms of the meta-gradient"""
    target_mix: float = 0.1
    """target V ← (1 − mix)·target + mix·adapted after each inner value step"""
    value_lr: PositiveFloat = 1e-5
    policy_lr: PositiveFloat = 1e-4
    meta_lr: PositiveFloat = 1e-3
    """Adam lr of the learned inner lrs and of c"""
    tasks_per_batch: PositiveInt = 5
    inner_batch: PositiveInt = 256
    outer_batch: PositiveInt = 256


class MACAW(StackedAdaptLearner):
    name = "macaw"
    outer_rates = ("policy_lr", "value_lr")
    Config = MACAWConfig

    def __init__(self, obs_dim, act_dim, n_train_tasks, config=None, device="cpu", seed=0):
        super().__init__(obs_dim, act_dim, n_train_tasks, config, device, seed)
        cfg = self.config
        kind = "wt" if cfg.weight_transform else "bt"
        hidden = [cfg.width] * cfg.depth
        head = [32, 1] if cfg.advantage_head else None
        self.value = MetaMLP([obs_dim, *hidden, 1], kind, latent=cfg.wt_latent).to(self.device)
        self.policy = MetaMLP([obs_dim, *hidden, act_dim], kind, head, cfg.wt_latent).to(
            self.device
        )
        lr0 = inverse_softplus(cfg.inner_lr)
        grad_lrs = cfg.learn_inner_lrs
        self.value_lrs = torch.full(
            (self.value.n_lr_slots,), lr0, device=self.device, requires_grad=grad_lrs
        )
        self.policy_lrs = torch.full(
            (self.policy.n_lr_slots,), lr0, device=self.device, requires_grad=grad_lrs
        )
        self.head_coef = torch.tensor(
            inverse_softplus(cfg.head_coef), device=self.device, requires_grad=cfg.advantage_head
        )
        self.value_opt = torch.optim.Adam(self.value.parameters(), lr=cfg.value_lr, fused=True)
        self.policy_opt = torch.optim.Adam(self.policy.parameters(), lr=cfg.policy_lr, fused=True)
        meta = [t for t in (self.value_lrs, self.policy_lrs, self.head_coef) if t.requires_grad]
        self.meta_opt = torch.optim.Adam(meta, lr=cfg.meta_lr, fused=True) if meta else None

    # -- pieces --------------------------------------------------------------------------------
    def _v(self, state: NetState, obs: torch.Tensor) -> torch.Tensor:
        return self.value.run(state, obs).squeeze(-1)  # [T, B]

    @torch.no_grad()
    def _advantages(
        self, v_state: NetState, trs: list[Transitions], v_last: torch.Tensor | None = None
    ) -> list[torch.Tensor]:
        """A = mc_return + γ^(T−t)·V(s_T) − V(s) with the adapted V, for several batches in one
        forward pass (no gradient: protocol §4 step 4). ``v_last``: V(s) of the last batch, already
        computed (the outer value loss evaluates it), so it is not evaluated again."""
        chunks = [x for tr in trs for x in (tr.obs, tr.terminal_obs)]
        if v_last is not None:
            chunks.pop(-2)
        values = list(
            self._v(v_state, torch.cat(chunks, dim=1)).split([c.shape[1] for c in chunks], dim=1)
        )
        if v_last is not None:
            values.insert(len(values) - 1, v_last)
        return [
            tr.mc_return + tr.terminal_discount * values[2 * i + 1] - values[2 * i]
            for i, tr in enumerate(trs)
        ]

    def _adapt_value(self, tr: Transitions, steps: int, create_graph: bool):
        """Inner value steps on MC returns; returns the adapted state and the soft target."""
        lrs = F.softplus(self.value_lrs)
        state = self.value.state(tr.reward.shape[0])
        target = state.detach()  # a copy of the pre-adaptation V
        losses = []
        for i in range(steps):
            sub = batch_part(tr, steps, i)
            loss = (self._v(state, sub.obs) - sub.mc_return).pow(2).mean(-1).sum()
            state = state.step(inner_grads(loss, state, create_graph), lrs)
            with torch.no_grad():  # target ← 0.9·target + 0.1·adapted (authors' soft_update)
                target = target.lerp(state, self.config.target_mix)
            losses.append(loss.item())
        return state, target, sum(losses) / len(losses)

    def _policy_terms(self, state: NetState, tr: Transitions, adv: torch.Tensor, head: bool):
        """Per-row AWR loss (and advantage-head loss when ``head``): [T, B] each."""
        cfg = self.config
        w = awr_weights(adv, cfg.awr_temperature, cfg.max_weight)
        if head and cfg.advantage_head:
            mean, adv_hat = self.policy.run(state, tr.obs, tr.action)
            head_loss = (adv_hat.squeeze(-1) - adv).pow(2)
        else:
            mean, head_loss = self.policy.run(state, tr.obs), None
        logp = gaussian_log_prob(torch.tanh(mean), tr.action, cfg.action_sigma)
        return -(w * logp), head_loss, w

    def _adapt_policy(self, tr: Transitions, advs: list[torch.Tensor], create_graph: bool):
        """Inner policy steps, one per sub-batch of ``tr`` with its advantages ``advs``."""
        lrs = F.softplus(self.policy_lrs)
        lam = F.softplus(self.head_coef)
        state = self.policy.state(tr.reward.shape[0])
        losses, head_losses = [], []
        for i, adv in enumerate(advs):
            sub = batch_part(tr, len(advs), i)
            awr, head_loss, _ = self._policy_terms(state, sub, adv, True)
            per_row = awr if head_loss is None else awr + lam * head_loss
            loss = per_row.mean(-1).sum()
            # Nothing reads the head after the last step (the outer loss and acting use the
            # trunk only), so that step adapts the trunk alone: same result, less work.
            n = len(self.policy.trunk) if i == len(advs) - 1 else None
            state = state.step(inner_grads(loss, state, create_graph, n), lrs, n)
            losses.append(loss.item())
            if head_loss is not None:
                head_losses.append(head_loss.mean().item())
        return (
            state,
            sum(losses) / len(losses),
            (sum(head_losses) / len(head_losses) if head_losses else 0.0),
        )

    def _value_outer(self, outer: Transitions, v_state: NetState, v_target: NetState):
        """Per-task outer value loss [T] (MSE to mc_return + γ^(T−t)·V_target(s_T)), and the
        adapted V(s) of the outer batch, detached, for the advantages."""
        with torch.no_grad():
            y = outer.mc_return + outer.terminal_discount * self._v(v_target, outer.terminal_obs)
        v = self._v(v_state, outer.obs)
        return (v - y).pow(2).mean(-1), v.detach()

    def _policy_outer(self, batch: MetaBatch, v_state: NetState, v_outer: torch.Tensor):
        """Inner policy adaptation, then per-task outer AWR loss [T] and metrics."""
        cfg = self.config
        steps = cfg.inner_steps
        subs = [batch_part(batch.inner, steps, i) for i in range(steps)]
        *inner_advs, outer_adv = self._advantages(v_state, [*subs, batch.outer], v_outer)
        p_state, inner_p, head = self._adapt_policy(batch.inner, inner_advs, not cfg.first_order)
        outer_awr, _, w = self._policy_terms(p_state, batch.outer, outer_adv, head=False)
        outer_p = outer_awr.mean(-1)
        T = batch.n_tasks
        return outer_p, {
            "train/inner_policy_loss": inner_p / T,
            "train/outer_policy_loss": outer_p.mean().item(),
            "train/advantage_head_loss": head,
            "train/outer_awr_weight": w.mean().item(),
        }

    def _common_metrics(self, T: int, inner_v: float, outer_v: torch.Tensor) -> dict[str, float]:
        return {
            "train/inner_value_loss": inner_v / T,
            "train/outer_value_loss": outer_v.mean().item(),
            "train/value_inner_lr": F.softplus(self.value_lrs).mean().item(),
            "train/policy_inner_lr": F.softplus(self.policy_lrs).mean().item(),
            "train/head_coef": F.softplus(self.head_coef).item(),
        }

    def meta_loss(self, batch: MetaBatch) -> tuple[torch.Tensor, dict[str, float]]:
        """The summed outer loss of one meta-iteration (what ``meta_train_step`` descends).

        After ``loss.backward()`` call :meth:`flush_grads` to complete the WT gradients.
        """
        cfg = self.config
        v_state, v_target, inner_v = self._adapt_value(
            batch.inner, cfg.inner_steps, not cfg.first_order
        )
        outer_v, v_outer = self._value_outer(batch.outer, v_state, v_target)
        outer_p, metrics = self._policy_outer(batch, v_state, v_outer)
        loss = (outer_v.sum() + outer_p.sum()) / self.n_train_tasks  # protocol §4 step 7
        return loss, {**self._common_metrics(batch.n_tasks, inner_v, outer_v), **metrics}

    def flush_grads(self) -> None:
        """Complete the WT gradients after ``backward`` (see ``networks._SharedMatmul``)."""
        self.value.flush_deferred_grads()
        self.policy.flush_deferred_grads()

    # -- the interface -------------------------------------------------------------------------
    def meta_train_step(self, batch: MetaBatch) -> dict[str, float]:
        loss, metrics = self.meta_loss(batch)
        opts = [o for o in (self.value_opt, self.policy_opt, self.meta_opt) if o is not None]
        for opt in opts:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        self.flush_grads()
        for opt in opts:
            opt.step()
        return metrics

    def adapt_stacked(self, tr: Transitions) -> list[Policy]:
        """The test-time inner steps of ``T`` tasks in one batched pass."""
        steps = self.config.test_inner_steps
        with torch.enable_grad():
            v_state, _, _ = self._adapt_value(tr, steps, create_graph=False)
            advs = self._advantages(v_state, [batch_part(tr, steps, i) for i in range(steps)])
            p_state, _, _ = self._adapt_policy(tr, advs, create_graph=False)
        return [StatePolicy(self.policy, s) for s in p_state.detach().split()]

    def prior_policy(self) -> Policy:
        with torch.no_grad():
            return StatePolicy(self.policy, self.policy.state(1).detach())

    def online_finetuner(self, support: Transitions, config: OnlineConfig) -> OnlineFinetuner:
        return MACAWOnline(self, support, config)


class MACAWOnline(OnlineFinetuner):
    """MACAW's online fine-tuning, as the authors' ``eval_macaw(ft="online")``: the offline
    adaptation's value and policy weights become plain parameters; after the burn-in, every
    round takes ``value_steps`` Adam steps of the value loss (to the Monte-Carlo return
    bootstrapped past the episode's truncation with the round's frozen starting value, as
    MACAW's outer value loss with its target; bootstrapping on the moving value diverged) and
    ``policy_steps`` of the AWR loss on random batches of the online rows (the authors empty
    their buffer before the online rounds: the adaptation set is not replayed — replaying it kept
    the value loss growing and left the return flat on point-robot-ood). Exploration adds the
    policy's own Gaussian noise (``action_sigma``)."""

    def __init__(self, learner: MACAW, support: Transitions, config: OnlineConfig) -> None:
        self.learner, self.config = learner, config
        steps = learner.config.test_inner_steps
        tr = support.map(lambda x: x.unsqueeze(0)).to(learner.device)
        with torch.enable_grad():
            v_state, _, _ = learner._adapt_value(tr, steps, create_graph=False)
            advs = learner._advantages(v_state, [batch_part(tr, steps, i) for i in range(steps)])
            p_state, _, _ = learner._adapt_policy(tr, advs, create_graph=False)
        self.v_state = _trainable(v_state, len(learner.value.trunk))
        self.p_state = _trainable(p_state, len(learner.policy.trunk))
        self.v_opt = torch.optim.Adam(_leaves(self.v_state), lr=config.lr)
        self.p_opt = torch.optim.Adam(_leaves(self.p_state), lr=config.lr)
        # seeded from the caller's RNG state: the harness seeds it per (run, task)
        self.gen = torch.Generator().manual_seed(int(torch.randint(2**62, (1,))))

    def policy(self) -> Policy:
        return StatePolicy(self.learner.policy, _acting(self.p_state))

    def explore(self) -> Policy:
        seed = int(torch.randint(2**62, (1,), generator=self.gen))
        return NoisyPolicy(self.policy(), self.learner.config.action_sigma, seed)

    def update(self, buffer: Transitions, round_index: int) -> dict[str, float]:
        if round_index < self.config.burn_in:
            return {}
        learner, cfg = self.learner, self.config
        buf = buffer.to(learner.device)
        v_loss = p_loss = torch.zeros(())
        target = _acting(self.v_state, torch.float32)  # V̄: this round's starting value, frozen
        for _ in range(cfg.value_steps):
            b = self._batch(buf)
            with torch.no_grad():
                y = b.mc_return + b.terminal_discount * learner._v(target, b.terminal_obs)
            v_loss = (learner._v(self.v_state, b.obs) - y).pow(2).mean()
            self.v_opt.zero_grad()
            v_loss.backward()
            self.v_opt.step()
        for _ in range(cfg.policy_steps):
            b = self._batch(buf)
            (adv,) = learner._advantages(self.v_state, [b])
            awr, _, _ = learner._policy_terms(self.p_state, b, adv, head=False)
            p_loss = awr.mean()
            self.p_opt.zero_grad()
            p_loss.backward()
            self.p_opt.step()
        return {"online/value_loss": v_loss.item(), "online/policy_loss": p_loss.item()}

    def _batch(self, buf: Transitions) -> Transitions:
        idx = torch.randint(len(buf), (self.config.batch,), generator=self.gen)
        return buf.map(lambda x: x[idx.to(x.device)].unsqueeze(0))


def _trainable(state: NetState, n_layers: int) -> NetState:
    """The first ``n_layers`` layers' effective weights (the trunk) as float32 leaf tensors."""
    rows = state.detach().frozen().layers[:n_layers]
    return NetState(
        [
            RowLayer(
                x.Wt.float().contiguous().requires_grad_(), x.b.float().clone().requires_grad_()
            )
            for x in rows
        ]
    )


def _leaves(state: NetState) -> list[torch.Tensor]:
    return [t for x in state.layers for t in (x.Wt, x.b)]


def _acting(state: NetState, dtype: torch.dtype = ACT_DTYPE) -> NetState:
    """A detached copy (for acting: in the acting precision)."""
    return NetState(
        [
            RowLayer(x.Wt.detach().to(dtype, copy=True), x.b.detach().to(dtype, copy=True))
            for x in state.layers
        ]
    )
