"""A user's own method cannot be silently mis-scored: wrong action shapes end the run."""

import pytest
import torch

from algorithms import OfflineMetaLearner, Policy
from envs import make_family
from harness.collect.build import dataset_dir
from harness.datasets import OfflineDataset
from harness.evaluate import EvalConfig, evaluate


@pytest.fixture(scope="module")
def data(tiny_point_robot):
    return OfflineDataset.load(dataset_dir("point-robot", "tiny", 0, tiny_point_robot))


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


def test_own_claims_join_the_report_in_their_own_family_and_cannot_join_a_built_in_one(tmp_path):
    from harness.findings import CLAIMS, Declaration, findings_table, own_claims
    from tests.test_verdicts import HI, LO, _final

    path = tmp_path / "mine.toml"
    path.write_text('[[claim]]\ntext = "mine > macaw"\nx = "mine"\ny = "macaw"\nrelation = ">"\n')
    mine = own_claims(path)
    assert [c.hypothesis_family for c in mine] == ["own claims"]
    final = _final({("mine", "cheetah-vel"): HI, ("macaw", "cheetah-vel"): LO})
    declared = Declaration(frozenset({"mine", "macaw"}), ("cheetah-vel",))
    table = findings_table(final, CLAIMS + mine, reps=50, declared=declared).set_index("claim")
    assert table.loc["mine > macaw", "decision"] == "holds"
    assert table.loc["mine > macaw", "family_rows"] == 1
    path.write_text(path.read_text() + 'hypothesis_family = "macaw-figure-3"\n')
    with pytest.raises(ValueError, match="built-in hypothesis family 'macaw-figure-3'"):
        own_claims(path)
    path.write_text('[[claim]]\ntext = "x"\nx = "a"\nrelation = ">"\n')
    with pytest.raises(ValueError, match=r"missing key\(s\) \['y'\]"):
        own_claims(path)
