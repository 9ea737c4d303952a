# first: the data numerics pin (harness/numerics.py) must precede numpy's and torch's loading
import harness  # noqa: F401

# isort: split
import os
import sys
import warnings
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
torch.set_num_threads(min(2, os.cpu_count() or 1))
warnings.filterwarnings("ignore", message=".*Constant\\(s\\) may be too high.*")
warnings.filterwarnings("ignore", message=".*Box observation space m.*")


@pytest.fixture(scope="session")
def tiny_sac_budget():
    from harness.collect.sac import SACBudget, SACConfig

    return SACBudget(60, warmup_steps=20, chunk_size=25, sac=SACConfig(hidden=16, batch_size=32))


@pytest.fixture(scope="session")
def tiny_point_robot(tmp_path_factory):
    """A dataset cache holding point-robot's tiny build (one per test session)."""
    from harness.collect.build import build

    root = tmp_path_factory.mktemp("tiny-point-robot")
    build("point-robot", "tiny", 0, root, workers=2, progress=False)
    return root
