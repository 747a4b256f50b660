"""The loss registries: BCE, focal and MSE on +-1 targets; weightings of each attribute's classes; label smoothing.

Every loss takes logits (or scores, for MSE) and 0/1 targets of shape (batch, targets);
soft targets from MixUp are accepted too, and a mask of known labels (the labels stage
may leave some out). A positive prediction is a logit above 0
for all of them, which is MSE's threshold on its +-1 scale.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from faceattrs.core.errors import choose
from faceattrs.core.params import LossParams


def focal_alpha(params: LossParams, positive_rates: torch.Tensor) -> torch.Tensor | None:
    """Per-target alpha: one value, or by frequency (rare attributes get alpha_rare)."""
    if params.alpha is None:
        return None
    if params.alpha == "frequency":
        return torch.where(positive_rates < params.rare_below, params.alpha_rare, params.alpha_common).float()
    return torch.full_like(positive_rates, float(params.alpha), dtype=torch.float32)


def frequency_weights(positive_rates: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights of positives and negatives per target so each class counts half."""
    p = positive_rates.clamp(1e-3, 1 - 1e-3).float()
    return 0.5 / p, 0.5 / (1 - p)


def positive_ratio_weights(positive_rates: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights of positives and negatives per target in proportion to their shares: 2p and 2(1-p).

    Focal loss's alpha_t with alpha set to the positive ratio (Lin et al. weigh the rarer
    positives by 0.25 too): each attribute's commoner class counts more, so a rare attribute
    is called less often, precisely and with lower recall. The 2 makes a balanced attribute
    weigh as unweighted.
    """
    p = positive_rates.clamp(0.0, 1.0).float()
    return 2 * p, 2 * (1 - p)


# loss.weighting: the weights of each target's positives and negatives, from its positive rate.
WEIGHTINGS: dict[str, Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]] = {
    "none": lambda positive_rates: (torch.ones_like(positive_rates), torch.ones_like(positive_rates)),
    "frequency": frequency_weights,
    "positive_ratio": positive_ratio_weights,
}


def bce(logits, targets, params, alpha):
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="none")


def focal(logits, targets, params, alpha):
    """Lin et al.'s focal loss: BCE scaled by (1 - p_t)^gamma, and by alpha_t when alpha is set."""
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p = torch.sigmoid(logits)
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t).pow(params.gamma)
    if alpha is not None:
        loss = loss * (alpha * targets + (1 - alpha) * (1 - targets))
    return loss


def mse(scores, targets, params, alpha):
    """Squared error against +-1 targets (MOON's and a ResNeXt recipe's choice)."""
    return (scores - (2 * targets - 1)).pow(2)


LOSSES: dict[str, Callable] = {"bce": bce, "focal": focal, "mse": mse}


class AttributeLoss(nn.Module):
    """The configured loss, reduced to a mean over batch and targets."""

    def __init__(self, params: LossParams, positive_rates: torch.Tensor):
        super().__init__()
        self.params = params
        self.fn = choose(LOSSES, params.name, "loss")
        rates = torch.as_tensor(positive_rates, dtype=torch.float32)
        alpha = focal_alpha(params, rates)
        self.register_buffer("alpha", alpha if alpha is not None else torch.empty(0))
        pos, neg = choose(WEIGHTINGS, params.weighting, "loss.weighting")(rates)
        self.register_buffer("pos_weight", pos)
        self.register_buffer("neg_weight", neg)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor, known: torch.Tensor | None = None) -> torch.Tensor:
        """The mean loss over batch and targets; with ``known``, over the known labels only."""
        targets = targets.float()
        if self.params.label_smoothing:
            targets = targets * (1 - self.params.label_smoothing) + self.params.label_smoothing / 2
        alpha = self.alpha if self.alpha.numel() else None
        loss = self.fn(logits.float(), targets, self.params, alpha)
        if self.params.weighting != "none":
            loss = loss * (self.pos_weight * targets + self.neg_weight * (1 - targets))
        if known is None:
            return loss.mean()
        # known may weigh labels (loss.group_weight), so a batch's weights can sum below 1.
        return (loss * known).sum() / known.sum().clamp(min=1e-12)
