"""The end-to-end fine-tuning loop that the dense transfer evaluations share (segmentation, detection).

Both fine-tune every weight with SGD under a per-step learning-rate schedule, on one process or
under ``torchrun`` (``WORLD_SIZE`` > 1: DistributedDataParallel with SyncBatchNorm on GPUs, each
rank a ``DistributedSampler`` share of the data, ``batch_size`` the global batch, as
``videonet train``), with fp16 autocast and a gradient scaler on CUDA (as torchvision's detection
references). What differs (the model's loss, the schedule) is passed in, so the loop exists once.
``max_steps`` caps the run for smoke tests; the schedule is then laid over the capped length so a
short run still decays.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler, Subset
from tqdm import tqdm

from videonet.errors import UserError
from videonet.evaluation.settings import Workers

LossFn = Callable[[nn.Module, Any, torch.device], torch.Tensor]
SchedulerFn = Callable[[torch.optim.Optimizer, int, int], torch.optim.lr_scheduler.LRScheduler]


@dataclass(frozen=True)
class Finetune:
    """SGD settings of one fine-tuning run; ``batch_size`` is global (split over the ranks)."""

    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    momentum: float = 0.9
    max_steps: int | None = None  # stop early (smoke runs); None = the full ``epochs``
    workers: int = Workers.workers
    seed: int = 0


@dataclass(frozen=True)
class Ranks:
    """Where this process stands in a (possibly single-process) run."""

    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        """Rank 0 writes results and shows progress."""
        return self.rank == 0


def ranks(device: str) -> Ranks:
    """The process group of a ``torchrun`` launch (or a single process), set up like ``videonet train``'s."""
    from videonet.torch_utils import setup_distributed

    return Ranks(*setup_distributed(device))


def shard(dataset: Dataset, where: Ranks) -> Dataset:
    """This rank's disjoint share of an evaluation set (every ``world``-th item), so no item counts twice."""
    return dataset if where.world == 1 else Subset(dataset, range(where.rank, len(dataset), where.world))


def gather(items: list, where: Ranks) -> list:
    """Every rank's ``items`` concatenated (on every rank); a no-op on one process."""
    if where.world == 1:
        return items
    parts: list[list] = [[] for _ in range(where.world)]
    dist.all_gather_object(parts, items)
    return [item for part in parts for item in part]


def finetune(
    model: nn.Module,
    dataset: Dataset,
    loss_fn: LossFn,
    make_scheduler: SchedulerFn,
    config: Finetune,
    where: Ranks,
    collate: Callable[[list], Any] | None = None,
    desc: str = "finetune",
) -> list[float]:
    """Train ``model`` in place on ``dataset``; returns the loss of every step (this rank's batches).

    Under DDP the caller's ``model`` object stays the trained network (SyncBatchNorm replaces its
    BatchNorm children in place; the DDP wrapper is only used here).

    ``make_scheduler(optimizer, total_steps, steps_per_epoch)`` builds the learning-rate schedule,
    stepped once per optimizer step.
    """
    if config.batch_size % where.world:
        raise UserError(f"--batch-size {config.batch_size} is not divisible by the {where.world} processes")
    per_rank = config.batch_size // where.world
    if len(dataset) == 0:
        raise UserError(f"{desc}: the training set is empty")
    torch.manual_seed(config.seed)  # also seeds the DataLoader workers' augmentation
    if where.world > 1:
        sampler = DistributedSampler(dataset, where.world, where.rank, shuffle=True, seed=config.seed)
    else:
        sampler = RandomSampler(dataset)
    # Dropping the last partial batch keeps BatchNorm away from batches of one; a tiny set keeps all.
    loader = DataLoader(dataset, per_rank, sampler=sampler, num_workers=config.workers, collate_fn=collate,
                        drop_last=len(dataset) >= config.batch_size, pin_memory=where.device.type == "cuda",
                        persistent_workers=config.workers > 0)
    per_epoch = len(loader)
    total = per_epoch * config.epochs if config.max_steps is None else min(config.max_steps, per_epoch * config.epochs)
    amp = where.device.type == "cuda"
    model = model.to(where.device).train()
    if where.world > 1:
        if amp:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model = nn.parallel.DistributedDataParallel(model, device_ids=[where.device.index] if amp else None)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    scheduler = make_scheduler(optimizer, total, per_epoch)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    losses: list[float] = []
    bar = tqdm(total=total, desc=desc, unit="step", disable=not where.main, file=sys.stderr, dynamic_ncols=True)
    epoch = 0
    while len(losses) < total:
        if isinstance(sampler, DistributedSampler):
            sampler.set_epoch(epoch)
        for batch in loader:
            with torch.autocast(where.device.type, dtype=torch.float16, enabled=amp):
                loss = loss_fn(model, batch, where.device)
            value = float(loss.detach())
            if not math.isfinite(value):
                raise RuntimeError(f"{desc}: loss is {value} at step {len(losses)}; lower --lr")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            losses.append(value)
            bar.update(1)
            bar.set_postfix(loss=f"{value:.4f}", lr=f"{scheduler.get_last_lr()[0]:.3g}")
            if len(losses) == total:
                break
        epoch += 1
    bar.close()
    return losses


def split_batch(samples: Sequence[tuple]) -> tuple[list, ...]:
    """A DataLoader ``collate_fn`` that keeps variable-size items as lists (detection images, targets)."""
    return tuple(list(column) for column in zip(*samples))
