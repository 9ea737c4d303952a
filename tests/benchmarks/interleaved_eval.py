"""Batched against sequential evaluation, interleaved, without pytest: all three loops
alternating on the same learner and environments, more rounds than the benchmark's; prints the
median time of each and the median of the rounds' ratios (``interleaved.py``)::

    python -m tests.benchmarks.interleaved_eval macaw meta-bc mt-ft pearl
"""

import statistics
import sys
import tempfile
import time

import torch

from algorithms import learner_class
from envs import make_family
from harness.collect.build import build, dataset_dir
from harness.datasets import OfflineDataset
from harness.evaluate import EvalConfig, evaluate, make_eval_envs
from harness.hugepages import use_huge_pages
from tests.benchmarks.interleaved import median_ratio
from tests.reference_evaluate import evaluate_sequential

PAIRS = 8


def main(names: list[str]) -> None:
    use_huge_pages()
    torch.set_num_threads(1)  # a run per core, as the harness runs them
    family = make_family("cheetah-vel")
    tasks = list(family.test_indices)
    with tempfile.TemporaryDirectory() as root:
        build("cheetah-vel", "tiny", 0, root, workers=1, progress=False)
        ds = OfflineDataset.load(dataset_dir("cheetah-vel", "tiny", 0, root))
        for name in names:
            learner = learner_class(name)(family.obs_dim, family.act_dim, len(family.train_indices))
            batched = make_eval_envs(family, tasks)
            loops = {
                "sequential": (evaluate_sequential, {t: family.make_env(t) for t in tasks}, {}),
                "batched": (evaluate, batched, {}),  # adapt_each: exact
                "batched, adapting together": (evaluate, batched, {"adapt_together": True}),
            }
            times: dict[str, list[float]] = {k: [] for k in loops}
            for i in range(PAIRS + 1):  # the first round warms up
                for k, (fn, envs, cfg) in loops.items():
                    t = time.perf_counter()
                    fn(learner, family, ds, 0, EvalConfig(**cfg), envs)
                    if i:
                        times[k].append(time.perf_counter() - t)
            med = {k: statistics.median(v) for k, v in times.items()}
            seq = times["sequential"]
            # the median of each round's own ratio: a drift slower than a round cancels in it
            ratio = {k: median_ratio(seq, v) for k, v in times.items()}
            print(
                f"{name}: sequential {med['sequential'] * 1e3:.0f} ms; "
                + "; ".join(
                    f"{k} {m * 1e3:.0f} ms ({ratio[k]:.2f}×)"
                    for k, m in med.items()
                    if k != "sequential"
                ),
                flush=True,
            )


if __name__ == "__main__":
    main(sys.argv[1:] or ["macaw", "meta-bc", "mt-ft", "pearl"])
