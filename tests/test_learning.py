"""Each algorithm learns: on a small point-robot offline meta-RL problem, within a CI budget,
the policy adapted on a held-out task beats both the unadapted policy and a random policy.

Outer learning rates are raised from the paper's (set for 10⁶ iterations) to fit a few hundred
steps; the algorithms are otherwise as configured by default.
"""

import numpy as np
import pytest
import torch

from algorithms import learner_class, make_config
from tests.pointdata import evaluate, make_dataset, meta_train, random_return, support_set

CASES = {
    # name: (config overrides, meta-steps, margin over unadapted, margin over random)
    "macaw": (
        {
            "width": 64,
            "wt_latent": 32,
            "policy_lr": 1e-3,
            "value_lr": 1e-3,
            "inner_batch": 128,
            "outer_batch": 128,
        },
        400,
        3.0,
        5.0,
    ),
    "meta-bc": ({"width": 64, "wt_latent": 32, "policy_lr": 1e-3, "inner_lr": 0.01}, 600, 4.0, 3.0),
    "mt-ft": (
        {"policy_lr": 1e-3, "value_lr": 1e-3, "inner_batch": 128, "outer_batch": 128},
        400,
        4.0,
        6.0,
    ),
    "pearl": (
        {"width": 64, "tasks_per_batch": 8, "inner_batch": 128, "outer_batch": 128},
        2500,
        3.0,
        6.0,
    ),
    # the divergence penalty's weight fixed at 1: point-robot rewards are ~1 per step, and the
    # authors' α = 500 (set for their data) there outweighs them ~100× (measured: margins 2.8 /
    # 7.3 at 1 500 steps with it, 5.1 / 10.4 with α = 1)
    "focal": (
        {
            "width": 64,
            "tasks_per_batch": 8,
            "inner_batch": 128,
            "outer_batch": 128,
            "policy_lr": 1e-3,
            "qf_lr": 1e-3,
            "vf_lr": 1e-3,
            "context_lr": 1e-3,
            "c_lr": 1e-3,
            "alpha_init": 1.0,
            "train_alpha": False,
        },
        1500,
        3.0,
        6.0,
    ),
    # a smaller transformer, no dropout, a whole 20-step episode as the prompt; measured margins
    # 2.2 over the zero-prompt prior and 5.1 over random at 1 000 steps
    "prompt-dt": (
        {
            "policy_lr": 1e-3,
            "warmup_steps": 100,
            "embed_dim": 64,
            "n_layer": 2,
            "dropout": 0.0,
            "outer_batch": 160,
            "inner_batch": 20,
        },
        1000,
        1.0,
        3.0,
    ),
}


@pytest.fixture(scope="module")
def problem():
    return make_dataset()


@pytest.mark.parametrize("name", list(CASES))
def test_adapted_policy_beats_unadapted_and_random(name, problem):
    ds, train, test, goals = problem
    overrides, steps, margin_pre, margin_random = CASES[name]
    cls = learner_class(name)
    cfg = make_config(cls, overrides)
    torch.manual_seed(0)
    learner = cls(2, 2, len(train), cfg, seed=0)
    meta_train(learner, ds, train, steps)
    post = np.mean([evaluate(learner.adapt(support_set(ds, t)), goals[t]) for t in test])
    pre = np.mean([evaluate(learner.prior_policy(), goals[t]) for t in test])
    rnd = np.mean([random_return(goals[t]) for t in test])
    print(f"{name}: adapted {post:.2f}, unadapted {pre:.2f}, random {rnd:.2f}")
    assert post > pre + margin_pre
    assert post > rnd + margin_random
