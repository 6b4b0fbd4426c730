"""Detection transfer: COCO/LVIS readers, AP on hand-made cases (checked against pycocotools and lvis), a CPU FCOS run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from videonet.errors import UserError
from videonet.evaluation import detect
from videonet.evaluation.backbone import load_backbone
from videonet.evaluation.finetune import Finetune, Ranks

pytestmark = pytest.mark.usefixtures("one_thread")  # one torch thread (tests/conftest.py)

CPU = Ranks(0, 1, torch.device("cpu"))
H, W = 48, 64
CATEGORIES = [{"id": 1, "name": "red", "frequency": "f"}, {"id": 3, "name": "blue", "frequency": "c"}]


def draw(i: int) -> tuple[np.ndarray, list[dict]]:
    """An image with a red and a blue rectangle; their COCO annotations (x, y, w, h)."""
    rgb = np.full((H, W, 3), 110, np.uint8)
    anns = []
    for cat, colour, (x, y) in ((1, (220, 30, 30), (4 + i, 6)), (3, (30, 30, 220), (36, 20 + i))):
        rgb[y:y + 16, x:x + 20] = colour
        anns.append({"category_id": cat, "bbox": [x, y, 20, 16], "area": 320, "iscrowd": 0})
    return rgb, anns


def write_annotations(path: Path, images: list[dict], anns: list[dict], lvis: bool = False) -> None:
    for k, ann in enumerate(anns, 1):
        ann["id"] = k
    if lvis:
        for image in images:
            image.update(neg_category_ids=[], not_exhaustive_category_ids=[])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": CATEGORIES}))


def write_coco(root: Path, n_train: int = 4, n_val: int = 2, lvis: bool = False) -> Path:
    """COCO: annotations/instances_{train,val}2017.json + train2017/ val2017/; LVIS: lvis_v1_*.json and coco_url."""
    image_id = 0
    for split, n in (("train", n_train), ("val", n_val)):
        (root / f"{split}2017").mkdir(parents=True)
        images, anns = [], []
        for _ in range(n):
            image_id += 1
            rgb, boxes = draw(image_id)
            name = f"{image_id:012d}.jpg"
            Image.fromarray(rgb).save(root / f"{split}2017" / name, quality=95)
            info = {"id": image_id, "height": H, "width": W}
            info.update({"coco_url": f"http://images.cocodataset.org/{split}2017/{name}"} if lvis else {"file_name": name})
            images.append(info)
            anns += [{**a, "image_id": image_id} for a in boxes]
        json_path = root / (f"lvis_v1_{split}.json" if lvis else f"annotations/instances_{split}2017.json")
        write_annotations(json_path, images, anns, lvis)
    return root


def perfect(api) -> list[dict]:
    return [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9}
            for a in api.dataset["annotations"]]


def test_coco_ap_is_one_for_perfect_boxes_and_51_of_101_for_one_hit_one_miss(tmp_path: Path) -> None:
    from pycocotools.cocoeval import COCOeval

    root = write_coco(tmp_path)
    api = detect.load_api(root / "annotations" / "instances_val2017.json")
    assert detect.coco_ap(api, perfect(api))["AP"] == pytest.approx(1.0)
    # One image, two red boxes: one found exactly (score .9), a false positive above the other (.8),
    # the second box missed. Precision is 1 up to recall .5 and 0 beyond: 51 of COCO's 101 recall
    # points, at every IoU threshold.
    gt = tmp_path / "one.json"
    write_annotations(gt, [{"id": 1, "height": 100, "width": 100, "file_name": "a.jpg"}],
                      [{"image_id": 1, "category_id": 1, "bbox": b, "area": 400, "iscrowd": 0}
                       for b in ([10, 10, 20, 20], [60, 60, 20, 20])])
    one = detect.load_api(gt)
    dets = [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "score": 0.9},
            {"image_id": 1, "category_id": 1, "bbox": [40, 5, 20, 20], "score": 0.8}]
    ours = detect.coco_ap(one, dets)
    assert ours["AP"] == pytest.approx(51 / 101) and ours["AP50"] == pytest.approx(51 / 101)
    direct = COCOeval(one, one.loadRes(dets), "bbox")
    direct.evaluate(), direct.accumulate(), direct.summarize()
    assert ours["AP"] == pytest.approx(direct.stats[0])
    assert detect.coco_ap(one, []) == {"AP": 0.0, "AP50": 0.0, "AP75": 0.0}


def test_lvis_ap_by_the_official_api(tmp_path: Path) -> None:
    pytest.importorskip("lvis")
    root = write_coco(tmp_path, lvis=True)
    api = detect.load_api(root / "lvis_v1_val.json")
    assert detect.lvis_ap(root / "lvis_v1_val.json", perfect(api))["AP"] == pytest.approx(1.0)


def test_readers_resolve_coco_and_lvis_images_and_name_what_is_missing(tmp_path: Path) -> None:
    coco = write_coco(tmp_path / "coco")
    lvis = write_coco(tmp_path / "lvis", lvis=True)
    for root, name, split in ((coco, "coco", "val2017"), (lvis, "lvis", "val2017")):
        _, val_json = detect.annotation_files(root, name)
        boxes = detect.BoxSet(detect.load_api(val_json), root, split, train=False)
        image, target, image_id = boxes[0]
        assert image.shape == (3, H, W) and target["labels"].tolist() == [1, 3]
        # XYWH annotations come out as XYXY
        x, y = 4 + image_id, 6
        assert target["boxes"][0].tolist() == [x, y, x + 20, y + 16]
    with pytest.raises(UserError, match="instances_train2017.json not found"):
        detect.annotation_files(lvis, "coco")
    (coco / "val2017" / "000000000006.jpg").unlink()
    with pytest.raises(UserError, match="000000000006.jpg not found"):
        detect.BoxSet(detect.load_api(coco / "annotations" / "instances_val2017.json"), coco, "val2017", train=False)


@pytest.mark.slow
def test_cpu_fcos_finetune_on_resnet18_runs_end_to_end(tmp_path: Path) -> None:
    root = write_coco(tmp_path)
    backbone = load_backbone("random", arch="resnet18", seed=0)
    config = Finetune(epochs=10, batch_size=2, lr=0.01, weight_decay=1e-4, max_steps=6, workers=0)
    metrics, losses, sizes = detect.evaluate(root, "coco", backbone.model, "resnet18", config, CPU,
                                             min_size=64, max_size=96)
    assert sizes == {"train": 4, "val": 2} and len(losses) == 6 and all(np.isfinite(losses))
    assert 0.0 <= metrics["AP"] <= 1.0


def test_predictions_become_coco_results_in_original_pixels(tmp_path: Path) -> None:
    root = write_coco(tmp_path)
    api = detect.load_api(root / "annotations" / "instances_val2017.json")
    val = detect.BoxSet(api, root, "val2017", train=False)
    truth = iter([val[i][1] for i in range(len(val))])

    class Oracle(torch.nn.Module):
        """Returns each image's ground truth as XYXY detections, like FCOS's postprocessed output."""

        def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
            return [{**(t := next(truth)), "scores": torch.full((len(t["labels"]),), 0.9)} for _ in images]

    results = detect.predict(Oracle(), val, CPU, workers=0)
    assert sorted(r["bbox"] for r in results) == sorted(a["bbox"] for a in api.dataset["annotations"])
    assert detect.coco_ap(api, results)["AP"] == pytest.approx(1.0)


@pytest.mark.slow
def test_detect_command_on_lvis_writes_a_result(tmp_path: Path) -> None:
    pytest.importorskip("lvis")
    from typer.testing import CliRunner

    from videonet.cli import app

    root = write_coco(tmp_path / "LVIS", lvis=True)
    args = ["eval", "detect", "random", str(root), "--dataset", "lvis", "--arch", "resnet18", "--steps", "2",
            "--batch-size", "2", "--min-size", "64", "--max-size", "96", "--workers", "0", "--device", "cpu",
            "--results-dir", str(tmp_path / "res")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "res" / "random__detect-lvis__LVIS.json").read_text())
    assert 0.0 <= saved["metrics"]["AP"] <= 1.0
