"""Prompt-DT: a decision transformer prompted with a short trajectory segment of the task.

Reference: Xu et al., ICML 2022 ("Prompting Decision Transformer for Few-Shot Policy
Generalization") and the authors' code (mxu34/prompt-dt: ``pdt_main.py`` for the
hyperparameters, ``prompt_dt/prompt_utils.py`` for prompts and batches,
``prompt_dt/prompt_decision_transformer.py`` for the model).

Training: windows of K = 20 consecutive steps (return-to-go R̂, state s, action a per step, each
embedded and summed with a timestep embedding) from all train tasks, each prefixed by a prompt of
H = 5 steps of the *same* task embedded by separate prompt embeddings; a causal transformer
(3 layers, 128 units, 1 head, dropout 0.1) predicts each step's action from its state token;
loss: mean squared error to the data's actions. AdamW (lr 1e-4, weight decay 1e-4) with a
linear warm-up over 10 000 steps, gradients clipped at norm 0.25; states standardised,
returns-to-go divided by a scale.

Test time: the prompt is cut from the adaptation set (its last H rows: with
``adapt_trajectories`` the end of its last trajectory, as the authors' prompts are the end of a
demonstration); the policy rolls out with its own history of the last K steps across the
episode, conditioned on a target return that falls by each reward received (``observe``).

As the authors: training prompts are the last H steps of a randomly drawn episode of the task,
a fresh one for every window (``inner_sampling = "episode_ends"``); the embedding LayerNorm
normalises the window's tokens only; GPT-2's initialisation (weights N(0, 0.02), biases 0) and
no dropout inside the feed-forward block (GPT-2 drops out after it; PyTorch's layer also inside).
The state mean and std are those of every row of the train tasks' buffers (a dimension constant
there is centred, not scaled), handed over by the harness before training, never test data.
Under ``skip`` (rows ``skip`` environment steps apart, as the authors sub-sample), the rollout's
history keeps every ``skip``-th step, so its windows are spaced as the training windows are.

Implementation: GPT-2's blocks written out here (``CausalSelfAttention``, ``Block``) with the
parameter names of ``nn.TransformerEncoderLayer``, the first version's module (kept in
``tests/reference_prompt_dt.py``, against which outputs and gradients are tested): the last block
computes only the state tokens the loss reads, dropout draws its masks with ``torch.rand``, and
the feed-forward ReLU is not in place (in place on ``linear``'s output view, autograd copies the
whole gradient back: measured 28 against 22 ms forward and backward, one thread) — about 1.5×
the first version's step at the same maths.

Deviations *(ours)*, each because the harness gives every algorithm the same data and nothing
family-specific:

- **target return and scale**: the authors set both per environment by hand (cheetah-vel 0 and
  500, cheetah-dir 1500 and 1000, ant-dir 500 and 500). Here the adapted policy aims at the
  best return-to-go its adaptation set shows (the largest R̂ of any of its rows: what the set
  says the task allows, from rows every learner receives, fixed by the set alone), the prior
  policy at the best episode return of the train data; the scale is the largest |R̂| of the
  train data;
- **batches**: 16 windows from each of ``tasks_per_batch`` = 5 train tasks per step (the
  authors: 16 from every train task);
- **prior policy**: a prompt of zeros; so that it is in-distribution, each training prompt is
  replaced by zeros with probability ``prompt_dropout`` = 0.1 (the authors have no prior);
- with ``iid`` adaptation sets (``EvalConfig``'s default) the prompt is H rows drawn i.i.d.,
  not a trajectory segment, far outside the training prompts' timesteps and returns-to-go;
  every comparing suite therefore sets ``adapt_trajectories`` (every algorithm adapts on the
  same whole episodes; a test checks that the prompts then lie in the training range).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from algorithms.base import OfflineMetaLearner, Policy, PositiveFloat, PositiveInt
from algorithms.batch import MetaBatch, TrainStatistics, Transitions


@dataclass(frozen=True)
class PromptDTConfig:
    """The authors' ``pdt_main.py`` defaults, except where the docstring says."""

    embed_dim: PositiveInt = 128
    n_layer: PositiveInt = 3
    n_head: PositiveInt = 1
    dropout: float = 0.1
    max_ep_len: PositiveInt = 1000
    """size of the timestep embedding"""
    policy_lr: PositiveFloat = 1e-4
    weight_decay: float = 1e-4
    warmup_steps: PositiveInt = 10_000
    grad_clip: PositiveFloat = 0.25
    prompt_dropout: float = 0.1
    """probability that a training prompt is replaced by zeros (the prior policy's prompt)"""
    tasks_per_batch: PositiveInt = 5
    inner_batch: PositiveInt = 80
    """the prompts of a task's windows: one of ``inner_segment`` steps per window (16 × 5)"""
    inner_segment: PositiveInt = 5
    """H, the prompt length: the last H steps of an episode (prompt_length)"""
    inner_sampling: Literal["window", "iid", "episode_ends"] = "episode_ends"
    """training prompts cut at episode ends, as the authors'"""
    outer_batch: PositiveInt = 320
    """16 training windows of K steps per task"""
    outer_segment: PositiveInt = 20
    """K, the context length: the outer batch is drawn as windows of this many steps"""


