"""The batched evaluator gives the sequential loop's rows, bit for bit, for every learner;
adapting all test tasks together (an option) moves a return by float rounding only."""

import numpy as np
import pandas as pd
import pytest
import torch

from algorithms import (
    Policy,
    PolicyBatch,
    inner_sampling,
    learner_class,
    make_config,
    outer_segment,
)
from algorithms.networks import MetaMLP, NetState, RowLayer
from algorithms.policies import StatePolicy
from envs import make_family
from harness.collect.build import build, dataset_dir
from harness.datasets import OfflineDataset
from harness.evaluate import EvalConfig, evaluate, make_eval_envs, rollout, rollout_batch
from tests.reference_evaluate import evaluate_sequential


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


def _dataset(family: str, root) -> OfflineDataset:
    build(family, "tiny", 0, root, workers=2, progress=False)
    return OfflineDataset.load(dataset_dir(family, "tiny", 0, root))


FEW_STEPS = {"mt-ft": {"finetune_steps": 2}}  # the test is about rollouts, not fine-tuning


def _trained(name: str, family, ds: OfflineDataset):
    """A learner a few steps in, so that its prior and adapted policies differ."""
    cls = learner_class(name)
    config = make_config(cls, FEW_STEPS.get(name))
    learner = cls(family.obs_dim, family.act_dim, len(family.train_indices), config)
    cfg = learner.config
    gen = torch.Generator().manual_seed(0)
    train = list(family.train_indices)
    for _ in range(2):
        pick = list(range(cfg.tasks_per_batch))
        tasks = [train[i % len(train)] for i in pick]
        inner, outer = min(cfg.inner_batch, 64), min(cfg.outer_batch, 64)
        batch = ds.meta_batch(
            tasks,
            pick,
            inner,
            outer,
            gen,
            outer_segment=outer_segment(cfg),
            inner_sampling=inner_sampling(cfg),
        )
        learner.train_step(batch)
    return learner


CASES = [("point-robot", n) for n in ("macaw", "meta-bc", "mt-ft", "pearl", "focal", "prompt-dt")]
# cheetah: the paper's main family; walker: episodes end at different steps (falls)
CASES += [("cheetah-vel", "macaw"), ("cheetah-vel", "pearl"), ("walker-params", "meta-bc")]
CASES += [("ml1-reach", "mt-ft")]  # success-scored Meta-World


@pytest.mark.parametrize(("family_name", "name"), CASES)
def test_batched_evaluation_gives_the_sequential_loops_rows_exactly(data_root, family_name, name):
    family = make_family(family_name)
    ds = _dataset(family_name, data_root)
    learner = _trained(name, family, ds)
    cfg = EvalConfig(episodes=2 if family_name == "point-robot" and name != "prompt-dt" else 1)
    torch.manual_seed(1)
    sequential = evaluate_sequential(learner, family, ds, 0, cfg, step=3)
    torch.manual_seed(1)
    batched = pd.DataFrame(evaluate(learner, family, ds, 0, cfg, step=3))
    pd.testing.assert_frame_equal(batched, pd.DataFrame(sequential), check_exact=True)
    # adaptation changes the rollouts (FOCAL's rlkit-initialised policy moves them a little)
    assert (batched["pre_return"] != batched["post_return"]).any() or name == "prompt-dt"


