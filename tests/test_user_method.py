"""A user's own method cannot be silently mis-scored: wrong action shapes end the run."""

import pytest
import torch

from algorithms import OfflineMetaLearner, Policy
from envs import make_family
from harness.collect.build import build, dataset_dir
from harness.datasets import OfflineDataset
from harness.evaluate import EvalConfig, evaluate


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    build("point-robot", "tiny", 0, root, workers=2, progress=False)
    return OfflineDataset.load(dataset_dir("point-robot", "tiny", 0, root))


SHAPES = {
    "flat": lambda obs, d: torch.zeros(d),  # [act_dim]
    "one": lambda obs, d: torch.zeros(obs.shape[0], 1),  # [B, 1]
    "ravelled": lambda obs, d: torch.zeros(obs.shape[0] * d),  # [B·act_dim]
}


class _Shaped(Policy):
    def __init__(self, kind: str, act_dim: int):
        self.kind, self.act_dim = kind, act_dim

    def act(self, obs):
        return SHAPES[self.kind](obs, self.act_dim)


@pytest.mark.parametrize("kind", list(SHAPES))
def test_a_policy_with_the_wrong_action_shape_is_refused_not_scored(data, kind):
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Cfg:
        tasks_per_batch: int = 2
        inner_batch: int = 8
        outer_batch: int = 8

    class WrongShape(OfflineMetaLearner):
        name = f"wrong-shape-{kind}"
        Config = Cfg

        def meta_train_step(self, batch):
            return {}

        def adapt(self, support):
            return _Shaped(kind, self.act_dim)

    family = make_family("point-robot")
    learner = WrongShape(family.obs_dim, family.act_dim, 3)
    with pytest.raises(ValueError, match=r"actions came out shaped .* expected \(\d+, 2\)"):
        evaluate(learner, family, data, 0, EvalConfig(final_draws=0))