def _gpt2_init(m: nn.Module) -> None:
    """GPT-2's initialisation (the authors' transformer): weights N(0, 0.02), biases 0,
    LayerNorms 1 and 0."""
    if isinstance(m, nn.Linear | nn.Embedding):
        nn.init.normal_(m.weight, 0.0, 0.02)
        if getattr(m, "bias", None) is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
    elif isinstance(m, CausalSelfAttention):
        nn.init.normal_(m.in_proj_weight, 0.0, 0.02)
        nn.init.zeros_(m.in_proj_bias)


class _Dropout(torch.autograd.Function):
    """Inverted dropout whose mask comes from ``torch.rand`` (kept where u ≥ p, scaled by
    1/(1 − p) in place): the distribution of ``nn.Dropout`` — each element kept with
    probability 1 − p, up to float32's 2⁻²⁴ granularity of u — at less than half the cost on a
    CPU (``bernoulli_`` and autograd's two products: measured 5.6 against 3.4 ms forward and
    backward for a [80, 75, 128] tensor, one thread). The backward multiplies by the same
    saved mask."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, p: float) -> torch.Tensor:
        mask = torch.rand_like(x).ge_(p).mul_(1.0 / (1.0 - p))
        ctx.save_for_backward(mask)
        return x * mask

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (mask,) = ctx.saved_tensors
        return grad * mask, None


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """``nn.functional.dropout``'s distribution, cheaper on a CPU (``_Dropout``)."""
    if not training or p == 0.0:
        return x
    return _Dropout.apply(x, p)


