"""MuJoCo families of the paper: cheetah-dir, cheetah-vel, ant-dir, walker-params (protocol §3).

Built on gymnasium's ``-v5`` models (MuJoCo 3), with observations and rewards rewritten to the
definitions of the original task code (oyster / rand_param_envs, as used by MACAW). Every
environment truncates at the family horizon (200) by itself and exposes ``set_task(params)``.
"""

from __future__ import annotations

import mujoco
import numpy as np
from gymnasium import spaces
from gymnasium.envs.mujoco.ant_v5 import AntEnv
from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv
from gymnasium.envs.mujoco.walker2d_v5 import Walker2dEnv

from envs.base import Task, TaskFamily, register_family

HORIZON = 200


def _obs_space(dim: int) -> spaces.Box:
    return spaces.Box(-np.inf, np.inf, shape=(dim,), dtype=np.float64)


class _HorizonMixin:
    """Counts steps and truncates at the family horizon (episodes are 200 steps, protocol §3);
    steps the simulator without gymnasium's per-call overhead (:meth:`_simulate`)."""

    horizon: int = HORIZON
    _t: int = 0
    contact_forces: bool = True
    """whether the reward reads ``cfrc_ext`` (ant's contact cost): only then is the extra
    ``mj_rnePostConstraint`` pass that fills it worth its time; it changes no state"""

    def reset(self, *, seed=None, options=None):
        self._t = 0
        return super().reset(seed=seed, options=options)

    def _tick(self) -> bool:
        self._t += 1
        return self._t >= self.horizon

    def _simulate(self, action) -> None:
        """gymnasium's ``do_simulation`` without its per-step overhead (an ``np.array`` copy
        for the shape check): the same calls into MuJoCo, so the same numbers bit for bit. The
        simulator is most of an evaluation point's time, and on a slow-Python host (a 2-core
        Xeon) a cheetah step spent about half of it outside MuJoCo."""
        action = np.asarray(action)
        if action.shape != (self.model.nu,):
            raise ValueError(f"action shaped {action.shape}, expected {(self.model.nu,)}")
        self.data.ctrl[:] = action
        mujoco.mj_step(self.model, self.data, nstep=self.frame_skip)
        if self.contact_forces:  # as gymnasium: cfrc_ext, which ant's contact cost reads
            mujoco.mj_rnePostConstraint(self.model, self.data)

    def _constants(self) -> None:
        """Per-step lookups done once: the step's length and the torso's body id."""
        self._dt = self.model.opt.timestep * self.frame_skip
        self._torso = self.model.body("torso").id


# ---------------------------------------------------------------------------------------------
# HalfCheetah: obs = qpos[1:] (8) + qvel (9) + torso centre of mass (3) = 20
# ---------------------------------------------------------------------------------------------
class CheetahTaskEnv(_HorizonMixin, HalfCheetahEnv):
    """HalfCheetah whose reward is set by the task: a direction or a target velocity."""

    contact_forces = False

    def __init__(self, params: dict, **kwargs):
        super().__init__(**kwargs)
        self.observation_space = _obs_space(20)
        self._constants()
        self.set_task(params)

    def set_task(self, params: dict) -> None:
        self._direction = float(params.get("direction", 1.0))
        self._goal_vel = params.get("velocity")

    def _get_obs(self):
        d = self.data
        return np.concatenate([d.qpos[1:], d.qvel, d.xpos[self._torso]])  # copies

    def step(self, action):
        x_before = self.data.qpos[0]
        self._simulate(action)
        vx = (self.data.qpos[0] - x_before) / self._dt
        ctrl_cost = 0.05 * float(np.square(action).sum())  # 0.5 * 0.1 * |a|^2, as oyster
        if self._goal_vel is None:
            progress = self._direction * vx
        else:
            progress = -abs(vx - self._goal_vel)
        reward = progress - ctrl_cost
        info = {"x_velocity": vx, "reward_progress": progress, "reward_ctrl": -ctrl_cost}
        return self._get_obs(), float(reward), False, self._tick(), info


