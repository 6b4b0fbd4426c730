"""UCF-101 action recognition from frame features: finetune backbone + pooling + linear layer on clips.

Layout (the official archives, UCF101.rar and UCF101TrainTestSplits-RecognitionTask.zip)::

    ROOT/UCF-101/<Class>/v_<Class>_gXX_cYY.avi
    ROOT/ucfTrainTestlist/classInd.txt      "1 ApplyEyeMakeup"
    ROOT/ucfTrainTestlist/trainlist01.txt   "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1"
    ROOT/ucfTrainTestlist/testlist01.txt    "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi"

A clip is 2 s sampled at 12 fps (24 frames). Every frame goes through the image backbone; the
frame features are pooled over space and time by one of the heads below and classified by a
linear layer, and the whole network is finetuned end to end. At test time the class probabilities
of 10 clips spread evenly over each video are averaged.

Pooling heads (the paper's two first, then the earlier variants kept as options):

* ``avg``: global average of layer4 over space and time (the image-model baseline);
* ``multiscale`` (paper): layer3 ("block 3") spatial means averaged over each 1-second half of the
  clip separately, plus layer4 averaged over the whole clip: 2 x 1024 + 2048 = 4096-d for ResNet-50;
* ``temporal-attention`` (paper): at both scales (layer3 and layer4) the per-frame spatial means are
  weighted by softmax over time of ``v . tanh(W f_t)`` and summed, then concatenated. The width of
  ``W`` (256) is this harness's choice: the paper does not give it;
* ``multiscale-concat``: spatial means of layer3 and layer4 concatenated, averaged over time;
* ``temporal-attention-linear``: layer4 frame means weighted by a softmax of a linear score.

Fine-tuning schedules: ``paper`` (default) is Adam at lr 1e-4 for 16 epochs, the lr multiplied by
0.1 after epochs 6, 10 and 14 (the x0.1 factor is the usual step decay; the paper gives the epochs);
``sgd-cosine`` is the earlier SGD (momentum 0.9) with a cosine lr, 8 epochs at 0.01.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from videonet.errors import UserError
from videonet.evaluation.settings import POOLINGS, UCF_SCHEDULES, ClipConfig, UcfRun, UcfSchedule, Workers
from videonet.torch_utils import IMAGENET_MEAN, IMAGENET_STD, forward_stages, scaled_size, stage_channels

ATTENTION_HIDDEN = 256  # width of the paper head's tanh layer (not given by the paper)


@dataclass(frozen=True)
class Split:
    """Class names (label order) and (relative video path, label) pairs for train and test."""

    classes: list[str]
    train: list[tuple[str, int]]
    test: list[tuple[str, int]]


def read_split(root: Path, split: int = UcfRun.split) -> Split:
    """Parse classInd.txt and train/testlist0<split>.txt; test labels come from the class folder name."""
    lists = root / "ucfTrainTestlist"
    needed = [lists / "classInd.txt", lists / f"trainlist0{split}.txt", lists / f"testlist0{split}.txt"]
    for path in needed:
        if not path.is_file():
            raise UserError(f"{path} not found (expected the UCF-101 layout, see `videonet eval ucf101 --help`)")
    classes = [line.split()[1] for line in needed[0].read_text().splitlines() if line.strip()]
    index = {name: i for i, name in enumerate(classes)}

    def entries(path: Path) -> list[tuple[str, int]]:
        out = []
        for line in path.read_text().splitlines():
            if line.strip():
                video = line.split()[0]
                if video.split("/")[0] not in index:
                    raise UserError(f"{path}: {video} is not in a class of classInd.txt")
                out.append((video, index[video.split("/")[0]]))
        return out

    return Split(classes, entries(needed[1]), entries(needed[2]))


def decode_video(path: Path, short_side: int) -> tuple[np.ndarray, np.ndarray]:
    """All frames as (N, H, W, 3) uint8 scaled by the decoder to ``short_side``, and their times in s from 0."""
    import av

    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as exc:
        raise UserError(f"cannot open video {path}: {exc}") from exc
    with container:
        if not container.streams.video:
            raise UserError(f"{path} has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = float(stream.average_rate or 25)
        frames, times = [], []
        for i, frame in enumerate(container.decode(stream)):
            w, h = scaled_size(frame.width, frame.height, short_side)
            frames.append(frame.to_ndarray(width=w, height=h, format="rgb24"))
            times.append(frame.time if frame.time is not None else i / rate)
    if not frames:
        raise UserError(f"{path} has no decodable frames")
    times_arr = np.asarray(times, dtype=np.float64)
    return np.stack(frames), times_arr - times_arr[0]


def clip_indices(times: np.ndarray, start: float, config: ClipConfig) -> np.ndarray:
    """Frame index shown at each of the clip's sample times start + i/fps (the last frame once the video ends)."""
    targets = start + np.arange(config.frames) / config.fps
    return np.clip(np.searchsorted(times, targets + 1e-6, side="right") - 1, 0, len(times) - 1)


