"""The one interface every offline meta-RL algorithm implements, and the learner registry.

A new baseline is one subclass of :class:`OfflineMetaLearner` with a ``name``, a frozen
``Config`` dataclass whose defaults are the paper's, and three methods: ``__init__`` (build
networks and optimizers), ``meta_train_step(batch)`` and ``adapt(support)``. The base class owns
the registry, the step count, the device, seeding and checkpoints (``state_dict`` collects every
module, optimizer and tensor attribute). A learner outside this repository is loaded by
``"package.module:ClassName"``; nothing here has to change.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import importlib
import typing
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

import pydantic
import torch
from annotated_types import Ge, Gt
from torch import nn

from algorithms.batch import MetaBatch, TrainStatistics, Transitions
from algorithms.products import per_task_products

PositiveInt = Annotated[int, Ge(1)]
"""A count or size (an int ≥ 1) in a learner's Config: validated when a suite is loaded."""
PositiveFloat = Annotated[float, Gt(0)]
"""A learning rate or scale (a float > 0)."""
BATCH_FIELDS = ("tasks_per_batch", "inner_batch", "outer_batch")
"""Config fields the runner reads to draw meta-batches: every learner's Config needs them."""
SEGMENT_FIELD = "outer_segment"
"""An optional Config field: the outer batch as runs of this many consecutive rows (a sequence
model's training windows) instead of uniform rows. Absent or 1: uniform rows."""


INNER_SAMPLING_FIELD = "inner_sampling"
"""An optional Config field: how the runner draws a learner's inner batch (its context):
``"window"`` (consecutive rows of one task, protocol §4; the default), ``"iid"`` (rows drawn
uniformly, as PEARL's and FOCAL's authors draw their contexts) or ``"episode_ends"`` (the last
``inner_segment`` rows of randomly drawn episodes, as Prompt-DT's authors cut their prompts)."""
INNER_SAMPLINGS = ("window", "iid", "episode_ends")


def inner_sampling(config: Any) -> str:
    """How the runner draws a learner's inner batch: ``"window"`` unless its Config says."""
    how = str(getattr(config, INNER_SAMPLING_FIELD, "window"))
    if how not in INNER_SAMPLINGS:
        raise ValueError(f"inner_sampling must be one of {', '.join(INNER_SAMPLINGS)}; got {how!r}")
    return how


REPLACEMENT_FIELD = "tasks_with_replacement"
"""An optional Config field: draw the meta-batch's ``tasks_per_batch`` train tasks with
replacement (FOCAL's authors on their two-task families: 4 draws of 2 tasks). Absent or False:
distinct tasks, at most all of them."""


def pick_tasks(config: Any, n_train: int, generator: torch.Generator) -> list[int]:
    """The positions of a meta-batch's train tasks, drawn as the learner's Config asks."""
    k = config.tasks_per_batch
    if getattr(config, REPLACEMENT_FIELD, False):
        return torch.randint(n_train, (k,), generator=generator).tolist()
    return torch.randperm(n_train, generator=generator)[:k].tolist()


INNER_SEGMENT_FIELD = "inner_segment"
"""With ``inner_sampling = "episode_ends"``: the length of each episode-end segment (a
decision transformer's prompt); the inner batch is ``inner_batch / inner_segment`` of them."""


def inner_segment(config: Any) -> int:
    """The length of a learner's episode-end inner segments (1 unless its Config says)."""
    return int(getattr(config, INNER_SEGMENT_FIELD, 1))


def outer_segment(config: Any) -> int:
    """How the runner draws a learner's outer batch: 1 (uniform rows) unless its Config says."""
    return int(getattr(config, SEGMENT_FIELD, 1))


