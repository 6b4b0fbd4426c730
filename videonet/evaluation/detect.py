"""Object detection transfer (COCO 2017, LVIS v1): FCOS on an FPN over the backbone, fine-tuned, scored by box AP.

Model: torchvision's ``FCOS`` on ``resnet_fpn_backbone`` (P3-P5 from layer2-4 plus P6/P7, as
``fcos_resnet50_fpn``) built for the checkpoint's architecture (resnet18 works too) with its
weights; unlike torchvision's ImageNet recipe nothing is frozen and BatchNorm is trainable
(SyncBatchNorm under torchrun), since a self-supervised backbone is fine-tuned end to end.
Schedule: torchvision's FCOS reference (``--epochs 26 --lr-steps 16 22 --lr 0.01``, batch 16):
SGD momentum 0.9, weight decay 1e-4, linear warmup from 0.001x over the first 1000 steps, lr x0.1
at 16/26 and 22/26 of the run; horizontal flip; images resized to short side 800 (long <= 1333).
Scoring: detections with score >= 0.05, at most 100 per image (300 for LVIS, its protocol), AP by
pycocotools' ``COCOeval`` (COCO) or the official ``lvis`` API's ``LVISEval`` (LVIS).

Differences from the paper's FCOS* (an improved FCOS from the same group's earlier work): ours is
torchvision's plain FCOS with the recipe above; the paper's FCOS* training length, scale
augmentation and head changes are not reproduced (we could not check their exact values), so
absolute APs are not comparable with the paper's, only between checkpoints run here.

Layouts::

    COCO/annotations/instances_{train,val}2017.json   COCO/train2017/*.jpg   COCO/val2017/*.jpg
    LVIS/lvis_v1_{train,val}.json   with the COCO images under LVIS/ (train2017/, val2017/) or --images

LVIS images carry no ``file_name``; their ``coco_url`` (``.../train2017/<name>.jpg``) names the file.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import models, tv_tensors
from torchvision.models.detection import FCOS
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
from torchvision.ops import box_convert
from torchvision.ops.feature_pyramid_network import LastLevelP6P7
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF
from tqdm import tqdm

from videonet.errors import UserError
from videonet.evaluation.finetune import Finetune, Ranks, finetune, gather, shard, split_batch
from videonet.evaluation.settings import DetectSettings, Workers

COCO_METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")  # the first six of COCOeval.stats
LVIS_METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf")
SCORE_THRESH = 0.05
@dataclass(frozen=True)
class DetDataset:
    """Where a benchmark's annotation files live (relative to its root) and its per-image detection budget."""

    name: str
    train_json: str
    val_json: str
    detections_per_img: int


DET_DATASETS = {
    "coco": DetDataset("coco", "annotations/instances_train2017.json", "annotations/instances_val2017.json", 100),
    "lvis": DetDataset("lvis", "lvis_v1_train.json", "lvis_v1_val.json", 300),
}


def _spec(dataset: str) -> DetDataset:
    if dataset not in DET_DATASETS:
        raise UserError(f"--dataset must be one of {', '.join(DET_DATASETS)}, not {dataset!r}")
    return DET_DATASETS[dataset]


def annotation_files(root: Path, dataset: str) -> tuple[Path, Path]:
    """(train, val) annotation JSON paths, with a one-line error naming the first one missing."""
    spec = _spec(dataset)
    if not root.is_dir():
        raise UserError(f"{dataset} dir {root} does not exist")
    files = root / spec.train_json, root / spec.val_json
    for path in files:
        if not path.is_file():
            raise UserError(f"{path} not found (the official {dataset} annotation file)")
    return files


def load_api(path: Path):
    """pycocotools' ``COCO`` index of an annotation file (LVIS files have the same structure), quietly."""
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):  # "loading annotations into memory..."
        return COCO(str(path))


def image_path(info: dict, images_root: Path, split_dir: str) -> Path:
    """A COCO image's file: ``split_dir/file_name`` for COCO, the last two parts of ``coco_url`` for LVIS."""
    if "file_name" in info:
        return images_root / split_dir / info["file_name"]
    return images_root.joinpath(*urlparse(info["coco_url"]).path.split("/")[-2:])