def clip_starts(duration: float, config: ClipConfig, n: int) -> np.ndarray:
    """``n`` clip start times spread evenly so the clips cover the whole video (all 0 for short videos)."""
    return np.linspace(0.0, max(0.0, duration - config.seconds), n)


class UCF101Clips(Dataset):
    """Train: one random clip per video with a random crop and flip. Test: ``test_clips`` centre-cropped clips."""

    def __init__(self, root: Path, videos: list[tuple[str, int]], config: ClipConfig, train: bool) -> None:
        self.root, self.videos, self.config, self.train = root, videos, config, train
        self.mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        """(T, 3, crop, crop) for training or (clips, T, 3, crop, crop) for testing, and the label."""
        video, label = self.videos[i]
        frames, times = decode_video(self.root / "UCF-101" / video, self.config.resize)
        duration = float(times[-1])
        if self.train:
            starts = torch.rand(1).numpy() * max(0.0, duration - self.config.seconds)
        else:
            starts = clip_starts(duration, self.config, self.config.test_clips)
        clips = torch.from_numpy(frames[np.stack([clip_indices(times, s, self.config) for s in starts])])
        clips = self._crop(clips.permute(0, 1, 4, 2, 3).float() / 255.0)  # (clips, T, 3, H, W)
        clips = (clips - self.mean) / self.std
        return (clips[0] if self.train else clips), label

    def _crop(self, clips: torch.Tensor) -> torch.Tensor:
        """The same crop (random + flip when training, centre otherwise) for every frame of a clip."""
        h, w, size = clips.shape[-2], clips.shape[-1], min(self.config.crop_size, *clips.shape[-2:])
        if self.train:
            top, left = (int(torch.randint(0, n - size + 1, ())) for n in (h, w))
        else:
            top, left = (h - size) // 2, (w - size) // 2
        clips = clips[..., top : top + size, left : left + size]
        return clips.flip(-1) if self.train and torch.rand(()) < 0.5 else clips


class TanhTemporalAttention(nn.Module):
    """Softmax over time of v . tanh(W f_t), the weights summing the frame features (B, T, C) -> (B, C)."""

    def __init__(self, dim: int, hidden: int = ATTENTION_HIDDEN) -> None:
        super().__init__()
        self.score = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, 1, bias=False))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return (torch.softmax(self.score(frames), dim=1) * frames).sum(dim=1)


class ClipClassifier(nn.Module):
    """Backbone on every frame, spatio-temporal pooling (see the module docstring), linear layer."""

    def __init__(self, backbone: nn.Module, num_classes: int, pooling: str = UcfRun.pooling) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise UserError(f"--pooling must be one of {', '.join(POOLINGS)}, not {pooling!r}")
        self.backbone, self.pooling = backbone, pooling
        self.layers = ["layer4"] if pooling in ("avg", "temporal-attention-linear") else ["layer3", "layer4"]
        widths = [stage_channels(backbone, layer) for layer in self.layers]
        dim = 2 * widths[0] + widths[1] if pooling == "multiscale" else sum(widths)
        self.time_score = nn.Linear(dim, 1) if pooling == "temporal-attention-linear" else None
        self.attention = (nn.ModuleList(TanhTemporalAttention(w) for w in widths)
                          if pooling == "temporal-attention" else None)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        """Logits (B, classes) for clips (B, T, 3, H, W)."""
        b, t = clips.shape[:2]
        maps = forward_stages(self.backbone, clips.flatten(0, 1), self.layers)
        frames = [maps[layer].mean(dim=(2, 3)).view(b, t, -1) for layer in self.layers]  # per scale (B, T, C)
        if self.pooling == "multiscale":  # layer3 over each half of the clip (1 s of 2 s), layer4 over all of it
            first, second = torch.tensor_split(frames[0], 2, dim=1)
            second = second if second.shape[1] else first  # a one-frame clip has a single "half"
            pooled = torch.cat([first.mean(dim=1), second.mean(dim=1), frames[1].mean(dim=1)], dim=1)
        elif self.attention is not None:
            pooled = torch.cat([attend(f) for attend, f in zip(self.attention, frames)], dim=1)
        else:
            per_frame = torch.cat(frames, dim=2)
            if self.time_score is not None:
                pooled = (torch.softmax(self.time_score(per_frame), dim=1) * per_frame).sum(dim=1)
            else:
                pooled = per_frame.mean(dim=1)
        return self.head(pooled)


