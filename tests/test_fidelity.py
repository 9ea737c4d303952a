"""FOCAL and Prompt-DT as their authors ran them: each point of the fidelity review pinned."""

import numpy as np
import pytest
import torch

from algorithms import learner_class, make_config
from algorithms.batch import TrainStatistics, synthetic_meta_batch
from algorithms.focal import FOCAL
from algorithms.prompt_dt import PromptDT
from harness.datasets import OfflineDataset
from harness.suite import load_suite

SMALL_FOCAL = {"width": 16, "encoder_width": 16, "tasks_per_batch": 3, "inner_batch": 8}
SMALL_PDT = {
    "embed_dim": 16,
    "inner_batch": 6,
    "inner_segment": 3,
    "outer_batch": 8,
    "outer_segment": 4,
}


def _focal(**over):
    return FOCAL(7, 3, 6, make_config(FOCAL, {**SMALL_FOCAL, **over}), seed=0)


# -- FOCAL --------------------------------------------------------------------------------------
def test_focal_without_the_value_penalty_keeps_alpha_out_of_the_q_target():
    batch = synthetic_meta_batch(3, 8, 64, 7, 3)
    q = {}
    for penalty in (False, True):
        for alpha in (1.0, 1e6):
            learner = _focal(alpha_init=alpha, alpha_max=1e7, use_value_penalty=penalty)
            q[penalty, alpha] = learner.train_step(batch)["train/q_loss"]
    assert q[False, 1.0] == q[False, 1e6]  # the target is free of α·D
    assert q[True, 1.0] != q[True, 1e6]
    assert make_config(FOCAL).use_value_penalty is False and make_config(FOCAL).use_brac


def test_focal_embeddings_are_bounded_by_tanh_in_training_and_at_test_time():
    learner = _focal()
    huge = synthetic_meta_batch(3, 8, 16, 7, 3).inner.map(lambda x: x * 1e4)
    assert learner.embed(huge).abs().max() <= 1.0
    assert isinstance(learner.encoder[-1], torch.nn.Tanh)


def test_focal_policy_log_std_is_clamped_at_zero_and_networks_start_as_rlkit():
    learner = _focal()
    obs_z = torch.randn(5, 7 + 20) * 100
    *_, log_std = learner._pi(obs_z)
    assert log_std.max() <= 0.0
    first = learner.qf1[0]
    assert torch.all(first.bias == 0.1)
    assert first.weight.abs().max() <= 1 / first.weight.shape[0] ** 0.5
    assert learner.policy[-1].weight.abs().max() <= 1e-3


def test_focal_counts_two_draws_of_one_task_as_a_positive_pair():
    z = torch.tensor([[0.0, 0.0], [0.05, 0.0]])
    same = FOCAL.metric_loss(z, z, torch.tensor([4, 4]))
    different = FOCAL.metric_loss(z, z, torch.tensor([4, 5]))
    assert same < 1.0 < different  # as one task: only the pull; as two: a strong push


def test_the_two_task_families_draw_four_tasks_with_replacement():
    _, runs, _ = load_suite("reference", ["focal"], ["cheetah-dir", "cheetah-vel"], [0])
    by_family = {r.family: r.learner for r in runs}
    assert by_family["cheetah-dir"]["tasks_with_replacement"] is True
    assert by_family["cheetah-dir"]["tasks_per_batch"] == 4
    assert by_family["cheetah-dir"]["use_value_penalty"] is True
    assert by_family["cheetah-vel"]["alpha_init"] == 50.0
    assert "use_value_penalty" not in by_family["cheetah-vel"]
    from algorithms.base import pick_tasks

    cfg = make_config(FOCAL, {"tasks_per_batch": 4, "tasks_with_replacement": True})
    picks = pick_tasks(cfg, 2, torch.Generator().manual_seed(0))
    assert len(picks) == 4 and set(picks) <= {0, 1}


# -- contexts and data --------------------------------------------------------------------------
def _dataset(skip: int = 1) -> OfflineDataset:
    """Two tasks of three 10-step episodes; obs dim 0 constant in task 0 only, dim 1 constant."""
    per_task = []
    for t in range(2):
        n = 30
        obs = np.zeros((n, 3), np.float32)
        obs[:, 0] = 0.0 if t == 0 else np.linspace(-5, 5, n)
        obs[:, 1] = 7.0
        obs[:, 2] = np.arange(n)
        starts = np.zeros(n, bool)
        starts[[0, 10, 20]] = True
        per_task.append(
            {
                "obs": obs,
                "action": np.zeros((n, 2), np.float32),
                "reward": np.ones(n, np.float32) * (t + 1),
                "next_obs": obs,
                "done": np.zeros(n, np.float32),
                "mc_return": np.zeros(n, np.float32),
                "terminal_obs": obs,
                "terminal_discount": np.ones(n, np.float32),
                "episode_start": np.flatnonzero(starts),
                "episode_length": np.full(3, 10),
                "episode_return": np.array([10.0, 10.0, 10.0]) * (t + 1),
                "episode_success": np.zeros(3),
            }
        )
    return OfflineDataset.from_arrays(per_task, [0, 1], skip=skip)


