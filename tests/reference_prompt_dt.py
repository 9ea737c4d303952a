"""Prompt-DT's transformer as first written, on ``torch.nn.TransformerEncoder``: the reference
that ``algorithms/prompt_dt.py``'s own blocks are tested against (same parameters, same outputs
and gradients without dropout) and timed against in ``tests/benchmarks``. Embeddings and tokens
are the current model's; the blocks, the causal mask and ``nn.Dropout`` are the first version's."""

from __future__ import annotations

import torch
from torch import nn

from algorithms.prompt_dt import PromptDecisionTransformer, PromptDT, PromptDTConfig


def gpt2_init(m: nn.Module) -> None:
    """GPT-2's initialisation of ``nn.MultiheadAttention``'s input projection."""
    if isinstance(m, nn.MultiheadAttention):
        nn.init.normal_(m.in_proj_weight, 0.0, 0.02)
        nn.init.zeros_(m.in_proj_bias)
    elif isinstance(m, nn.Linear):
        nn.init.normal_(m.weight, 0.0, 0.02)
        nn.init.zeros_(m.bias)


class ReferencePromptDecisionTransformer(PromptDecisionTransformer):
    """The current model with the first version's ``nn.TransformerEncoder`` blocks."""

    def __init__(self, obs_dim: int, act_dim: int, cfg: PromptDTConfig):
        super().__init__(obs_dim, act_dim, cfg)
        d = cfg.embed_dim
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
        self.blocks.apply(gpt2_init)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, prompt: tuple, window: tuple, last_only: bool = False) -> torch.Tensor:
        p = self._tokens(self.prompt_embed, *prompt)
        w = self.embed_ln(self._tokens(self.embed, *window))  # the authors: window tokens only
        x = self.drop(torch.cat([p, w], 1))
        n = x.shape[1]
        causal = torch.triu(torch.full((n, n), float("-inf"), device=x.device), diagonal=1)
        h = self.final_ln(self.blocks(x, mask=causal, is_causal=True))
        out = torch.tanh(self.head(h[:, p.shape[1] + 1 :: 3]))
        return out[:, -1:] if last_only else out


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
