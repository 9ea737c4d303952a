"""Task families: construction, gymnasium compliance, dimensions (protocol §3), semantics."""

import warnings

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from envs import known_families, make_family

PROTOCOL_DIMS = {
    "point-robot": (2, 2, 80, 20),
    "cheetah-dir": (20, 6, 2, 2),
    "cheetah-vel": (20, 6, 35, 5),
    "ant-dir": (27, 8, 45, 5),
    "walker-params": (17, 6, 45, 5),
    "ml1-reach": (39, 4, 20, 5),
    "ml10": (39, 4, 100, 50),
    "ml45": (39, 4, 450, 50),
}


@pytest.mark.parametrize("name", list(PROTOCOL_DIMS))
def test_family_builds_and_its_envs_pass_gymnasium_check_env(name):
    fam = make_family(name)
    obs_dim, act_dim, n_train, n_test = PROTOCOL_DIMS[name]
    assert (fam.obs_dim, fam.act_dim) == (obs_dim, act_dim)
    assert (len(fam.train_indices), len(fam.test_indices)) == (n_train, n_test)
    env = fam.make_env(fam.test_indices[-1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_env(env, skip_render_check=True)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (obs_dim,) and env.action_space.shape == (act_dim,)
    nxt, r, term, trunc, _ = env.step(env.action_space.sample())
    assert nxt.shape == (obs_dim,) and np.isfinite(r)


def test_spec_test_indices_are_the_papers():
    assert make_family("cheetah-vel").test_indices == [2, 7, 15, 23, 26]
    assert make_family("ant-dir").test_indices == [6, 17, 23, 30, 41]
    assert make_family("walker-params").test_indices == [43, 15, 12, 39, 2]
    vels = [t.params["velocity"] for t in make_family("cheetah-vel").tasks]
    np.testing.assert_allclose(vels, np.linspace(0.075, 3, 40))


def test_unknown_family_error_lists_known_names():
    with pytest.raises(ValueError, match="known families: .*cheetah-vel"):
        make_family("cheetah-velocity")
    with pytest.raises(ValueError, match="known: .*reach"):
        make_family("ml1-no-such-class")
    assert "ml1-<name>" in known_families()


def _rollout_rewards(env, actions, seed=0):
    env.reset(seed=seed)
    return np.array([env.step(a)[1] for a in actions])


@pytest.mark.parametrize("name", ["cheetah-vel", "ant-dir"])
def test_different_tasks_give_different_rewards_for_the_same_actions(name):
    fam = make_family(name)
    actions = np.random.default_rng(0).uniform(-1, 1, size=(30, fam.act_dim))
    r_a = _rollout_rewards(fam.make_env(fam.test_indices[0]), actions)
    r_b = _rollout_rewards(fam.make_env(fam.test_indices[-1]), actions)
    assert np.abs(r_a - r_b).mean() > 1e-2


def test_walker_tasks_give_different_next_states_for_the_same_state_and_action():
    fam = make_family("walker-params")
    a = np.full(fam.act_dim, 0.5)
    nexts = []
    for task in fam.test_indices[:2]:
        env = fam.make_env(task)
        env.reset(seed=0)
        for _ in range(5):
            obs = env.step(a)[0]
        nexts.append(obs)
    assert np.abs(nexts[0] - nexts[1]).max() > 1e-3


def test_repeated_task_switches_do_not_compound_parameters():
    fam = make_family("walker-params")
    env = fam.make_env(0).unwrapped
    fresh = fam.make_env(3).unwrapped
    for _ in range(5):
        env.set_task(fam.tasks[3].params)
        env.set_task(fam.tasks[0].params)
    env.set_task(fam.tasks[3].params)
    for key in ("body_mass", "body_inertia", "geom_friction", "dof_damping"):
        np.testing.assert_allclose(getattr(env.model, key), getattr(fresh.model, key))
    a = np.full(fam.act_dim, 0.3)
    env.reset(seed=1)
    fresh.reset(seed=1)
    for _ in range(10):
        o1, o2 = env.step(a)[0], fresh.step(a)[0]
    np.testing.assert_allclose(o1, o2)


def test_episodes_truncate_at_the_family_horizon():
    for name in ("point-robot", "cheetah-vel"):
        fam = make_family(name)
        env = fam.make_env(0)
        env.reset(seed=0)
        steps, done = 0, False
        while not done:
            _, _, term, trunc, _ = env.step(np.zeros(fam.act_dim))
            steps += 1
            done = term or trunc
        assert steps == fam.horizon


def test_metaworld_expert_needs_the_hidden_goal_and_then_succeeds():
    fam = make_family("ml1-reach")
    env = fam.make_env(fam.test_indices[0])
    obs, _ = env.reset(seed=0)
    assert np.all(obs[-3:] == 0)  # the benchmark hides the goal
    success = 0.0
    for _ in range(200):
        obs, _, _, _, info = env.step(env.expert_action(obs))
        success = max(success, info["success"])
    assert success == 1.0


@pytest.mark.parametrize(
    "name, task",
    [
        ("point-robot", 81),
        ("cheetah-vel", 7),
        ("cheetah-dir", 1),
        ("ant-dir", 6),
        ("walker-params", 2),
        ("ml1-reach", 0),
    ],
)
def test_gymnasium_make_of_every_family_id_steps_and_truncates_at_the_horizon(name, task):
    import gymnasium

    import envs

    family = make_family(name)
    env = gymnasium.make(envs.env_id(name), task=task)
    assert "TimeLimit" in str(env)
    env.reset(seed=0)
    zero = np.zeros(env.action_space.shape, dtype=np.float32)
    t, terminated, truncated = 0, False, False
    while not (terminated or truncated) and t <= family.horizon:
        _, _, terminated, truncated, _ = env.step(zero)
        t += 1
    if terminated:  # a fall ends walker's (and ant's) episodes early, by design
        assert name in ("walker-params", "ant-dir") and t < family.horizon
    else:
        assert truncated and t == family.horizon
    env.close()
    with pytest.raises(ValueError, match="has tasks 0.."):
        gymnasium.make(envs.env_id(name), task=len(family.tasks))


def _gymnasium_step(env, family: str, action):
    """One step through gymnasium's own ``do_simulation`` and lookups (what the envs' lean step
    replaced), with the same observation and reward definitions."""
    d = env.data
    x0, xy0 = d.qpos[0], env.get_body_com("torso")[:2].copy()
    env.do_simulation(action, env.frame_skip)
    dt = env.dt
    cost = float(np.sum(np.square(action)))
    if family == "cheetah-vel":
        obs = np.concatenate(
            [d.qpos.flat.copy()[1:], d.qvel.flat.copy(), env.get_body_com("torso")]
        )
        return obs, -abs((d.qpos[0] - x0) / dt - env._goal_vel) - 0.05 * cost
    if family == "walker-params":
        obs = np.concatenate([d.qpos.flat[1:].copy(), np.clip(d.qvel.flat.copy(), -10.0, 10.0)])
        return obs, (d.qpos[0] - x0) / dt + 1.0 - 1e-3 * cost
    forward = float((env.get_body_com("torso")[:2] - xy0) / dt @ env._dir)
    contact = 0.5e-3 * float(np.sum(np.square(np.clip(d.cfrc_ext, -1.0, 1.0))))
    obs = np.concatenate([d.qpos.flat[2:].copy(), d.qvel.flat.copy()])
    return obs, forward - 0.5 * cost - contact + 1.0


@pytest.mark.parametrize("family", ["cheetah-vel", "walker-params", "ant-dir"])
def test_the_lean_mujoco_step_gives_gymnasiums_numbers_bit_for_bit(family):
    fam = make_family(family)
    lean, ref = fam.make_env(3), fam.make_env(3)
    lean.reset(seed=4)
    ref.reset(seed=4)
    rng = np.random.default_rng(0)
    for _ in range(120):
        a = rng.uniform(-1, 1, fam.act_dim).astype(np.float32)
        obs, r, term, _, _ = lean.step(a)
        want_obs, want_r = _gymnasium_step(ref, family, a)
        assert np.array_equal(obs, want_obs) and r == float(want_r)
        if term:
            break
    with pytest.raises(ValueError, match="expected"):
        lean.step(np.zeros(fam.act_dim + 1, np.float32))