class _ResidualDropout(torch.autograd.Function):
    """x + dropout(a) in one pass (``addcmul``), the mask drawn as ``_Dropout``'s."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, a: torch.Tensor, p: float) -> torch.Tensor:
        mask = torch.rand_like(a).ge_(p).mul_(1.0 / (1.0 - p))
        ctx.save_for_backward(mask)
        return torch.addcmul(x, a, mask)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        (mask,) = ctx.saved_tensors
        return grad, grad * mask, None


def residual_dropout(x: torch.Tensor, a: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """``x + dropout(a)``: the residual connection of a GPT-2 block."""
    if not training or p == 0.0:
        return x + a
    return _ResidualDropout.apply(x, a, p)


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention, batch first, optionally for a subset of queries.

    Its parameters are named as ``nn.MultiheadAttention``'s (``in_proj_weight``,
    ``in_proj_bias``, ``out_proj``), so checkpoints of the first version, built on
    ``nn.TransformerEncoderLayer``, load unchanged. Written out (scores, softmax, dropout on
    the weights, as GPT-2): on a CPU ``scaled_dot_product_attention`` with dropout falls back to
    this same computation with a dearer mask (measured 12.3 against 10.7 ms forward and
    backward at [80, 75, 128], one thread). ``rows``: compute only those positions' outputs
    (every position still a key and a value) — the last block needs only the state tokens."""

    def __init__(self, d: int, n_head: int, p: float):
        super().__init__()
        self.n_head, self.p = n_head, p
        self.in_proj_weight = nn.Parameter(torch.empty(3 * d, d))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * d))
        self.out_proj = nn.Linear(d, d)

    def forward(self, x: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        B, L, d = x.shape
        H, dh = self.n_head, d // self.n_head
        w, b = self.in_proj_weight, self.in_proj_bias
        if rows is None:  # one product for q, k and v
            q, k, v = nn.functional.linear(x, w, b).split(d, -1)
        else:
            q = nn.functional.linear(x[:, rows], w[:d], b[:d])
            k, v = nn.functional.linear(x, w[d:], b[d:]).split(d, -1)
        pos = torch.arange(L, device=x.device)
        qpos = pos if rows is None else pos[rows]
        # the causal mask added inside the scores' product (baddbmm), as −inf above the diagonal
        mask = torch.zeros(len(qpos), L, device=x.device, dtype=x.dtype)
        mask.masked_fill_(pos[None, :] > qpos[:, None], float("-inf"))
        if H > 1:
            q, k, v = (t.unflatten(-1, (H, dh)).transpose(1, 2).flatten(0, 1) for t in (q, k, v))
        mask = mask.expand(q.shape[0], -1, -1)
        scores = torch.baddbmm(mask, q, k.transpose(-1, -2), alpha=dh**-0.5)
        weights = dropout(scores.softmax(-1), self.p, self.training)
        y = weights @ v
        if H > 1:
            y = y.unflatten(0, (B, H)).transpose(1, 2).flatten(-2)
        return self.out_proj(y)


class Block(nn.Module):
    """GPT-2's pre-norm block: x + drop(attn(ln(x))), then x + drop(W₂ relu(W₁ ln(x))) — no
    dropout between the two MLP layers, as GPT-2. Submodules named as
    ``nn.TransformerEncoderLayer``'s (``norm1``, ``self_attn``, ``norm2``, ``linear1``,
    ``linear2``). ``rows``: only those positions come out (see ``CausalSelfAttention``)."""

    def __init__(self, d: int, n_head: int, p: float):
        super().__init__()
        self.p = p
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.self_attn = CausalSelfAttention(d, n_head, p)
        self.linear1, self.linear2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        a = self.self_attn(self.norm1(x), rows)
        x = residual_dropout(x if rows is None else x[:, rows], a, self.p, self.training)
        h = self.linear2(torch.relu(self.linear1(self.norm2(x))))
        return residual_dropout(x, h, self.p, self.training)


class PromptDecisionTransformer(nn.Module):
    """(R̂, s, a) tokens of a prompt and of a window, one causal transformer over both."""

    def __init__(self, obs_dim: int, act_dim: int, cfg: PromptDTConfig):
        super().__init__()
        d = cfg.embed_dim
        self.max_ep_len = cfg.max_ep_len
        self.p = cfg.dropout

        def embeddings() -> nn.ModuleDict:
            return nn.ModuleDict(
                {
                    "time": nn.Embedding(cfg.max_ep_len, d),
                    "ret": nn.Linear(1, d),
                    "obs": nn.Linear(obs_dim, d),
                    "act": nn.Linear(act_dim, d),
                }
            )

        self.embed, self.prompt_embed = embeddings(), embeddings()
        self.embed_ln = nn.LayerNorm(d)
        self.blocks = nn.Module()  # blocks.layers.i: the parameter names of the first version
        self.blocks.layers = nn.ModuleList(
            Block(d, cfg.n_head, cfg.dropout) for _ in range(cfg.n_layer)
        )
        self.final_ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, act_dim)
        self.apply(_gpt2_init)

    def _tokens(self, emb: nn.ModuleDict, rtg, obs, act, timestep) -> torch.Tensor:
        """[B, L, …] → [B, 3L, d]: per step R̂, s, a, each plus its timestep embedding."""
        t = emb["time"](timestep.long().clamp(0, self.max_ep_len - 1))
        parts = [emb["ret"](rtg.unsqueeze(-1)) + t, emb["obs"](obs) + t, emb["act"](act) + t]
        B, L, d = t.shape
        return torch.stack(parts, 2).reshape(B, 3 * L, d)

    def forward(self, prompt: tuple, window: tuple, last_only: bool = False) -> torch.Tensor:
        """prompt, window: (rtg, obs, act, timestep), each [B, L, …] → actions [B, L_window, act]
        predicted from the window's state tokens; ``last_only``: only the last one's, [B, 1, act]
        (acting reads no other)."""
        p = self._tokens(self.prompt_embed, *prompt)
        w = self.embed_ln(self._tokens(self.embed, *window))  # the authors: window tokens only
        x = dropout(torch.cat([p, w], 1), self.p, self.training)
        # the window's state tokens: the only outputs read, so the last block computes only them
        states = torch.arange(p.shape[1] + 1, x.shape[1], 3, device=x.device)
        if last_only:
            states = states[-1:]
        *first, last = self.blocks.layers
        for block in first:
            x = block(x)
        return torch.tanh(self.head(self.final_ln(last(x, states))))


