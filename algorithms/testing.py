"""A conformance kit for learners: what the harness relies on, checked in seconds.

Call it from your own pytest file (as d3rlpy's shared algorithm tester is used)::

    from algorithms.testing import check_learner
    from my_package import MyLearner

    def test_my_learner_conforms():
        check_learner(MyLearner, config={"width": 16})

Each check raises :class:`ConformanceError` with one line naming the learner and the broken
contract point. The checks, in order:

1. **config** — ``Config`` is a dataclass with the batch fields the harness samples
   (``tasks_per_batch``, ``inner_batch``, ``outer_batch``), valid at its defaults and with
   ``config``'s overrides;
2. **step** — ``train_step`` on a synthetic meta-batch returns a dict of finite floats named
   ``train/…``;
3. **adapt** — ``adapt`` returns a :class:`~algorithms.base.Policy` whose actions are finite,
   shaped ``[B, act_dim]`` and within [−1, 1] (and ``prior_policy`` too, if defined), both
   before any training (the harness scores the untrained learner at step 0) and after a step;
4. **seeding** — two learners of the same seed give the same losses;
5. **round trip** — a learner restored from ``state_dict`` takes the next step with the same
   losses and acts the same as the original: state kept outside modules, optimizers and tensor
   attributes would make a resumed run differ from an uninterrupted one;
6. **device** — every parameter and tensor attribute lives on the learner's device;
7. **batch** — the learner's policies acting together (``Policy.batch``, how the evaluator
   steps all test tasks at once) give each row exactly what that policy gives alone;
8. **adapt_all** — adapting to several tasks in one call (how the evaluator adapts to all test
   tasks) returns one policy per set, each acting as ``adapt`` of its own set does, up to float
   rounding (actions within 1e-4);
9. **adapt_each** — the evaluator's default call: the same, bit for bit (actions equal);
10. **online** — only for a learner that defines ``online_finetuner``: it returns an
    :class:`~algorithms.base.OnlineFinetuner` whose ``policy`` and ``explore`` act within
    [−1, 1], whose ``update`` returns finite floats named ``online/…``, and whose policy still
    acts within [−1, 1] after an update.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from algorithms.base import (
    BATCH_FIELDS,
    OfflineMetaLearner,
    OnlineConfig,
    OnlineFinetuner,
    Policy,
    batch_of,
    make_config,
)
from algorithms.batch import MetaBatch, synthetic_meta_batch

OBS, ACT, N_TRAIN = 7, 3, 6


class ConformanceError(AssertionError):
    """A learner breaks a point of the harness's contract."""


def _fail(cls, point: str, what: str) -> ConformanceError:
    return ConformanceError(f"{cls.__name__} ({point}): {what}")


def _batch(cfg, seed: int) -> MetaBatch:
    tasks = min(cfg.tasks_per_batch, N_TRAIN)
    return synthetic_meta_batch(tasks, cfg.inner_batch, cfg.outer_batch, OBS, ACT, seed)


def check_policy_actions(name: str, policy: Any, obs: torch.Tensor, act_dim: int) -> None:
    """What the harness checks at run time on every adapted policy (one line on failure)."""
    if not isinstance(policy, Policy):
        raise ValueError(
            f"learner {name}: adapt returned {type(policy).__name__}, not a Policy "
            "(subclass algorithms.base.Policy and implement act)"
        )
    if "act" in vars(policy):
        raise ValueError(
            f"learner {name}: its policy ({type(policy).__name__}) sets an attribute named "
            "'act', which hides the act method the harness calls; rename the attribute"
        )
    try:
        a = policy(obs)
    except Exception as e:
        raise ValueError(
            f"learner {name}: the policy's act raised {type(e).__name__}: {e}"
        ) from None
    if not isinstance(a, torch.Tensor) or tuple(a.shape) != (obs.shape[0], act_dim):
        shape = tuple(a.shape) if isinstance(a, torch.Tensor) else type(a).__name__
        raise ValueError(
            f"learner {name}: actions shaped {shape}, expected {(obs.shape[0], act_dim)}"
        )
    if not torch.isfinite(a).all():
        raise ValueError(f"learner {name}: the policy returned non-finite actions (NaN or inf)")
    worst = float(a.abs().max())
    if worst > 1.0 + 1e-6:
        raise ValueError(
            f"learner {name}: actions must lie in [-1, 1] (the harness scales them to the "
            f"env's bounds); got |a| up to {worst:.3g}"
        )


