"""The conformance kit: passes on every registered learner and on README's example; fails, with
one line naming the contract point, on a learner that breaks each of them; and the harness's
own run-time checks of what a learner hands back."""

import dataclasses
import math
import os
import random
from dataclasses import dataclass

import pytest
import torch

from algorithms import OfflineMetaLearner, Policy, PolicyBatch, known_learners, learner_class
from algorithms.testing import ConformanceError, check_learner
from tests.test_harness import ROOT, cli, readme_baseline_example, run_args, suite_file

SMALL = {
    "width": 16,
    "encoder_width": 16,
    "wt_latent": 8,
    "inner_batch": 8,
    "outer_batch": 8,
    "tasks_per_batch": 3,
    "finetune_steps": 2,
    "outer_segment": 4,
    "embed_dim": 16,
}


def small_config(cls) -> dict:
    names = {f.name for f in dataclasses.fields(cls.Config)}
    return {k: v for k, v in SMALL.items() if k in names}


@pytest.mark.parametrize("name", known_learners())
def test_every_registered_learner_passes_the_kit(name):
    cls = learner_class(name)
    check_learner(cls, small_config(cls))


def test_the_readme_example_passes_the_kit(tmp_path):
    namespace: dict = {"__name__": "readme_example"}
    exec(compile(readme_baseline_example(), "README.md", "exec"), namespace)
    check_learner(namespace["MeanAction"])


# -- deliberately broken learners, one per contract point ----------------------------------------
@dataclass(frozen=True)
class TinyConfig:
    tasks_per_batch: int = 2
    inner_batch: int = 4
    outer_batch: int = 4


class _Const(Policy):
    def __init__(self, a):
        self.a = a

    def act(self, obs):
        return self.a.expand(obs.shape[0], -1)


class _Base(OfflineMetaLearner):
    Config = TinyConfig

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.w = torch.nn.Linear(self.obs_dim, self.act_dim)
        self.opt = torch.optim.SGD(self.w.parameters(), lr=0.1)

    def meta_train_step(self, batch):
        loss = (self.w(batch.outer.obs) - batch.outer.action).pow(2).mean()
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return {"train/loss": loss.item()}

    def adapt(self, support):
        return _Const(torch.tanh(self.w(support.obs).mean(0, keepdim=True)).detach())


class NonFiniteLoss(_Base):
    name = "kit-nan-loss"

    def meta_train_step(self, batch):
        super().meta_train_step(batch)
        return {"train/loss": math.nan}


class BadMetricName(_Base):
    name = "kit-bad-name"

    def meta_train_step(self, batch):
        return {"loss": super().meta_train_step(batch)["train/loss"]}


class RaisesInStep(_Base):
    name = "kit-raises"

    def meta_train_step(self, batch):
        raise RuntimeError("boom")


class TensorFromAdapt(_Base):
    name = "kit-tensor-adapt"

    def adapt(self, support):
        return support.action.mean(0)


class ActionsOfFive(_Base):
    name = "kit-five"

    def adapt(self, support):
        return _Const(torch.full((1, self.act_dim), 5.0))


class NaNActions(_Base):
    name = "kit-nan-actions"

    def adapt(self, support):
        return _Const(torch.full((1, self.act_dim), math.nan))


class StateOutsideModules(_Base):
    """Keeps a Python float that changes its losses: lost by state_dict."""

    name = "kit-float-state"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.scale = 1.0

    def meta_train_step(self, batch):
        self.scale *= 2.0
        out = super().meta_train_step(batch)
        return {"train/loss": out["train/loss"] * self.scale}


class Unseeded(_Base):
    name = "kit-unseeded"

    def meta_train_step(self, batch):
        out = super().meta_train_step(batch)
        return {"train/loss": out["train/loss"] + random.random()}


class WrongDevice(_Base):
    name = "kit-meta-device"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.stats = torch.zeros(3, device="meta")


class _Shifted(PolicyBatch):
    def act(self, obs, active):
        return super().act(obs, active) * 0.999  # a batched forward that changes the actions


class _ConstBatched(_Const):
    @classmethod
    def batch(cls, policies):
        return _Shifted(policies)


class BatchNotRowExact(_Base):
    name = "kit-batch-not-exact"

    def adapt(self, support):
        return _ConstBatched(torch.full((1, self.act_dim), 0.5))


class AdaptAllDrifts(_Base):
    """Batches its adaptation wrongly: every set but the first gets the first set's policy."""

    name = "kit-adapt-all-drifts"

    def adapt_all(self, supports):
        return [self.adapt(supports[0]) for _ in supports]


class AdaptEachRounds(_Base):
    """Adapts each task within float rounding of adapt alone, where the call promises bits."""

    name = "kit-adapt-each-rounds"

    def adapt_each(self, supports):
        return [_Const(self.adapt(s).a * (1 + 2**-20)) for s in supports]


class _ActAttribute(Policy):
    """A natural newcomer mistake: the action stored under the method's name."""

    def __init__(self, a):
        self.act = a  # hides Policy.act

    def act(self, obs):
        return self.act.expand(obs.shape[0], -1)


class PolicyWithActAttribute(_Base):
    name = "kit-act-attribute"

    def adapt(self, support):
        return _ActAttribute(torch.zeros(1, self.act_dim))


class PolicyRaises(_Base):
    name = "kit-policy-raises"

    def adapt(self, support):
        return _Const(torch.zeros(1, 2 * self.act_dim, 5))  # expand to [B, act_dim] fails


class AdaptAllDropsOne(_Base):
    name = "kit-adapt-all-short"

    def adapt_all(self, supports):
        return [self.adapt(s) for s in supports[1:]]


