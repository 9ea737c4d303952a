"""Offline datasets: on-disk format, manifest with checksums, and in-memory sampling.

**Format.** One ``.npz`` file per task (a zip of ``.npy`` arrays: readable by any NumPy, no HDF5
library or schema registry needed), written uncompressed with fixed zip timestamps so the same
data gives the same bytes. Fields (protocol §2): ``obs, action, reward, next_obs, done, mc_return,
terminal_obs, terminal_discount`` per transition, and ``episode_start, episode_length,
episode_return, episode_success`` per episode (and ``episode_noise``, the behaviour's noise
level, for Meta-World's scripted data), in chronological order. Actions are stored
normalised to [-1, 1] (divided by the action space's bound), the space every learner acts in.

**Manifest.** ``manifest.json`` beside the files records the family (tasks, parameters, split),
the generator config and seed, package versions and the sha256 of every file. Loading checks
every file against it and refuses a missing, truncated or modified file by name — a dataset is
used whole or not at all. The sha256 of the manifest (less its build record: wall time,
training curves) identifies the dataset in result rows.
"""

from __future__ import annotations

import hashlib
import io
import json
import platform
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from algorithms.batch import MetaBatch, TrainStatistics, Transitions
from harness.results import atomic_write, write_json

GAMMA = 0.99
FORMAT_VERSION = 3  # 2: actions normalised to [-1, 1]; 3: reference returns, build record
TRANSITION_FIELDS = (
    "obs",
    "action",
    "reward",
    "next_obs",
    "done",
    "mc_return",
    "terminal_obs",
    "terminal_discount",
)
DERIVED_FIELDS = ("timestep", "return_to_go")
"""Per-row fields computed from the stored episodes at load time (never stored, never hashed)."""
EPISODE_FIELDS = ("episode_start", "episode_length", "episode_return", "episode_success")
MANIFEST = "manifest.json"


class DatasetError(RuntimeError):
    """A dataset is missing, corrupt, or does not match what was asked for."""


# ---------------------------------------------------------------------------------------------
# Trajectory bookkeeping
# ---------------------------------------------------------------------------------------------
def episode_fields(
    obs: np.ndarray,
    action: np.ndarray,
    reward: np.ndarray,
    next_obs: np.ndarray,
    terminated: bool,
    gamma: float = GAMMA,
) -> dict[str, np.ndarray]:
    """Per-transition arrays of one stored trajectory, with its Monte-Carlo fields.

    ``mc_return[t] = Σ_{k≥t} γ^{k−t} r_k`` to the end of the stored trajectory;
    ``terminal_obs`` is its last ``next_obs``; ``terminal_discount[t] = γ^{T−t}``, so that
    ``mc_return + terminal_discount · V(terminal_obs)`` bootstraps past a truncation. Where the
    trajectory ended by *termination* (a fall) there is nothing to bootstrap and the discount is
    0 *(ours: the original stores γ^{T−t} regardless)*.
    """
    n = len(reward)
    mc = np.zeros(n, dtype=np.float64)
    acc = 0.0
    for t in range(n - 1, -1, -1):
        acc = float(reward[t]) + gamma * acc
        mc[t] = acc
    steps_left = n - np.arange(n)
    disc = np.zeros(n) if terminated else gamma**steps_left
    done = np.zeros(n, dtype=np.float32)
    if terminated:
        done[-1] = 1.0
    return {
        "obs": np.asarray(obs, dtype=np.float32),
        "action": np.asarray(action, dtype=np.float32),
        "reward": np.asarray(reward, dtype=np.float32),
        "next_obs": np.asarray(next_obs, dtype=np.float32),
        "done": done,
        "mc_return": mc.astype(np.float32),
        "terminal_obs": np.repeat(np.asarray(next_obs[-1:], dtype=np.float32), n, axis=0),
        "terminal_discount": disc.astype(np.float32),
    }


def derived_fields(reward: np.ndarray, episode_start: np.ndarray) -> dict[str, np.ndarray]:
    """Each row's step index within its episode and the episode's undiscounted reward-to-go
    from that row: what sequence models (Prompt-DT) condition on, from the stored episodes."""
    n = len(reward)
    starts = np.asarray(episode_start, dtype=np.int64)
    episode = np.searchsorted(starts, np.arange(n), side="right") - 1
    timestep = np.arange(n) - starts[episode]
    r = np.asarray(reward, dtype=np.float64)
    suffix = np.cumsum(r[::-1])[::-1]  # Σ_{k≥t} r_k over the whole buffer
    ends = np.append(starts[1:], n)
    after = np.append(suffix, 0.0)[ends[episode]]  # what lies past the row's episode
    return {
        "timestep": timestep.astype(np.float32),
        "return_to_go": (suffix - after).astype(np.float32),
    }


