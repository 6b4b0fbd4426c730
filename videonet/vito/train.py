"""The VITO training loop: distributed setup, steps, logs, checkpoints/resume and export.

Run layout (``--out RUN``; re-running the same command with the same ``RUN`` resumes):

``RUN/config.json``
    The :class:`TrainConfig` of the run (written by rank 0 at start).
``RUN/checkpoint.pt``
    The latest checkpoint, replaced atomically every ``save_every`` steps and when the run stops.
    A ``torch.save`` dict: ``format`` ("videonet.vito.checkpoint/1"), ``step`` (steps completed =
    batches consumed), ``config`` (dict), ``online`` (state dict of :class:`~videonet.vito.model.Online`:
    ``net.encoder.net.*`` backbone, ``net.pool.*``, ``net.projector.*``, ``predictor.*``),
    ``target`` (state dict of the EMA :class:`~videonet.vito.model.VitoNet`), ``optimizer`` (LARS
    state dict), ``rng`` (torch/cuda/python/numpy generator states) and ``data`` (the data position:
    ``batches``, ``positions`` (per loader stream, ranks x workers of them, the raw samples consumed,
    undecodable ones included), ``workers``, ``world``, ``batch_size``; resuming with the same
    workers and world continues the exact sample stream, see :mod:`videonet.vito.data`).
``RUN/metrics.csv``
    ``step,loss,lr,ema,images_per_s,elapsed_s`` every ``log_every`` steps (rows after the
    resumed step are dropped on resume); also ``RUN/tb/`` when TensorBoard is installed.
``RUN/backbone.pt`` (written when the last step is done, or by ``videonet train --export``)
    The **online** encoder as a plain torchvision ResNet state dict: exactly the keys of
    ``torchvision.models.<arch>().state_dict()`` *without* ``fc.weight``/``fc.bias``; float32 CPU
    tensors, loadable with ``torch.load(path, weights_only=True)``. To use it::

        model = torchvision.models.resnet50()
        model.fc = torch.nn.Identity()          # the 2048-d pooled feature; or keep fc and
        model.load_state_dict(torch.load("RUN/backbone.pt", weights_only=True))  # strict=False

``RUN/attention.pt``
    The pooling head of the same branch, :meth:`~videonet.vito.model.MultiScalePooling.export`:
    a dict with ``format`` ("videonet.vito.attention/1"), ``arch``, ``pooling`` ("attn" or "avg"),
    ``layers`` (e.g. ``["layer3", "layer4"]``, the torchvision stage names whose outputs it pools,
    in order), ``dims`` (their channels, ``[1024, 2048]`` for ResNet-50), ``hidden`` (attention MLP
    width) and ``state_dict``. ``MultiScalePooling.from_export(torch.load(path, weights_only=True))``
    rebuilds it; ``pool([layer3_out, layer4_out])`` is the VITO representation and
    ``pool.pools[i].weights(feature_map)`` the softmax-over-space attention of scale ``i``.
    :func:`videonet.vito.model.load_exported` loads both files at once.

Hyper-parameters follow VITO/MoCLR: LARS with base lr 0.3 x global batch / 256, weight decay 1e-6,
linear warmup then cosine decay; EMA 0.996 -> 1 (cosine); tau 0.1; bf16 autocast on CUDA. DDP
starts when ``WORLD_SIZE`` > 1 (torchrun); ``--batch-size`` is the global batch.
"""

from __future__ import annotations

import copy
import csv
import json
import math
import os
import random
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from videonet.curation.judge.decoders import resolve_decoder
from videonet.errors import UserError
from videonet.torch_utils import (
    BACKBONE_FILE, in_run_dir, is_url, join, load_torch, save_torch, setup_distributed, write_backbone,
)
from videonet.vito.augment import DeviceAugment
from videonet.vito.config import MODEL_FIELDS, TrainConfig
from videonet.vito.data import ClipStream, make_loader, resolve_shards, worker_count
from videonet.vito.ema import ema_rate, ema_update
from videonet.vito.lars import LARS, param_groups, warmup_cosine
from videonet.vito.loss import info_nce
from videonet.vito.model import VitoNet

CHECKPOINT_FORMAT = "videonet.vito.checkpoint/1"
CHECKPOINT_FILE = "checkpoint.pt"
ATTENTION_FILE = "attention.pt"


