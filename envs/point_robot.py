"""point-robot: 2-D position control toward a hidden goal (after oyster's ``point_robot.py``).

Small enough to test every algorithm in seconds: observation = position, action = displacement in
[-0.1, 0.1]^2, reward = -||position - goal|| after the move, 20-step episodes, start uniform in
[-1, 1]^2, 100 goals uniform in [-1, 1]^2 from a fixed seed, 80 train / 20 test.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from envs.base import Task, TaskFamily, register_family

N_TASKS = 100
GOAL_SEED = 1337  # oyster seeds its goal list with 1337


class PointRobotEnv(gym.Env):
    metadata = {"render_modes": []}

    def __init__(self, params: dict, horizon: int = 20):
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float64)
        self.action_space = gym.spaces.Box(-0.1, 0.1, shape=(2,), dtype=np.float32)
        self.horizon = horizon
        self.set_task(params)
        self._state = np.zeros(2)
        self._t = 0

    def set_task(self, params: dict) -> None:
        self._goal = np.asarray(params["goal"], dtype=np.float64).copy()

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._state = self.np_random.uniform(-1.0, 1.0, size=2)
        self._t = 0
        return self._state.copy(), {}

    def step(self, action):
        a = np.clip(np.asarray(action, dtype=np.float64), -0.1, 0.1)
        self._state = self._state + a
        self._t += 1
        reward = -float(np.linalg.norm(self._state - self._goal))
        return self._state.copy(), reward, False, self._t >= self.horizon, {}


class PointRobotFamily(TaskFamily):
    name = "point-robot"
    obs_dim = 2
    act_dim = 2
    horizon = 20

    def __init__(self) -> None:
        goals = np.random.default_rng(GOAL_SEED).uniform(-1.0, 1.0, size=(N_TASKS, 2))
        tasks = [Task(i, {"goal": [float(g[0]), float(g[1])]}) for i, g in enumerate(goals)]
        super().__init__(tasks, list(range(80)), list(range(80, 100)))

    def make_env(self, task):
        return PointRobotEnv(self.task(task).params, self.horizon)

    def oracle_policy(self, task):
        """Straight to the goal at full speed (the box's largest step toward it)."""
        goal = np.asarray(self.task(task).params["goal"], np.float64)
        return lambda obs: np.clip(goal - obs, -0.1, 0.1).astype(np.float32)

    def task_features(self, task):
        return np.asarray(self.task(task).params["goal"], np.float32)


register_family("point-robot", PointRobotFamily)


class PointRobotOODFamily(PointRobotFamily):
    """point-robot's 100 goals re-split out of distribution: train on the goals with x < 0,
    test on those with x > 0.5 — every test goal lies outside the train goals' half of the
    square, so offline adaptation extrapolates and online experience has something to add.
    Reads point-robot's datasets (the same tasks and bytes)."""

    name = "point-robot-ood"
    data_family = "point-robot"

    def __init__(self) -> None:
        super().__init__()
        x = [t.params["goal"][0] for t in self.tasks]
        self.train_indices = [i for i, v in enumerate(x) if v < 0.0]
        self.test_indices = [i for i, v in enumerate(x) if v > 0.5]


register_family("point-robot-ood", PointRobotOODFamily)
