"""Env steps per second per family, against raw MuJoCo stepping of the same model in the same run.

The ratio (ours / raw ``mujoco.mj_step`` × frame_skip) is the overhead of the gymnasium layer,
task rewards and observation assembly; point-robot and Meta-World have no such reference.
"""

import mujoco
import numpy as np
import pytest

from envs import make_family

N = 200


def _steps(env, actions):
    env.reset(seed=0)
    for a in actions:
        _, _, term, trunc, _ = env.step(a)
        if term or trunc:
            env.reset()


@pytest.mark.parametrize(
    "name", ["point-robot", "cheetah-vel", "ant-dir", "walker-params", "ml1-reach"]
)
def test_env_steps_per_second(benchmark, name):
    fam = make_family(name)
    env = fam.make_env(fam.test_indices[0])
    actions = np.random.default_rng(0).uniform(-1, 1, (N, fam.act_dim)).astype(np.float32)
    actions *= float(env.action_space.high[0])
    benchmark.pedantic(_steps, args=(env, actions), rounds=5, warmup_rounds=1)
    per_step = benchmark.stats.stats.median / N
    benchmark.extra_info["steps_per_second"] = round(1 / per_step)
    model = getattr(env.unwrapped, "model", None)
    if model is not None and hasattr(env.unwrapped, "frame_skip"):
        data = mujoco.MjData(model)
        import time

        t = time.perf_counter()
        for a in actions:
            data.ctrl[:] = a
            for _ in range(env.unwrapped.frame_skip):
                mujoco.mj_step(model, data)
        raw = (time.perf_counter() - t) / N
        benchmark.extra_info["raw_mujoco_us"] = round(raw * 1e6, 1)
        benchmark.extra_info["overhead_ratio"] = round(per_step / raw, 2)
