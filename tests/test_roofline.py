"""The roofline's counts are the arithmetic a step does, its limit is a timing of those same
products, and the speed report draws it."""

import json

import gymnasium
import torch

from harness.roofline import Product, TimedEnv, against_limit, count_step, replay_products
from harness.speed import build_speed_report, load_benchmarks, roofline_table


def test_a_linear_layers_step_counts_forward_and_both_backward_products():
    layer = torch.nn.Linear(10, 20, bias=True)
    x = torch.randn(8, 10, requires_grad=True)

    def step():
        layer(x).square().sum().backward()

    count = count_step(step)
    # forward 8x10 @ 10x20; backward: the input's grad 8x20 @ 20x10, the weight's 20x8 @ 8x10
    assert count.flops == 3 * 2 * 8 * 10 * 20
    assert count.product_flops == count.flops
    assert sorted((p.m, p.k, p.n) for p in count.products) == [
        (8, 10, 20),
        (8, 20, 10),
        (20, 8, 10),
    ]


def test_batched_products_are_recorded_with_their_batch():
    a, b = torch.randn(3, 4, 5), torch.randn(3, 5, 6)
    count = count_step(lambda: torch.bmm(a, b))
    assert count.products == (Product(3, 4, 5, 6, 1),) and count.flops == 2 * 3 * 4 * 5 * 6


def test_the_limit_is_the_products_replayed_and_scales_with_their_count():
    one = Product(1, 64, 64, 64, 1)
    assert replay_products((one,)) > 0
    place = against_limit(
        count_step(lambda: torch.mm(torch.randn(64, 64), torch.randn(64, 64))), 1.0
    )
    assert place.gflop == 2 * 64**3 / 1e9 and place.limit_gflops > place.gflops  # 1 s is slow


def test_timed_env_adds_its_step_and_reset_time_to_the_clock():
    clock = [0.0]
    env = TimedEnv(gymnasium.make("CartPole-v1"), clock)
    env.reset(seed=0)
    after_reset = clock[0]
    env.step(env.action_space.sample())
    assert 0.0 < after_reset < clock[0]


def test_the_speed_report_tables_and_draws_the_roofline(tmp_path):
    def row(name, **extra):
        return {"name": name, "stats": {"median": 0.1}, "extra_info": extra}

    step = dict(roofline="meta_step", gflop=2.0, ms=100.0, gflops=20.0, limit_gflops_1t=80.0)
    doc = {
        "machine_info": {"cpu": {"brand_raw": "Test CPU"}},
        "benchmarks": [
            row(
                "a",
                learner="macaw",
                fraction=0.25,
                limit_gflops_2t=150.0,
                dominant="1x2x3x4",
                **step,
            ),
            row(
                "b",
                roofline="evaluation_point",
                learner="macaw",
                ms=50.0,
                sim_ms=30.0,
                learner_ms=20.0,
                gflop=0.1,
                gflops=5.0,
                limit_gflops_1t=50.0,
                fraction=0.1,
            ),
        ],
    }
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(doc))
    df, _ = load_benchmarks(path)
    assert roofline_table(df, "meta_step")["fraction"].tolist() == [0.25]
    assert roofline_table(df, "evaluation_point")["sim_ms"].tolist() == [30.0]
    text = build_speed_report(path, tmp_path / "speed").read_text()
    assert "## Roofline" in text and "## An evaluation point" in text
    assert (tmp_path / "speed" / "roofline.png").stat().st_size > 1000
