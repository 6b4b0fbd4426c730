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
* **ImageNet-3DCC** (Kar et al. 2022): ``ROOT/<corruption>/<severity>/<wnid>/*.JPEG``, the release's
  12 corruption folders (:data:`IMAGENET_3DCC`) with severities 1-5. The VITO paper evaluates the
  3-D corruptions only (near and far focus, fog, flash, xy and z motion blur, view jitter); view
  jitter is not in the release, so the default set is the other six. Top-1 over all 1000 classes
  per corruption and severity; with the clean ImageNet val set, the difference to its top-1 (the
  paper's plot: accuracy change against severity).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import datasets

from videonet.errors import UserError
from videonet.evaluation.features import eval_transform, extract_features
from videonet.evaluation.linear import LinearHead
from videonet.evaluation.settings import Features, Workers


class ImageFiles(Dataset):
    """Images given as a path list, each with an integer label (the official lists are not ImageFolders)."""

    def __init__(self, paths: list[Path], labels: list[int], crop_size: int = Features.crop_size,
                 transform=None) -> None:
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


def imagenet_a(root: Path, model: torch.nn.Module, head: LinearHead, device: torch.device,
               crop_size: int = Features.crop_size, batch_size: int = Features.batch_size,
               workers: int = Workers.workers) -> dict[str, float]:
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


def read_vid_robust(root: Path) -> tuple[dict[str, list[int]], dict[str, list[str]], dict[int, list[str]]]:
    """(frame -> correct vid classes, anchor -> pm-set frames, vid class index -> its ImageNet wnids).

    Entries of ``imagenet_vid_class_index.json`` that ``rev_wnid_map.json`` does not map are left
    out (they cannot be predicted); a label that uses one is an error.
    """
    labels = _read_json(root / "metadata" / "labels.json")
    pmsets = _read_json(root / "metadata" / "pmsets.json")
    vid_index = _read_json(root / "misc" / "imagenet_vid_class_index.json")
    rev_wnid_map = _read_json(root / "misc" / "rev_wnid_map.json")
    # Only the classes that map to ImageNet can be predicted; the index file may hold more entries.
    mapped = {int(k): rev_wnid_map[v[0]] for k, v in vid_index.items() if v[0] in rev_wnid_map}
    unmapped = sorted({c for cs in labels.values() for c in cs} - set(mapped))
    if unmapped:
        raise UserError(f"{root}: labels.json uses vid classes {unmapped[:5]} that rev_wnid_map.json does not map")
    return labels, pmsets, mapped


def project_max(logits: torch.Tensor, groups: list[torch.Tensor]) -> torch.Tensor:
    """(N, len(groups)): each group's score is the max of its columns' logits (the authors' ``merge_op='max'``)."""
    return torch.stack([logits[:, idx].max(dim=1).values for idx in groups], dim=1)


def pm_scores(correct: dict[str, bool], pmsets: dict[str, list[str]]) -> dict[str, float]:
    """pm-0 (anchor accuracy) and pm-k (anchor and its whole pm-set correct), over anchors, as the authors score."""
    pm0 = np.mean([correct[a] for a in pmsets])
    pmk = np.mean([correct[a] and all(correct[f] for f in frames) for a, frames in pmsets.items()])
    return {"pm0": float(pm0), "pm10": float(pmk)}


def imagenet_vid_robust(root: Path, model: torch.nn.Module, head: LinearHead, device: torch.device,
                        crop_size: int = Features.crop_size, batch_size: int = Features.batch_size,
                        workers: int = Workers.workers) -> dict[str, float]:
    """pm-0 and pm-10 on ImageNet-Vid-Robust (vid class score = max of its ImageNet classes' logits)."""
    labels, pmsets, class_wnids = read_vid_robust(root)
    frames = sorted({f for a, fs in pmsets.items() for f in (a, *fs)})
    missing = [f for f in frames if not (root / f).is_file()]
    if missing:
        raise UserError(f"{root}: {len(missing)} frames of pmsets.json are missing, e.g. {missing[0]}")
    logits, _ = head_logits(model, head, ImageFiles([root / f for f in frames], [0] * len(frames), crop_size),
                        device, batch_size, workers, "imagenet-vid-robust")
    vid_classes = sorted(class_wnids)
    groups = [head_indices(head, class_wnids[c], str(root)) for c in vid_classes]
    predicted = [vid_classes[i] for i in project_max(logits, groups).argmax(dim=1).tolist()]
    correct = {f: predicted[i] in labels[f] for i, f in enumerate(frames)}
    return {**pm_scores(correct, pmsets), "anchors": float(len(pmsets))}


@dataclass(frozen=True)
class Corruption:
    """One corruption of the ImageNet-3DCC release."""

    name: str  # its folder in the release
    family: str  # the release's grouping
    paper: bool  # one of the VITO paper's 3-D corruptions


# The release's 12 corruptions (folder names as unpacked). The paper's 3-D set also names view
# jitter, which the release does not have.
IMAGENET_3DCC = (
    Corruption("near_focus", "depth of field", True), Corruption("far_focus", "depth of field", True),
    Corruption("fog_3d", "weather", True), Corruption("flash", "lighting", True),
    Corruption("xy_motion_blur", "camera motion", True), Corruption("z_motion_blur", "camera motion", True),
    Corruption("bit_error", "video", False), Corruption("h265_abr", "video", False),
    Corruption("h265_crf", "video", False), Corruption("color_quant", "noise", False),
    Corruption("iso_noise", "noise", False), Corruption("low_light", "noise", False),
)
SEVERITIES_3DCC = (1, 2, 3, 4, 5)
CORRUPTION_SETS = {"3d": tuple(c.name for c in IMAGENET_3DCC if c.paper), "all": tuple(c.name for c in IMAGENET_3DCC)}


def select_corruptions(spec: str) -> tuple[str, ...]:
    """``3d`` (the paper's set), ``all`` (the release's 12) or a comma-separated list of release names."""
    if spec in CORRUPTION_SETS:
        return CORRUPTION_SETS[spec]
    chosen = tuple(dict.fromkeys(c.strip() for c in spec.split(",") if c.strip()))
    unknown = [c for c in chosen if c not in CORRUPTION_SETS["all"]]
    if unknown or not chosen:
        raise UserError(f"--corruptions: {', '.join(unknown) or 'none given'} not in ImageNet-3DCC; give 3d, all or "
                        f"names from {', '.join(CORRUPTION_SETS['all'])}")
    return chosen


def list_3dcc(root: Path, corruptions: tuple[str, ...]) -> tuple[dict[str, list[str]], list[str]]:
    """(corruption -> its severity folders present, requested ``corruption[/severity]`` that are missing)."""
    if not root.is_dir() or not any((root / c).is_dir() for c in CORRUPTION_SETS["all"]):
        raise UserError(f"{root} is not ImageNet-3DCC (expected ROOT/<corruption>/<severity>/<wnid>/*.JPEG with the "
                        f"release's corruption names, e.g. ROOT/near_focus/1/n01440764/)")
    layout, missing = {}, []
    for corruption in corruptions:
        present = [str(s) for s in SEVERITIES_3DCC if (root / corruption / str(s)).is_dir()]
        if not present:
            missing.append(corruption)
            continue
        layout[corruption] = present
        missing += [f"{corruption}/{s}" for s in SEVERITIES_3DCC if str(s) not in present]
    if not layout:
        raise UserError(f"{root} has none of the corruptions asked for ({', '.join(corruptions)})")
    return layout, missing


@dataclass
class ThreeDCC:
    """Top-1 per corruption and severity, the metrics derived from it, and what was not there."""

    table: dict[str, dict[int, float]]
    missing: list[str] = field(default_factory=list)
    clean_top1: float | None = None

    def metrics(self) -> dict[str, float]:
        """``top1`` (mean over every cell), ``top1_s<k>`` (over corruptions), ``top1_<corruption>``; with a
        clean top-1 also ``clean_top1`` and the ``delta_`` of each (corrupted minus clean)."""
        cells = [acc for by_sev in self.table.values() for acc in by_sev.values()]
        out = {"top1": float(np.mean(cells))}
        for severity in sorted({s for by_sev in self.table.values() for s in by_sev}):
            out[f"top1_s{severity}"] = float(np.mean([t[severity] for t in self.table.values() if severity in t]))
        out.update({f"top1_{c}": float(np.mean(list(t.values()))) for c, t in self.table.items()})
        if self.clean_top1 is not None:
            out |= {"clean_top1": self.clean_top1} | {f"delta_{k}": v - self.clean_top1 for k, v in out.items()}
        return out


def _top1(model: torch.nn.Module, head: LinearHead, root: Path, device: torch.device, crop_size: int,
          batch_size: int, workers: int, desc: str) -> float:
    """Top-1 over all the head's classes on an ImageNet-style folder of wnid folders."""
    dataset = _image_folder(root, crop_size)
    targets = head_indices(head, dataset.classes, str(root))
    logits, labels = head_logits(model, head, dataset, device, batch_size, workers, desc)
    return (logits.argmax(dim=1) == targets[labels]).float().mean().item()


def imagenet_3dcc(root: Path, model: torch.nn.Module, head: LinearHead, device: torch.device,
                  corruptions: tuple[str, ...] = CORRUPTION_SETS["3d"], clean: Path | None = None,
                  crop_size: int = Features.crop_size, batch_size: int = Features.batch_size,
                  workers: int = Workers.workers) -> ThreeDCC:
    """Top-1 of each requested corruption and severity present under ``root`` (and of ``clean``, ImageNet val)."""
    layout, missing = list_3dcc(root, corruptions)
    if clean is not None and not clean.is_dir():
        raise UserError(f"--clean {clean} does not exist (expected ImageNet val as <wnid>/*.JPEG)")
    table: dict[str, dict[int, float]] = {}
    for corruption, severities in layout.items():
        for severity in severities:
            folder = root / corruption / severity
            table.setdefault(corruption, {})[int(severity)] = _top1(model, head, folder, device, crop_size, batch_size,
                                                                    workers, f"{corruption}/{severity}")
    clean_top1 = None if clean is None else _top1(model, head, clean, device, crop_size, batch_size, workers, "clean")
    return ThreeDCC(table, missing, clean_top1)


def plot_by_severity(result: ThreeDCC, out: Path, title: str) -> Path:
    """Top-1 against severity, or its change from clean top-1 when that is known (the paper's plot).

    One thin line per corruption, their mean in black.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base = result.clean_top1 or 0.0
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for corruption, by_sev in result.table.items():
        xs = sorted(by_sev)
        ax.plot(xs, [100 * (by_sev[s] - base) for s in xs], marker=".", linewidth=1, alpha=0.7, label=corruption)
    severities = sorted({s for by_sev in result.table.values() for s in by_sev})
    mean = [100 * (np.mean([t[s] for t in result.table.values() if s in t]) - base) for s in severities]
    ax.plot(severities, mean, color="black", linewidth=2.5, marker="o", label="mean")
    ylabel = "top-1 (%)" if result.clean_top1 is None else "Δ top-1 vs clean (points)"
    ax.set(xlabel="severity", ylabel=ylabel, title=title, xticks=severities)
    ax.legend(fontsize=7, ncol=2)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