def test_state_statistics_cover_every_train_task_and_never_blow_a_dimension_up():
    stats = _dataset().train_statistics([0, 1])
    assert stats.obs_std[0] > 1.0  # constant in task 0, varying in task 1: its real spread
    assert stats.obs_std[1] == 1.0  # constant everywhere: centred, not scaled up
    learner = PromptDT(3, 2, 2, make_config(PromptDT, SMALL_PDT), seed=0)
    learner.observe_train_data(stats)
    first_task_only = torch.zeros(1, 3)  # a batch from task 0 alone no longer sets the scale
    assert learner.normalise(first_task_only).abs().max() < 10


def test_contexts_are_drawn_iid_for_focal_and_pearl():
    from algorithms.base import inner_sampling

    for name in ("focal", "pearl"):
        assert inner_sampling(make_config(learner_class(name))) == "iid"
    ds = _dataset()
    batch = ds.meta_batch(
        [0, 1], [0, 1], 8, 4, torch.Generator().manual_seed(0), inner_sampling="iid"
    )
    steps = batch.inner.obs[..., 2]
    assert not all(bool((s.diff() == 1).all()) for s in steps)  # not one run of rows


def test_training_prompts_are_episode_ends():
    ds = _dataset()
    batch = ds.meta_batch(
        [0, 1],
        [0, 1],
        6,
        4,
        torch.Generator().manual_seed(0),
        inner_sampling="episode_ends",
        inner_segment=3,
    )
    ts = batch.inner.timestep.reshape(2, 2, 3)
    assert torch.equal(ts, torch.tensor([7.0, 8.0, 9.0]).expand(2, 2, 3))


# -- Prompt-DT ----------------------------------------------------------------------------------
def test_prompt_dt_rollout_history_is_spaced_as_the_training_windows_under_skip():
    learner = PromptDT(7, 3, 2, make_config(PromptDT, SMALL_PDT), seed=0)
    learner.observe_train_data(
        TrainStatistics(torch.zeros(7), torch.ones(7), 100.0, 50.0, row_stride=7)
    )
    seen = []
    forward = learner.model.forward

    def spy(prompt, window, **kw):
        seen.append(window[3][0].tolist())
        return forward(prompt, window, **kw)

    learner.model.forward = spy
    policy = learner.adapt(synthetic_meta_batch(1, 6, 8, 7, 3).inner.map(lambda x: x[0]))
    for _ in range(40):
        policy(torch.zeros(1, 7))
        policy.observe(torch.zeros(1))
    K = learner.config.outer_segment
    assert seen[-1] == [39.0 - 7 * i for i in range(K - 1, -1, -1)]  # …, 32, 39: stride 7
    assert np.all(np.diff(seen[-1]) == 7)


def test_prompt_dt_target_depends_on_the_sets_best_row_not_on_which_rows_were_drawn():
    learner = PromptDT(7, 3, 2, make_config(PromptDT, SMALL_PDT), seed=0)
    a = synthetic_meta_batch(1, 12, 8, 7, 3, seed=1).inner.map(lambda x: x[0])
    b = synthetic_meta_batch(1, 12, 8, 7, 3, seed=2).inner.map(lambda x: x[0])
    best = torch.tensor(123.0)
    a.return_to_go[3], b.return_to_go[9] = best, best
    a.timestep[:] = 5.0  # no episode start drawn in either
    assert learner.target_for(a) == learner.target_for(b) == best


def test_prompt_dt_is_built_as_the_authors_gpt2():
    learner = PromptDT(7, 3, 2, make_config(PromptDT, {"embed_dim": 64}), seed=0)
    w = learner.model.embed["obs"].weight
    assert w.std().item() == pytest.approx(0.02, rel=0.2)
    assert torch.all(learner.model.head.bias == 0)
    # no dropout inside the feed-forward block: tests/test_prompt_dt_transformer.py
    # LayerNorm on the window's tokens only: scaling the prompt embeddings changes the output
    learner.model.eval()
    tokens = synthetic_meta_batch(2, 5, 8, 7, 3).inner
    step = (tokens.return_to_go, tokens.obs, tokens.action, tokens.timestep)
    with torch.no_grad():
        before = learner.model(step, step)
        learner.model.prompt_embed["obs"].weight.mul_(50)
        after = learner.model(step, step)
    assert not torch.allclose(before, after)