def _losses(metrics: Any, cls) -> dict[str, float]:
    if not isinstance(metrics, dict):
        raise _fail(cls, "step", f"meta_train_step returned {type(metrics).__name__}, not a dict")
    out = {}
    for k, v in metrics.items():
        if not isinstance(k, str) or not k.startswith("train/"):
            raise _fail(cls, "step", f"metric {k!r} is not named 'train/…'")
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise _fail(cls, "step", f"metric {k} = {v!r} is not a float") from None
        if not math.isfinite(f):
            raise _fail(cls, "step", f"metric {k} = {f} on a synthetic batch")
        out[k] = f
    return out


def check_learner(
    cls: type[OfflineMetaLearner], config: dict[str, Any] | None = None, device: str = "cpu"
) -> None:
    """Run every conformance check on ``cls`` (small ``config`` overrides keep it fast).

    An exception raised inside the learner or its policies becomes one line naming the contract
    point being checked and the exception, not a traceback from the kit's insides."""
    point = ["config"]
    try:
        _check_points(cls, config, device, point)
    except ConformanceError:
        raise
    except Exception as e:
        raise _fail(cls, point[0], f"{type(e).__name__}: {e}") from None


def _check_points(cls, config: dict[str, Any] | None, device: str, point: list[str]) -> None:
    """The checks in order; ``point[0]`` names the one in progress."""
    # 1. config
    if not (isinstance(cls, type) and issubclass(cls, OfflineMetaLearner)):
        raise ConformanceError(f"{cls!r} is not a subclass of OfflineMetaLearner")
    try:
        cfg = make_config(cls, config)
    except (ValueError, TypeError) as e:
        raise _fail(cls, "config", str(e)) from None
    for f in BATCH_FIELDS:
        if not isinstance(getattr(cfg, f, None), int):
            raise _fail(cls, "config", f"Config.{f} must be an int")

    def make(seed: int = 0) -> OfflineMetaLearner:
        return cls(OBS, ACT, N_TRAIN, cfg, device=device, seed=seed)

    support = _batch(cfg, seed=2).inner.map(lambda x: x[0])
    obs = torch.randn(9, OBS, generator=torch.Generator().manual_seed(3)).to(device)

    def check_acting(learner: OfflineMetaLearner, when: str) -> None:
        try:
            check_policy_actions(cls.__name__, learner.adapt(support.to(device)), obs, ACT)
            try:
                prior = learner.prior_policy()
            except NotImplementedError:
                prior = None
            if prior is not None:
                check_policy_actions(cls.__name__, prior, obs, ACT)
        except ValueError as e:
            raise _fail(cls, "adapt", f"{when}: {e}") from None

    point[0] = "adapt"
    # 3a. the harness scores the untrained learner first (step 0 of every curve)
    check_acting(make(), "before any train_step")

    point[0] = "step"
    # 2. step
    learner = make()
    batch = _batch(cfg, seed=1)
    try:
        _losses(learner.train_step(batch), cls)
    except ConformanceError:
        raise
    except Exception as e:
        raise _fail(cls, "step", f"meta_train_step raised {type(e).__name__}: {e}") from e
    if learner.steps != 1:
        raise _fail(cls, "step", "train_step must count steps (do not override it)")

    point[0] = "adapt"
    # 3. adapt, after a step
    check_acting(learner, "after a train_step")

    point[0] = "seeding"
    # 4. seeding (before the round trip: unseeded randomness would fail that too)
    torch.manual_seed(6)
    one = _losses(make(seed=7).train_step(batch), cls)
    torch.manual_seed(6)
    two = _losses(make(seed=7).train_step(batch), cls)
    if one != two:
        raise _fail(cls, "seeding", "two learners of the same seed gave different losses")

    point[0] = "round trip"
    # 5. round trip: a restored learner continues exactly as the original
    restored = make(seed=123)
    restored.load_state_dict(learner.state_dict())
    nxt = _batch(cfg, seed=4)
    torch.manual_seed(5)
    a = _losses(learner.train_step(nxt), cls)
    torch.manual_seed(5)
    b = _losses(restored.train_step(nxt), cls)
    if a != b:
        diff = sorted(k for k in a if a[k] != b.get(k))
        raise _fail(
            cls,
            "round trip",
            f"a learner restored from state_dict took a different step ({', '.join(diff)}): "
            "keep all state in nn.Modules, optimizers or tensor attributes",
        )
    with torch.no_grad():
        pa, pb = learner.adapt(support.to(device))(obs), restored.adapt(support.to(device))(obs)
    if not torch.equal(pa, pb):
        raise _fail(cls, "round trip", "a restored learner acts differently after adapt")

    point[0] = "device"
    # 6. device
    want = torch.device(device)
    for k, v in vars(learner).items():
        if isinstance(v, torch.nn.Module):
            tensors = [*v.parameters(), *v.buffers()]
        else:
            tensors = [v] if isinstance(v, torch.Tensor) else []
        for t in tensors:
            if t.device.type != want.type:
                raise _fail(cls, "device", f"{k} lives on {t.device}, not {want}")

    point[0] = "batch"
    # 7. batch: the evaluator's one forward for all test tasks must not change a single action
    policies = [
        learner.adapt(support.to(device)),
        restored.adapt(_batch(cfg, 8).inner.map(lambda x: x[0]).to(device)),
    ]
    try:
        policies.append(learner.prior_policy())
    except NotImplementedError:
        pass
    batch = batch_of(policies)
    rows = obs[: len(policies)]
    with torch.no_grad():
        alone = []
        for i, p in enumerate(policies):
            p.reset()
            alone.append(p(rows[i : i + 1]))
        batch.reset()
        together = batch.act(rows, [True] * len(policies))
    for i, a in enumerate(alone):
        if not torch.equal(together[i], a[0]):
            raise _fail(
                cls,
                "batch",
                f"row {i} of {type(batch).__name__}.act differs from its policy acting "
                "alone: a batched forward must give each row the same bits",
            )

    point[0] = "adapt_all"
    # 8. adapt_all: one policy per set, each as adapt of that set gives, up to float rounding;
    # 9. adapt_each: the same, bit for bit
    sets = [
        support,
        _batch(cfg, 8).inner.map(lambda x: x[0]),
        _batch(cfg, 9).inner.map(lambda x: x[0]),
    ]
    sets = [s.to(device) for s in sets]
    alone = [learner.adapt(s) for s in sets]
    for call, tolerance in (("adapt_all", 1e-4), ("adapt_each", 0.0)):
        point[0] = call
        _check_adapting_many(cls, call, getattr(learner, call)(sets), alone, obs, tolerance)

    # 10. online fine-tuning, where the learner offers it
    if cls.online_finetuner is not OfflineMetaLearner.online_finetuner:
        point[0] = "online"
        _check_online(cls, learner, support.to(device), obs)


