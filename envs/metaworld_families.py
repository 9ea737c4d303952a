"""Meta-World families: ml1-<class>, ml10, ml45 (protocol §3), on Meta-World v3.

A task is one (class, goal/object configuration) of a Meta-World benchmark built from a fixed
seed, so the manifest can name it by (class, position in the benchmark's task list). The ML
benchmarks hide the goal (the last 3 observation entries are zero); :meth:`MetaWorldTaskEnv.
expert_action` gives the package's scripted policy the true goal, which it needs to succeed.
Episodes last 500 steps *(ours; the paper's Meta-World v1 runs used 150)*; the score is success
at any step of the episode.
"""

from __future__ import annotations

from functools import lru_cache

import gymnasium as gym
import metaworld
import numpy as np
from metaworld.policies import ENV_POLICY_MAP

from envs.base import Task, TaskFamily, register_family, register_family_prefix

HORIZON = 500
BENCHMARK_SEED = 0
TASKS_PER_CLASS = 10  # of Meta-World's 50 per class: keeps ML10/ML45 data within a CPU budget


@lru_cache(maxsize=8)
def _benchmark(kind: str, env_name: str | None = None):
    """Build a Meta-World benchmark once per process (ML45 takes ~18 s)."""
    if kind == "ML1":
        return metaworld.ML1(env_name, seed=BENCHMARK_SEED)
    return getattr(metaworld, kind)(seed=BENCHMARK_SEED)


def _resolve(params: dict):
    bench = _benchmark(params["benchmark"], params.get("ml1_class"))
    tasks = bench.train_tasks if params["split"] == "train" else bench.test_tasks
    classes = bench.train_classes if params["split"] == "train" else bench.test_classes
    task = tasks[params["task_list_index"]]
    assert task.env_name == params["env_name"], "Meta-World task list changed under us"
    return classes[task.env_name], task


class MetaWorldTaskEnv(gym.Env):
    """One Meta-World class, movable between that class's tasks with ``set_task(params)``."""

    metadata = {"render_modes": []}

    def __init__(self, params: dict, horizon: int = HORIZON):
        env_cls, task = _resolve(params)
        self._env_name = params["env_name"]
        self._mw = env_cls()
        self._mw.max_path_length = max(self._mw.max_path_length, horizon)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(39,), dtype=np.float64)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(4,), dtype=np.float32)
        self.horizon = horizon
        self._policy = ENV_POLICY_MAP[self._env_name]()
        self._t = 0
        self.set_task(params)

    def set_task(self, params: dict) -> None:
        if params["env_name"] != self._env_name:
            raise ValueError(f"this env is {self._env_name}, not {params['env_name']}")
        self._mw.set_task(_resolve(params)[1])  # takes effect at the next reset()
        self._needs_reset = True

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        obs, info = self._mw.reset(seed=seed)
        self._t = 0
        self._needs_reset = False
        return np.asarray(obs, dtype=np.float64), info

    def step(self, action):
        if self._needs_reset:
            raise RuntimeError("call reset() after set_task() and after an episode ends")
        obs, reward, _, _, info = self._mw.step(np.asarray(action, dtype=np.float32))
        self._t += 1
        truncated = self._t >= self.horizon
        if truncated:
            self._needs_reset = True
        info = {"success": float(info.get("success", 0.0))}
        return np.asarray(obs, dtype=np.float64), float(reward), False, truncated, info

    def expert_action(self, obs: np.ndarray) -> np.ndarray:
        """The scripted expert's action, given the true goal the benchmark hides."""
        seen = np.array(obs, dtype=np.float64, copy=True)
        # Meta-World 3 has no public getter of the goal the ML benchmarks hide in the obs
        seen[-3:] = self._mw._get_pos_goal()
        return np.clip(self._policy.get_action(seen), -1.0, 1.0).astype(np.float32)

    def close(self):
        self._mw.close()


class MetaWorldFamily(TaskFamily):
    obs_dim, act_dim, horizon = 39, 4, HORIZON
    score = "success"
    collector = "scripted"

    def __init__(self, name: str, kind: str, ml1_class: str | None, per_class: dict[str, int]):
        self.name = name
        bench = _benchmark(kind, ml1_class)
        tasks: list[Task] = []
        split_idx: dict[str, list[int]] = {"train": [], "test": []}
        for split in ("train", "test"):
            counts: dict[str, int] = {}
            for pos, t in enumerate(bench.train_tasks if split == "train" else bench.test_tasks):
                if counts.get(t.env_name, 0) >= per_class[split]:
                    continue
                counts[t.env_name] = counts.get(t.env_name, 0) + 1
                params = {
                    "benchmark": kind,
                    "split": split,
                    "env_name": t.env_name,
                    "task_list_index": pos,
                }
                if ml1_class is not None:
                    params["ml1_class"] = ml1_class
                split_idx[split].append(len(tasks))
                tasks.append(Task(len(tasks), params))
        super().__init__(tasks, split_idx["train"], split_idx["test"])

    def make_env(self, task):
        return MetaWorldTaskEnv(self.task(task).params, self.horizon)


def _ml1(name: str) -> MetaWorldFamily:
    env_name = name if name.endswith("-v3") else f"{name}-v3"
    if env_name not in ENV_POLICY_MAP:
        known = ", ".join(sorted(n[:-3] for n in ENV_POLICY_MAP))
        raise ValueError(f"unknown Meta-World class {name!r} for ml1-<class>; known: {known}")
    # ML1: goal variation within one class; 20 train / 5 held-out test goal configurations
    return MetaWorldFamily(f"ml1-{name}", "ML1", env_name, {"train": 20, "test": 5})


def ml1_names() -> list[str]:
    """Every ``ml1-<class>`` family name (one per Meta-World class with a scripted expert)."""
    return sorted(f"ml1-{n[:-3]}" for n in ENV_POLICY_MAP if n.endswith("-v3"))


register_family_prefix("ml1-", _ml1)
register_family(
    "ml10",
    lambda: MetaWorldFamily(
        "ml10", "ML10", None, {"train": TASKS_PER_CLASS, "test": TASKS_PER_CLASS}
    ),
)
register_family(
    "ml45",
    lambda: MetaWorldFamily(
        "ml45", "ML45", None, {"train": TASKS_PER_CLASS, "test": TASKS_PER_CLASS}
    ),
)