class _PromptedPolicy(Policy):
    """Rolls the transformer out with its own history: the prompt stays, the window slides."""

    def __init__(self, learner: PromptDT, prompt: tuple, target: torch.Tensor):
        self.learner, self.prompt, self.target = learner, prompt, target  # prompt: [1, H, …]
        self.reset()

    def reset(self) -> None:
        self.hist: dict[str, torch.Tensor] | None = None
        self.t = 0
        self.rtg: torch.Tensor | None = None

    def act(self, obs: torch.Tensor) -> torch.Tensor:
        lrn = self.learner
        B = obs.shape[0]
        if self.hist is not None and self.hist["obs"].shape[0] != B:
            self.reset()  # a batch of another size: a new rollout
        if self.rtg is None:
            self.rtg = (self.target / lrn.return_scale).expand(B).clone()
        step = {
            "rtg": self.rtg[:, None],
            "obs": lrn.normalise(obs)[:, None],
            "act": torch.zeros(B, 1, lrn.act_dim, device=obs.device),
            "timestep": torch.full((B, 1), float(self.t), device=obs.device),
        }
        K, stride = lrn.config.outer_segment, int(lrn.row_stride)
        if self.hist is None:
            self.hist = step
        else:  # the last (K − 1)·stride + 1 steps: enough for a window spaced as training's
            keep = (K - 1) * stride + 1
            self.hist = {k: torch.cat([v, step[k]], 1)[:, -keep:] for k, v in self.hist.items()}
        n = self.hist["obs"].shape[1]
        rows = torch.arange(n - 1, -1, -stride, device=obs.device).flip(0)  # …, t − s, t
        prompt = tuple(x.expand(B, *x.shape[1:]) for x in self.prompt)
        window = tuple(self.hist[k][:, rows] for k in ("rtg", "obs", "act", "timestep"))
        lrn.model.eval()
        action = lrn.model(prompt, window, last_only=True)[:, -1]
        self.hist["act"][:, -1] = action
        return action

    def observe(self, reward: torch.Tensor) -> None:
        if self.rtg is not None:
            self.rtg = self.rtg - reward.to(self.rtg.device) / self.learner.return_scale
        self.t += 1


