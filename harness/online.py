"""Online fine-tuning after offline adaptation: the MACAW paper's out-of-distribution experiment.

After meta-training (offline, always), per chosen test task: the learner adapts to the task's
offline adaptation set (the same set every algorithm gets), then rounds of — score the current
policy with ``episodes`` deterministic episodes; roll the exploration policy out for one
trajectory; append it to the task's online buffer (empty at first, as the authors' emptied
replay buffer: the adaptation set is not replayed); hand the buffer to the learner's
:class:`~algorithms.base.OnlineFinetuner`. The x-axis of the curves is the number of
online environment steps of those trajectories (evaluation episodes are not counted, as the
authors' plot). A learner without ``online_finetuner`` is reported as "no online fine-tuning".

Online interaction happens only here, in the evaluation phase of a suite that asks for it
(``online_rounds`` > 0 in its ``[eval]``); meta-training never steps an environment.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from algorithms.base import OfflineMetaLearner, OnlineConfig, Policy
from algorithms.batch import Transitions
from envs.base import TaskFamily
from harness.datasets import OfflineDataset, derived_fields, episode_fields
from harness.evaluate import EvalConfig, rollout

ONLINE_COLUMNS = [
    "suite",
    "algorithm",
    "family",
    "seed",
    "task",
    "round",
    "env_steps",
    "return",
    "success",
    "random_return",
    "behaviour_best",
]


def online_config(ecfg: EvalConfig) -> OnlineConfig:
    """The learner-side settings from a suite's ``[eval]``."""
    return OnlineConfig(
        burn_in=ecfg.online_burn_in,
        value_steps=ecfg.online_value_steps,
        policy_steps=ecfg.online_policy_steps,
        lr=ecfg.online_lr,
        batch=ecfg.online_batch,
    )


def supports_online(learner: OfflineMetaLearner) -> bool:
    return type(learner).online_finetuner is not OfflineMetaLearner.online_finetuner


def _numpy_act(policy: Policy, scale: np.ndarray, device: torch.device):
    def act(obs: np.ndarray) -> np.ndarray:
        x = torch.as_tensor(obs, dtype=torch.float32, device=device).unsqueeze(0)
        a = policy(x)[0].cpu().numpy()
        if not np.isfinite(a).all() or np.abs(a).max() > 1.0 + 1e-6:
            raise ValueError(f"online policy returned actions outside [-1, 1]: {a}")
        return (a * scale).astype(np.float32)

    return act


def collect_trajectory(env, policy: Policy, seed: int, device: torch.device) -> Transitions:
    """One episode of ``policy`` as transitions with the protocol §2 fields."""
    act = _numpy_act(policy, env.action_space.high, device)
    obs, _ = env.reset(seed=seed)
    policy.reset()
    rows: dict[str, list] = {"obs": [], "action": [], "reward": [], "next_obs": []}
    terminated = False
    while True:
        a = act(obs)
        nxt, r, term, trunc, _ = env.step(a)
        policy.observe(torch.tensor([float(r)], dtype=torch.float32))
        for k, v in zip(rows, (obs, a / env.action_space.high, r, nxt), strict=True):
            rows[k].append(v)
        obs = nxt
        if term or trunc:
            terminated = bool(term)
            break
    arrays = {k: np.asarray(v) for k, v in rows.items()}
    f = episode_fields(**arrays, terminated=terminated)
    f.update(derived_fields(f["reward"], np.array([0])))
    return Transitions(**{k: torch.from_numpy(np.ascontiguousarray(f[k])) for k in f})


def online_rows(
    learner: OfflineMetaLearner,
    family: TaskFamily,
    data: OfflineDataset,
    seed: int,
    ecfg: EvalConfig,
    step: int,
) -> list[dict[str, Any]]:
    """The online curve of each chosen test task: one row per (task, round)."""
    tasks = list(ecfg.online_tasks or family.test_indices)
    unknown = sorted(set(tasks) - set(family.test_indices))
    if unknown:
        raise ValueError(f"online_tasks {unknown} are not test tasks of {family.name}")
    ocfg = online_config(ecfg)
    rows = []
    for t in tasks:
        support = data.adaptation_set(
            t,
            seed,
            n_transitions=ecfg.adapt_transitions,
            n_trajectories=ecfg.adapt_trajectories,
            quality=ecfg.adapt_quality,
            fraction=ecfg.adapt_fraction,
            sampling=ecfg.adapt_sampling,
            step=step,
            family=family.name,
        )
        torch.manual_seed(1_000_003 * seed + t)  # the finetuner's generators: per (seed, task)
        ft = learner.online_finetuner(support, ocfg)
        env = family.make_env(t)
        buffer: Transitions | None = None  # online rows only, as the authors' emptied buffer
        env_steps = 0
        for r in range(ecfg.online_rounds + 1):
            act = _numpy_act(ft.policy(), env.action_space.high, learner.device)
            start = 20_000 + seed * 100 + t  # the same starts every round: the curve is the policy
            ret, success = rollout(env, act, ecfg.online_episodes, start, family.score)
            rows.append(
                {"task": t, "round": r, "env_steps": env_steps, "return": ret, "success": success}
            )
            if r == ecfg.online_rounds:
                break
            traj = collect_trajectory(
                env, ft.explore(), 50_000 + seed * 100 + t + 1_000 * r, learner.device
            )
            env_steps += len(traj)
            buffer = traj if buffer is None else Transitions.cat([buffer, traj])
            ft.update(buffer, r)
        env.close()
    return rows
