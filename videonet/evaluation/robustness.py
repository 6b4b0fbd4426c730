"""Robustness of the frozen encoder with the linear probe of ``eval linear``: ImageNet-A, ImageNet-Vid-Robust, ImageNet-3DCC.

Every test set is classified by the backbone's pooled ``layer4`` features (centre crop, as the
probe was trained) and the saved :class:`~videonet.evaluation.linear.LinearHead`, whose classes are
the ImageNet wnid folders it was trained on. Each set is read in its official layout:

* **ImageNet-A** (Hendrycks et al. 2021, ``imagenet-a.tar``): ``ROOT/<wnid>/*.jpg`` for its 200
  classes. As the authors' ``eval.py`` (hendrycks/natural-adv-examples) does, the 1000-way logits
  are restricted to the 200 wnids present before the argmax.
* **ImageNet-Vid-Robust** (Shankar et al. 2019, ``imagenet_vid_ytbb_robust.tar.gz``, folder
  ``imagenet-vid-robust``): ``val/<...>.JPEG`` frames, ``metadata/labels.json`` (frame -> list of
  correct ImageNet-Vid class indices), ``metadata/pmsets.json`` (anchor frame -> the frames within
  +-10 of it), ``misc/imagenet_vid_class_index.json`` (index -> [vid wnid, name]) and
  ``misc/rev_wnid_map.json`` (vid wnid -> ImageNet wnids). A vid class scores the max of its
  ImageNet logits (``merge_op='max'``). pm-0 is the anchor frames' accuracy; pm-10 counts an anchor
  only if it and every frame of its pm-set are correct. Checked against the authors' scoring
  (``score_predictions`` in modestyachts/imagenet-testbed ``imagenet_vid_robust.py`` and the
  dataset's own ``eval`` script: ``correct_pmk`` when ``pmset_correct == len(pmset) + 1``) and the
  class projection of WiSE-FT's ``ImageNetVidRobustBase.project_logits``.
* **ImageNet-3DCC** (Kar et al. 2022): ``ROOT/<corruption>/<severity>/<wnid>/*.JPEG``; top-1 over
  all 1000 classes per corruption and severity, with a plot of accuracy against severity.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import datasets

from videonet.errors import UserError
from videonet.evaluation.features import eval_transform, extract_features
from videonet.evaluation.linear import LinearHead


class ImageFiles(Dataset):
    """Images given as a path list, each with an integer label (the official lists are not ImageFolders)."""

    def __init__(self, paths: list[Path], labels: list[int], crop_size: int = 224, transform=None) -> None:
        self.paths, self.labels, self.transform = paths, labels, transform or eval_transform(crop_size)
        self.classes: list[str] = []  # extract_features records class names; these sets label by index

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(Image.open(self.paths[i]).convert("RGB")), self.labels[i]


def head_indices(head: LinearHead, wnids: list[str], what: str) -> torch.Tensor:
    """Positions of ``wnids`` among the head's classes; every one must be there."""
    index = {c: i for i, c in enumerate(head.classes)}
    missing = [w for w in wnids if w not in index]
    if missing:
        raise UserError(f"{what}: the linear head has no class {', '.join(missing[:5])}"
                        f"{' ...' if len(missing) > 5 else ''} (train it on ImageNet wnid folders)")
    return torch.tensor([index[w] for w in wnids])