class PromptDT(OfflineMetaLearner):
    name = "prompt-dt"
    outer_rates = ("policy_lr",)
    Config = PromptDTConfig

    def __init__(self, obs_dim, act_dim, n_train_tasks, config=None, device="cpu", seed=0):
        super().__init__(obs_dim, act_dim, n_train_tasks, config, device, seed)
        cfg = self.config
        dev = self.device
        self.model = PromptDecisionTransformer(obs_dim, act_dim, cfg).to(dev)
        self.opt = torch.optim.AdamW(
            self.model.parameters(), lr=cfg.policy_lr, weight_decay=cfg.weight_decay, fused=True
        )
        # statistics of the train data (observe_train_data; else from the first batch)
        self.obs_mean = torch.zeros(obs_dim, device=dev)
        self.obs_std = torch.ones(obs_dim, device=dev)
        self.return_scale = torch.ones((), device=dev)
        self.target_return = torch.full((), float("-inf"), device=dev)
        self.row_stride = torch.ones((), dtype=torch.long, device=dev)
        self.has_statistics = torch.zeros((), dtype=torch.bool, device=dev)

    def normalise(self, obs: torch.Tensor) -> torch.Tensor:
        return (obs - self.obs_mean) / self.obs_std

    def _steps(self, tr: Transitions) -> tuple:
        return (
            tr.return_to_go / self.return_scale,
            self.normalise(tr.obs),
            tr.action,
            tr.timestep,
        )

    def observe_train_data(self, stats: TrainStatistics) -> None:
        """The train tasks' state statistics, return scale, best episode return and row
        stride, fixed for the whole of training."""
        self.obs_mean.copy_(stats.obs_mean)
        self.obs_std.copy_(stats.obs_std)
        self.return_scale.fill_(max(stats.max_abs_return_to_go, 1e-6))
        self.target_return.fill_(stats.best_episode_return)
        self.row_stride.fill_(stats.row_stride)
        self.has_statistics.fill_(True)

    def _observe_data(self, tr: Transitions) -> None:
        """Without the harness's statistics (a learner driven by hand): the first batch's, with
        the same floor, and the best episode start seen so far as the target."""
        if bool(self.has_statistics):
            return
        if self.steps == 0:
            flat = tr.obs.reshape(-1, self.obs_dim)
            std = flat.std(0)
            self.obs_mean.copy_(flat.mean(0))
            self.obs_std.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)))
            self.return_scale.copy_(tr.return_to_go.abs().max().clamp(min=1e-6))
        starts = tr.return_to_go[tr.timestep == 0]
        seen = starts.max() if starts.numel() else tr.return_to_go.max()
        self.target_return.copy_(torch.maximum(self.target_return, seen))

    def meta_train_step(self, batch: MetaBatch) -> dict[str, float]:
        cfg = self.config
        K = cfg.outer_segment
        self._observe_data(batch.outer)
        T = batch.n_tasks
        n_win = batch.outer.reward.shape[1] // K
        window = batch.outer.map(lambda x: x.reshape(T * n_win, K, *x.shape[2:]))
        H = min(cfg.inner_segment, batch.inner.reward.shape[1])
        n_prompts = batch.inner.reward.shape[1] // H
        prompts = batch.inner.map(
            lambda x: x[:, : n_prompts * H].reshape(T, n_prompts, H, *x.shape[2:])
        )
        # a fresh prompt of the same task for every window (cycled if the batch has fewer)
        which = torch.arange(n_win, device=self.device) % n_prompts
        prompt = prompts.map(lambda x: x[:, which].reshape(T * n_win, H, *x.shape[3:]))
        p = self._steps(prompt)
        keep = (torch.rand(T * n_win, 1, 1, device=self.device) >= cfg.prompt_dropout).float()
        p = tuple(x * keep.view(-1, *[1] * (x.dim() - 1)) for x in p)
        w = self._steps(window)
        # a window that ran past its episode's end (its timestep stops rising): only its first
        # episode's steps count (sub-sampled buffers step the timestep by more than 1)
        rising = (window.timestep[:, 1:] > window.timestep[:, :-1]).float()
        valid = torch.cat([torch.ones_like(rising[:, :1]), rising.cumprod(1)], 1)
        for g in self.opt.param_groups:  # linear warm-up, from the step count (checkpointed)
            g["lr"] = cfg.policy_lr * min((self.steps + 1) / cfg.warmup_steps, 1.0)
        self.model.train()
        pred = self.model(p, w)
        err = (pred - window.action).pow(2).mean(-1)
        loss = (err * valid).sum() / valid.sum().clamp(min=1)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.opt.step()
        return {
            "train/action_mse": loss.item(),
            "train/grad_norm": float(grad_norm),
            "train/lr": self.opt.param_groups[0]["lr"],
            "train/target_return": self.target_return.item(),
        }

    def prompt_from(self, support: Transitions) -> tuple:
        """The prompt of an adaptation set: its last H rows with their true timesteps and
        returns-to-go (with whole trajectories, the end of the last one, as training prompts
        are episode ends)."""
        H = min(self.config.inner_segment, support.reward.shape[0])
        tail = support.to(self.device).map(lambda x: x[-H:].unsqueeze(0))
        return self._steps(tail)

    def target_for(self, support: Transitions) -> torch.Tensor:
        """The return to aim for: the best return-to-go the adaptation set shows — fixed by
        the set's rows alone (two sets whose best row is the same aim alike), never by whether
        an episode's first row happened to be drawn."""
        return support.return_to_go.to(self.device).max()

    def trained_target(self) -> torch.Tensor:
        """The best episode return seen in training; 0 before any (the untrained learner is
        scored at step 0 too)."""
        t = self.target_return
        return t.clone() if torch.isfinite(t) else torch.zeros((), device=self.device)

    def adapt(self, support: Transitions) -> Policy:
        with torch.no_grad():
            return _PromptedPolicy(self, self.prompt_from(support), self.target_for(support))

    def prior_policy(self) -> Policy:
        """A prompt of zeros (what prompt dropout trains it on)."""
        H, dev = self.config.inner_segment, self.device
        zeros = (
            torch.zeros(1, H, device=dev),
            torch.zeros(1, H, self.obs_dim, device=dev),
            torch.zeros(1, H, self.act_dim, device=dev),
            torch.zeros(1, H, device=dev),
        )
        return _PromptedPolicy(self, zeros, self.trained_target())