def tenth_means(per_episode: np.ndarray, fraction: float = 0.1) -> tuple[float, float]:
    """Mean of the first and of the last ``fraction`` of a buffer's episodes (at least one):
    how a chronological buffer starts and how it ends."""
    k = max(1, int(round(len(per_episode) * fraction)))
    return float(np.mean(per_episode[:k])), float(np.mean(per_episode[-k:]))


def assemble_buffer(episodes: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Concatenate episodes (each: ``obs, action, reward, next_obs, terminated, success``)."""
    parts = [
        episode_fields(e["obs"], e["action"], e["reward"], e["next_obs"], e["terminated"])
        for e in episodes
    ]
    out = {k: np.concatenate([p[k] for p in parts]) for k in TRANSITION_FIELDS}
    lengths = np.array([len(e["reward"]) for e in episodes], dtype=np.int64)
    out["episode_start"] = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    out["episode_length"] = lengths
    out["episode_return"] = np.array([float(np.sum(e["reward"])) for e in episodes], np.float32)
    out["episode_success"] = np.array([float(e.get("success", 0.0)) for e in episodes], np.float32)
    if episodes and all("noise" in e for e in episodes):  # Meta-World: each episode's noise level
        out["episode_noise"] = np.array([float(e["noise"]) for e in episodes], np.float32)
    return out


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------
def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> str:
    """Write a deterministic ``.npz`` atomically (temp file + rename); return its sha256."""
    path = Path(path)

    def write(f) -> None:
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as zf:
            for key in sorted(arrays):
                buf = io.BytesIO()
                array = np.ascontiguousarray(arrays[key])
                np.lib.format.write_array(buf, array, allow_pickle=False)
                info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                info.external_attr = 0o644 << 16
                zf.writestr(info, buf.getvalue())

    atomic_write(path, write)
    return sha256_file(path)


def write_json_atomic(path: Path, obj: Any) -> None:
    write_json(path, obj)


def package_versions() -> dict[str, str]:
    import gymnasium
    import mujoco

    versions = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "gymnasium": gymnasium.__version__,
        "mujoco": mujoco.__version__,
    }
    try:
        from importlib.metadata import version

        versions["metaworld"] = version("metaworld")
    except Exception:  # pragma: no cover - metaworld is a hard requirement, but be robust
        pass
    return versions


def task_filename(task_index: int) -> str:
    return f"task_{task_index:04d}.npz"


def read_manifest(directory: Path) -> dict[str, Any]:
    path = Path(directory) / MANIFEST
    if not path.exists():
        raise DatasetError(
            f"{path}: no manifest — the dataset was never built or its build did not finish; "
            "run `python -m harness data build <family>`"
        )
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path}: corrupt manifest ({e})") from e
    version = manifest.get("format_version") if isinstance(manifest, dict) else None
    if version != FORMAT_VERSION:
        raise DatasetError(
            f"{path}: dataset format version {version}, this harness reads version "
            f"{FORMAT_VERSION}; rebuild it with `python -m harness data build`"
        )
    return manifest


def manifest_identity(manifest: dict[str, Any]) -> str:
    """sha256 of what determines a dataset's bytes — format, family and split, generator (seed,
    budget, numerics pin) and every file's checksum.

    Not hashed: the ``build`` record (wall time, workers, curves differ between two builds of
    the same seed) and the package ``versions`` (a Python patch release changes no byte; the
    versions that do, numpy's OpenBLAS, torch, MuJoCo, show in the files' checksums)."""
    identity = {k: v for k, v in manifest.items() if k not in ("build", "versions")}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def manifest_hash(directory: Path) -> str:
    """The dataset's identity (:func:`manifest_identity` of its manifest)."""
    return manifest_identity(read_manifest(directory))


