"""Offline PEARL's meta-iteration as first written: every pass with full autograd.

Kept as the reference for the optimised ``OfflinePEARL.meta_train_step``: the gradient test
checks that both give the same parameters after a step, and the benchmark times it in the same
run as the implementation it must beat.
"""

import torch

from algorithms.batch import MetaBatch
from algorithms.networks import soft_update_
from algorithms.pearl import OfflinePEARL


def reference_pearl_step(m: OfflinePEARL, batch: MetaBatch) -> None:
    """One meta-iteration of ``m`` in place, with the Q nets' discarded gradients computed."""
    cfg = m.config
    tr = batch.outer
    T, B = tr.reward.shape
    mu, var = m.posterior(batch.inner)
    z = mu + var.sqrt() * torch.randn_like(mu)
    kl = 0.5 * (var + mu.pow(2) - 1.0 - var.log()).sum(-1).sum()
    zb = z.unsqueeze(1).expand(T, B, -1)
    obs_z = torch.cat([tr.obs, zb], -1)
    q_in = torch.cat([tr.obs, tr.action, zb], -1)
    q1, q2 = m.qf1(q_in).squeeze(-1), m.qf2(q_in).squeeze(-1)
    with torch.no_grad():
        v_next = m.vf_target(torch.cat([tr.next_obs, zb], -1)).squeeze(-1)
        q_target = tr.reward * cfg.reward_scale + (1.0 - tr.done) * cfg.discount * v_next
    q_loss = (q1 - q_target).pow(2).mean() + (q2 - q_target).pow(2).mean()
    m.context_opt.zero_grad(set_to_none=True)
    m.qf_opt.zero_grad(set_to_none=True)
    (q_loss + cfg.kl_lambda * kl).backward()
    m.qf_opt.step()
    m.context_opt.step()

    obs_zd, zd = obs_z.detach(), zb.detach()
    a, logp, mean, log_std = m._pi(obs_zd)
    q_new_in = torch.cat([tr.obs, a, zd], -1)
    min_q = torch.min(m.qf1(q_new_in), m.qf2(q_new_in)).squeeze(-1)
    v = m.vf(obs_zd).squeeze(-1)
    v_loss = (v - (min_q - logp).detach()).pow(2).mean()
    m.vf_opt.zero_grad(set_to_none=True)
    v_loss.backward()
    m.vf_opt.step()
    soft_update_(m.vf_target, m.vf, cfg.soft_target_tau)

    policy_loss = (logp - min_q).mean()
    policy_loss = policy_loss + cfg.policy_mean_reg * mean.pow(2).mean()
    policy_loss = policy_loss + cfg.policy_std_reg * log_std.pow(2).mean()
    m.policy_opt.zero_grad(set_to_none=True)
    policy_loss.backward()
    m.policy_opt.step()
