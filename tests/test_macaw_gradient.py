"""MACAW's meta-gradient equals a straightforward per-task autograd implementation of protocol §4
(``tests/reference_macaw.py``, written independently of ``algorithms/networks.py``). Float64 so
the tolerance can be tight."""

import pytest
import torch

from algorithms.macaw import MACAW, MACAWConfig
from tests.reference_macaw import make_batch, reference_meta_loss


@pytest.fixture(autouse=True)
def float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("steps", [1, 2])
@pytest.mark.parametrize("wt", [True, False], ids=["wt", "bias-transform"])
def test_meta_gradient_matches_straightforward_autograd(steps, wt, device):
    cfg = MACAWConfig(
        width=12,
        depth=2,
        wt_latent=6,
        weight_transform=wt,
        inner_steps=steps,
        inner_lr=0.05,
        head_coef=0.5,
    )
    m = MACAW(obs_dim=4, act_dim=2, n_train_tasks=7, config=cfg, seed=1, device=device)
    batch = make_batch(T=3, B=8, obs=4, act=2).to(device)

    loss, _ = m.meta_loss(batch)
    loss.backward()
    m.flush_grads()
    ours = (
        [p.grad for p in m.value.parameters()]
        + [p.grad for p in m.policy.parameters()]
        + [m.value_lrs.grad, m.policy_lrs.grad, m.head_coef.grad]
    )

    vp = [p.detach().clone().requires_grad_() for p in m.value.parameters()]
    pp = [p.detach().clone().requires_grad_() for p in m.policy.parameters()]
    v_lrs = m.value_lrs.detach().clone().requires_grad_()
    p_lrs = m.policy_lrs.detach().clone().requires_grad_()
    head_c = m.head_coef.detach().clone().requires_grad_()
    ref_loss = reference_meta_loss(m, batch, (vp, pp, v_lrs, p_lrs, head_c))
    torch.testing.assert_close(loss, ref_loss, rtol=1e-10, atol=1e-12)
    ref = torch.autograd.grad(ref_loss, [*vp, *pp, v_lrs, p_lrs, head_c])

    assert len(ours) == len(ref)
    for i, (a, b) in enumerate(zip(ours, ref)):
        assert a is not None, f"no gradient for tensor {i}"
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-10, msg=f"tensor {i}")
    assert m.value_lrs.grad.abs().sum() > 0 and m.head_coef.grad.abs() > 0


def test_first_order_option_drops_second_order_terms():
    cfg = MACAWConfig(width=12, depth=2, wt_latent=6, inner_lr=0.05)
    batch = make_batch(T=2, B=8, obs=4, act=2)
    grads = []
    for first in (False, True):
        m = MACAW(4, 2, 5, MACAWConfig(**{**cfg.__dict__, "first_order": first}), seed=1)
        loss, _ = m.meta_loss(batch)
        loss.backward()
        m.flush_grads()
        grads.append(next(m.value.parameters()).grad.clone())
    assert not torch.allclose(grads[0], grads[1])
