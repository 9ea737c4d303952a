"""Prompt-DT's transformer as first written, on ``torch.nn.TransformerEncoder``: the reference
that ``algorithms/prompt_dt.py``'s own blocks are tested against (same parameters, same outputs
and gradients without dropout) and timed against in ``tests/benchmarks``."""

from __future__ import annotations

import torch
from torch import nn

from algorithms.prompt_dt import PromptDT, PromptDTConfig


def gpt2_init(m: nn.Module) -> None:
    if isinstance(m, nn.Linear | nn.Embedding):
        nn.init.normal_(m.weight, 0.0, 0.02)
        if getattr(m, "bias", None) is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
    elif isinstance(m, nn.MultiheadAttention):
        nn.init.normal_(m.in_proj_weight, 0.0, 0.02)
        nn.init.zeros_(m.in_proj_bias)


class ReferencePromptDecisionTransformer(nn.Module):
    """(R̂, s, a) tokens of a prompt and of a window, one causal transformer over both."""

    def __init__(self, obs_dim: int, act_dim: int, cfg: PromptDTConfig):
        super().__init__()
        d = cfg.embed_dim
        self.max_ep_len = cfg.max_ep_len

        def embeddings() -> nn.ModuleDict:
            return nn.ModuleDict(
                {
                    "time": nn.Embedding(cfg.max_ep_len, d),
                    "ret": nn.Linear(1, d),
                    "obs": nn.Linear(obs_dim, d),
                    "act": nn.Linear(act_dim, d),
                }
            )

        self.embed, self.prompt_embed = embeddings(), embeddings()
        self.embed_ln = nn.LayerNorm(d)
        layer = nn.TransformerEncoderLayer(
            d,
            cfg.n_head,
            4 * d,
            cfg.dropout,
            activation="relu",
            batch_first=True,
            norm_first=True,
        )
        self.blocks = nn.TransformerEncoder(layer, cfg.n_layer, enable_nested_tensor=False)
        for block in self.blocks.layers:  # GPT-2 has no dropout between its two MLP layers
            block.dropout = nn.Identity()
        self.final_ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, act_dim)
        self.drop = nn.Dropout(cfg.dropout)
        self.apply(gpt2_init)

    def _tokens(self, emb: nn.ModuleDict, rtg, obs, act, timestep) -> torch.Tensor:
        """[B, L, …] → [B, 3L, d]: per step R̂, s, a, each plus its timestep embedding."""
        t = emb["time"](timestep.long().clamp(0, self.max_ep_len - 1))
        parts = [emb["ret"](rtg.unsqueeze(-1)) + t, emb["obs"](obs) + t, emb["act"](act) + t]
        B, L, d = t.shape
        return torch.stack(parts, 2).reshape(B, 3 * L, d)

    def forward(self, prompt: tuple, window: tuple) -> torch.Tensor:
        """prompt, window: (rtg, obs, act, timestep), each [B, L, …] → actions [B, L_window, act]
        predicted from the window's state tokens."""
        p = self._tokens(self.prompt_embed, *prompt)
        w = self.embed_ln(self._tokens(self.embed, *window))  # the authors: window tokens only
        x = self.drop(torch.cat([p, w], 1))
        n = x.shape[1]
        causal = torch.triu(torch.full((n, n), float("-inf"), device=x.device), diagonal=1)
        h = self.final_ln(self.blocks(x, mask=causal, is_causal=True))
        state_tokens = h[:, p.shape[1] + 1 :: 3]
        return torch.tanh(self.head(state_tokens))


def reference_prompt_dt(
    obs_dim: int, act_dim: int, n_train_tasks: int, device: str = "cpu", seed: int = 0
) -> PromptDT:
    """A ``PromptDT`` learner on the first version's transformer, with the initial weights the
    current one draws for the same seed: its ``meta_train_step`` is the step as first written."""
    learner = PromptDT(obs_dim, act_dim, n_train_tasks, device=device, seed=seed)
    cfg = learner.config
    model = ReferencePromptDecisionTransformer(obs_dim, act_dim, cfg).to(learner.device)
    model.load_state_dict(learner.model.state_dict())
    learner.model = model
    learner.opt = torch.optim.AdamW(
        model.parameters(), lr=cfg.policy_lr, weight_decay=cfg.weight_decay, foreach=True
    )
    return learner