class BoxSet(Dataset):
    """``(image (3, H, W) float in [0, 1], {"boxes" XYXY, "labels" category ids}, image id)`` of one split.

    Crowd boxes and boxes without area are dropped (torchvision's references do the same); for
    training, images left without a box are skipped. Labels are the datasets' own category ids, so
    the classifier has ``max id + 1`` outputs and results need no id mapping.
    """

    def __init__(self, api, images_root: Path, split_dir: str, train: bool) -> None:
        self.api, self.images_root, self.split_dir, self.train = api, images_root, split_dir, train
        ids = sorted(api.getImgIds())
        self.ids = [i for i in ids if self._annotations(i)] if train else ids
        self.flip = v2.RandomHorizontalFlip() if train else None
        for i in self.ids:
            path = image_path(api.imgs[i], images_root, split_dir)
            if not path.is_file():
                raise UserError(f"{path} not found (an image of the annotation file)")

    def _annotations(self, image_id: int) -> list[dict]:
        return [a for a in self.api.imgToAnns[image_id] if not a.get("iscrowd", 0) and a["bbox"][2] > 0 and a["bbox"][3] > 0]

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, torch.Tensor], int]:
        image_id = self.ids[i]
        pil = Image.open(image_path(self.api.imgs[image_id], self.images_root, self.split_dir)).convert("RGB")
        image = TF.to_dtype(TF.to_image(pil), torch.float32, scale=True)
        anns = self._annotations(image_id)
        boxes = tv_tensors.BoundingBoxes(torch.tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(-1, 4),
                                         format="XYWH", canvas_size=tuple(image.shape[-2:]))
        boxes = TF.convert_bounding_box_format(boxes, new_format=tv_tensors.BoundingBoxFormat.XYXY)
        if self.flip is not None:
            image, boxes = self.flip(image, boxes)
        labels = torch.tensor([a["category_id"] for a in anns], dtype=torch.int64)
        return image.as_subclass(torch.Tensor), {"boxes": boxes.as_subclass(torch.Tensor), "labels": labels}, image_id


def build_fcos(backbone: models.ResNet, arch: str, num_classes: int, min_size: int = DetectSettings.min_size, max_size: int = DetectSettings.max_size,
               detections_per_img: int = 100) -> FCOS:
    """torchvision's FCOS (``fcos_resnet50_fpn``'s FPN layout) over a copy of ``backbone``'s weights, all trainable."""
    fpn = resnet_fpn_backbone(backbone_name=arch, weights=None, norm_layer=nn.BatchNorm2d, trainable_layers=5,
                              returned_layers=[2, 3, 4], extra_blocks=LastLevelP6P7(256, 256))
    result = fpn.body.load_state_dict(backbone.state_dict(), strict=False)
    if result.unexpected_keys or result.missing_keys:
        raise UserError(f"backbone weights do not fit torchvision {arch}")
    return FCOS(fpn, num_classes, min_size=min_size, max_size=max_size, score_thresh=SCORE_THRESH,
                detections_per_img=detections_per_img)


def detection_loss(model: nn.Module, batch: tuple[list, list, list], device: torch.device) -> torch.Tensor:
    """The sum of FCOS's classification (focal), box (GIoU) and centerness losses."""
    images, targets, _ = batch
    images = [image.to(device, non_blocking=True) for image in images]
    targets = [{k: v.to(device, non_blocking=True) for k, v in t.items()} for t in targets]
    return sum(model(images, targets).values())


def step_schedule(optimizer: torch.optim.Optimizer, total: int, per_epoch: int) -> torch.optim.lr_scheduler.LRScheduler:
    """Linear warmup (0.001x, 1000 steps) then x0.1 at 16/26 and 22/26 of the run (torchvision's FCOS reference)."""
    sched = torch.optim.lr_scheduler
    warmup = sched.LinearLR(optimizer, start_factor=0.001, total_iters=max(1, min(1000, total - 1)))
    steps = sched.MultiStepLR(optimizer, milestones=[round(total * 16 / 26), round(total * 22 / 26)], gamma=0.1)
    return sched.ChainedScheduler([warmup, steps], optimizer=optimizer)


