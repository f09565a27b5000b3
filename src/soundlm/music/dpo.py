"""Direct Preference Optimization (Rafailov et al. 2023) of a token LM, as MusicRL tunes a music LM.

The policy starts as a copy of the base model; a frozen copy of the base (`frozen_reference`)
stays beside it. For a pair (chosen y_w, rejected y_l) of the same request,

    loss = -log sigmoid(beta * [(log pi(y_w) - log ref(y_w)) - (log pi(y_l) - log ref(y_l))])

where log pi(y) sums the token log-probabilities of the positions the loss mask keeps (the
generated tokens, not the prompt); for a delay-pattern stage (`DelayLM`), those of every code
that has a target (`delay_logprobs`: the delay pads and the prefix count nothing). `beta` is
the strength of the implicit KL penalty that keeps the policy near the reference: DPO's
objective is the KL-regularised reward maximisation `E[r] - beta * KL(pi || ref)` solved in
closed form, so no separate KL term is needed.

`sft_weight` adds the mean negative log-likelihood per token of the chosen sequences (the
"RPO" / DPO+NLL regulariser of Pang et al. 2024): DPO alone can lower the likelihood of both
samples while widening their gap; the NLL term keeps the chosen ones likely. 0 turns it off.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from soundlm.lm.model import IGNORE_INDEX


def sequence_logprobs(model: nn.Module, tokens: torch.Tensor, loss_mask: torch.Tensor) -> torch.Tensor:
    """Summed log-probability of each row's kept tokens: tokens [B, T], loss_mask [B, T] -> [B].

    Token t is predicted from tokens 0..t-1, so `loss_mask[:, 0]` (nothing predicts the first
    token) must be False; padded positions are simply masked out.
    """
    if tokens.shape != loss_mask.shape or tokens.dim() != 2:
        raise ValueError(f"tokens and loss_mask must both be [B, T], got {tuple(tokens.shape)} and "
                         f"{tuple(loss_mask.shape)}")
    if bool(loss_mask[:, 0].any()):
        raise ValueError("loss_mask[:, 0] must be False: the first token has no prediction (mask the BOS/prompt)")
    logits = model(tokens).logits[:, :-1].float()  # [B, T-1, V]
    logp = torch.gather(F.log_softmax(logits, dim=-1), 2, tokens[:, 1:, None]).squeeze(2)  # [B, T-1]
    return (logp * loss_mask[:, 1:].to(logp.dtype)).sum(dim=1)  # [B]


def delay_logprobs(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                   prefix: torch.Tensor | None = None) -> torch.Tensor:
    """Summed log-probability of each row's targets under a `DelayLM`: inputs and targets [B, K, S] (as
    `stages.delay_example` makes them, IGNORE_INDEX where nothing is predicted), prefix [B, P] -> [B].

    Minus the summed cross-entropy that LM training takes on the same example.
    """
    if inputs.dim() != 3 or inputs.shape != targets.shape:
        raise ValueError(f"inputs and targets must both be [B, K, S], got {tuple(inputs.shape)} and "
                         f"{tuple(targets.shape)}")
    logits = model(inputs, prefix=prefix).logits.float()  # [B, K, S, card]
    keep = targets != IGNORE_INDEX  # [B, K, S]
    logp = torch.gather(F.log_softmax(logits, dim=-1), 3, targets.clamp(min=0)[..., None]).squeeze(3)  # [B, K, S]
    return (logp * keep.to(logp.dtype)).sum(dim=(1, 2))  # [B]


@dataclass
class DPOLoss:
    """The loss and what to watch while training (all detached but `loss`)."""

    loss: torch.Tensor  # scalar, to backpropagate
    margin: torch.Tensor  # [B] beta * (chosen implicit reward - rejected implicit reward)
    chosen_reward: torch.Tensor  # [B] beta * (log pi - log ref) of the chosen sequences
    rejected_reward: torch.Tensor  # [B]

    @property
    def accuracy(self) -> float:
        """The share of pairs whose chosen sequence the policy already prefers (relative to the reference)."""
        return float((self.margin > 0).float().mean())


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float, sft_weight: float = 0.0,
             chosen_tokens: torch.Tensor | None = None) -> DPOLoss:
    """DPO on summed sequence log-probabilities (each [B]); see the module doc.

    sft_weight > 0 adds `sft_weight * (-policy_chosen / chosen_tokens)` averaged over the batch:
    `chosen_tokens` [B] is the number of kept tokens of each chosen sequence (required then).
    """
    if beta <= 0:
        raise ValueError(f"beta must be positive, got {beta}")
    chosen = beta * (policy_chosen - ref_chosen.detach())  # [B]
    rejected = beta * (policy_rejected - ref_rejected.detach())  # [B]
    margin = chosen - rejected
    # -log sigmoid(x) = softplus(-x), computed without overflow for large |x|.
    loss = F.softplus(-margin).mean()
    if sft_weight:
        if chosen_tokens is None:
            raise ValueError("sft_weight needs chosen_tokens (kept tokens per chosen sequence)")
        loss = loss + sft_weight * (-policy_chosen / chosen_tokens.clamp(min=1).to(policy_chosen.dtype)).mean()
    return DPOLoss(loss=loss, margin=margin.detach(), chosen_reward=chosen.detach(), rejected_reward=rejected.detach())


def frozen_reference(model: nn.Module) -> nn.Module:
    """A copy of `model` in eval mode whose parameters never train (DPO's reference policy)."""
    ref = copy.deepcopy(model).eval()
    ref.requires_grad_(False)
    return ref
