import pytest
import torch

from harness.hugepages import use_huge_pages

THREADS = 2  # the machine class we report for: 2 CPU cores
use_huge_pages()  # as the harness's run workers do; OMRL_HUGEPAGES=0 measures without


@pytest.fixture(autouse=True)
def reported_thread_count():
    """Every benchmark starts at the reported thread count, whatever ran before it."""
    torch.set_num_threads(THREADS)
    yield
