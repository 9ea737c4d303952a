"""Every family's tasks as gymnasium environment ids, for code that expects ``gymnasium.make``::

    import envs  # registers the ids
    env = gymnasium.make("omrl/cheetah-vel-v0", task=7)

The id is ``omrl/<family>-v0`` for every registered family (``omrl/ml1-reach-v0`` for each
Meta-World class); ``task`` is the task's index in the family (``make_family(name).tasks``).
The horizon is enforced by gymnasium's ``TimeLimit`` wrapper, set to the family's horizon; the
environments' own step counters stop at the same step, so episodes and stored data are the
same either way. ``envs.make_family`` stays the way the harness builds them.
"""

from __future__ import annotations

from functools import lru_cache

import gymnasium as gym
from gymnasium.wrappers import TimeLimit

NAMESPACE = "omrl"


def env_id(family: str) -> str:
    return f"{NAMESPACE}/{family}-v0"


@lru_cache(maxsize=16)
def _family(name: str):
    from envs.base import make_family

    return make_family(name)


def make_task_env(family: str, task: int = 0, **_ignored) -> gym.Env:
    """The entry point behind every id: the family's env for ``task``, within a TimeLimit."""
    fam = _family(family)
    if not isinstance(task, int) or not 0 <= task < len(fam.tasks):
        raise ValueError(f"{family} has tasks 0..{len(fam.tasks) - 1}; got task={task!r}")
    return TimeLimit(fam.make_env(task), max_episode_steps=fam.horizon)


def register_gymnasium_ids(names: list[str]) -> None:
    """Register ``omrl/<name>-v0`` for each family name (idempotent)."""
    for name in names:
        if env_id(name) in gym.registry:
            continue
        gym.register(
            id=env_id(name),
            entry_point="envs.gym_ids:make_task_env",
            kwargs={"family": name},
            # the TimeLimit is added by make_task_env: its length needs the family built
            disable_env_checker=True,
        )
