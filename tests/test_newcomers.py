"""FOCAL's and Prompt-DT's defining pieces, and the interface hooks they brought to every
learner (``Policy.reset`` / ``observe``, the derived ``timestep`` / ``return_to_go`` fields)."""

import numpy as np
import torch

from algorithms import learner_class, make_config
from algorithms.base import Policy
from algorithms.batch import synthetic_meta_batch
from algorithms.focal import FOCAL
from envs.point_robot import PointRobotEnv
from harness.evaluate import rollout

SMALL_FOCAL = {"width": 16, "encoder_width": 16, "tasks_per_batch": 3, "inner_batch": 8}
SMALL_PDT = {"embed_dim": 16, "inner_batch": 3, "outer_batch": 8, "outer_segment": 4}


def test_focal_metric_loss_pulls_same_task_together_and_pushes_others_apart():
    far = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 3.0]])
    near = far * 0.1
    noise = 0.3 * torch.randn(3, 2, generator=torch.Generator().manual_seed(0))
    tight = FOCAL.metric_loss(far, far + 0.01 * noise)
    assert tight < FOCAL.metric_loss(far, far + noise)  # positives apart cost more
    assert tight < FOCAL.metric_loss(near, near + 0.001 * noise)  # negatives close cost more


def test_focal_encoder_learns_from_the_metric_loss_only():
    cls = learner_class("focal")
    learner = cls(7, 3, 6, make_config(cls, {**SMALL_FOCAL, "z_loss_weight": 0.0}), seed=0)
    before = {k: v.clone() for k, v in learner.encoder.state_dict().items()}
    policy_before = [p.clone() for p in learner.policy.parameters()]
    learner.train_step(synthetic_meta_batch(3, 8, 256, 7, 3))
    for k, v in learner.encoder.state_dict().items():  # Q, V and π losses never reach it
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)
    assert any(not torch.equal(a, b) for a, b in zip(policy_before, learner.policy.parameters()))


def test_focal_divergence_penalty_enters_the_value_target_only_with_brac_and_the_penalty():
    cls = learner_class("focal")
    losses = {}
    for brac in (True, False):
        over = {**SMALL_FOCAL, "use_brac": brac, "use_value_penalty": True}
        learner = cls(7, 3, 6, make_config(cls, over), seed=0)
        losses[brac] = learner.train_step(synthetic_meta_batch(3, 8, 256, 7, 3))["train/q_loss"]
    assert losses[True] != losses[False]


def _pdt():
    cls = learner_class("prompt-dt")
    learner = cls(7, 3, 6, make_config(cls, SMALL_PDT), seed=0)
    learner.train_step(synthetic_meta_batch(3, 3, 8, 7, 3))
    return learner


def test_prompt_dt_policy_keeps_a_history_that_reset_clears():
    learner = _pdt()
    support = synthetic_meta_batch(1, 12, 8, 7, 3, seed=1).inner.map(lambda x: x[0])
    policy = learner.adapt(support)
    obs = torch.randn(5, 1, 7, generator=torch.Generator().manual_seed(2))
    first = [policy(o) for o in obs]
    assert policy.hist["obs"].shape[1] == 4  # the window slides at K = 4 steps
    policy.reset()
    assert policy.hist is None
    again = [policy(o) for o in obs]
    for a, b in zip(first, again):
        torch.testing.assert_close(a, b)  # same episode after a reset: same actions


def test_prompt_dt_target_return_falls_by_each_observed_reward():
    learner = _pdt()
    policy = learner.prior_policy()
    policy(torch.zeros(1, 7))
    start = policy.rtg.clone()
    policy.observe(torch.tensor([2.5]))
    torch.testing.assert_close(policy.rtg, start - 2.5 / learner.return_scale)


def test_the_harness_resets_each_episode_and_shows_every_reward():
    class Recorder(Policy):
        def __init__(self):
            self.resets, self.rewards = 0, []

        def act(self, obs):
            return torch.zeros(obs.shape[0], 2)

        def reset(self):
            self.resets += 1

        def observe(self, reward):
            self.rewards.append(float(reward[0]))

    env = PointRobotEnv({"goal": np.array([0.5, 0.5])})
    rec = Recorder()

    def act(obs):
        return rec(torch.as_tensor(obs, dtype=torch.float32)[None])[0].numpy()

    ret, _ = rollout(env, act, 2, 0, "return", rec.reset, lambda r: rec.observe(torch.tensor([r])))
    assert rec.resets == 2 and len(rec.rewards) == 2 * env.horizon
    np.testing.assert_allclose(sum(rec.rewards) / 2, ret, rtol=1e-6)
