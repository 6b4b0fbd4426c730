"""Linear probe on frozen features: SGD with Nesterov momentum 0.9, no weight decay, learning-rate sweep.

Features are extracted once (centre crop, no augmentation) and standardised with the training
set's mean and std, which is what a non-affine BatchNorm in front of the linear layer does (MAE's
probe) and makes one lr grid fit every backbone. The learning rate is chosen on a held-out part
of the *training* set and the probe is then retrained on all of it, so the reported validation
accuracy is never used for model selection.

The retrained probe is kept as a :class:`LinearHead` (weights, bias, the standardisation and the
class folder names, i.e. ImageNet wnids) and saved by ``eval linear --save-head``, so the
robustness and human-alignment evaluations classify with exactly the probe whose top-1 was
reported, without retraining it on ImageNet for every test set.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from videonet.errors import UserError
from videonet.evaluation.knn import top1
from videonet.evaluation.settings import LinearProbe
from videonet.torch_utils import load_torch, save_torch

@dataclass
class LinearHead:
    """A trained probe on frozen features: logits = linear((features - mean) / std), one row per class name."""

    linear: nn.Linear
    mean: torch.Tensor
    std: torch.Tensor
    classes: list[str]  # the training set's class folders (ImageNet wnids), in label order

    @torch.no_grad()
    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """(N, classes) logits of pooled backbone features (N, D)."""
        return self.linear((features.float() - self.mean) / self.std)

    def to(self, device: torch.device) -> LinearHead:
        """The head on ``device``, beside the backbone it reads (gradient saliency runs there)."""
        return LinearHead(self.linear.to(device), self.mean.to(device), self.std.to(device), self.classes)

    def save(self, path: Path) -> Path:
        """Write the head as a plain tensor dict plus class names (readable with ``weights_only``)."""
        save_torch({"weight": self.linear.weight.detach(), "bias": self.linear.bias.detach(), "mean": self.mean,
                    "std": self.std, "classes": list(self.classes)}, path)
        return path

    @classmethod
    def load(cls, path: Path, feature_dim: int | None = None) -> LinearHead:
        """Read a head written by :meth:`save`; check it fits ``feature_dim``-d features when given."""
        state = load_torch(str(path), "linear head")
        if not isinstance(state, dict) or not {"weight", "bias", "mean", "std", "classes"} <= set(state):
            raise UserError(f"{path} is not a linear head written by `videonet eval linear --save-head`")
        weight = state["weight"]
        if feature_dim is not None and weight.shape[1] != feature_dim:
            raise UserError(f"{path} was trained on {weight.shape[1]}-d features but the backbone has {feature_dim}")
        linear = nn.Linear(weight.shape[1], weight.shape[0])
        linear.load_state_dict({"weight": weight, "bias": state["bias"]})
        return cls(linear.eval(), state["mean"], state["std"], list(state["classes"]))


@dataclass
class LinearProbeResult:
    """Validation top-1 of the retrained probe, the chosen lr, the held-out accuracy of every lr tried, the probe."""

    top1: float
    best_lr: float
    sweep: dict[float, float]
    head: LinearHead


def fit_linear(
    features: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    lr: float,
    epochs: int = LinearProbe.epochs,
    batch_size: int = LinearProbe.probe_batch_size,
    seed: int = 0,
) -> nn.Linear:
    """Train a linear classifier with SGD (Nesterov 0.9, no weight decay) and a cosine lr schedule."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    head = nn.Linear(features.shape[1], num_classes)
    opt = torch.optim.SGD(head.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=0.0)
    steps_per_epoch = -(-features.shape[0] // batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps_per_epoch)
    for _ in range(epochs):
        order = torch.randperm(features.shape[0], generator=generator)
        for start in range(0, features.shape[0], batch_size):
            idx = order[start : start + batch_size]
            loss = F.cross_entropy(head(features[idx]), labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return head


def feature_stats(train: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The training set's per-dimension mean and std (plus a small epsilon so constant dimensions stay finite)."""
    return train.mean(dim=0), train.std(dim=0) + 1e-6


def standardize(train: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    """Scale every set with the training set's per-dimension mean and std."""
    mean, std = feature_stats(train)
    return [(x - mean) / std for x in (train, *others)]


def linear_probe(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    val_features: torch.Tensor,
    val_labels: torch.Tensor,
    num_classes: int,
    lrs: tuple[float, ...] = LinearProbe.lrs,
    epochs: int = LinearProbe.epochs,
    batch_size: int = LinearProbe.probe_batch_size,
    holdout: float = LinearProbe.holdout,
    seed: int = 0,
    classes: list[str] | None = None,
) -> LinearProbeResult:
    """Pick the lr on a random ``holdout`` fraction of train, retrain on all of train, report val top-1.

    ``classes`` names the labels (default ``"0"``, ``"1"``, ...) in the returned head.
    """
    if not 0 < holdout < 1 or train_features.shape[0] < 2:
        raise UserError(f"the lr sweep needs 0 < holdout < 1 and at least 2 training images (holdout={holdout})")
    order = torch.randperm(train_features.shape[0], generator=torch.Generator().manual_seed(seed))
    n_hold = min(max(1, round(holdout * len(order))), len(order) - 1)  # both parts non-empty
    hold, fit = order[:n_hold], order[n_hold:]
    fit_x, hold_x = standardize(train_features[fit], train_features[hold])
    sweep = {}
    for lr in tqdm(lrs, desc="lr sweep", unit="lr"):
        head = fit_linear(fit_x, train_labels[fit], num_classes, lr, epochs, batch_size, seed)
        with torch.no_grad():
            sweep[lr] = top1(head(hold_x), train_labels[hold])
    best_lr = max(sweep, key=lambda lr: (sweep[lr], -lr))  # ties go to the smaller, safer lr
    mean, std = feature_stats(train_features)
    linear = fit_linear((train_features - mean) / std, train_labels, num_classes, best_lr, epochs, batch_size, seed)
    head = LinearHead(linear.eval(), mean, std, classes or [str(i) for i in range(num_classes)])
    return LinearProbeResult(top1=top1(head.logits(val_features), val_labels), best_lr=best_lr, sweep=sweep, head=head)
