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

from algorithms.base import OfflineMetaLearner, Policy, PolicyBatch, PositiveInt, batch_of
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
    final_draws: Annotated[int, Interval(ge=0)] = 5
    """after the last step, evaluate the final learner on this many more independent
    adaptation draws per test task (each its own seeded i.i.d. set and episode starts,
    identical across algorithms): the multi-draw final score, a robustness column beside the
    run score (0: none)"""
    adapt_together: bool = False
    """adapt with ``adapt_all``: products fused across tasks where a learner batches its
    adaptation (MACAW, Meta-BC, MT+FT), faster still, but a task's adapted policy then equals
    its own adaptation's only up to float rounding, which contact-rich dynamics can grow into a
    visible return difference (docs/algorithms.md). Off: ``adapt_each``, every task's numbers
    exactly as if it were adapted alone, so they depend on that task alone."""
    online_rounds: Annotated[int, Interval(ge=0)] = 0
    """after training, rounds of online fine-tuning on the test tasks (harness/online.py;
    one trajectory each; 0: none — online interaction happens only here, never in training)"""
    online_tasks: list[int] | None = None
    """the test tasks fine-tuned online (default: all)"""
    online_episodes: PositiveInt = 3
    """deterministic episodes scoring the policy at each round"""
    online_burn_in: Annotated[int, Interval(ge=0)] = 25
    online_value_steps: Annotated[int, Interval(ge=0)] = 100
    online_policy_steps: Annotated[int, Interval(ge=0)] = 200
    online_lr: Annotated[float, Interval(gt=0.0)] = 1e-5
    online_batch: PositiveInt = 256
    """the learner's fine-tuning settings (algorithms.base.OnlineConfig; the authors' values)"""


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


def _checked_actions(a: np.ndarray, name: str) -> np.ndarray:
    """A learner's wrong answer is a one-line error naming it, never a silently scored NaN or
    out-of-range action."""
    if np.abs(a).max() <= 1.0 + 1e-6:  # one pass in the common case (False for a NaN)
        return a
    if not np.isfinite(a).all():
        raise ValueError(f"learner {name}: the policy returned non-finite actions {a}")
    if np.abs(a).max() > 1.0 + 1e-6:
        raise ValueError(
            f"learner {name}: actions must lie in [-1, 1] (the harness scales them to the "
            f"env's bounds); got {np.round(a, 3).tolist()}"
        )
    return a


def _step(envs: list, idx: np.ndarray, actions: np.ndarray):
    """Step ``envs[i]`` with ``actions[k]`` for ``i = idx[k]``: observations ``[m, d]``,
    rewards, episode ends and, where every env reports it, ``info["success"]``, as arrays."""
    out = [envs[i].step(a) for i, a in zip(idx, actions, strict=True)]
    won = [o[4]["success"] for o in out if "success" in o[4]]
    return (
        np.stack([o[0] for o in out]),
        np.array([o[1] for o in out], np.float64),
        np.array([o[2] or o[3] for o in out], bool),
        np.array(won, np.float64) if len(won) == len(out) else None,
    )


def rollout_batch(
    envs: list,
    batch: PolicyBatch,
    episodes: int,
    seeds: list[int],
    score: str,
    device: torch.device,
    name: str,
) -> list[tuple[float, float]]:
    """Per environment: mean return and success rate of its policy (row ``i`` of ``batch``)
    over ``episodes``, all environments stepped together with one ``act`` per step.

    Each environment's episode ``ep`` starts from ``reset(seed=seeds[i] + ep)`` and every row
    is computed as it would be alone, so the numbers equal :func:`rollout` of each policy on
    its own (a test pins it); an environment whose episode ended waits for the others.
    """
    n = len(envs)
    # float32, as the per-row ``actions[i] * float(high)`` NumPy computes (a Python float
    # multiplies a float32 array in float32), so one product for all rows gives the same bits
    scales = np.array([[env.action_space.high[0]] for env in envs], dtype=np.float32)
    act_dim = envs[0].action_space.shape[0]
    returns = np.zeros((episodes, n))
    successes = np.zeros((episodes, n))
    everyone = np.arange(n)
    for ep in range(episodes):
        obs = np.stack([env.reset(seed=s + ep)[0] for env, s in zip(envs, seeds, strict=True)])
        batch.reset()
        active = np.ones(n, bool)
        ret, success = returns[ep], successes[ep]  # float64 sums, as Python floats' would be
        while active.any():
            # a fresh float32 copy (a policy may keep it), rounded as torch.as_tensor rounds
            x = torch.from_numpy(obs.astype(np.float32)).to(device)
            stepped = active.tolist()
            actions = batch.act(x, stepped)
            if tuple(actions.shape) != (n, act_dim):  # never broadcast a wrong shape into a score
                raise ValueError(
                    f"learner {name}: its policies' actions came out shaped "
                    f"{tuple(actions.shape)} for {n} environments, expected {(n, act_dim)}: "
                    f"a policy's act must return [B, {act_dim}] for obs [B, obs_dim]"
                )
            actions = actions.cpu().numpy()
            idx = everyone if all(stepped) else np.flatnonzero(active)
            env_actions = _checked_actions(actions[idx], name) * scales[idx]
            o, r, done, won = _step(envs, idx, env_actions)
            obs[idx] = o
            ret[idx] += r
            if won is not None:
                success[idx] = np.maximum(success[idx], won)
            active[idx] = ~done
            if not batch.stateless:
                rewards = np.zeros(n)
                rewards[idx] = r
                batch.observe(torch.tensor(rewards, dtype=torch.float32, device=device), stepped)
    out = []
    for i in range(n):
        success = float(np.mean(successes[:, i])) if score == "success" else np.nan
        out.append((float(np.mean(returns[:, i])), success))
    return out


