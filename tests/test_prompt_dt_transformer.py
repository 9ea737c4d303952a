"""Prompt-DT's own transformer blocks against the first version's ``nn.TransformerEncoder``
(``tests/reference_prompt_dt.py``): the same maths, the same parameter names, and a dropout
with ``nn.Dropout``'s distribution."""

import pytest
import torch

import algorithms.prompt_dt as prompt_dt
from algorithms import make_config
from algorithms.prompt_dt import PromptDecisionTransformer, PromptDT, dropout, residual_dropout
from tests.reference_prompt_dt import ReferencePromptDecisionTransformer

OBS, ACT = 7, 3


def _inputs(batch: int, prompt_len: int, window_len: int, dtype: torch.dtype, seed: int = 0):
    g = torch.Generator().manual_seed(seed)

    def steps(n: int) -> tuple:
        return (
            torch.randn(batch, n, generator=g, dtype=dtype),
            torch.randn(batch, n, OBS, generator=g, dtype=dtype),
            torch.randn(batch, n, ACT, generator=g, dtype=dtype),
            torch.randint(0, 200, (batch, n), generator=g).to(dtype),
        )

    return steps(prompt_len), steps(window_len)


def _pair(n_head: int, dtype: torch.dtype, dropout_p: float = 0.0):
    cfg = make_config(PromptDT, {"embed_dim": 32, "n_head": n_head, "dropout": dropout_p})
    torch.manual_seed(0)
    new = PromptDecisionTransformer(OBS, ACT, cfg).to(dtype)
    ref = ReferencePromptDecisionTransformer(OBS, ACT, cfg).to(dtype)
    ref.load_state_dict(new.state_dict())
    return new, ref


@pytest.mark.parametrize("n_head", [1, 2])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_blocks_give_the_first_versions_outputs_and_gradients_without_dropout(n_head, dtype):
    new, ref = _pair(n_head, dtype)
    tol = {"rtol": 1e-9, "atol": 1e-11} if dtype == torch.float64 else {"rtol": 1e-4, "atol": 1e-6}
    prompt, window = _inputs(6, 5, 20, dtype)
    target = torch.randn(6, 20, ACT, generator=torch.Generator().manual_seed(1), dtype=dtype)
    outs = []
    for model in (new, ref):
        model.train()  # train mode: dropout 0 must leave the computation as in eval
        out = model(prompt, window)
        (out - target).pow(2).mean().backward()
        outs.append(out.detach())
    torch.testing.assert_close(outs[0], outs[1], **tol)
    grads_ref = dict(ref.named_parameters())
    for name, p in new.named_parameters():
        scale = grads_ref[name].grad.abs().max().clamp(min=1.0)
        torch.testing.assert_close(p.grad / scale, grads_ref[name].grad / scale, **tol)


def test_acting_computes_only_the_last_state_token_and_gets_the_same_action():
    new, _ = _pair(2, torch.float64)
    new.eval()
    prompt, window = _inputs(3, 5, 20, torch.float64)
    with torch.no_grad():
        full, last = new(prompt, window), new(prompt, window, last_only=True)
    assert last.shape == (3, 1, ACT)
    torch.testing.assert_close(last[:, 0], full[:, -1], rtol=1e-12, atol=1e-12)


def test_checkpoints_of_the_first_version_load_unchanged():
    new, ref = _pair(1, torch.float32)
    shapes = {k: v.shape for k, v in ref.state_dict().items()}
    assert {k: v.shape for k, v in new.state_dict().items()} == shapes
    new.load_state_dict(ref.state_dict(), strict=True)


def test_dropout_keeps_each_element_with_probability_1_minus_p_and_keeps_the_mean():
    torch.manual_seed(0)
    x = torch.ones(1000, 1000, requires_grad=True)
    y = dropout(x, 0.1, training=True)
    kept = (y != 0).double().mean().item()
    assert kept == pytest.approx(0.9, abs=5 * (0.09 / 1e6) ** 0.5)  # five binomial SDs
    assert torch.unique(y).tolist() == pytest.approx([0.0, 1 / 0.9])
    assert y.mean().item() == pytest.approx(1.0, abs=3e-3)
    y.sum().backward()  # the backward multiplies by the mask the forward drew
    torch.testing.assert_close(x.grad, y.detach())
    assert dropout(x, 0.1, training=False) is x


def test_residual_dropout_adds_the_dropped_branch_and_routes_gradients_through_its_mask():
    torch.manual_seed(0)
    x = torch.randn(300, 400, requires_grad=True)
    a = torch.randn(300, 400, requires_grad=True)
    y = residual_dropout(x, a, 0.1, training=True)
    dropped = y.detach() - x.detach()
    kept = dropped != 0
    assert kept.double().mean().item() == pytest.approx(0.9, abs=5 * (0.09 / 1.2e5) ** 0.5)
    torch.testing.assert_close(dropped[kept], a.detach()[kept] / 0.9)
    y.sum().backward()
    torch.testing.assert_close(x.grad, torch.ones_like(x))
    torch.testing.assert_close(a.grad, kept.float() / 0.9)


def test_dropout_falls_where_gpt2s_does_and_not_between_the_feed_forward_layers(monkeypatch):
    """GPT-2: after the embeddings, on the attention weights, after the attention and after
    the feed-forward block — never on its hidden 4·d units (PyTorch's layer drops out there)."""
    calls = []

    def recording(x, p, training):
        calls.append(tuple(x.shape))
        return dropout(x, p, training)

    def recording_residual(x, a, p, training):
        calls.append(tuple(a.shape))
        return residual_dropout(x, a, p, training)

    monkeypatch.setattr(prompt_dt, "dropout", recording)
    monkeypatch.setattr(prompt_dt, "residual_dropout", recording_residual)
    new, _ = _pair(1, torch.float32, dropout_p=0.1)
    new.train()
    prompt, window = _inputs(2, 5, 20, torch.float32)
    new(prompt, window)
    d, n_layer, L = 32, new.blocks.layers.__len__(), 3 * (5 + 20)
    assert len(calls) == 1 + 3 * n_layer
    assert all(shape[-1] != 4 * d for shape in calls)
    assert calls.count((2, L, L)) == n_layer - 1  # the last block's queries: the 20 states
    assert calls.count((2, 20, L)) == 1
