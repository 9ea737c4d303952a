"""Per-task SAC behaviour agents, trained together as one batched learner.

Each task gets its own SAC agent (actor, twin critics, targets, temperature) trained from scratch;
its offline dataset is its whole replay buffer in chronological order, so it spans random to
near-expert behaviour (protocol §2). All agents of a chunk of tasks share one set of *stacked*
parameters (``[tasks, in, out]``) and are updated with batched matmuls: the losses are summed over
tasks, each agent's parameters only see its own loss, and Adam is element-wise, so this is exactly
``tasks`` independent SAC learners — just without a Python loop over them.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from algorithms.networks import soft_update_
from harness.collect.portable import (
    PortableAdam,
    PortableBaddbmm,
    portable_exp,
    portable_tanh,
    tanh_gaussian_sample,
)


@dataclass(frozen=True)
class SACConfig:
    """SAC hyperparameters (Haarnoja et al. 2018 defaults, narrower nets for a CPU budget)."""

    hidden: int = 64
    """width of the hidden layers of actor and critics"""
    layers: int = 2
    """hidden layers of actor and critics (the task-conditioned agent; per-task agents use 2)"""
    lr: float = 3e-4
    gamma: float = 0.99
    tau: float = 0.005
    """Polyak rate of the target critics"""
    batch_size: int = 256
    log_std_min: float = -5.0
    log_std_max: float = 2.0
    init_alpha: float = 0.1
    """initial entropy temperature (auto-tuned after); 1.0 swamps the small rewards of short
    budgets — point-robot's last-third return was −19.9 with 1.0 and −11.1 with 0.1"""