@pytest.mark.parametrize(
    ("family_name", "name"),
    [("cheetah-vel", "macaw"), ("point-robot", "meta-bc"), ("point-robot", "mt-ft")],
)
def test_adapting_together_moves_returns_by_float_rounding_only(data_root, family_name, name):
    """``adapt_together``: against the loop as first written (each task adapted alone), the same
    rows but for the last digits of the adapted returns — a batched product rounds
    differently, nothing else; and exactly the loop's rows once that loop adapts alike."""
    family = make_family(family_name)
    ds = _dataset(family_name, data_root)
    learner = _trained(name, family, ds)
    cfg = EvalConfig(episodes=1, adapt_together=True)
    alone = pd.DataFrame(evaluate_sequential(learner, family, ds, 0, EvalConfig(), step=3))
    batched = pd.DataFrame(evaluate(learner, family, ds, 0, cfg, step=3))
    alike = evaluate_sequential(learner, family, ds, 0, cfg, step=3)
    pd.testing.assert_frame_equal(batched, pd.DataFrame(alike), check_exact=True)
    pd.testing.assert_frame_equal(
        batched.drop(columns="post_return"), alone.drop(columns="post_return"), check_exact=True
    )
    diff = (batched["post_return"] - alone["post_return"]).abs()
    print(f"{name} on {family_name}: largest return change {diff.max():.2e}")
    np.testing.assert_allclose(batched["post_return"], alone["post_return"], rtol=1e-4)


def test_evaluation_reuses_given_environments_and_repeats_its_rows(data_root):
    family = make_family("point-robot")
    ds = _dataset("point-robot", data_root)
    learner = _trained("macaw", family, ds)
    envs = make_eval_envs(family, list(family.test_indices))
    first = evaluate(learner, family, ds, 0, EvalConfig(), envs, step=0)
    again = evaluate(learner, family, ds, 0, EvalConfig(), envs, step=0)
    assert first == again


def test_a_state_policy_acts_the_same_alone_and_stacked_for_every_layer_shape():
    """A float32 product's bits depend on the batch size on some CPUs (an AVX-512 Xeon for the
    300-wide WT net); acting in float64 makes each row of a stacked forward equal that policy
    alone."""
    torch.manual_seed(0)
    for sizes in ([20, 200, 200, 6], [17, 300, 300, 300, 17], [2, 64, 64, 2]):
        for kind in ("wt", "bt"):
            net = MetaMLP(sizes, kind, latent=8)
            policies = [StatePolicy(net, _perturbed(net.state(1), k)) for k in range(7)]
            obs = torch.randn(7, sizes[0])
            alone = torch.cat([p(obs[i : i + 1]) for i, p in enumerate(policies)])
            stacked = StatePolicy.batch(policies).act(obs, [True] * 7)
            assert torch.equal(stacked, alone), (sizes, kind)


def _perturbed(state: NetState, k: int) -> NetState:
    frozen = state.frozen()
    return NetState(
        [RowLayer(x.Wt + 0.01 * k * torch.randn_like(x.Wt), x.b) for x in frozen.layers]
    )


class _Counter(Policy):
    """A policy with a history: acts with the number of rewards it has seen this episode."""

    def __init__(self, act_dim: int):
        self.act_dim, self.n = act_dim, 0

    def reset(self) -> None:
        self.n = 0

    def observe(self, reward: torch.Tensor) -> None:
        self.n += 1

    def act(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.full((obs.shape[0], self.act_dim), min(self.n, 10) / 10.0)


def test_a_policy_with_history_gets_its_own_resets_and_rewards_in_a_batch():
    family = make_family("walker-params")
    tasks = list(family.test_indices)[:3]
    alone = []
    for t in tasks:
        p = _Counter(family.act_dim)
        alone.append(rollout(family.make_env(t), _numpy(p), 2, 5 + t, "return", p.reset, _obs(p)))
    batch = PolicyBatch([_Counter(family.act_dim) for _ in tasks])
    envs = [family.make_env(t) for t in tasks]
    together = rollout_batch(envs, batch, 2, [5 + t for t in tasks], "return", "cpu", "counter")
    np.testing.assert_array_equal(np.array(together)[:, 0], np.array(alone)[:, 0])


def _numpy(policy):
    return lambda obs: policy(torch.as_tensor(obs, dtype=torch.float32)[None])[0].numpy()


def _obs(policy):
    return lambda r: policy.observe(torch.tensor([r]))