def differences_from(directory: Path, reference: dict[str, Any]) -> list[str]:
    """How a built dataset differs from a reference manifest, by what is on disk: each task file
    whose bytes differ (hashed afresh, not read from the local manifest), is missing, or is not
    in the reference, and each identity field (family, generator, format) that differs.
    Empty: the same dataset, byte for byte."""
    directory = Path(directory)
    local = read_manifest(directory)
    out = [
        f"{key} differs"
        for key in ("format_version", "family", "generator")
        if local.get(key) != reference.get(key)
    ]
    ref_files, local_files = reference.get("files", {}), local.get("files", {})
    for _, entry in sorted(ref_files.items(), key=lambda kv: int(kv[0])):
        path = directory / entry["file"]
        if not path.exists():
            out.append(f"{entry['file']} missing")
        elif sha256_file(path) != entry["sha256"]:
            out.append(f"{entry['file']} differs")
    extra = [t for t in local_files if t not in ref_files]
    out += [f"{local_files[t]['file']} not in the reference" for t in extra]
    return out


def verify_file(directory: Path, entry: dict[str, Any]) -> Path:
    """Check one task file against its manifest entry; raise naming the file on any mismatch."""
    path = Path(directory) / entry["file"]
    if not path.exists():
        raise DatasetError(f"{path}: missing (listed in the manifest)")
    size = path.stat().st_size
    if size != entry["bytes"]:
        raise DatasetError(
            f"{path}: size {size} B, manifest says {entry['bytes']} B — truncated or modified"
        )
    digest = sha256_file(path)
    if digest != entry["sha256"]:
        raise DatasetError(
            f"{path}: sha256 {digest[:12]}…, manifest says {entry['sha256'][:12]}… — corrupt or "
            "modified; rebuild it with `python -m harness data build`"
        )
    return path


def verify_dataset(directory: Path) -> dict[str, Any]:
    """Verify every file of a dataset; return the manifest."""
    manifest = read_manifest(directory)
    for entry in manifest["files"].values():
        verify_file(directory, entry)
    return manifest


def load_task_arrays(directory: Path, entry: dict[str, Any]) -> dict[str, np.ndarray]:
    path = verify_file(directory, entry)
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    missing = set(TRANSITION_FIELDS + EPISODE_FIELDS) - set(arrays)
    if missing:
        raise DatasetError(f"{path}: missing fields {sorted(missing)}")
    return arrays


# ---------------------------------------------------------------------------------------------
# In memory
# ---------------------------------------------------------------------------------------------
Quality = Literal["all", "first", "middle", "last"]
Sampling = Literal["iid", "window"]


def _iid_rows(lo: int, hi: int, n: int, g: torch.Generator) -> torch.Tensor:
    """``n`` rows of ``[lo, hi)`` drawn uniformly with replacement."""
    return torch.randint(lo, hi, (n,), generator=g)


def _window_rows(lo: int, hi: int, n: int, g: torch.Generator) -> torch.Tensor:
    """``n`` consecutive rows of ``[lo, hi)`` from a random start (all of it if shorter)."""
    n = min(n, hi - lo)
    start = lo + int(torch.randint(0, hi - lo - n + 1, (1,), generator=g))
    return torch.arange(start, start + n)


# how an adaptation set's rows are drawn from a buffer slice
ADAPT_SAMPLING = {"iid": _iid_rows, "window": _window_rows}