@pytest.mark.parametrize(
    "cls, point, words",
    [
        (NonFiniteLoss, "step", "train/loss = nan"),
        (BadMetricName, "step", "is not named 'train/…'"),
        (RaisesInStep, "step", "raised RuntimeError: boom"),
        (TensorFromAdapt, "adapt", "adapt returned Tensor, not a Policy"),
        (ActionsOfFive, "adapt", "must lie in [-1, 1]"),
        (NaNActions, "adapt", "non-finite actions"),
        (StateOutsideModules, "round trip", "keep all state in nn.Modules"),
        (Unseeded, "seeding", "same seed gave different losses"),
        (WrongDevice, "device", "stats lives on meta"),
        (BatchNotRowExact, "batch", "row 0 of _Shifted.act differs from its policy acting alone"),
        (AdaptAllDrifts, "adapt_all", "policy 1 acts up to"),
        (AdaptAllDropsOne, "adapt_all", "expected a list of 3 policies, one per set"),
        (AdaptEachRounds, "adapt_each", "must come out bit for bit as adapted alone"),
        (PolicyWithActAttribute, "adapt", "sets an attribute named 'act', which hides the act"),
        (PolicyRaises, "adapt", "the policy's act raised RuntimeError"),
    ],
)
def test_the_kit_fails_a_broken_learner_with_one_line_naming_the_point(cls, point, words):
    with pytest.raises(ConformanceError) as e:
        check_learner(cls)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{cls.__name__} ({point}):") and words in msg


def test_a_config_without_the_batch_fields_is_refused_when_the_class_is_defined():
    @dataclass(frozen=True)
    class NoBatch:
        width: int = 3

    with pytest.raises(TypeError, match="Config lacks tasks_per_batch, inner_batch, outer_batch"):

        class Missing(_Base):  # noqa: F841
            name = "kit-missing"
            Config = NoBatch


NO_BATCH_PLUGIN = """
from dataclasses import dataclass

from algorithms import OfflineMetaLearner


@dataclass(frozen=True)
class NoBatchConfig:
    width: int = 3


class NoBatch(OfflineMetaLearner):
    name = "plugin-no-batch"
    Config = NoBatchConfig
"""


def test_a_plugin_whose_config_lacks_the_batch_fields_is_one_cli_line(tmp_path, data_root):
    (tmp_path / "no_batch.py").write_text(NO_BATCH_PLUGIN)
    suite = suite_file(
        tmp_path,
        """
        algorithms = ["no_batch:NoBatch"]
        families = ["point-robot"]
        [run]
        data_budget = "tiny"
        steps = 2
        eval_every = 2
        """,
    )
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
    p = cli(*run_args(suite, tmp_path, data_root), env=env)
    assert p.returncode == 2 and p.stderr.count("\n") == 1, p.stderr
    assert "cannot import learner module 'no_batch'" in p.stderr
    assert "NoBatch.Config lacks tasks_per_batch, inner_batch, outer_batch" in p.stderr
    debug = cli("--debug", *run_args(suite, tmp_path, data_root), env=env)
    assert "Traceback" in debug.stderr  # the whole story, when asked for


# -- the harness at run time ----------------------------------------------------------------------
PLUGIN = """
import torch
from tests.test_conformance import _Base, _Const


class TensorAdapt(_Base):
    name = "run-tensor"

    def adapt(self, support):
        return support.action.mean(0)


class Five(_Base):
    name = "run-five"

    def adapt(self, support):
        return _Const(torch.full((1, self.act_dim), 5.0))


class NaN(_Base):
    name = "run-nan"

    def adapt(self, support):
        return _Const(torch.full((1, self.act_dim), float("nan")))


class Boom(_Base):
    name = "run-boom"

    def meta_train_step(self, batch):
        raise RuntimeError("boom inside")
"""


def test_a_run_whose_learner_misbehaves_ends_in_one_line_naming_it_others_finish(
    tmp_path, data_root
):
    (tmp_path / "bad_learners.py").write_text(PLUGIN)
    suite = suite_file(
        tmp_path,
        """
        algorithms = ["bad_learners:TensorAdapt", "bad_learners:Five", "bad_learners:NaN",
                      "bad_learners:Boom", "mt-ft"]
        families = ["point-robot"]
        [run]
        data_budget = "tiny"
        steps = 2
        eval_every = 2
        [learner.mt-ft]
        width = 16
        """,
    )
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
    p = cli(*run_args(suite, tmp_path, data_root, "--workers", "2"), env=env)
    assert p.returncode == 2 and p.stderr.count("\n") == 1
    assert "4 of 5 run(s) failed" in p.stderr
    runs = tmp_path / "r" / "t" / "runs"
    assert (runs / "mt-ft__point-robot__seed0" / "done.json").exists()
    expect = {
        "TensorAdapt": "learner run-tensor: adapt returned Tensor, not a Policy",
        "Five": "learner run-five: actions must lie in [-1, 1]",
        "NaN": "learner run-nan: the policy returned non-finite actions",
        "Boom": "learner run-boom failed in meta_train_step at step 1: RuntimeError: boom inside",
    }
    for cls, words in expect.items():
        folder = runs / f"bad_learners-{cls}__point-robot__seed0"
        line = (folder / "error.txt").read_text()
        assert line.count("\n") == 1 and words in line, line
        assert "Traceback" in (folder / "error.log").read_text()
        assert not (folder / "done.json").exists()


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    from harness.collect.build import build

    root = tmp_path_factory.mktemp("data")
    build("point-robot", "tiny", 0, root, workers=2, progress=False)
    return root