def unwrap(module: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel wrapper (or the module itself)."""
    return module.module if isinstance(module, nn.parallel.DistributedDataParallel) else module


def train_step(
    online: nn.Module,
    target: VitoNet,
    optimizer: torch.optim.Optimizer,
    views: torch.Tensor,
    tau: float,
    ema: float,
    amp: bool,
    negatives: str = "moclr",
) -> torch.Tensor:
    """One VITO step on augmented ``views`` ``(B, V, 3, H, W)``: forward both branches, InfoNCE, LARS, EMA.

    All views go through each network as one ``V * B`` batch (view-major), which is faster than V
    separate passes and lets BatchNorm see every view. Returns the detached loss.
    """
    b, v = views.shape[:2]
    x = views.transpose(0, 1).reshape(v * b, *views.shape[2:])
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
        online_out = online(x).float().chunk(v)
        with torch.no_grad():
            target_out = target(x).float().chunk(v)
    loss = info_nce(list(online_out), list(target_out), tau, negatives)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    ema_update(target, unwrap(online).net, ema)
    return loss.detach()


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": random.getstate(),
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    random.setstate(state["python"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), *rest))


def _all_positions(local: dict[int, int], world: int) -> list[int]:
    """The raw-sample positions of every rank's streams, in stream order, from each rank's own."""
    parts = [local]
    if world > 1:
        parts = [{} for _ in range(world)]  # filled in place by the gather
        dist.all_gather_object(parts, local)
    merged = {stream: position for part in parts for stream, position in part.items()}
    return [merged[stream] for stream in sorted(merged)]


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint dict from ``path`` (a file or a run dir, local or remote), with a one-line error if it is not one."""
    path = in_run_dir(str(path), CHECKPOINT_FILE)
    if not is_url(path) and not Path(path).is_file():
        raise UserError(f"no checkpoint at {path}")
    ckpt = load_torch(path, "checkpoint")
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"{path} is not a videonet train checkpoint")
    return ckpt


def export(checkpoint: str | Path, out_dir: str | Path | None = None, branch: str = "online") -> tuple[str, str]:
    """Write ``backbone.pt`` and ``attention.pt`` (formats in the module docstring) from a checkpoint.

    ``checkpoint`` is a checkpoint file or run dir, local or on any Beam filesystem (``gs://``,
    ``s3://``); the files go to ``out_dir``, by default beside the checkpoint.
    """
    if branch not in ("online", "target"):
        raise UserError("--branch must be online or target")
    source = in_run_dir(str(checkpoint), CHECKPOINT_FILE)
    ckpt = load_checkpoint(source)
    cfg = TrainConfig(**ckpt["config"])
    online = cfg.build_online()
    online.load_state_dict(ckpt["online"])
    net = online.net
    if branch == "target":
        net.load_state_dict(ckpt["target"])
    target_dir = str(out_dir) if out_dir is not None else os.path.dirname(source)
    paths = join(target_dir, BACKBONE_FILE), join(target_dir, ATTENTION_FILE)
    write_backbone(net.encoder.net, paths[0])
    save_torch(net.pool.export(cfg.arch), paths[1])
    return paths


class _Log:
    """metrics.csv (+ TensorBoard when installed) on rank 0; stdout lines through tqdm."""

    COLUMNS = ("step", "loss", "lr", "ema", "images_per_s", "elapsed_s")

    def __init__(self, out: Path, start_step: int) -> None:
        self.path = out / "metrics.csv"
        kept = []
        if self.path.is_file():
            with self.path.open() as f:
                kept = [row for row in csv.DictReader(f) if int(row["step"]) <= start_step]
        with self.path.open("w", newline="") as f:
            writer = csv.DictWriter(f, self.COLUMNS)
            writer.writeheader()
            writer.writerows(kept)
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out / "tb"), purge_step=start_step + 1)
        except ImportError:
            self.tb = None

    def write(self, row: dict[str, float]) -> None:
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, self.COLUMNS).writerow(row)
        if self.tb is not None:
            for key in ("loss", "lr", "ema", "images_per_s"):
                self.tb.add_scalar(f"train/{key}", row[key], int(row["step"]))

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _check_resumable(saved: dict[str, Any], cfg: TrainConfig, out: Path) -> None:
    """Refuse to resume into a network of another shape (a different run in the same --out)."""
    diff = [f"{k}={saved.get(k)!r}" for k in MODEL_FIELDS if saved.get(k) != getattr(cfg, k)]
    if diff:
        raise UserError(f"{out} holds a run with {', '.join(diff)}; use another --out or the same settings")