@torch.no_grad()
def predict(model: nn.Module, dataset: BoxSet, where: Ranks, workers: int = Workers.workers) -> list[dict]:
    """Detections of every image in COCO's results format (``bbox`` as x, y, w, h in original pixels)."""
    model = model.to(where.device).eval()
    loader = DataLoader(shard(dataset, where), batch_size=2, num_workers=workers, collate_fn=split_batch)
    results: list[dict] = []
    for images, _, ids in tqdm(loader, desc="detect", unit="batch", disable=not where.main):
        with torch.autocast(where.device.type, dtype=torch.float16, enabled=where.device.type == "cuda"):
            outputs = model([image.to(where.device) for image in images])
        for out, image_id in zip(outputs, ids):
            boxes = box_convert(out["boxes"].float(), "xyxy", "xywh").cpu().tolist()
            results += [{"image_id": image_id, "category_id": int(label), "bbox": [round(x, 2) for x in box],
                         "score": float(score)}
                        for box, label, score in zip(boxes, out["labels"].cpu(), out["scores"].float().cpu())]
    return gather(results, where)


def coco_ap(api, detections: list[dict]) -> dict[str, float]:
    """COCOeval box AP (IoU .50:.95), AP50, AP75 and by size; an area with no ground truth (-1) is left out."""
    from pycocotools.cocoeval import COCOeval

    if not detections:
        return {"AP": 0.0, "AP50": 0.0, "AP75": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator = COCOeval(api, api.loadRes(detections), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {name: float(v) for name, v in zip(COCO_METRICS, evaluator.stats) if v >= 0}


@contextlib.contextmanager
def _numpy_float_alias():
    """lvis 0.5.3 (its latest release) calls ``np.float``, which numpy 1.24 removed; alias it while LVISEval runs."""
    missing = "float" not in np.__dict__
    if missing:
        np.float = float  # type: ignore[attr-defined]
    try:
        yield
    finally:
        if missing:
            del np.float


def lvis_ap(gt_json: Path, detections: list[dict]) -> dict[str, float]:
    """Box AP by the official LVIS API (federated: only the categories verified per image count)."""
    try:
        from lvis import LVIS, LVISEval, LVISResults
    except ImportError:
        raise UserError("LVIS AP needs the official LVIS API: pip install lvis") from None
    if not detections:
        return {"AP": 0.0, "AP50": 0.0, "AP75": 0.0}
    with contextlib.redirect_stdout(io.StringIO()), _numpy_float_alias():
        gt = LVIS(str(gt_json))
        evaluator = LVISEval(gt, LVISResults(gt, detections, max_dets=300), "bbox")
        evaluator.run()
    return {name: float(evaluator.results[name]) for name in LVIS_METRICS if evaluator.results[name] >= 0}


def evaluate(root: Path, dataset: str, backbone: models.ResNet, arch: str, config: Finetune, where: Ranks,
             min_size: int = DetectSettings.min_size, max_size: int = DetectSettings.max_size, images_root: Path | None = None,
             ) -> tuple[dict[str, float], list[float], dict[str, int]]:
    """Fine-tune FCOS on the train split and score val; returns (metrics, per-step losses, split sizes)."""
    spec = _spec(dataset)
    train_json, val_json = annotation_files(root, dataset)
    images_root = images_root or root
    train_api, val_api = load_api(train_json), load_api(val_json)
    train_set = BoxSet(train_api, images_root, "train2017", train=True)
    val_set = BoxSet(val_api, images_root, "val2017", train=False)
    num_classes = max(train_api.getCatIds()) + 1
    model = build_fcos(backbone, arch, num_classes, min_size, max_size, spec.detections_per_img)
    losses = finetune(model, train_set, detection_loss, step_schedule, config, where, collate=split_batch,
                      desc=f"{dataset} finetune")
    detections = predict(model, val_set, where, config.workers)
    metrics = coco_ap(val_api, detections) if dataset == "coco" else lvis_ap(val_json, detections)
    return metrics, losses, {"train": len(train_set), "val": len(val_set)}
