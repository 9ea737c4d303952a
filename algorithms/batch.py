"""The tensors a learner sees: :class:`Transitions` and :class:`MetaBatch`.

They live with the learners (not the harness) so that ``algorithms`` imports neither ``envs`` nor
``harness``; the harness builds them from stored datasets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import torch


@dataclass(frozen=True)
class Transitions:
    """Offline transitions with the protocol §2 fields; leading dims are free (``[..., batch]``).

    Attributes:
        obs: ``[..., B, obs_dim]``
        action: ``[..., B, act_dim]``
        reward: ``[..., B]``
        next_obs: ``[..., B, obs_dim]``
        done: ``[..., B]`` 1.0 where the episode terminated (not truncated) at this step.
        mc_return: ``[..., B]`` discounted reward-to-go to the end of the stored trajectory.
        terminal_obs: ``[..., B, obs_dim]`` that trajectory's last ``next_obs``.
        terminal_discount: ``[..., B]`` γ^(T−t); 0 where the trajectory ended by termination.
        timestep: ``[..., B]`` the step's index within its episode (0 at the episode's start).
        return_to_go: ``[..., B]`` undiscounted sum of the episode's rewards from this step on
            (what a decision transformer conditions on).

    ``timestep`` and ``return_to_go`` are derived from the stored episodes when a dataset is
    loaded; they are not stored and not part of an adaptation set's hash.
    """

    obs: torch.Tensor
    action: torch.Tensor
    reward: torch.Tensor
    next_obs: torch.Tensor
    done: torch.Tensor
    mc_return: torch.Tensor
    terminal_obs: torch.Tensor
    terminal_discount: torch.Tensor
    timestep: torch.Tensor
    return_to_go: torch.Tensor

    def map(self, fn) -> Transitions:
        return Transitions(**{f.name: fn(getattr(self, f.name)) for f in fields(self)})

    def to(self, device: torch.device | str) -> Transitions:
        return self.map(lambda t: t.to(device))

    def __len__(self) -> int:
        return self.reward.shape[-1]

    @staticmethod
    def cat(items: Sequence[Transitions]) -> Transitions:
        """Join row sets of one task end to end (on the first item's device and dtypes)."""
        first = items[0]
        return Transitions(
            **{
                f.name: torch.cat([getattr(t, f.name).to(getattr(first, f.name)) for t in items])
                for f in fields(Transitions)
            }
        )

    @staticmethod
    def stack(items: list[Transitions]) -> Transitions:
        """Stack equal-length transition sets along a new leading (task) dim."""
        return Transitions(
            **{
                f.name: torch.stack([getattr(t, f.name) for t in items])
                for f in fields(Transitions)
            }
        )

    @staticmethod
    def stack_equal(items: Sequence[Transitions]) -> Transitions | None:
        """``stack(items)`` when every item has the same shapes (adaptation sets of one size,
        so a learner can adapt to all their tasks in one batched pass), else ``None``."""
        shapes = {tuple(tuple(getattr(t, f.name).shape) for f in fields(t)) for t in items}
        return Transitions.stack(list(items)) if len(shapes) == 1 else None


@dataclass(frozen=True)
class TrainStatistics:
    """What the harness tells a learner about its train tasks' buffers before training
    (``OfflineMetaLearner.observe_train_data``): statistics of the train data only, never of a
    test task. A learner that normalises by them sees the same numbers on every batch.

    Attributes:
        obs_mean, obs_std: ``[obs_dim]`` over every stored row of the train tasks; a dimension
            constant there has std 1 (centred, never scaled up).
        max_abs_return_to_go: the largest |return-to-go| of any row.
        best_episode_return: the best undiscounted episode return of any train task.
        row_stride: environment steps between consecutive stored rows (the dataset's ``skip``).
    """

    obs_mean: torch.Tensor
    obs_std: torch.Tensor
    max_abs_return_to_go: float
    best_episode_return: float
    row_stride: int = 1


@dataclass(frozen=True)
class MetaBatch:
    """One meta-training batch: per sampled train task an inner (support) and outer (query) batch.

    Attributes:
        inner: ``Transitions`` shaped ``[tasks, inner_batch, ...]`` (consecutive rows, protocol §4).
        outer: ``Transitions`` shaped ``[tasks, outer_batch, ...]`` (uniform rows).
        task_ids: ``[tasks]`` positions of the sampled tasks among the train tasks (0..n_train−1).
    """

    inner: Transitions
    outer: Transitions
    task_ids: torch.Tensor

    def to(self, device: torch.device | str) -> MetaBatch:
        return MetaBatch(self.inner.to(device), self.outer.to(device), self.task_ids.to(device))

    @property
    def n_tasks(self) -> int:
        return int(self.task_ids.shape[0])


def synthetic_meta_batch(
    tasks: int, inner: int, outer: int, obs_dim: int, act_dim: int, seed: int = 0
) -> MetaBatch:
    """A meta-batch of random numbers with the right shapes and ranges: for timing a step
    (``run --dry-run``) and for checking a learner's interface, never for learning."""
    g = torch.Generator().manual_seed(seed)

    def part(n: int) -> Transitions:
        def f(*s):
            return torch.randn(tasks, n, *s, generator=g)

        return Transitions(
            obs=f(obs_dim),
            action=f(act_dim).clamp(-0.9, 0.9),
            reward=f(),
            next_obs=f(obs_dim),
            done=torch.zeros(tasks, n),
            mc_return=f(),
            terminal_obs=f(obs_dim),
            terminal_discount=torch.rand(tasks, n, generator=g),
            timestep=torch.arange(n).float().expand(tasks, n).contiguous(),
            return_to_go=f(),
        )

    return MetaBatch(part(inner), part(outer), torch.arange(tasks))


def batch_part(tr: Transitions, parts: int, i: int) -> Transitions:
    """The i-th of ``parts`` equal slices along the batch dim (dim 1): the inner batch split
    between several inner steps."""
    if parts == 1:
        return tr
    n = tr.reward.shape[1] // parts
    return tr.map(lambda x: x[:, i * n : (i + 1) * n])
