"""The evaluation loop as first written: each test task, then each policy, one after another.

Kept as the reference for the batched ``harness.evaluate.evaluate``: a test checks that both
give the same rows, and the evaluation benchmark times it in the same run as the batched loop.
"""

from typing import Any

import numpy as np
import torch

from algorithms.base import OfflineMetaLearner, Policy
from envs.base import TaskFamily
from harness.datasets import OfflineDataset, transitions_hash
from harness.evaluate import EvalConfig, rollout


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


def evaluate_sequential(
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
    Each task is adapted when its turn comes, with ``adapt``, as first written; with
    ``cfg.adapt_together`` all are adapted first, in one ``adapt_all`` call, as the evaluator
    then does.
    """
    tasks = list(family.test_indices)
    supports = [
        data.adaptation_set(
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
        for t in tasks
    ]
    adapted = learner.adapt_all(supports) if cfg.adapt_together else None
    rows = []
    for i, (t, support) in enumerate(zip(tasks, supports)):
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
        post = score(adapted[i] if adapted is not None else learner.adapt(support))
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