@dataclass
class OfflineDataset:
    """All tasks of one family in memory: one contiguous tensor per field, tasks back to back.

    Sampling is an index gather (no Python per-sample work), so drawing a meta-batch for five
    tasks costs a few microseconds of bookkeeping plus the copy.

    Attributes:
        data: field → ``[total_rows, ...]`` tensor (float32).
        task_indices: the family task index of each stored task, in storage order.
        offsets, lengths: ``[n_tasks]`` row offset and row count of each stored task.
        episode_starts: per stored task, row offsets (within the task) of its episodes.
        episode_returns, episode_successes: per stored task, per-episode labels.
        manifest: the manifest the data was verified against; ``manifest_sha256`` its hash.
    """

    data: dict[str, torch.Tensor]
    task_indices: list[int]
    offsets: torch.Tensor
    lengths: torch.Tensor
    episode_starts: list[np.ndarray]
    episode_returns: list[np.ndarray]
    episode_successes: list[np.ndarray]
    manifest: dict[str, Any]
    manifest_sha256: str
    skip: int = 1

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def load(cls, directory: Path, tasks: list[int] | None = None, skip: int = 1) -> OfflineDataset:
        """Load and verify (sha256) the given tasks (default: all) of a built dataset.

        Args:
            directory: the dataset folder (holding ``manifest.json``).
            tasks: family task indices to load; all by default.
            skip: keep every ``skip``-th transition (the original sub-samples with 7). MC
                fields were computed on the full trajectories, so they stay exact.
        """
        directory = Path(directory)
        manifest = read_manifest(directory)
        files = manifest["files"]
        wanted = sorted(int(k) for k in files) if tasks is None else list(tasks)
        missing = [t for t in wanted if str(t) not in files]
        if missing:
            raise DatasetError(f"{directory}: manifest has no data for tasks {missing}")
        per_task = []
        for t in wanted:
            arrays = load_task_arrays(directory, files[str(t)])
            per_task.append(arrays)
        return cls.from_arrays(per_task, wanted, manifest, manifest_hash(directory), skip)

    @classmethod
    def from_arrays(
        cls,
        per_task: list[dict[str, np.ndarray]],
        task_indices: list[int],
        manifest: dict[str, Any] | None = None,
        manifest_sha256: str = "",
        skip: int = 1,
    ) -> OfflineDataset:
        if skip < 1:
            raise ValueError(f"skip must be ≥ 1, got {skip}")
        cols: dict[str, list[np.ndarray]] = {k: [] for k in TRANSITION_FIELDS + DERIVED_FIELDS}
        lengths, starts, rets, succs = [], [], [], []
        for arrays in per_task:
            keep = np.arange(0, len(arrays["reward"]), skip)
            # derived on the full trajectories, so they stay exact under sub-sampling
            full = {**arrays, **derived_fields(arrays["reward"], arrays["episode_start"])}
            for k in TRANSITION_FIELDS + DERIVED_FIELDS:
                cols[k].append(full[k][keep])
            lengths.append(len(keep))
            # episode starts re-expressed in sub-sampled rows
            starts.append(np.unique(np.ceil(arrays["episode_start"] / skip).astype(np.int64)))
            rets.append(arrays["episode_return"])
            succs.append(arrays["episode_success"])
        data = {
            k: torch.from_numpy(np.ascontiguousarray(np.concatenate(v))).float()
            for k, v in cols.items()
        }
        lengths_t = torch.tensor(lengths, dtype=torch.long)
        offsets = torch.cumsum(lengths_t, 0) - lengths_t
        return cls(
            data,
            list(task_indices),
            offsets,
            lengths_t,
            starts,
            rets,
            succs,
            manifest or {},
            manifest_sha256,
            skip,
        )

    # -- access ------------------------------------------------------------------------------
    def position(self, task_index: int) -> int:
        try:
            return self.task_indices.index(task_index)
        except ValueError:
            raise DatasetError(f"task {task_index} is not loaded") from None

    def _gather(self, rows: torch.Tensor) -> Transitions:
        flat = rows.reshape(-1)
        fields = {
            k: v.index_select(0, flat).reshape(*rows.shape, *v.shape[1:])
            for k, v in self.data.items()
        }
        return Transitions(**fields)

    def train_statistics(self, task_indices: list[int]) -> TrainStatistics:
        """Statistics of the given (train) tasks' stored rows, for
        ``OfflineMetaLearner.observe_train_data`` (float64 sums, so the order of tasks does not
        matter to the digits that survive float32)."""
        pos = [self.position(t) for t in task_indices]
        rows = torch.cat(
            [
                torch.arange(int(self.offsets[p]), int(self.offsets[p] + self.lengths[p]))
                for p in pos
            ]
        )
        obs = self.data["obs"].index_select(0, rows).double()
        std = obs.std(0)
        std = torch.where(std > 1e-6, std, torch.ones_like(std))
        rtg = self.data["return_to_go"].index_select(0, rows)
        return TrainStatistics(
            obs_mean=obs.mean(0).float(),
            obs_std=std.float(),
            max_abs_return_to_go=float(rtg.abs().max()),
            best_episode_return=float(max(np.max(self.episode_returns[p]) for p in pos)),
            row_stride=int(self.skip),
        )

    def sample_episode_ends(
        self,
        task_indices: list[int],
        segments: int,
        length: int,
        generator: torch.Generator | None = None,
    ) -> Transitions:
        """``[tasks, segments · length]`` rows: per task, ``segments`` times the last ``length``
        rows of a uniformly drawn episode (a shorter episode: its rows from the start, the last
        one repeated)."""
        per_task = []
        for t in task_indices:
            p = self.position(t)
            starts = torch.as_tensor(self.episode_starts[p], dtype=torch.long)
            ends = torch.cat([starts[1:], self.lengths[p : p + 1]]) - 1  # last row of each
            pick = torch.randint(len(starts), (segments,), generator=generator)
            first = torch.maximum(ends[pick] - length + 1, starts[pick])
            steps = torch.minimum(first[:, None] + torch.arange(length), ends[pick, None])
            per_task.append(self.offsets[p] + steps.reshape(-1))
        return self._gather(torch.stack(per_task))

    def task_transitions(self, task_index: int) -> Transitions:
        p = self.position(task_index)
        start, n = int(self.offsets[p]), int(self.lengths[p])
        return Transitions(**{k: v[start : start + n] for k, v in self.data.items()})

    def slice_bounds(self, pos: int, quality: Quality, fraction: float) -> tuple[int, int]:
        """Row range ``[lo, hi)`` of a quality slice of one task's (chronological) buffer."""
        n = int(self.lengths[pos])
        if quality == "all":
            return 0, n
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        width = max(1, int(round(n * fraction)))
        lo = {"first": 0, "middle": (n - width) // 2, "last": n - width}.get(quality)
        if lo is None:
            raise ValueError(f"unknown quality slice {quality!r}; known: all, first, middle, last")
        return lo, lo + width

    def sample_uniform(
        self, task_indices: list[int], batch: int, generator: torch.Generator | None = None
    ) -> Transitions:
        """``[tasks, batch]`` rows drawn uniformly (with replacement) from each task."""
        pos = torch.tensor([self.position(t) for t in task_indices])
        u = torch.rand(len(task_indices), batch, generator=generator)
        rows = self.offsets[pos, None] + (u * self.lengths[pos, None]).long()
        return self._gather(rows)

    def _slices(self, task_indices: list[int], quality: Quality, fraction: float):
        """Per task: its position, and the first row and length of its quality slice."""
        pos = torch.tensor([self.position(t) for t in task_indices])
        bounds = torch.tensor([self.slice_bounds(int(p), quality, fraction) for p in pos])
        return pos, bounds[:, 0], bounds[:, 1] - bounds[:, 0]

    def sample_slice_uniform(
        self,
        task_indices: list[int],
        batch: int,
        generator: torch.Generator | None = None,
        quality: Quality = "all",
        fraction: float = 1.0 / 3.0,
    ) -> Transitions:
        """``[tasks, batch]`` rows drawn uniformly (with replacement) from a quality slice of
        each task's buffer (the whole buffer by default)."""
        pos, lo, n = self._slices(task_indices, quality, fraction)
        u = torch.rand(len(task_indices), batch, generator=generator)
        rows = self.offsets[pos, None] + lo[:, None] + (u * n[:, None]).long()
        return self._gather(rows)

    def sample_contiguous(
        self,
        task_indices: list[int],
        batch: int,
        generator: torch.Generator | None = None,
        quality: Quality = "all",
        fraction: float = 1.0 / 3.0,
    ) -> Transitions:
        """``[tasks, batch]`` consecutive rows from a random start in each task (protocol §4),
        within a quality slice of each buffer (the whole buffer by default)."""
        pos, lo, n = self._slices(task_indices, quality, fraction)
        span = (n - batch + 1).clamp(min=1)
        start = lo + (torch.rand(len(task_indices), generator=generator) * span).long()
        steps = torch.arange(batch).remainder(n[:, None])
        rows = self.offsets[pos, None] + start[:, None] + steps
        return self._gather(rows)

    def sample_segments(
        self,
        task_indices: list[int],
        segments: int,
        length: int,
        generator: torch.Generator | None = None,
    ) -> Transitions:
        """``[tasks, segments · length]`` rows: per task, ``segments`` runs of ``length``
        consecutive rows, each from a uniformly drawn row. A run that reaches its episode's end
        carries on into the next episode (or repeats the buffer's last row); ``timestep`` shows
        where, and sequence learners mask those rows (as the original left-pads short ones)."""
        pos = torch.tensor([self.position(t) for t in task_indices])
        u = torch.rand(len(task_indices), segments, generator=generator)
        start = (u * self.lengths[pos, None]).long()  # [tasks, segments]
        steps = start[..., None] + torch.arange(length)  # [tasks, segments, length]
        steps = torch.minimum(steps, self.lengths[pos, None, None] - 1)
        rows = self.offsets[pos, None, None] + steps
        return self._gather(rows.reshape(len(task_indices), segments * length))

    def meta_batch(
        self,
        task_indices: list[int],
        train_positions: list[int],
        inner_batch: int = 256,
        outer_batch: int = 256,
        generator: torch.Generator | None = None,
        inner_quality: Quality = "all",
        inner_fraction: float = 1.0 / 3.0,
        outer_segment: int = 1,
        inner_sampling: str = "window",
        inner_segment: int = 1,
    ) -> MetaBatch:
        """Inner = consecutive rows (from a quality slice, for the quality ablations), or with
        ``inner_sampling="iid"`` uniform rows of that slice (PEARL's and FOCAL's contexts), or
        ``"episode_ends"`` the ends of whole episodes (Prompt-DT's prompts);
        outer = uniform rows of the whole buffers of the same tasks (protocol §4) — or, for a
        learner whose Config asks for ``outer_segment`` > 1 (a sequence model), ``outer_batch /
        outer_segment`` runs of that many consecutive rows."""
        if inner_sampling == "episode_ends":
            inner = self.sample_episode_ends(
                task_indices, max(1, inner_batch // inner_segment), inner_segment, generator
            )
        elif inner_sampling == "iid":
            inner = self.sample_slice_uniform(
                task_indices, inner_batch, generator, inner_quality, inner_fraction
            )
        else:
            inner = self.sample_contiguous(
                task_indices, inner_batch, generator, inner_quality, inner_fraction
            )
        if outer_segment == 1:
            outer = self.sample_uniform(task_indices, outer_batch, generator)
        else:
            outer = self.sample_segments(
                task_indices, outer_batch // outer_segment, outer_segment, generator
            )
        return MetaBatch(inner, outer, torch.tensor(train_positions, dtype=torch.long))

    def adaptation_set(
        self,
        task_index: int,
        seed: int,
        n_transitions: int | None = 256,
        n_trajectories: int | None = None,
        quality: Quality = "all",
        fraction: float = 1.0 / 3.0,
        sampling: Sampling = "iid",
        step: int = 0,
        family: str = "",
        draw: int = 0,
    ) -> Transitions:
        """The adaptation set of a test task: identical for every algorithm.

        ``iid`` (default, as the authors' code): ``n_transitions`` rows drawn afresh, i.i.d.,
        at every evaluation, seeded by (family, seed, task, evaluation step); ``window``: one
        fixed block of consecutive rows per (seed, task), reused at every evaluation. ``draw``
        > 0: another independent i.i.d. set of the same evaluation step (the multi-draw final
        score; draw 0 is the curve's own). With
        ``n_trajectories``, that many whole episodes instead (redrawn per step under ``iid``).
        Everything comes from a quality slice of the buffer.
        """
        if sampling not in ADAPT_SAMPLING:
            raise ValueError(
                f"unknown adapt_sampling {sampling!r}; known: {', '.join(ADAPT_SAMPLING)}"
            )
        pos = self.position(task_index)
        lo, hi = self.slice_bounds(pos, quality, fraction)
        if sampling == "window":
            g = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(task_index))
        else:
            key = f"{family}|{int(seed)}|{int(task_index)}|{int(step)}"
            key = (key + (f"|draw{int(draw)}" if draw else "")).encode()
            g = torch.Generator().manual_seed(int(hashlib.sha256(key).hexdigest()[:15], 16))
        base = int(self.offsets[pos])
        if n_trajectories is not None:
            starts = self.episode_starts[pos]
            ends = np.append(starts[1:], int(self.lengths[pos]))
            inside = [i for i, (s, e) in enumerate(zip(starts, ends)) if s >= lo and e <= hi]
            if len(inside) < n_trajectories:
                raise DatasetError(
                    f"task {task_index}: only {len(inside)} whole episodes in the {quality} slice"
                )
            pick = torch.randperm(len(inside), generator=g)[:n_trajectories].sort().values
            rows = np.concatenate([np.arange(starts[inside[i]], ends[inside[i]]) for i in pick])
            return self._gather(torch.as_tensor(rows + base, dtype=torch.long))
        rows = ADAPT_SAMPLING[sampling](lo, hi, int(n_transitions), g)
        return self._gather(rows + base)

    # -- summaries -----------------------------------------------------------------------------
    def best_episode_score(self, task_indices: list[int], metric: str = "return") -> float:
        """Best behaviour episode over the given tasks (for score normalisation)."""
        vals = [
            float(
                np.max(
                    self.episode_returns[self.position(t)]
                    if metric == "return"
                    else self.episode_successes[self.position(t)]
                )
            )
            for t in task_indices
        ]
        return float(np.mean(vals))


def transitions_hash(t: Transitions) -> str:
    """sha256 over a transition set's bytes: proves two algorithms saw the same adaptation data."""
    h = hashlib.sha256()
    for name in TRANSITION_FIELDS:
        h.update(getattr(t, name).detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()
