"""The learner interface: registry, parameter counts, checkpoints, determinism, plug-ins."""

import dataclasses
import sys
import textwrap

import pytest
import torch

from algorithms import OfflineMetaLearner, known_learners, learner_class, make_config
from algorithms.macaw import MACAW, MACAWConfig
from algorithms.networks import count_parameters
from algorithms.products import per_task_products, task_bmm, task_rows
from tests.reference_macaw import make_batch

SMALL = {
    "macaw": {"width": 16, "wt_latent": 8, "inner_batch": 16, "outer_batch": 16},
    "meta-bc": {"width": 16, "wt_latent": 8, "inner_batch": 16, "outer_batch": 16},
    "mt-ft": {"width": 16, "inner_batch": 16, "outer_batch": 16, "finetune_steps": 3},
    "pearl": {"width": 16, "tasks_per_batch": 3, "inner_batch": 16, "outer_batch": 16},
}


def build(name, seed=0):
    cls = learner_class(name)
    return cls(5, 3, n_train_tasks=6, config=make_config(cls, SMALL[name]), seed=seed)


def small_batch(learner, seed=0):
    cfg = learner.config
    T = min(cfg.tasks_per_batch, 3)
    return make_batch(T, cfg.inner_batch, 5, 3, seed=seed)


def test_registry_has_the_four_algorithms():
    assert set(known_learners()) >= {"macaw", "meta-bc", "mt-ft", "pearl"}


@pytest.mark.parametrize(
    "cfg, policy, value",
    [
        (MACAWConfig(), 2_663_263, 2_262_901),
        (MACAWConfig(weight_transform=False, width=725), 2_675_888, 2_647_703),
        (MACAWConfig(weight_transform=False, width=100), 57_763, None),
    ],
    ids=["wt-100", "bias-725", "bias-100"],
)
def test_parameter_counts_match_the_authors_networks(cfg, policy, value):
    m = MACAW(obs_dim=20, act_dim=6, n_train_tasks=35, config=cfg)
    assert count_parameters(m.policy) == policy
    if value is not None:
        assert count_parameters(m.value) == value


@pytest.mark.parametrize("name", list(SMALL))
def test_step_gives_finite_namespaced_metrics_and_adapt_returns_a_policy(name):
    m = build(name)
    metrics = m.train_step(small_batch(m))
    assert metrics and all(k.startswith("train/") for k in metrics)
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values())
    support = make_batch(1, 32, 5, 3, seed=9).inner.map(lambda x: x[0])
    actions = m.adapt(support)(torch.randn(7, 5))
    assert actions.shape == (7, 3) and actions.abs().max() <= 1
    assert m.prior_policy()(torch.randn(2, 5)).shape == (2, 3)
    assert m.steps == 1


@pytest.mark.parametrize("name", list(SMALL))
def test_state_dict_round_trip_gives_identical_actions(name):
    a = build(name, seed=0)
    for s in range(2):
        a.train_step(small_batch(a, seed=s))
    b = build(name, seed=123)
    b.load_state_dict(a.state_dict())
    support = make_batch(1, 32, 5, 3, seed=9).inner.map(lambda x: x[0])
    obs = torch.randn(6, 5)
    torch.manual_seed(0)
    act_a = a.adapt(support)(obs)
    torch.manual_seed(0)
    act_b = b.adapt(support)(obs)
    torch.testing.assert_close(act_a, act_b, rtol=0, atol=0)
    assert b.steps == 2
    # and training continues identically (optimizer state came along)
    torch.manual_seed(1)
    ma = a.train_step(small_batch(a, seed=5))
    torch.manual_seed(1)
    mb = b.train_step(small_batch(b, seed=5))
    assert ma == mb


@pytest.mark.parametrize("name", list(SMALL))
def test_same_seed_gives_identical_losses(name):
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        m = build(name, seed=4)
        runs.append([m.train_step(small_batch(m, seed=s)) for s in range(3)])
    assert runs[0] == runs[1]


def test_checkpoint_from_a_different_config_is_refused():
    a = build("macaw")
    cls = learner_class("macaw")
    other = cls(5, 3, 6, make_config(cls, {**SMALL["macaw"], "width": 17}))
    with pytest.raises(ValueError, match="different macaw config .*width"):
        other.load_state_dict(a.state_dict())
    with pytest.raises(ValueError, match="learner 'macaw', not 'meta-bc'"):
        build("meta-bc").load_state_dict(a.state_dict())


def test_checkpoint_with_tensors_of_another_layout_is_refused_clearly():
    a, b = build("macaw"), build("macaw", seed=1)
    state = a.state_dict()
    state["value"] = {k: v.T.clone() if k.endswith(".A") else v for k, v in state["value"].items()}
    before = [p.clone() for p in b.value.parameters()]
    with pytest.raises(ValueError, match="another version of the code.*value.trunk.0.A is"):
        b.load_state_dict(state)
    assert all(torch.equal(p, q) for p, q in zip(before, b.value.parameters()))


def test_unknown_algorithm_and_config_key_errors_list_the_known_ones():
    known = r"known algorithms: (.*, )?macaw, (.*, )?meta-bc, mt-ft, pearl"
    with pytest.raises(ValueError, match=known):
        learner_class("maml")
    with pytest.raises(ValueError, match="unknown macaw config key.*known: .*width"):
        make_config(learner_class("macaw"), {"widht": 3})


