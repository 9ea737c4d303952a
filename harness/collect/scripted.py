"""Meta-World behaviour data: the package's scripted experts plus Gaussian action noise.

A noise level ℓ falls linearly over a task's episodes from 1 to 0: each step takes a uniform
random action with probability ℓ, else the expert's action plus N(0, (ℓ·max_noise)²). Gaussian
noise alone does not make the easy classes fail (reach succeeds under σ = 4), the random-action
part does; so each buffer reads like a learning curve (failure early, success late) and the
quality slices of protocol §2 mean something. The
expert sees the true goal (see ``envs.metaworld_families``); the stored observation keeps the
benchmark's hidden goal. Each episode is labelled with its return and success.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ScriptedBudget:
    episodes_per_task: int = 10
    max_noise: float = 1.0
    """σ of the Gaussian action noise at level 1 (actions live in [-1, 1])"""
    chunk_size: int = 5
    """tasks per work unit (the unit of resume and of parallelism)"""


def collect_scripted_task(family, task_index: int, budget: ScriptedBudget, seed: int, tick=None):
    rng = np.random.default_rng(seed)
    env = family.make_env(task_index)
    n_ep = budget.episodes_per_task
    levels = np.linspace(1.0, 0.0, n_ep) if n_ep > 1 else np.zeros(1)
    episodes = []
    for level in levels:
        sigma = budget.max_noise * level
        obs, _ = env.reset(seed=int(rng.integers(2**31)))
        rows = {"obs": [], "action": [], "reward": [], "next_obs": []}
        success, done = 0.0, False
        while not done:
            a = env.expert_action(obs) + sigma * rng.standard_normal(family.act_dim)
            if rng.random() < level:
                a = rng.uniform(-1.0, 1.0, family.act_dim)
            a = np.clip(a, -1.0, 1.0).astype(np.float32)
            nxt, r, term, trunc, info = env.step(a)
            for k, v in zip(rows, (obs, a, r, nxt)):
                rows[k].append(v)
            success = max(success, float(info.get("success", 0.0)))
            obs, done = nxt, term or trunc
        if tick is not None:
            tick(len(rows["reward"]))
        episodes.append(
            {
                "obs": np.array(rows["obs"]),
                "action": np.array(rows["action"]),
                "reward": np.array(rows["reward"]),
                "next_obs": np.array(rows["next_obs"]),
                "terminated": bool(term),
                "success": success,
                "noise": float(level),
            }
        )
    env.close()
    return episodes


def collect_scripted_chunk(family, task_indices, budget: ScriptedBudget, seed: int, tick=None):
    return [
        collect_scripted_task(family, t, budget, seed + 7919 * k, tick)
        for k, t in enumerate(task_indices)
    ]