class CheetahDirFamily(TaskFamily):
    """Two tasks, run forward or backward; test = train, as in the paper."""

    name = "cheetah-dir"
    obs_dim, act_dim, horizon = 20, 6, HORIZON
    _allow_overlap = True

    def __init__(self) -> None:
        tasks = [Task(0, {"direction": 1.0}), Task(1, {"direction": -1.0})]
        super().__init__(tasks, [0, 1], [0, 1])

    def make_env(self, task):
        return CheetahTaskEnv(self.task(task).params)

    def task_features(self, task):
        return np.array([self.task(task).params["direction"]], np.float32)


class CheetahVelFamily(TaskFamily):
    """40 target velocities linspace(0.075, 3, 40); test indices 2, 7, 15, 23, 26."""

    name = "cheetah-vel"
    obs_dim, act_dim, horizon = 20, 6, HORIZON
    TEST = [2, 7, 15, 23, 26]

    def __init__(self) -> None:
        vels = np.linspace(0.075, 3.0, 40)
        tasks = [Task(i, {"velocity": float(v)}) for i, v in enumerate(vels)]
        train = [i for i in range(40) if i not in self.TEST]
        super().__init__(tasks, train, list(self.TEST))

    def make_env(self, task):
        return CheetahTaskEnv(self.task(task).params)

    def task_features(self, task):
        return np.array([self.task(task).params["velocity"]], np.float32)


# ---------------------------------------------------------------------------------------------
# Ant: obs = qpos[2:] + qvel = 27 (no contact forces); directional reward; falls end it
# ---------------------------------------------------------------------------------------------
class AntDirEnv(_HorizonMixin, AntEnv):
    def __init__(self, params: dict, **kwargs):
        super().__init__(include_cfrc_ext_in_observation=False, **kwargs)
        self.observation_space = _obs_space(27)
        self._constants()
        self.set_task(params)

    def set_task(self, params: dict) -> None:
        angle = float(params["angle"])
        self._dir = np.array([np.cos(angle), np.sin(angle)])

    def _get_obs(self):
        return np.concatenate([self.data.qpos[2:], self.data.qvel])  # copies

    def step(self, action):
        d = self.data
        xy_before = d.xpos[self._torso, :2].copy()
        self._simulate(action)
        xy_velocity = (d.xpos[self._torso, :2] - xy_before) / self._dt
        forward = float(xy_velocity @ self._dir)
        ctrl_cost = 0.5 * float(np.square(action).sum())
        contact_cost = 0.5e-3 * float(np.square(d.cfrc_ext.clip(-1.0, 1.0)).sum())
        reward = forward - ctrl_cost - contact_cost + 1.0
        z = d.qpos[2]
        finite = np.isfinite(d.qpos).all() and np.isfinite(d.qvel).all()
        terminated = not (finite and 0.2 <= z <= 1.0)
        info = {"reward_forward": forward, "reward_ctrl": -ctrl_cost}
        return self._get_obs(), float(reward), bool(terminated), self._tick(), info


class AntDirFamily(TaskFamily):
    """50 directions, angle ~ U[0, 2π) from a fixed seed; test indices 6, 17, 23, 30, 41."""

    name = "ant-dir"
    obs_dim, act_dim, horizon = 27, 8, HORIZON
    TEST = [6, 17, 23, 30, 41]
    SEED = 1337

    def __init__(self) -> None:
        angles = np.random.default_rng(self.SEED).uniform(0.0, 2 * np.pi, size=50)
        tasks = [Task(i, {"angle": float(a)}) for i, a in enumerate(angles)]
        train = [i for i in range(50) if i not in self.TEST]
        super().__init__(tasks, train, list(self.TEST))

    def make_env(self, task):
        return AntDirEnv(self.task(task).params)

    def task_features(self, task):
        a = self.task(task).params["angle"]
        return np.array([np.cos(a), np.sin(a)], np.float32)


# ---------------------------------------------------------------------------------------------
# Walker with randomised physics: obs = qpos[1:] + clip(qvel, ±10) = 17
# ---------------------------------------------------------------------------------------------
WALKER_PARAMS = ("body_mass", "body_inertia", "geom_friction", "dof_damping")


