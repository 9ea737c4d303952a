import torch

torch.set_num_threads(2)  # the machine class we report for: 2 CPU cores
