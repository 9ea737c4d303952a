"""Task families: what a task is and how its environment is built.

A *task family* is a distribution of MDPs sharing observation and action spaces (protocol §1). It
fixes the list of tasks, the train/test split, the horizon and what is scored. This package knows
nothing of learning or of datasets; the harness joins it to the learners.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import gymnasium as gym
import numpy as np


@dataclass(frozen=True)
class Task:
    """One MDP of a family.

    Args:
        index: position in the family's task list (what datasets and splits refer to).
        params: JSON-serialisable task parameters (goal velocity, direction, multipliers …),
            recorded verbatim in the dataset manifest.
    """

    index: int
    params: dict[str, Any] = field(default_factory=dict)


class TaskFamily(ABC):
    """A benchmark family: its tasks, split, dimensions, horizon and score.

    Subclasses set the class attributes and implement :meth:`make_env`. Environments returned by
    :meth:`make_env` are ``gymnasium.Env`` objects that truncate at :attr:`horizon` by themselves
    and expose ``set_task(task)`` so one simulator can be moved between tasks.
    """

    name: str
    obs_dim: int
    act_dim: int
    horizon: int
    score: Literal["return", "success"] = "return"
    #: which behaviour generator makes this family's offline data ("sac" or "scripted")
    collector: ClassVar[str] = "sac"
    #: a re-split of another family's tasks (an out-of-distribution split) reads that family's
    #: datasets: the same tasks, the same bytes; only which tasks train and which test differs
    data_family: ClassVar[str | None] = None

    def __init__(self, tasks: list[Task], train_indices: list[int], test_indices: list[int]):
        overlap = set(train_indices) & set(test_indices)
        self._allow_overlap = getattr(self, "_allow_overlap", False)
        if overlap and not self._allow_overlap:
            raise ValueError(f"{self.name}: train and test tasks overlap: {sorted(overlap)}")
        self.tasks = tasks
        self.train_indices = list(train_indices)
        self.test_indices = list(test_indices)

    @property
    def train_tasks(self) -> list[Task]:
        return [self.tasks[i] for i in self.train_indices]

    @property
    def test_tasks(self) -> list[Task]:
        return [self.tasks[i] for i in self.test_indices]

    @property
    def all_indices(self) -> list[int]:
        """Every task that needs offline data (train and test), in order, without repeats."""
        return sorted(set(self.train_indices) | set(self.test_indices))

    @abstractmethod
    def make_env(self, task: Task | int) -> gym.Env:
        """Build a fresh environment set to ``task``."""

    def task_features(self, task: Task | int) -> np.ndarray:
        """What a behaviour agent is told about the task (never stored in the data).

        A one-hot of the task index by default; families override it with the task's
        parameters, so one task-conditioned agent can share what it learns between tasks.
        """
        out = np.zeros(len(self.tasks), dtype=np.float32)
        out[self.task(task).index] = 1.0
        return out

    def oracle_policy(self, task: Task | int) -> Callable[[np.ndarray], np.ndarray] | None:
        """An optimal (or best known) policy for the task, obs → action in the env's scale,
        where one is easy to write down; ``None`` where not. Data summaries read returns
        against it."""
        return None

    def task(self, task: Task | int) -> Task:
        return self.tasks[task] if isinstance(task, int) else task

    def describe(self) -> dict[str, Any]:
        """What the manifest records about the family."""
        return {
            "name": self.name,
            "obs_dim": self.obs_dim,
            "act_dim": self.act_dim,
            "horizon": self.horizon,
            "score": self.score,
            "train_indices": self.train_indices,
            "test_indices": self.test_indices,
            "tasks": [{"index": t.index, "params": t.params} for t in self.tasks],
        }


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------
_FAMILIES: dict[str, Callable[[], TaskFamily]] = {}
_PREFIXES: dict[str, Callable[[str], TaskFamily]] = {}


def register_family(name: str, factory: Callable[[], TaskFamily]) -> None:
    if name in _FAMILIES:
        raise ValueError(f"task family {name!r} is already registered")
    _FAMILIES[name] = factory


def register_family_prefix(prefix: str, factory: Callable[[str], TaskFamily]) -> None:
    """Register a parametrised family, e.g. ``ml1-`` + a Meta-World class name."""
    _PREFIXES[prefix] = factory


def register_builtin() -> None:
    from envs import metaworld_families, mujoco_families, point_robot  # noqa: F401  (registers)
    from envs.gym_ids import register_gymnasium_ids

    register_gymnasium_ids([*_FAMILIES, *metaworld_families.ml1_names()])


def known_families() -> list[str]:
    register_builtin()
    return sorted(_FAMILIES) + [f"{p}<name>" for p in sorted(_PREFIXES)]


def make_family(name: str) -> TaskFamily:
    """Build a registered family by name; unknown names get an error listing the known ones."""
    register_builtin()

    if name in _FAMILIES:
        return _FAMILIES[name]()
    for prefix, factory in _PREFIXES.items():
        if name.startswith(prefix):
            return factory(name[len(prefix) :])
    raise ValueError(f"unknown task family {name!r}; known families: {', '.join(known_families())}")