class Policy(ABC):
    """A policy adapted to one task: observations in, deterministic actions out.

    The harness calls ``reset()`` before each episode and ``observe(reward)`` after each step,
    for every learner alike; both do nothing unless a policy keeps a history (a decision
    transformer's context and its return-to-go).
    """

    @abstractmethod
    def act(self, obs: torch.Tensor) -> torch.Tensor:
        """obs: [B, obs_dim] → actions [B, act_dim] (the mean action, in [-1, 1])."""

    def reset(self) -> None:  # noqa: B027 (a hook: optional, no-op by default)
        """A new episode starts: forget the last one's history."""

    def observe(self, reward: torch.Tensor) -> None:  # noqa: B027
        """reward: [B], what the last ``act``'s actions earned."""

    def __call__(self, obs: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.act(obs)

    @property
    def keeps_history(self) -> bool:
        """Whether it overrides ``reset`` or ``observe``: only then can one object not serve
        several environments at once (the evaluator shares a history-free prior policy)."""
        kind = type(self)
        return kind.reset is not Policy.reset or kind.observe is not Policy.observe

    @classmethod
    def batch(cls, policies: Sequence[Policy]) -> PolicyBatch:
        """Policies of this class acting together, one per environment (the evaluator steps all
        test tasks' environments at once). The default acts one after another; a subclass whose
        policies can share one forward pass overrides this (its row ``i`` must equal what
        policy ``i`` alone returns, bit for bit: evaluation results may not depend on batching;
        a float32 product's bits can depend on the batch size, so act in float64 and round the
        action, as ``algorithms.networks.ACT_DTYPE`` says).
        """
        return PolicyBatch(policies)


@dataclass(frozen=True)
class OnlineConfig:
    """Online fine-tuning after offline adaptation (the MACAW paper's out-of-distribution
    experiment, the authors' ``eval_macaw(ft="online")``): after each new online trajectory the
    harness hands every online transition so far to :meth:`OnlineFinetuner.update`."""

    burn_in: int = 25
    """rounds that only collect (no gradient steps) before updates start"""
    value_steps: int = 100
    """value (critic) Adam steps per round"""
    policy_steps: int = 200
    """policy Adam steps per round"""
    lr: float = 1e-5
    """Adam learning rate of the fine-tuning steps"""
    batch: int = 256
    """rows per fine-tuning step, drawn from the buffer"""


class OnlineFinetuner(ABC):
    """One test task's policy, improved from online experience (optional for a learner).

    The harness alternates: score :meth:`policy` deterministically, roll :meth:`explore` out
    for one trajectory, append it to the task's online buffer, and call :meth:`update` with that
    buffer and the round's index. The buffer starts empty, as the authors' (the offline
    adaptation set is the one the fine-tuner was built with; a fine-tuner may keep it). Online
    interaction happens only here, at evaluation: meta-training stays offline."""

    @abstractmethod
    def policy(self) -> Policy:
        """The current policy, scored with its mean actions."""

    @abstractmethod
    def explore(self) -> Policy:
        """The policy that collects the next online trajectory (it may add noise)."""

    @abstractmethod
    def update(self, buffer: Transitions, round_index: int) -> dict[str, float]:
        """Learn from ``buffer`` (every online transition so far); metrics named ``online/…``."""


class PolicyBatch:
    """``N`` policies acting in ``N`` environments: row ``i`` of every tensor is policy ``i``'s.

    Rows whose episode has ended are inactive: they are not stepped, and what ``act`` returns
    for them is ignored. This default asks each active policy alone; subclasses vectorise.
    ``stateless``: the policies keep no history, so ``reset`` and ``observe`` need not visit
    them (a subclass for memoryless policies sets it).
    """

    stateless = False

    def __init__(self, policies: Sequence[Policy]):
        self.policies = list(policies)

    def reset(self) -> None:
        """Every environment starts a new episode."""
        if self.stateless:
            return
        for p in self.policies:
            p.reset()

    def act(self, obs: torch.Tensor, active: Sequence[bool]) -> torch.Tensor:
        """obs: [N, obs_dim] → actions [N, act_dim] (zeros in inactive rows)."""
        rows = [i for i, a in enumerate(active) if a]
        acts = {i: self.policies[i](obs[i : i + 1])[0] for i in rows}
        first = acts[rows[0]]
        out = first.new_zeros(len(self.policies), *first.shape)
        for i, a in acts.items():
            out[i] = a
        return out

    def observe(self, reward: torch.Tensor, active: Sequence[bool]) -> None:
        """reward: [N], what the last actions earned (only active rows are meaningful)."""
        if self.stateless:
            return
        for i, p in enumerate(self.policies):
            if active[i]:
                p.observe(reward[i : i + 1])


def batch_of(policies: Sequence[Policy]) -> PolicyBatch:
    """The batch the evaluator steps: the policies' own ``batch`` when they share one class,
    else the default one-after-another batch."""
    kinds = {type(p) for p in policies}
    return kinds.pop().batch(policies) if len(kinds) == 1 else PolicyBatch(policies)


class OfflineMetaLearner(ABC):
    """Base class of all learners.

    Args:
        obs_dim: observation size.
        act_dim: action size (actions live in [-1, 1]).
        n_train_tasks: number of meta-training tasks (MACAW scales per-task losses by it; MT+FT
            sizes its one-hot task id with it).
        config: an instance of the subclass's ``Config`` (defaults if None).
        device: where tensors live.
        seed: seeds parameter initialisation (and any sampling inside the learner).
    """

    name: ClassVar[str]
    Config: ClassVar[type]
    outer_rates: ClassVar[tuple[str, ...]] = ()
    """the Config fields holding the learning rates of the optimisers that meta-train the
    networks (not learned inner rates, not test-time fine-tuning rates): what the tuning
    protocol moves together, keeping their default ratios (harness/tune.py)"""
    _registry: ClassVar[dict[str, type[OfflineMetaLearner]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = cls.__dict__.get("name")
        if name is None:
            return  # an intermediate abstract class
        if name in OfflineMetaLearner._registry and OfflineMetaLearner._registry[name] is not cls:
            other = OfflineMetaLearner._registry[name]
            if (other.__module__, other.__qualname__) != (cls.__module__, cls.__qualname__):
                raise ValueError(f"learner name {name!r} is already used by {other.__qualname__}")
        config = cls.__dict__.get("Config", getattr(cls, "Config", None))
        if not dataclasses.is_dataclass(config):
            raise TypeError(f"{cls.__qualname__}.Config must be a dataclass")
        missing = [f for f in BATCH_FIELDS if f not in {x.name for x in dataclasses.fields(config)}]
        if missing:
            raise TypeError(
                f"{cls.__qualname__}.Config lacks {', '.join(missing)}: the harness draws every "
                f"meta-batch with {', '.join(BATCH_FIELDS)}"
            )
        OfflineMetaLearner._registry[name] = cls

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        n_train_tasks: int,
        config: Any = None,
        device: str | torch.device = "cpu",
        seed: int = 0,
    ):
        self.obs_dim, self.act_dim, self.n_train_tasks = obs_dim, act_dim, n_train_tasks
        self.config = config if config is not None else self.Config()
        if not isinstance(self.config, self.Config):
            raise TypeError(
                f"{self.name} expects a {self.Config.__qualname__}, "
                f"got {type(self.config).__qualname__}"
            )
        self.device = torch.device(device)
        self.seed = seed
        self.steps = 0
        torch.manual_seed(seed)

    # -- what a subclass writes ------------------------------------------------------------------
    @abstractmethod
    def meta_train_step(self, batch: MetaBatch) -> dict[str, float]:
        """One outer update from a batch of train tasks; returns ``train/…`` metrics."""

    @abstractmethod
    def adapt(self, support: Transitions) -> Policy:
        """Adapt to a new task from its adaptation set ``[N, …]``; return its policy."""

    def adapt_each(self, supports: Sequence[Transitions]) -> list[Policy]:
        """Adapt to several new tasks, each exactly as ``adapt`` alone would: the evaluator's
        call, with every test task's adaptation set. One ``adapt`` after another by default; a
        learner that can batch its adaptation without changing a bit overrides it (the
        conformance kit checks the actions are equal exactly)."""
        return [self.adapt(s) for s in supports]

    def adapt_all(self, supports: Sequence[Transitions]) -> list[Policy]:
        """Adapt to several new tasks at once, as fast as the learner can: the evaluator's call
        when a suite sets ``adapt_together``. :meth:`adapt_each` by default; a learner whose
        adaptation batches over tasks overrides it (policy ``i`` must act as
        ``adapt(supports[i])``'s up to float rounding: the conformance kit checks it)."""
        return self.adapt_each(supports)

    def prior_policy(self) -> Policy:
        """The policy before any adaptation (for the pre-adaptation score). Optional."""
        raise NotImplementedError(f"{self.name} does not define a pre-adaptation policy")

    def online_finetuner(self, support: Transitions, config: OnlineConfig) -> OnlineFinetuner:
        """Adapt to ``support`` offline, then keep improving from online experience. Optional:
        a learner without it is reported as "no online fine-tuning", never faked."""
        raise NotImplementedError(f"{self.name} has no online fine-tuning")

    def observe_train_data(self, stats: TrainStatistics) -> None:  # noqa: B027 (an optional hook)
        """Called once before training with statistics of the train tasks' buffers (never test
        data); a learner that normalises its inputs keeps them. Default: nothing."""

    # -- provided --------------------------------------------------------------------------------
    def train_step(self, batch: MetaBatch) -> dict[str, float]:
        """What the harness calls: moves the batch to the device and counts steps."""
        metrics = self.meta_train_step(batch.to(self.device))
        self.steps += 1
        return metrics

    def _checkpoint_items(self) -> dict[str, Any]:
        return {
            k: v
            for k, v in vars(self).items()
            if isinstance(v, nn.Module | torch.optim.Optimizer | torch.Tensor)
        }

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: modules, optimizers, tensors, step count, config."""
        out: dict[str, Any] = {
            "learner": self.name,
            "config": dataclasses.asdict(self.config),
            "steps": self.steps,
            "dims": [self.obs_dim, self.act_dim, self.n_train_tasks],
        }
        for k, v in self._checkpoint_items().items():
            # deep copies: a checkpoint must not alias live parameters or optimizer moments
            out[k] = (
                v.detach().clone() if isinstance(v, torch.Tensor) else copy.deepcopy(v.state_dict())
            )
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("learner") != self.name:
            raise ValueError(
                f"checkpoint is of learner {state.get('learner')!r}, not {self.name!r}"
            )
        mine = dataclasses.asdict(self.config)
        if state.get("config") != mine:
            diff = sorted(k for k in mine if state.get("config", {}).get(k) != mine[k])
            raise ValueError(
                f"checkpoint was made with a different {self.name} config "
                f"(differs in: {', '.join(diff) or 'keys'})"
            )
        if state.get("dims") != [self.obs_dim, self.act_dim, self.n_train_tasks]:
            raise ValueError(
                f"checkpoint dims {state.get('dims')} do not match "
                f"{[self.obs_dim, self.act_dim, self.n_train_tasks]}"
            )
        self._check_tensor_shapes(state)  # before anything is copied: no half-loaded learner
        for k, v in self._checkpoint_items().items():
            if isinstance(v, torch.Tensor):
                with torch.no_grad():
                    v.copy_(state[k])
            else:
                v.load_state_dict(state[k])
        self.steps = int(state["steps"])

    def _check_tensor_shapes(self, state: dict[str, Any]) -> None:
        for k, v in self._checkpoint_items().items():
            if isinstance(v, torch.optim.Optimizer):
                continue  # torch checks optimizer groups before it changes anything
            mine = v.state_dict() if isinstance(v, nn.Module) else {"": v}
            theirs = state.get(k)
            theirs = theirs if isinstance(theirs, dict) else {"": theirs}
            for name, t in mine.items():
                other = theirs.get(name)
                if not isinstance(other, torch.Tensor) or other.shape != t.shape:
                    found = tuple(other.shape) if isinstance(other, torch.Tensor) else "missing"
                    where = f"{k}.{name}" if name else k
                    raise ValueError(
                        f"checkpoint does not fit this {self.name} learner (written by another "
                        f"version of the code?): {where} is {found}, expected {tuple(t.shape)}"
                    )


class StackedAdaptLearner(OfflineMetaLearner):
    """A learner whose adaptation runs on many tasks at once (``[T, N, …]``, as its
    meta-training adapts a meta-batch): it writes :meth:`adapt_stacked`; ``adapt`` is that on
    one task, and ``adapt_all`` and ``adapt_each`` stack sets of one size into a single call —
    ``adapt_each`` with :func:`~algorithms.products.per_task_products`, so that every task
    comes out as it does alone, provided ``adapt_stacked`` multiplies stacked tasks with
    :mod:`algorithms.products`' functions (``algorithms.networks``' layers do)."""

    @abstractmethod
    def adapt_stacked(self, tr: Transitions) -> list[Policy]:
        """Adapt to ``T`` tasks at once; ``tr``: ``[T, N, …]`` on the learner's device."""

    def adapt(self, support: Transitions) -> Policy:
        return self.adapt_stacked(support.to(self.device).map(lambda x: x.unsqueeze(0)))[0]

    def adapt_all(self, supports: Sequence[Transitions]) -> list[Policy]:
        tr = Transitions.stack_equal(supports)
        if tr is None:  # sets of unequal sizes: one at a time
            return [self.adapt(s) for s in supports]
        return self.adapt_stacked(tr.to(self.device))

    def adapt_each(self, supports: Sequence[Transitions]) -> list[Policy]:
        with per_task_products():
            return self.adapt_all(supports)


def known_learners() -> list[str]:
    _import_builtin()
    return sorted(OfflineMetaLearner._registry)


def _import_builtin() -> None:
    from algorithms import focal, macaw, meta_bc, mt_finetune, pearl, prompt_dt  # noqa: F401


def learner_class(spec: str) -> type[OfflineMetaLearner]:
    """A learner class by registered name (``"macaw"``) or by ``"package.module:ClassName"``."""
    if ":" in spec:
        module_name, _, attr = spec.partition(":")
        try:
            module = importlib.import_module(module_name)
        except Exception as e:  # a missing module, or a class refused at its definition
            raise ValueError(
                f"cannot import learner module {module_name!r}: {type(e).__name__}: {e}"
            ) from e
        cls = getattr(module, attr, None)
        if not (isinstance(cls, type) and issubclass(cls, OfflineMetaLearner)):
            raise ValueError(f"{spec!r} is not an OfflineMetaLearner subclass")
        return cls
    _import_builtin()
    if spec not in OfflineMetaLearner._registry:
        raise ValueError(
            f"unknown algorithm {spec!r}; known algorithms: "
            f"{', '.join(known_learners())} (or give module.path:ClassName)"
        )
    return OfflineMetaLearner._registry[spec]


@functools.cache
def _adapter(hint: Any) -> pydantic.TypeAdapter:
    return pydantic.TypeAdapter(hint)


def check_value(hint: Any, value: Any) -> str | None:
    """None if ``value`` has the type and range ``hint`` asks (strictly: "100" is no int);
    otherwise pydantic's one-line reason."""
    try:
        _adapter(hint).validate_python(value, strict=True)
    except pydantic.ValidationError as e:
        return e.errors()[0]["msg"]
    except pydantic.PydanticSchemaGenerationError:
        return None  # a type pydantic cannot check (e.g. a module): left to the learner
    return None


def field_hints(config_cls: type) -> dict[str, Any]:
    """The resolved annotations of a config dataclass's fields (constraints included)."""
    hints = typing.get_type_hints(config_cls, include_extras=True)
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(config_cls)}


