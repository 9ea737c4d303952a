"""A small point-robot offline meta-RL problem built in-process, for the learning tests.

Behaviour per task: the goal-directed expert (clip(goal − pos)) mixed with uniform random actions
with a probability that falls from 1 to 0.1 over the buffer, so buffers run from poor to good like
a learning agent's replay buffer. Train and test tasks are disjoint goals.
"""

from __future__ import annotations

import numpy as np
import torch

from algorithms.base import Policy
from algorithms.batch import Transitions
from envs.point_robot import PointRobotEnv
from harness.datasets import OfflineDataset, assemble_buffer


def goals(n: int, seed: int = 7) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1.0, 1.0, size=(n, 2))


def behaviour_episodes(goal: np.ndarray, n_episodes: int, rng) -> list[dict]:
    env = PointRobotEnv({"goal": goal})
    episodes = []
    for eps in np.linspace(1.0, 0.1, n_episodes):
        obs, _ = env.reset(seed=int(rng.integers(2**31)))
        rows = {"obs": [], "action": [], "reward": [], "next_obs": []}
        for _ in range(env.horizon):
            a = np.clip(goal - obs, -0.1, 0.1) + rng.normal(0, 0.02, 2)
            if rng.random() < eps:
                a = rng.uniform(-0.1, 0.1, 2)
            a = np.clip(a, -0.1, 0.1)
            nxt, r, *_ = env.step(a)
            for k, v in zip(rows, (obs, a / 0.1, r, nxt)):  # actions stored in [-1, 1]
                rows[k].append(v)
            obs = nxt
        episodes.append({**{k: np.array(v) for k, v in rows.items()}, "terminated": False})
    return episodes


def make_dataset(n_train: int = 20, n_test: int = 5, n_episodes: int = 40, seed: int = 0):
    """(dataset, train task indices, test task indices, goals)."""
    rng = np.random.default_rng(seed)
    g = goals(n_train + n_test, seed=7 + seed)
    per_task = [assemble_buffer(behaviour_episodes(goal, n_episodes, rng)) for goal in g]
    ds = OfflineDataset.from_arrays(per_task, list(range(len(g))))
    return ds, list(range(n_train)), list(range(n_train, n_train + n_test)), g


def evaluate(policy_fn, goal: np.ndarray, episodes: int = 4, seed: int = 123) -> float:
    """Mean return of a deterministic policy (obs tensor [1, 2] → action in [-1, 1]); a
    :class:`~algorithms.base.Policy` is reset before each episode and shown each reward."""
    env = PointRobotEnv({"goal": goal})
    total = 0.0
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed + ep)
        if isinstance(policy_fn, Policy):
            policy_fn.reset()
        for _ in range(env.horizon):
            with torch.no_grad():
                a = policy_fn(torch.as_tensor(obs, dtype=torch.float32)[None])[0].numpy()
            obs, r, *_ = env.step(0.1 * np.clip(a, -1, 1))
            if isinstance(policy_fn, Policy):
                policy_fn.observe(torch.tensor([float(r)]))
            total += r
    return total / episodes


def random_return(goal: np.ndarray, episodes: int = 4, seed: int = 123) -> float:
    rng = np.random.default_rng(seed)
    return evaluate(
        lambda o: torch.as_tensor(rng.uniform(-1, 1, (1, 2)), dtype=torch.float32),
        goal,
        episodes,
        seed,
    )


def support_set(ds: OfflineDataset, task: int, n: int = 256) -> Transitions:
    """The adaptation set: the last ``n`` rows of the task's buffer (its best behaviour)."""
    return ds.adaptation_set(task, seed=0, n_transitions=n, quality="last", fraction=0.4)


def meta_train(learner, ds: OfflineDataset, train: list[int], steps: int, seed: int = 0) -> None:
    """``steps`` meta-steps of ``learner`` on batches of random train tasks, as a suite's run
    samples them (the learning tests' loop)."""
    from algorithms import inner_sampling, outer_segment

    cfg = learner.config
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        pick = torch.randperm(len(train), generator=g)[: cfg.tasks_per_batch].tolist()
        batch = ds.meta_batch(
            [train[i] for i in pick],
            pick,
            cfg.inner_batch,
            cfg.outer_batch,
            g,
            outer_segment=outer_segment(cfg),
            inner_sampling=inner_sampling(cfg),
        )
        learner.train_step(batch)
