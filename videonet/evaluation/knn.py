"""Weighted k-nearest-neighbour classification of frozen features, exactly as in DINO's eval_knn.

Each test feature votes with its k most cosine-similar training features, each vote weighted by
exp(similarity / T). No training and no hyper-parameter search, so it measures the representation
itself rather than an optimiser.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from videonet.evaluation.settings import Knn


@torch.no_grad()
def knn_scores(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    num_classes: int,
    k: int = Knn.k,
    temperature: float = Knn.temperature,
    chunk: int = 1024,
) -> torch.Tensor:
    """Summed vote weight per class, (N_test, num_classes); ``k`` is capped at the training-set size."""
    train = F.normalize(train_features.float(), dim=1)
    k = min(k, train.shape[0])
    scores = []
    for start in range(0, test_features.shape[0], chunk):  # bounds the (chunk, N_train) similarity matrix
        test = F.normalize(test_features[start : start + chunk].float(), dim=1)
        sims, idx = (test @ train.T).topk(k, dim=1)
        votes = torch.zeros(test.shape[0], num_classes)
        votes.scatter_add_(1, train_labels[idx], (sims / temperature).exp())
        scores.append(votes)
    return torch.cat(scores)


def top1(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of rows whose highest score is the true label."""
    return (scores.argmax(dim=1) == labels).float().mean().item()


def knn_accuracy(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    num_classes: int,
    k: int = Knn.k,
    temperature: float = Knn.temperature,
) -> float:
    """Top-1 accuracy of the weighted kNN vote on the test set."""
    return top1(knn_scores(train_features, train_labels, test_features, num_classes, k, temperature), test_labels)