def make_config(cls: type[OfflineMetaLearner], overrides: dict[str, Any] | None = None):
    """``cls.Config`` with overrides, every value checked against its field's type and range.

    An unknown key, a value of the wrong type ("100" for an int) or out of range (a batch of 0)
    is a ``ValueError`` naming the key and what is allowed; so is a Config that lacks the
    fields the runner needs (:data:`BATCH_FIELDS`) — a plug-in learner fails here, at suite
    loading, not inside a run after the data are built.
    """
    overrides = dict(overrides or {})
    hints = field_hints(cls.Config)
    missing = [f for f in BATCH_FIELDS if f not in hints]
    if missing:
        raise ValueError(
            f"{cls.name}'s Config lacks {', '.join(missing)}: the runner draws meta-batches "
            f"with {', '.join(BATCH_FIELDS)}"
        )
    unknown = sorted(set(overrides) - set(hints))
    if unknown:
        raise ValueError(
            f"unknown {cls.name} config key(s) {unknown}; known: {', '.join(sorted(hints))}"
        )
    config = cls.Config(**overrides)
    for key, hint in hints.items():
        value = getattr(config, key)
        reason = check_value(PositiveInt if key in (*BATCH_FIELDS, SEGMENT_FIELD) else hint, value)
        if reason:
            raise ValueError(f"{cls.name} config {key} = {value!r}: {reason}")
    if config.outer_batch % outer_segment(config):
        raise ValueError(
            f"{cls.name} config outer_batch = {config.outer_batch} must be a multiple of "
            f"{SEGMENT_FIELD} = {outer_segment(config)} (whole training windows)"
        )
    return config