def test_configs_are_frozen_dataclasses_with_docstrings_per_field():
    for name in known_learners():
        cfg = learner_class(name).Config()
        assert dataclasses.is_dataclass(cfg)
        with pytest.raises(dataclasses.FrozenInstanceError):
            cfg.tasks_per_batch = 1  # type: ignore[misc]


PLUGIN = '''
import torch
from dataclasses import dataclass
from algorithms import OfflineMetaLearner, Policy


@dataclass(frozen=True)
class MeanActionConfig:
    tasks_per_batch: int = 2
    inner_batch: int = 8
    outer_batch: int = 8


class _Const(Policy):
    def __init__(self, a):
        self.a = a

    def act(self, obs):
        return self.a.expand(obs.shape[0], -1)


class MeanAction(OfflineMetaLearner):
    """Acts with the mean action of the adaptation set: a baseline in a dozen lines."""

    name = "mean-action-plugin"
    Config = MeanActionConfig

    def __init__(self, obs_dim, act_dim, n_train_tasks, config=None, device="cpu", seed=0):
        super().__init__(obs_dim, act_dim, n_train_tasks, config, device, seed)
        self.prior = torch.zeros(act_dim)

    def meta_train_step(self, batch):
        self.prior = batch.outer.action.mean(dim=(0, 1))
        return {"train/prior_norm": float(self.prior.norm())}

    def adapt(self, support):
        return _Const(support.action.mean(0, keepdim=True))
'''


def test_a_learner_in_a_temporary_module_loads_by_module_path(tmp_path, monkeypatch):
    (tmp_path / "my_baselines.py").write_text(textwrap.dedent(PLUGIN))
    monkeypatch.syspath_prepend(str(tmp_path))
    cls = learner_class("my_baselines:MeanAction")
    assert issubclass(cls, OfflineMetaLearner) and cls.name in known_learners()
    m = cls(5, 3, 4)
    m.train_step(make_batch(2, 8, 5, 3))
    support = make_batch(1, 8, 5, 3).inner.map(lambda x: x[0])
    torch.testing.assert_close(m.adapt(support)(torch.zeros(2, 5))[0], support.action.mean(0))
    with pytest.raises(ValueError, match="cannot import learner module"):
        learner_class("no_such_module_xyz:Thing")
    sys.modules.pop("my_baselines", None)


@pytest.mark.parametrize("use_next_obs", [False, True])
def test_pearl_fast_step_gives_the_reference_steps_parameters(use_next_obs):
    """The optimised step skips only gradients the reference computes and then discards."""
    from algorithms.pearl import OfflinePEARL, PEARLConfig
    from tests.reference_pearl import reference_pearl_step

    cfg = PEARLConfig(
        width=32,
        encoder_width=24,
        tasks_per_batch=3,
        inner_batch=16,
        outer_batch=20,
        use_next_obs_in_context=use_next_obs,
    )
    fast = OfflinePEARL(5, 2, 4, cfg, seed=3)
    ref = OfflinePEARL(5, 2, 4, cfg, seed=3)
    inner = make_batch(3, 16, 5, 2, seed=1)
    batch = type(inner)(inner.inner, make_batch(3, 20, 5, 2, seed=2).outer, inner.task_ids)
    for _ in range(3):
        torch.manual_seed(11)
        fast.meta_train_step(batch)
        torch.manual_seed(11)
        reference_pearl_step(ref, batch)
    for name in ("encoder", "policy", "qf1", "qf2", "vf", "vf_target"):
        got, want = getattr(fast, name).state_dict(), getattr(ref, name).state_dict()
        for k in want:
            torch.testing.assert_close(got[k], want[k], rtol=1e-5, atol=1e-6, msg=f"{name}.{k}")


@pytest.mark.parametrize(
    ("rows", "inner", "out"), [(256, 100, 1), (1, 100, 100), (256, 55, 100), (7, 3, 5)]
)
def test_per_task_products_give_each_task_the_bits_it_gets_alone(rows, inner, out):
    """Inside ``per_task_products`` a stacked ``bmm`` (forward, and backward for both operands)
    and a row-per-task product equal each task's own computation on fresh tensors, bit for bit,
    both when a layout is first met (fused and per-task compared) and after (as decided then);
    outside, the fused call is plain ``torch.bmm``."""
    T = 5
    for draw in range(2):
        torch.manual_seed(draw)
        a = torch.randn(T, rows, inner, requires_grad=True)
        b = torch.randn(T, inner, out, requires_grad=True)
        dy = torch.randn(T, rows, out)
        with per_task_products():
            y = task_bmm(a, b)
        y.backward(dy)
        shared = torch.randn(inner, 40)
        x = torch.randn(T, inner)
        with per_task_products():
            xs = task_rows(lambda r, m=shared: r @ m, x)
        for t in range(T):
            at = a.detach()[t : t + 1].clone().requires_grad_()
            bt = b.detach()[t : t + 1].clone().requires_grad_()
            yt = torch.bmm(at, bt)
            yt.backward(dy[t : t + 1].clone())
            assert torch.equal(y[t : t + 1], yt)
            assert torch.equal(a.grad[t : t + 1], at.grad)
            assert torch.equal(b.grad[t : t + 1], bt.grad)
            assert torch.equal(xs[t : t + 1], x[t : t + 1].clone() @ shared)
    assert torch.equal(task_bmm(a, b), torch.bmm(a, b))