def head_logits(model: torch.nn.Module, head: LinearHead, dataset: Dataset, device: torch.device, batch_size: int,
                workers: int, desc: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The probe's logits (N, classes) for every image of ``dataset``, and the dataset's labels."""
    feats = extract_features(model, dataset, device, batch_size, workers, desc=desc)
    return head.logits(feats.features), feats.labels


def _image_folder(root: Path, crop_size: int) -> datasets.ImageFolder:
    try:
        return datasets.ImageFolder(str(root), transform=eval_transform(crop_size))
    except FileNotFoundError as exc:
        raise UserError(f"{root}: {exc}") from exc


def check_imagenet_a(root: Path) -> list[str]:
    """The wnid folders of an ImageNet-A root (a UserError when it is not one)."""
    wnids = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if not wnids or not all(w.startswith("n") and w[1:].isdigit() for w in wnids):
        raise UserError(f"{root} is not ImageNet-A (expected ROOT/<wnid>/*.jpg, e.g. ROOT/n01498041/)")
    return wnids


def imagenet_a(root: Path, model: torch.nn.Module, head: LinearHead, device: torch.device, crop_size: int = 224,
               batch_size: int = 64, workers: int = 4) -> dict[str, float]:
    """Top-1 on ImageNet-A with the logits restricted to its classes (200 in the official set)."""
    check_imagenet_a(root)
    dataset = _image_folder(root, crop_size)
    subset = head_indices(head, dataset.classes, str(root))
    logits, labels = head_logits(model, head, dataset, device, batch_size, workers, "imagenet-a")
    return {"top1": (logits[:, subset].argmax(dim=1) == labels).float().mean().item(), "images": float(len(labels))}


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise UserError(f"{path} not found (expected the imagenet-vid-robust layout: metadata/, misc/, val/)")
    return json.loads(path.read_text())


def read_vid_robust(root: Path) -> tuple[dict[str, list[int]], dict[str, list[str]], list[list[str]]]:
    """(frame -> correct vid classes, anchor -> pm-set frames, ImageNet wnids of each vid class index)."""
    labels = _read_json(root / "metadata" / "labels.json")
    pmsets = _read_json(root / "metadata" / "pmsets.json")
    vid_index = _read_json(root / "misc" / "imagenet_vid_class_index.json")
    rev_wnid_map = _read_json(root / "misc" / "rev_wnid_map.json")
    class_wnids = [rev_wnid_map[vid_index[str(k)][0]] for k in range(len(vid_index))]
    return labels, pmsets, class_wnids


def project_max(logits: torch.Tensor, groups: list[torch.Tensor]) -> torch.Tensor:
    """(N, len(groups)): each group's score is the max of its columns' logits (the authors' ``merge_op='max'``)."""
    return torch.stack([logits[:, idx].max(dim=1).values for idx in groups], dim=1)


def pm_scores(correct: dict[str, bool], pmsets: dict[str, list[str]]) -> dict[str, float]:
    """pm-0 (anchor accuracy) and pm-k (anchor and its whole pm-set correct), over anchors, as the authors score."""
    pm0 = np.mean([correct[a] for a in pmsets])
    pmk = np.mean([correct[a] and all(correct[f] for f in frames) for a, frames in pmsets.items()])
    return {"pm0": float(pm0), "pm10": float(pmk)}


def imagenet_vid_robust(root: Path, model: torch.nn.Module, head: LinearHead, device: torch.device,
                        crop_size: int = 224, batch_size: int = 64, workers: int = 4) -> dict[str, float]:
    """pm-0 and pm-10 on ImageNet-Vid-Robust (vid class score = max of its ImageNet classes' logits)."""
    labels, pmsets, class_wnids = read_vid_robust(root)
    frames = sorted({f for a, fs in pmsets.items() for f in (a, *fs)})
    missing = [f for f in frames if not (root / f).is_file()]
    if missing:
        raise UserError(f"{root}: {len(missing)} frames of pmsets.json are missing, e.g. {missing[0]}")
    logits, _ = head_logits(model, head, ImageFiles([root / f for f in frames], [0] * len(frames), crop_size),
                        device, batch_size, workers, "imagenet-vid-robust")
    groups = [head_indices(head, wnids, str(root)) for wnids in class_wnids]
    predicted = project_max(logits, groups).argmax(dim=1).tolist()
    correct = {f: predicted[i] in labels[f] for i, f in enumerate(frames)}
    return {**pm_scores(correct, pmsets), "anchors": float(len(pmsets))}


def list_3dcc(root: Path) -> dict[str, list[str]]:
    """Corruption -> its severity folders (sorted numerically) of an ImageNet-3DCC root."""
    layout = {c.name: sorted((s.name for s in c.iterdir() if s.is_dir() and s.name.isdigit()), key=int)
              for c in sorted(root.iterdir()) if c.is_dir()} if root.is_dir() else {}
    layout = {c: s for c, s in layout.items() if s}
    if not layout:
        raise UserError(f"{root} is not ImageNet-3DCC (expected ROOT/<corruption>/<severity>/<wnid>/*.JPEG)")
    return layout


def imagenet_3dcc(root: Path, model: torch.nn.Module, head: LinearHead, device: torch.device, crop_size: int = 224,
                  batch_size: int = 64, workers: int = 4) -> tuple[dict[str, float], dict[str, dict[int, float]]]:
    """Mean top-1, per severity (mean over corruptions) and per corruption; and the accuracy table for the plot."""
    table: dict[str, dict[int, float]] = {}
    for corruption, severities in list_3dcc(root).items():
        for severity in severities:
            dataset = _image_folder(root / corruption / severity, crop_size)
            targets = head_indices(head, dataset.classes, str(root / corruption / severity))
            logits, labels = head_logits(model, head, dataset, device, batch_size, workers, f"{corruption}/{severity}")
            table.setdefault(corruption, {})[int(severity)] = (logits.argmax(dim=1) == targets[labels]).float().mean().item()
    cells = [acc for by_sev in table.values() for acc in by_sev.values()]
    metrics = {"top1": float(np.mean(cells))}
    for severity in sorted({s for by_sev in table.values() for s in by_sev}):
        metrics[f"top1_s{severity}"] = float(np.mean([t[severity] for t in table.values() if severity in t]))
    metrics.update({f"top1_{c}": float(np.mean(list(t.values()))) for c, t in table.items()})
    return metrics, table


def plot_by_severity(table: dict[str, dict[int, float]], out: Path, title: str) -> Path:
    """Accuracy against severity: one thin line per corruption, their mean in black."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for corruption, by_sev in table.items():
        xs = sorted(by_sev)
        ax.plot(xs, [100 * by_sev[s] for s in xs], marker=".", linewidth=1, alpha=0.7, label=corruption)
    severities = sorted({s for by_sev in table.values() for s in by_sev})
    mean = [100 * np.mean([t[s] for t in table.values() if s in t]) for s in severities]
    ax.plot(severities, mean, color="black", linewidth=2.5, marker="o", label="mean")
    ax.set(xlabel="severity", ylabel="top-1 (%)", title=title, xticks=severities)
    ax.legend(fontsize=7, ncol=2)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