@dataclass
class TrainConfig:
    """Finetuning schedule: the paper's Adam with step drops by default (see the module docstring)."""

    schedule: str = "paper"
    epochs: int = UCF_SCHEDULES["paper"].epochs
    batch_size: int = UcfSchedule.batch_size
    lr: float = UCF_SCHEDULES["paper"].lr
    weight_decay: float = UCF_SCHEDULES["paper"].weight_decay
    milestones: tuple[int, ...] = (6, 10, 14)  # epochs after which the paper schedule multiplies the lr by 0.1
    workers: int = Workers.workers
    seed: int = 0

    @classmethod
    def for_schedule(cls, schedule: str = "paper", **overrides) -> TrainConfig:
        """The schedule's own defaults (:data:`UCF_SCHEDULES`), then the ``overrides`` that are not None."""
        if schedule not in UCF_SCHEDULES:
            raise UserError(f"--schedule must be one of {', '.join(UCF_SCHEDULES)}, not {schedule!r}")
        defaults = dataclasses.asdict(UCF_SCHEDULES[schedule])
        return cls(schedule=schedule, **{**defaults, **{k: v for k, v in overrides.items() if v is not None}})

    def optimizer(self, params, steps_per_epoch: int) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler, bool]:
        """(optimizer, lr scheduler, whether the scheduler steps per batch rather than per epoch)."""
        if self.schedule == "paper":
            opt = torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)
            return opt, torch.optim.lr_scheduler.MultiStepLR(opt, list(self.milestones), gamma=0.1), False
        opt = torch.optim.SGD(params, lr=self.lr, momentum=0.9, weight_decay=self.weight_decay)
        return opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, self.epochs * steps_per_epoch)), True


def finetune(model: ClipClassifier, dataset: UCF101Clips, config: TrainConfig, device: torch.device) -> ClipClassifier:
    """Train every parameter (backbone included) with cross-entropy on one random clip per video per epoch."""
    torch.manual_seed(config.seed)  # also seeds the DataLoader workers' crops and clip starts
    model = model.to(device).train()
    loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=True, num_workers=config.workers, drop_last=False)
    opt, sched, per_step = config.optimizer(model.parameters(), len(loader))
    for epoch in range(config.epochs):
        for clips, labels in tqdm(loader, desc=f"ucf101 train {epoch + 1}/{config.epochs}", unit="batch"):
            loss = F.cross_entropy(model(clips.to(device)), labels.to(device))
            opt.zero_grad()
            loss.backward()
            opt.step()
            if per_step:
                sched.step()
        if not per_step:
            sched.step()
    return model


@torch.no_grad()
def test(model: ClipClassifier, dataset: UCF101Clips, device: torch.device, workers: int = Workers.workers) -> float:
    """Video-level top-1: softmax of every clip averaged over the video's clips."""
    model = model.to(device).eval()
    loader = DataLoader(dataset, batch_size=1, shuffle=False, num_workers=workers)
    correct = 0
    for clips, label in tqdm(loader, desc="ucf101 test", unit="video"):
        probs = torch.softmax(model(clips[0].to(device)), dim=1).mean(dim=0)
        correct += int(probs.argmax().item() == label.item())
    return correct / len(dataset)


def evaluate(
    root: Path,
    backbone: nn.Module,
    pooling: str,
    device: torch.device,
    split: int = UcfRun.split,
    clip: ClipConfig = ClipConfig(),
    train: TrainConfig = TrainConfig(),
) -> tuple[dict[str, float], int]:
    """Finetune on trainlist0<split>; return top-1 on testlist0<split> and the number of test videos."""
    if not (root / "UCF-101").is_dir():
        raise UserError(f"{root / 'UCF-101'} not found (expected ROOT/UCF-101/<Class>/v_*.avi)")
    parts = read_split(root, split)
    model = ClipClassifier(backbone, len(parts.classes), pooling)
    finetune(model, UCF101Clips(root, parts.train, clip, train=True), train, device)
    return {"top1": test(model, UCF101Clips(root, parts.test, clip, train=False), device, train.workers)}, len(parts.test)