class WalkerParamsEnv(_HorizonMixin, Walker2dEnv):
    """Walker2d whose physical parameters are multiplied per task (rand_param_envs style).

    The defaults are saved once at construction; ``set_task`` always writes ``default *
    multiplier`` (never compounding) and then calls ``mujoco.mj_setConst`` so derived
    constants follow the new masses and inertias.
    """

    contact_forces = False

    def __init__(self, params: dict, **kwargs):
        super().__init__(**kwargs)
        self.observation_space = _obs_space(17)
        self._constants()
        self._defaults = {k: getattr(self.model, k).copy() for k in WALKER_PARAMS}
        self.set_task(params)

    def set_task(self, params: dict) -> None:
        for key in WALKER_PARAMS:
            mult = np.asarray(params.get(key, 1.0), dtype=np.float64)
            getattr(self.model, key)[:] = self._defaults[key] * mult
        mujoco.mj_setConst(self.model, self.data)

    def _get_obs(self):
        return np.concatenate([self.data.qpos[1:], self.data.qvel.clip(-10.0, 10.0)])

    def step(self, action):
        x_before = self.data.qpos[0]
        self._simulate(action)
        vx = (self.data.qpos[0] - x_before) / self._dt
        reward = vx + 1.0 - 1e-3 * float(np.square(action).sum())
        height, angle = self.data.qpos[1], self.data.qpos[2]
        terminated = not (0.8 < height < 2.0 and -1.0 < angle < 1.0)
        return self._get_obs(), float(reward), bool(terminated), self._tick(), {"x_velocity": vx}


class WalkerParamsFamily(TaskFamily):
    """50 random physics; test indices 43, 15, 12, 39, 2.

    Each element of body mass, body inertia and geom friction is multiplied by 1.5^U(-3, 3) and
    each dof damping by 1.3^U(-3, 3), independently, from a fixed seed.
    """

    name = "walker-params"
    obs_dim, act_dim, horizon = 17, 6, HORIZON
    TEST = [43, 15, 12, 39, 2]
    SEED = 1337

    def __init__(self) -> None:
        probe = Walker2dEnv()
        shapes = {k: getattr(probe.model, k).shape for k in WALKER_PARAMS}
        probe.close()
        rng = np.random.default_rng(self.SEED)
        tasks = []
        for i in range(50):
            params = {}
            for key in WALKER_PARAMS:
                base = 1.3 if key == "dof_damping" else 1.5
                params[key] = (base ** rng.uniform(-3.0, 3.0, size=shapes[key])).tolist()
            tasks.append(Task(i, params))
        train = [i for i in range(50) if i not in self.TEST]
        super().__init__(tasks, train, list(self.TEST))

    def make_env(self, task):
        return WalkerParamsEnv(self.task(task).params)

    def task_features(self, task):
        """Log-multipliers, scaled to [-1, 1]: what sets each task's physics."""
        p = self.task(task).params
        parts = [
            np.log(np.asarray(p[k], np.float64)).ravel()
            / (3 * np.log(1.3 if k == "dof_damping" else 1.5))
            for k in WALKER_PARAMS
        ]
        return np.concatenate(parts).astype(np.float32)


register_family("cheetah-dir", CheetahDirFamily)
register_family("cheetah-vel", CheetahVelFamily)


class CheetahVelOODFamily(CheetahVelFamily):
    """cheetah-vel's 40 velocities re-split as the MACAW paper's online fine-tuning experiment
    (the authors' extrapolation config): train on tasks 0–25 (v ≤ 1.95), test on the
    out-of-distribution tasks 27–39 (v 2.1–3.0), as their figure averages. Reads cheetah-vel's
    datasets (the same tasks and bytes)."""

    name = "cheetah-vel-ood"
    data_family = "cheetah-vel"

    def __init__(self) -> None:
        super().__init__()
        self.train_indices = list(range(26))
        self.test_indices = list(range(27, 40))


register_family("cheetah-vel-ood", CheetahVelOODFamily)
register_family("ant-dir", AntDirFamily)
register_family("walker-params", WalkerParamsFamily)