def _policy_batch(policies: list[Policy], name: str) -> PolicyBatch:
    for p in policies:
        if not isinstance(p, Policy):
            raise ValueError(
                f"learner {name}: adapt returned {type(p).__name__}, not a Policy "
                "(subclass algorithms.base.Policy and implement act)"
            )
    return batch_of(policies)


def make_eval_envs(family: TaskFamily, tasks: list[int]) -> dict[tuple[int, str], Any]:
    """Two environments per test task, one for the prior and one for the adapted policy:
    the evaluator steps them side by side."""
    return {(t, kind): family.make_env(t) for t in tasks for kind in ("pre", "post")}


def evaluate(
    learner: OfflineMetaLearner,
    family: TaskFamily,
    data: OfflineDataset,
    seed: int,
    cfg: EvalConfig,
    envs: dict[tuple[int, str], Any] | None = None,
    step: int = 0,
    draw: int = 0,
) -> list[dict[str, Any]]:
    """One evaluation point: a row per test task with pre/post-adaptation return and success.

    The adaptation sets depend on (family, seed, task, ``step``) only, never on the learner.
    All test tasks are adapted in one call: ``adapt_each``, every task exactly as it would be
    alone (MACAW, Meta-BC and MT+FT batch it with per-task products), or with
    ``cfg.adapt_together`` ``adapt_all``, faster and equal up to float rounding. Every test
    task's prior and adapted policies roll out together (:func:`rollout_batch`);
    ``envs`` (from :func:`make_eval_envs`) are reused across evaluation points when given.
    ``draw`` > 0: another independent adaptation set and episode start per task (the
    multi-draw final score); 0, the curve's own.
    """
    tasks = list(family.test_indices)
    own = envs is None
    if own:
        envs = make_eval_envs(family, tasks)
    supports, entries = {}, []  # entries: (task, kind, policy)
    for t in tasks:
        supports[t] = data.adaptation_set(
            t,
            seed,
            n_transitions=cfg.adapt_transitions,
            n_trajectories=cfg.adapt_trajectories,
            quality=cfg.adapt_quality,
            fraction=cfg.adapt_fraction,
            sampling=cfg.adapt_sampling,
            step=step,
            family=family.name,
            draw=draw,
        )
    sets = [supports[t] for t in tasks]
    call = "adapt_all" if cfg.adapt_together else "adapt_each"
    adapted = getattr(learner, call)(sets)
    if not isinstance(adapted, list | tuple) or len(adapted) != len(tasks):
        got = len(adapted) if isinstance(adapted, list | tuple) else type(adapted).__name__
        raise ValueError(
            f"learner {learner.name}: {call} returned {got} for {len(tasks)} adaptation "
            "sets; return one Policy per set, in order"
        )
    try:
        prior = learner.prior_policy()
    except NotImplementedError:
        prior = None
    # one prior policy serves every task, unless it keeps a history: then one per environment
    for i, (t, post) in enumerate(zip(tasks, adapted)):
        if prior is not None:
            if i and getattr(prior, "keeps_history", True):  # not a Policy: the check below
                prior = learner.prior_policy()
            entries.append((t, "pre", prior))
        entries.append((t, "post", post))
    try:
        scores = rollout_batch(
            [envs[(t, kind)] for t, kind, _ in entries],
            _policy_batch([p for _, _, p in entries], learner.name),
            cfg.episodes,
            # the same starts for every algorithm; another start per draw
            [10_000 + seed * 100 + t + 100_000 * draw for t, _, _ in entries],
            family.score,
            learner.device,
            learner.name,
        )
    finally:
        if own:
            for env in envs.values():
                env.close()
    got = {(t, kind): sc for (t, kind, _), sc in zip(entries, scores, strict=True)}
    rows = []
    for t in tasks:
        pre = got.get((t, "pre"), (np.nan, np.nan))
        post = got[(t, "post")]
        rows.append(
            {
                "task": t,
                "pre_return": pre[0],
                "post_return": post[0],
                "pre_success": pre[1],
                "post_success": post[1],
                "adaptation_sha256": transitions_hash(supports[t])[:16],
            }
        )
    return rows
