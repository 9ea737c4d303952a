import torch

from harness.hugepages import use_huge_pages

torch.set_num_threads(2)  # the machine class we report for: 2 CPU cores
use_huge_pages()  # as the harness's run workers do; OMRL_HUGEPAGES=0 measures without