def _check_online(cls, learner: OfflineMetaLearner, support, obs: torch.Tensor) -> None:
    ocfg = OnlineConfig(burn_in=0, value_steps=2, policy_steps=2, lr=1e-3, batch=8)
    ft = learner.online_finetuner(support, ocfg)
    if not isinstance(ft, OnlineFinetuner):
        raise _fail(cls, "online", f"online_finetuner returned {type(ft).__name__}")
    try:
        for policy in (ft.policy(), ft.explore()):
            check_policy_actions(cls.__name__, policy, obs, ACT)
        metrics = ft.update(support, 0)
        if not isinstance(metrics, dict):
            raise _fail(cls, "online", f"update returned {type(metrics).__name__}, not a dict")
        for k, v in metrics.items():
            if not (k.startswith("online/") and math.isfinite(float(v))):
                raise _fail(cls, "online", f"update metric {k} = {v!r}: finite, 'online/…'")
        check_policy_actions(cls.__name__, ft.policy(), obs, ACT)
    except ValueError as e:
        raise _fail(cls, "online", str(e)) from None


def _check_adapting_many(cls, call, policies, alone, obs, tolerance: float) -> None:
    """``policies`` (from ``call`` on several sets) act as ``alone`` (``adapt`` of each set)
    to within ``tolerance``."""
    if not isinstance(policies, list | tuple) or len(policies) != len(alone):
        raise _fail(cls, call, f"expected a list of {len(alone)} policies, one per set")
    with torch.no_grad():
        for i, (p, a) in enumerate(zip(policies, alone)):
            try:
                check_policy_actions(cls.__name__, p, obs, ACT)
            except ValueError as e:
                raise _fail(cls, call, str(e)) from None
            p.reset()  # a policy with a history starts a new episode for each comparison
            a.reset()
            worst = float((p(obs) - a(obs)).abs().max())
            if worst > tolerance:
                promise = (
                    "adapting together may change rounding, never the result"
                    if tolerance
                    else "each task must come out bit for bit as adapted alone (multiply "
                    "stacked tasks with algorithms.products.task_bmm, or loop over adapt)"
                )
                raise _fail(
                    cls,
                    call,
                    f"policy {i} acts up to {worst:.2g} away from adapt of its own set: {promise}",
                )