class StackedMLP(nn.Module):
    """``members`` independent MLPs evaluated together with batched matmuls."""

    def __init__(self, members: int, sizes: list[int]):
        super().__init__()
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            bound = 1.0 / math.sqrt(fan_in)  # nn.Linear's default init
            self.weights.append(
                nn.Parameter(torch.empty(members, fan_in, fan_out).uniform_(-bound, bound))
            )
            self.biases.append(
                nn.Parameter(torch.empty(members, 1, fan_out).uniform_(-bound, bound))
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [members, batch, in]
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            x = PortableBaddbmm.apply(b, x, w)
            if i < last:
                x = F.relu(x)
        return x


class BatchedSAC:
    """``n_tasks`` SAC agents with stacked parameters; one :meth:`update` trains all of them."""

    def __init__(self, n_tasks: int, obs_dim: int, act_dim: int, act_scale: float, cfg: SACConfig):
        self.n, self.act_dim, self.cfg = n_tasks, act_dim, cfg
        self.act_scale = act_scale
        h = cfg.hidden
        self.actor = StackedMLP(n_tasks, [obs_dim, h, h, 2 * act_dim])
        self.critic = StackedMLP(2 * n_tasks, [obs_dim + act_dim, h, h, 1])  # twin Q as 2n members
        self.critic_target = StackedMLP(2 * n_tasks, [obs_dim + act_dim, h, h, 1])
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.critic_target.requires_grad_(False)
        self.log_alpha = torch.full((n_tasks,), math.log(cfg.init_alpha), requires_grad=True)
        self.target_entropy = -float(act_dim)
        self.actor_opt = PortableAdam(self.actor.parameters(), lr=cfg.lr)
        self.critic_opt = PortableAdam(self.critic.parameters(), lr=cfg.lr)
        self.alpha_opt = PortableAdam([self.log_alpha], lr=cfg.lr)

    # -- policy ---------------------------------------------------------------------------------
    def _pi(self, obs: torch.Tensor, deterministic: bool = False):
        """Tanh-squashed Gaussian: action in [-1, 1] and its log-probability. obs: [n, B, obs]."""
        mu, log_std = self.actor(obs).chunk(2, dim=-1)
        log_std = log_std.clamp(self.cfg.log_std_min, self.cfg.log_std_max)
        if deterministic:
            return portable_tanh(mu), None
        return tanh_gaussian_sample(mu, log_std)

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        """obs: [n, obs_dim] numpy → actions [n, act_dim] in the env's scale."""
        x = torch.as_tensor(obs, dtype=torch.float32).unsqueeze(1)
        a, _ = self._pi(x, deterministic)
        return (a.squeeze(1) * self.act_scale).numpy()

    def _q(self, net: StackedMLP, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        x = torch.cat([obs, act], -1).repeat(2, 1, 1)  # [2n, B, obs+act]
        return net(x).squeeze(-1).view(2, self.n, -1)  # [2, n, B]

    # -- learning -------------------------------------------------------------------------------
    def update(self, obs, act, rew, next_obs, done) -> dict[str, float]:
        """One SAC step for every task. Shapes: [n, B, ·]; actions already scaled to [-1, 1]."""
        cfg = self.cfg
        alpha = portable_exp(self.log_alpha).detach()[:, None]  # [n, 1]
        with torch.no_grad():
            a2, logp2 = self._pi(next_obs)
            q_next = self._q(self.critic_target, next_obs, a2).min(0).values - alpha * logp2
            target = rew + cfg.gamma * (1.0 - done) * q_next
        q = self._q(self.critic, obs, act)
        critic_loss = ((q - target) ** 2).mean(-1).sum()  # mean over batch, sum over twins·tasks
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_opt.step()

        a, logp = self._pi(obs)
        self.critic.requires_grad_(False)
        q_pi = self._q(self.critic, obs, a).min(0).values
        self.critic.requires_grad_(True)
        actor_loss = (alpha * logp - q_pi).mean(-1).sum()
        self.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_opt.step()

        alpha_loss = (
            -(self.log_alpha[:, None] * (logp.detach() + self.target_entropy)).mean(-1).sum()
        )
        self.alpha_opt.zero_grad(set_to_none=True)
        alpha_loss.backward()
        self.alpha_opt.step()

        soft_update_(self.critic_target, self.critic, cfg.tau)
        return {
            "critic_loss": critic_loss.item() / self.n,
            "actor_loss": actor_loss.item() / self.n,
        }


# ---------------------------------------------------------------------------------------------
# Task-conditioned SAC: one agent for a chunk of tasks, every update shared by all of them
# ---------------------------------------------------------------------------------------------
class ConditionedSAC:
    """One SAC agent whose actor and critics also see the task's features.

    The agent is told which task it is in (its feature vector: a goal velocity, a direction, log
    physics multipliers); the stored observations are not. Each update samples rows of all the
    chunk's tasks, so one gradient step improves every task's behaviour at once — where a
    per-task agent pays one update per task. Twin critics are one stacked network (2 members).
    """

    def __init__(self, in_dim: int, act_dim: int, cfg: SACConfig):
        self.act_dim, self.cfg = act_dim, cfg
        h = cfg.hidden
        hidden = [h] * cfg.layers
        self.actor = StackedMLP(1, [in_dim, *hidden, 2 * act_dim])
        self.critic = StackedMLP(2, [in_dim + act_dim, *hidden, 1])
        self.critic_target = StackedMLP(2, [in_dim + act_dim, *hidden, 1])
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.critic_target.requires_grad_(False)
        self.log_alpha = torch.tensor([math.log(cfg.init_alpha)], requires_grad=True)
        self.target_entropy = -float(act_dim)
        self.actor_opt = PortableAdam(self.actor.parameters(), lr=cfg.lr)
        self.critic_opt = PortableAdam(self.critic.parameters(), lr=cfg.lr)
        self.alpha_opt = PortableAdam([self.log_alpha], lr=cfg.lr)

    def _pi(self, x: torch.Tensor, deterministic: bool = False):
        mu, log_std = self.actor(x.unsqueeze(0)).squeeze(0).chunk(2, dim=-1)
        log_std = log_std.clamp(self.cfg.log_std_min, self.cfg.log_std_max)
        if deterministic:
            return portable_tanh(mu), None
        return tanh_gaussian_sample(mu, log_std)

    def _q(self, net: StackedMLP, x: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        return net(torch.cat([x, act], -1).expand(2, -1, -1)).squeeze(-1)  # [2, B]

    @torch.no_grad()
    def act(self, x: np.ndarray, deterministic: bool = False) -> np.ndarray:
        """x: [n, obs + features] → actions in [-1, 1]."""
        a, _ = self._pi(torch.as_tensor(x, dtype=torch.float32), deterministic)
        return a.numpy()

    def update(self, x, act, rew, next_x, done) -> dict[str, float]:
        """One SAC step on a batch of rows of many tasks ([B, ·]; x = obs ‖ task features)."""
        cfg = self.cfg
        alpha = portable_exp(self.log_alpha).detach()
        with torch.no_grad():
            a2, logp2 = self._pi(next_x)
            q_next = self._q(self.critic_target, next_x, a2).min(0).values - alpha * logp2
            target = rew + cfg.gamma * (1.0 - done) * q_next
        q = self._q(self.critic, x, act)
        critic_loss = ((q - target) ** 2).mean(-1).sum()
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_opt.step()

        a, logp = self._pi(x)
        self.critic.requires_grad_(False)
        q_pi = self._q(self.critic, x, a).min(0).values
        self.critic.requires_grad_(True)
        actor_loss = (alpha * logp - q_pi).mean()
        self.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_opt.step()

        alpha_loss = -(self.log_alpha * (logp.detach() + self.target_entropy)).mean()
        self.alpha_opt.zero_grad(set_to_none=True)
        alpha_loss.backward()
        self.alpha_opt.step()
        soft_update_(self.critic_target, self.critic, cfg.tau)
        return {"critic_loss": critic_loss.item(), "actor_loss": actor_loss.item()}

    def state_dict(self) -> dict:
        return {
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "critic_target": self.critic_target.state_dict(),
            "log_alpha": self.log_alpha.detach().clone(),
            "actor_opt": self.actor_opt.state_dict(),
            "critic_opt": self.critic_opt.state_dict(),
            "alpha_opt": self.alpha_opt.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.critic_target.load_state_dict(state["critic_target"])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        self.actor_opt.load_state_dict(state["actor_opt"])
        self.critic_opt.load_state_dict(state["critic_opt"])
        self.alpha_opt.load_state_dict(state["alpha_opt"])


# ---------------------------------------------------------------------------------------------
# Collection: train one chunk of tasks, return each task's replay buffer as episodes
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SACBudget:
    """How much behaviour data a family gets per task, and how it is made."""

    steps_per_task: int
    """env steps per task = transitions in its dataset"""
    warmup_steps: int = 1000
    """uniform-random actions before the agent acts (and the first updates)"""
    updates_per_step: float = 1
    """gradient updates per (joint) env step; the conditioned agent steps all its tasks at once"""
    chunk_size: int = 20
    """tasks trained together as one batched learner (a chunk is also the unit of resume)"""
    sac: SACConfig = SACConfig()
    agent: str = "per-task"
    """``per-task`` (one SAC agent per task, as the paper) or ``conditioned`` (one agent per
    chunk that sees the task's features; see :class:`ConditionedSAC`)"""
    envs_per_task: int = 1
    """conditioned agent: copies of each task's env stepped together (a task's dataset then
    holds ``envs_per_task × steps_per_task`` transitions, merged segment by segment)"""
    segment_steps: int = 2000
    """conditioned agent: env steps between checkpoints; every env is reset at a segment start,
    so an interrupted build resumes to the same bytes"""


def load_resume_state(path: Path) -> dict:
    """A data build's resume state: tensors, numbers, strings and containers only
    (``weights_only=True``), so a ``state.pt`` placed in a shared cache cannot run code."""
    import pickle

    try:
        return torch.load(path, weights_only=True)
    except pickle.UnpicklingError as e:
        raise ValueError(
            f"{path}: refused, it is not a plain resume state ({str(e).splitlines()[0]}); "
            "delete it to rebuild that data from the start"
        ) from None


def collect_sac_chunk(family, task_indices: list[int], budget: SACBudget, seed: int, tick=None):
    """Train one SAC agent per task from scratch; return per task its episodes, in order.

    Args:
        family: the :class:`envs.TaskFamily`.
        task_indices: the chunk's tasks.
        budget: steps, warm-up, updates per step, network width.
        seed: fixes network init, exploration noise and env resets of this chunk.
        tick: optional callable(n_steps) for a progress bar.
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    envs = [family.make_env(t) for t in task_indices]
    n, steps = len(envs), budget.steps_per_task
    act_scale = float(envs[0].action_space.high[0])
    agent = BatchedSAC(n, family.obs_dim, family.act_dim, act_scale, budget.sac)
    buf = {
        "obs": np.zeros((n, steps, family.obs_dim), np.float32),
        "action": np.zeros((n, steps, family.act_dim), np.float32),
        "reward": np.zeros((n, steps), np.float32),
        "next_obs": np.zeros((n, steps, family.obs_dim), np.float32),
        "terminated": np.zeros((n, steps), np.float32),
    }
    tbuf = {k: torch.from_numpy(v) for k, v in buf.items()}  # shares memory with buf
    ends: list[list[tuple[int, bool]]] = [[] for _ in range(n)]  # (end row, terminated)
    obs = np.stack([e.reset(seed=int(rng.integers(2**31)))[0] for e in envs])
    bs = budget.sac.batch_size
    arange = torch.arange(n)[:, None]
    for t in range(steps):
        if t < budget.warmup_steps:
            actions = rng.uniform(-act_scale, act_scale, size=(n, family.act_dim)).astype(
                np.float32
            )
        else:
            actions = agent.act(obs)
        for i, env in enumerate(envs):
            nxt, r, term, trunc, _ = env.step(actions[i])
            # datasets store actions normalised to [-1, 1], the learners' action space
            buf["obs"][i, t], buf["action"][i, t], buf["reward"][i, t] = (
                obs[i],
                actions[i] / act_scale,
                r,
            )
            buf["next_obs"][i, t], buf["terminated"][i, t] = nxt, float(term)
            if term or trunc:
                ends[i].append((t + 1, bool(term)))
                nxt, _ = env.reset(seed=int(rng.integers(2**31)))
            obs[i] = nxt
        if t + 1 >= budget.warmup_steps:
            for _ in range(int(budget.updates_per_step)):
                idx = torch.from_numpy(rng.integers(0, t + 1, size=(n, bs)))
                agent.update(
                    tbuf["obs"][arange, idx],
                    tbuf["action"][arange, idx],
                    tbuf["reward"][arange, idx],
                    tbuf["next_obs"][arange, idx],
                    tbuf["terminated"][arange, idx],
                )
        if tick is not None:
            tick(1)
    for e in envs:
        e.close()
    out = []
    for i in range(n):
        if not ends[i] or ends[i][-1][0] != steps:  # the budget cut the last episode: truncation
            ends[i].append((steps, False))
        out.append(_episodes(buf, ends[i], i))
    return out


def _episodes(buf: dict[str, np.ndarray], ends: list[tuple[int, bool]], i: int) -> list[dict]:
    """Split task ``i``'s chronological rows into episodes at the recorded ends."""
    episodes, start = [], 0
    for end, term in ends:
        sl = slice(start, end)
        episodes.append(
            {
                "obs": buf["obs"][i, sl],
                "action": buf["action"][i, sl],
                "reward": buf["reward"][i, sl],
                "next_obs": buf["next_obs"][i, sl],
                "terminated": term,
                "success": 0.0,
            }
        )
        start = end
    return episodes


def collect_conditioned_chunk(
    family,
    task_indices: list[int],
    budget: SACBudget,
    seed: int,
    tick=None,
    state_dir: Path | None = None,
) -> tuple[list[list[dict]], dict]:
    """Train one task-conditioned SAC agent on a chunk of tasks stepped together.

    Every task keeps its own buffer in chronological order (its dataset); each update draws
    ``batch_size`` rows uniformly over the chunk's (task, row) pairs. Training runs in segments
    of ``segment_steps``: all envs reset at a segment start and the whole state (agent,
    optimisers, RNGs, rows so far) is saved under ``state_dir`` at its end, so a build killed
    mid-chunk resumes at its last segment and yields the bytes of an uninterrupted one.

    Returns per task its episodes, and ``info``: the training curve (per segment: env steps,
    wall seconds, mean return of the episodes that ended in it) and each task's last-10 %
    behaviour return.
    """
    copies = budget.envs_per_task
    slots = [t for t in task_indices for _ in range(copies)]  # one env per (task, copy)
    n, steps = len(slots), budget.steps_per_task
    torch.manual_seed(seed)  # before the agent: its initial weights are part of the data
    rng = np.random.default_rng(seed)
    envs = [family.make_env(t) for t in slots]
    act_scale = float(envs[0].action_space.high[0])
    feats = np.stack([family.task_features(t) for t in slots]).astype(np.float32)
    feats_t = torch.from_numpy(feats)
    agent = ConditionedSAC(family.obs_dim + feats.shape[1], family.act_dim, budget.sac)
    buf = {
        "obs": np.zeros((n, steps, family.obs_dim), np.float32),
        "action": np.zeros((n, steps, family.act_dim), np.float32),
        "reward": np.zeros((n, steps), np.float32),
        "next_obs": np.zeros((n, steps, family.obs_dim), np.float32),
        "terminated": np.zeros((n, steps), np.float32),
    }
    flat = {k: torch.from_numpy(v).view(n * steps, *v.shape[2:]) for k, v in buf.items()}
    ends: list[list[tuple[int, bool]]] = [[] for _ in range(n)]
    curve: list[dict] = []
    t_done, credit, wall = 0, 0.0, 0.0
    state_path = Path(state_dir) / "state.pt" if state_dir is not None else None
    if state_path is not None and state_path.exists():
        st = load_resume_state(state_path)
        agent.load_state_dict(st["agent"])
        torch.set_rng_state(st["torch_rng"])
        rng.bit_generator.state = st["np_rng"]
        t_done, credit, wall = st["t"], st["credit"], st["wall"]
        ends, curve = st["ends"], st["curve"]
        for k_seg in range(0, t_done, budget.segment_steps):
            with np.load(Path(state_dir) / f"segment_{k_seg:08d}.npz") as z:
                for k in buf:
                    buf[k][:, k_seg : k_seg + z[k].shape[1]] = z[k]
        if tick is not None:
            tick(n * t_done)
    bs = budget.sac.batch_size
    for start in range(t_done, steps, budget.segment_steps):
        t_seg = time.perf_counter()
        stop = min(start + budget.segment_steps, steps)
        obs = np.stack([e.reset(seed=int(rng.integers(2**31)))[0] for e in envs]).astype(np.float32)
        for t in range(start, stop):
            if t < budget.warmup_steps:
                actions = rng.uniform(-1.0, 1.0, size=(n, family.act_dim)).astype(np.float32)
            else:
                actions = agent.act(np.concatenate([obs, feats], 1))
            buf["obs"][:, t], buf["action"][:, t] = obs, actions
            for i, env in enumerate(envs):
                nxt, r, term, trunc, _ = env.step(actions[i] * act_scale)
                buf["reward"][i, t], buf["next_obs"][i, t] = r, nxt
                buf["terminated"][i, t] = float(term)
                if term or trunc:
                    ends[i].append((t + 1, bool(term)))
                    nxt, _ = env.reset(seed=int(rng.integers(2**31)))
                obs[i] = nxt
            if t + 1 >= budget.warmup_steps:
                credit += budget.updates_per_step
                while credit >= 1.0:
                    credit -= 1.0
                    task = torch.from_numpy(rng.integers(0, n, size=bs))
                    rows = task * steps + torch.from_numpy(rng.integers(0, t + 1, size=bs))
                    f = feats_t[task]
                    agent.update(
                        torch.cat([flat["obs"][rows], f], 1),
                        flat["action"][rows],
                        flat["reward"][rows],
                        torch.cat([flat["next_obs"][rows], f], 1),
                        flat["terminated"][rows],
                    )
            if tick is not None:
                tick(n)
        for i in range(n):  # a segment end cuts the running episodes: truncations
            if not ends[i] or ends[i][-1][0] != stop:
                ends[i].append((stop, False))
        wall += time.perf_counter() - t_seg
        seg_returns = [
            float(buf["reward"][i, a:b].sum())
            for i in range(n)
            for a, b in zip([0] + [e for e, _ in ends[i][:-1]], [e for e, _ in ends[i]])
            if a >= start
        ]
        curve.append(
            {
                "env_steps": stop,
                "wall_s": round(wall, 2),
                "mean_return": float(np.mean(seg_returns)),
            }
        )
        if state_path is not None:
            from harness.datasets import write_npz  # late import: datasets imports nothing of ours
            from harness.results import atomic_write

            write_npz(
                Path(state_dir) / f"segment_{start:08d}.npz",
                {k: v[:, start:stop] for k, v in buf.items()},
            )
            state = {
                "agent": agent.state_dict(),
                "torch_rng": torch.get_rng_state(),
                "np_rng": rng.bit_generator.state,
                "t": stop,
                "credit": credit,
                "wall": wall,
                "ends": ends,
                "curve": curve,
            }
            atomic_write(state_path, lambda f, state=state: torch.save(state, f))
    for e in envs:
        e.close()
    per_slot = [_episodes(buf, ends[i], i) for i in range(n)]
    per_task = []
    for j in range(len(task_indices)):  # a task's copies merge segment by segment, in order
        own = [(c, per_slot[j * copies + c], ends[j * copies + c]) for c in range(copies)]
        merged = []
        for seg in range(0, steps, budget.segment_steps):
            for _c, eps, ends_c in own:
                starts = [0] + [e for e, _ in ends_c[:-1]]
                merged += [
                    ep for ep, s0 in zip(eps, starts) if seg <= s0 < seg + budget.segment_steps
                ]
        per_task.append(merged)
    late = []
    for eps in per_task:
        k = max(1, len(eps) // 10)
        late.append(float(np.mean([e["reward"].sum() for e in eps[-k:]])))
    return per_task, {"curve": curve, "last10_return": dict(zip(task_indices, late))}