def train(cfg: TrainConfig) -> Path:
    """Train (or resume) the run in ``cfg.out``; returns the run dir. Exports when the last step is done."""
    from tqdm import tqdm

    cfg.validate()
    rank, world, device = setup_distributed(cfg.device)
    if cfg.batch_size % world:
        raise UserError(f"--batch-size {cfg.batch_size} is not divisible by the {world} processes")
    out = Path(cfg.out)
    shards = resolve_shards(cfg.data)
    ckpt_path = out / CHECKPOINT_FILE

    torch.manual_seed(cfg.seed)
    online = cfg.build_online().to(device)
    target = copy.deepcopy(online.net).requires_grad_(False)
    optimizer = LARS(param_groups(online, cfg.weight_decay), lr=0.0, weight_decay=cfg.weight_decay, eta=cfg.lars_eta)
    workers = worker_count(cfg.workers)
    step, positions = 0, None
    if ckpt_path.is_file():
        ckpt = load_checkpoint(ckpt_path)
        _check_resumable(ckpt["config"], cfg, out)
        online.load_state_dict(ckpt["online"])
        target.load_state_dict(ckpt["target"])
        optimizer.load_state_dict(ckpt["optimizer"])
        _set_rng_state(ckpt["rng"])
        step = ckpt["step"]
        if ckpt["data"]["world"] == world and ckpt["data"]["workers"] == workers:
            positions = ckpt["data"].get("positions")  # absent from checkpoints older than the positions
        else:
            print(f"note: resuming with a different number of processes/workers than {ckpt_path} was saved "
                  "with; the sample stream continues at the same batch index but not with the same samples",
                  file=sys.stderr)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")
    amp = device.type == "cuda"
    if amp:
        online, target = online.to(memory_format=torch.channels_last), target.to(memory_format=torch.channels_last)
    if world > 1:
        if amp:
            online = nn.SyncBatchNorm.convert_sync_batchnorm(online)
            target = nn.SyncBatchNorm.convert_sync_batchnorm(target)
        online = nn.parallel.DistributedDataParallel(online, device_ids=[device.index] if amp else None)

    decoder, why = resolve_decoder(cfg.decoder, str(device))
    if rank == 0 and device.type == "cuda":  # on a CPU the loader decodes with PyAV, nothing to say
        print(f"--decoder {cfg.decoder}: the loader decodes with {decoder} ({why})", file=sys.stderr)
    stream = ClipStream(
        shards, views=cfg.views, sampler=cfg.sampler, image_size=cfg.image_size, min_scale=cfg.min_scale,
        window=cfg.window, seed=cfg.seed, batch_size=cfg.batch_size // world, start_batch=step,
        positions=positions, shuffle_buffer=cfg.shuffle_buffer, rank=rank, world=world, decoder=decoder,
    )
    loader = make_loader(stream, workers, pin_memory=amp, device=str(device))
    augment = DeviceAugment(cfg.image_size)
    batches = iter(loader)
    end = min(cfg.steps, cfg.stop_at or cfg.steps)
    log = _Log(out, step) if rank == 0 else None

    def save() -> None:
        positions = _all_positions(loader.positions, world)  # a collective: every rank takes part
        if rank == 0:
            save_torch({
                "format": CHECKPOINT_FORMAT, "step": step, "config": asdict(cfg),
                "online": unwrap(online).state_dict(), "target": target.state_dict(),
                "optimizer": optimizer.state_dict(), "rng": _rng_state(),
                "data": {"batches": step, "positions": positions, "workers": workers, "world": world,
                         "batch_size": cfg.batch_size // world},
            }, ckpt_path)

    bar = tqdm(total=end, initial=step, disable=rank != 0, desc="train", dynamic_ncols=True, file=sys.stderr)
    started, window_start, window_images = time.time(), time.time(), 0
    online.train()
    target.train()
    while step < end:
        lr = warmup_cosine(step, cfg.steps, cfg.warmup_steps, cfg.peak_lr)
        for group in optimizer.param_groups:
            group["lr"] = lr
        ema = ema_rate(step, cfg.steps, cfg.ema_base)
        crops, params = next(batches)
        views = augment(crops.to(device, non_blocking=True), params.to(device, non_blocking=True))
        loss = train_step(online, target, optimizer, views, cfg.tau, ema, amp, cfg.negatives)
        step += 1
        window_images += views.shape[0] * views.shape[1] * world
        bar.update(1)
        if log is not None and (step % cfg.log_every == 0 or step == end):
            value = float(loss)
            if not math.isfinite(value):
                raise RuntimeError(f"loss is {value} at step {step}; lower --base-lr")
            now = time.time()
            row = {"step": step, "loss": round(value, 5), "lr": lr, "ema": ema,
                   "images_per_s": round(window_images / max(now - window_start, 1e-9), 2),
                   "elapsed_s": round(now - started, 1)}
            log.write(row)
            bar.set_postfix(loss=f"{value:.4f}", lr=f"{lr:.3g}")
            tqdm.write(" ".join(f"{k} {v}" for k, v in row.items()), file=sys.stdout)
            window_start, window_images = now, 0
        if step % cfg.save_every == 0 or step == end:
            save()
    bar.close()
    if log is not None:
        log.close()
    if rank == 0 and step >= cfg.steps:
        backbone, attention = export(ckpt_path)
        print(f"exported {backbone} and {attention}")
    if world > 1:
        dist.barrier()
    return out

