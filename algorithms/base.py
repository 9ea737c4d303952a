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
import importlib
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from torch import nn

from algorithms.batch import MetaBatch, Transitions


class Policy(ABC):
    """A policy adapted to one task: observations in, deterministic actions out."""

    @abstractmethod
    def act(self, obs: torch.Tensor) -> torch.Tensor:
        """obs: [B, obs_dim] → actions [B, act_dim] (the mean action, in [-1, 1])."""

    def __call__(self, obs: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.act(obs)


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
        if not dataclasses.is_dataclass(cls.__dict__.get("Config", getattr(cls, "Config", None))):
            raise TypeError(f"{cls.__qualname__}.Config must be a dataclass")
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

    def prior_policy(self) -> Policy:
        """The policy before any adaptation (for the pre-adaptation score). Optional."""
        raise NotImplementedError(f"{self.name} does not define a pre-adaptation policy")

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


def known_learners() -> list[str]:
    _import_builtin()
    return sorted(OfflineMetaLearner._registry)


def _import_builtin() -> None:
    from algorithms import macaw, meta_bc, mt_finetune, pearl  # noqa: F401  (registers them)


def learner_class(spec: str) -> type[OfflineMetaLearner]:
    """A learner class by registered name (``"macaw"``) or by ``"package.module:ClassName"``."""
    if ":" in spec:
        module_name, _, attr = spec.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            raise ValueError(f"cannot import learner module {module_name!r}: {e}") from e
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


def make_config(cls: type[OfflineMetaLearner], overrides: dict[str, Any] | None = None):
    """``cls.Config`` with overrides; an unknown key is an error that lists the known ones."""
    overrides = dict(overrides or {})
    known = {f.name for f in dataclasses.fields(cls.Config)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(
            f"unknown {cls.name} config key(s) {unknown}; known: {', '.join(sorted(known))}"
        )
    return cls.Config(**overrides)
