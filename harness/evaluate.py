"""The evaluation protocol: adaptation set → adapt → deterministic rollouts.

At an evaluation step the adaptation set of each test task is drawn from (family, seed, task,
step) alone, so every algorithm adapts on the same transitions; each row records the set's
sha256 to prove it. Each
test task is scored before adaptation (the learner's prior policy), after it, and for a uniform
random policy (the 0 of normalised scores); the best behaviour episode of the task's data is the 1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
import torch
from annotated_types import Interval

from algorithms.base import OfflineMetaLearner, Policy, PositiveInt
from envs.base import TaskFamily
from harness.datasets import OfflineDataset, transitions_hash


@dataclass(frozen=True)
class EvalConfig:
    """How each evaluation point is measured."""

    episodes: PositiveInt = 1
    """deterministic episodes per test task and policy"""
    adapt_transitions: PositiveInt = 256
    """size of the adaptation set (the original's 256 ≈ 1.3 episodes)"""
    adapt_trajectories: PositiveInt | None = None
    """use this many whole episodes instead (≤ 5 in the offline meta-RL setting)"""
    adapt_quality: Literal["all", "first", "middle", "last"] = "all"
    """all | first | middle | last: buffer slice the adaptation set comes from"""
    adapt_fraction: Annotated[float, Interval(gt=0.0, le=1.0)] = 1.0 / 3.0
    adapt_sampling: Literal["iid", "window"] = "iid"
    """iid: fresh i.i.d. rows at every evaluation (as the authors'); window: one fixed block of
    consecutive rows per (seed, task)"""


def rollout(
    env,
    policy,
    episodes: int,
    seed: int,
    score: str,
    reset: Callable[[], None] | None = None,
    observe: Callable[[float], None] | None = None,
) -> tuple[float, float]:
    """Mean return and success rate of ``policy`` (callable obs → action) over ``episodes``;
    ``reset`` is called before each episode and ``observe(reward)`` after each step (a policy
    with a history needs both)."""
    returns, successes = [], []
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed + ep)
        if reset is not None:
            reset()
        total, success, done = 0.0, 0.0, False
        while not done:
            action = policy(obs)
            obs, r, term, trunc, info = env.step(action)
            if observe is not None:
                observe(float(r))
            total += r
            success = max(success, float(info.get("success", 0.0)))
            done = term or trunc
        returns.append(total)
        successes.append(success)
    return float(np.mean(returns)), float(np.mean(successes)) if score == "success" else np.nan


def _numpy_policy(policy: Policy, scale: float, device: torch.device, name: str):
    """obs → env action; a learner's wrong answer is a one-line error naming it, never a
    silently scored NaN or out-of-range action."""
    if not isinstance(policy, Policy):
        raise ValueError(
            f"learner {name}: adapt returned {type(policy).__name__}, not a Policy "
            "(subclass algorithms.base.Policy and implement act)"
        )

    def act(obs: np.ndarray) -> np.ndarray:
        x = torch.as_tensor(obs, dtype=torch.float32, device=device).unsqueeze(0)
        a = policy(x)[0].cpu().numpy()
        if not np.isfinite(a).all():
            raise ValueError(f"learner {name}: the policy returned non-finite actions {a}")
        if np.abs(a).max() > 1.0 + 1e-6:
            raise ValueError(
                f"learner {name}: actions must lie in [-1, 1] (the harness scales them to the "
                f"env's bounds); got {np.round(a, 3).tolist()}"
            )
        return (a * scale).astype(np.float32)

    return act


def random_scores(family: TaskFamily, tasks: list[int], episodes: int, seed: int):
    """Per test task: (return, success) of a uniform random policy, seeded."""
    out = {}
    for t in tasks:
        env = family.make_env(t)
        rng = np.random.default_rng(seed * 7919 + t)
        space = env.action_space

        def act(_obs, rng=rng, space=space):
            return rng.uniform(space.low, space.high).astype(np.float32)

        out[t] = rollout(env, act, episodes, seed=10_000 + seed * 100 + t, score=family.score)
        env.close()
    return out


def evaluate(
    learner: OfflineMetaLearner,
    family: TaskFamily,
    data: OfflineDataset,
    seed: int,
    cfg: EvalConfig,
    envs: dict[int, Any] | None = None,
    step: int = 0,
) -> list[dict[str, Any]]:
    """One evaluation point: a row per test task with pre/post-adaptation return and success.

    The adaptation sets depend on (family, seed, task, ``step``) only, never on the learner.
    """
    rows = []
    for t in family.test_indices:
        support = data.adaptation_set(
            t,
            seed,
            n_transitions=cfg.adapt_transitions,
            n_trajectories=cfg.adapt_trajectories,
            quality=cfg.adapt_quality,
            fraction=cfg.adapt_fraction,
            sampling=cfg.adapt_sampling,
            step=step,
            family=family.name,
        )
        env = envs[t] if envs is not None else family.make_env(t)
        scale = float(env.action_space.high[0])
        ep_seed = 10_000 + seed * 100 + t  # the same start states for every algorithm

        def score(policy: Policy, env=env, scale=scale, ep_seed=ep_seed):
            act = _numpy_policy(policy, scale, learner.device, learner.name)
            dev = learner.device

            def observe(r: float) -> None:
                policy.observe(torch.tensor([r], dtype=torch.float32, device=dev))

            return rollout(env, act, cfg.episodes, ep_seed, family.score, policy.reset, observe)

        try:
            pre = score(learner.prior_policy())
        except NotImplementedError:
            pre = (np.nan, np.nan)
        post = score(learner.adapt(support))
        rows.append(
            {
                "task": t,
                "pre_return": pre[0],
                "post_return": post[0],
                "pre_success": pre[1],
                "post_success": post[1],
                "adaptation_sha256": transitions_hash(support)[:16],
            }
        )
        if envs is None:
            env.close()
    return rows
