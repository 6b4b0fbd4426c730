"""ImageNet-A, ImageNet-Vid-Robust, ImageNet-3DCC and model-vs-human on tiny sets written in their official layouts.

The probe is a hand-made :class:`LinearHead` with zero weights and a bias, so every image gets the
same prediction and every metric can be computed by hand; one test trains a real probe with
``eval linear`` and feeds it to ``eval imagenet-a`` (the save/load path).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from evaldata import W1, W2, W3, W4, W5, constant_head, image
from videonet.cli import app
from videonet.errors import UserError
from videonet.evaluation import human, paper, robustness
from videonet.evaluation.backbone import load_backbone
from videonet.evaluation.finetune import Ranks
from videonet.evaluation.human_categories import HUMAN_CATEGORIES
from videonet.evaluation.linear import LinearHead

pytestmark = pytest.mark.usefixtures("one_thread")  # one torch thread (tests/conftest.py)

CPU = torch.device("cpu")
@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return load_backbone("random", arch="resnet18").model


def test_imagenet_a_restricts_the_logits_to_its_classes(tmp_path: Path, model: torch.nn.Module) -> None:
    for wnid, n in ((W1, 1), (W2, 3), (W3, 2)):  # 6 images; the 200-class subset here is {W1, W2, W3}
        for i in range(n):
            image(tmp_path / "imagenet-a" / wnid / f"{i}.jpg")
    # W5 wins over all 1000 classes but is not an ImageNet-A class; among W1-W3, W2 wins: 3 of 6 right.
    head = constant_head([W1, W2, W3, W4, W5], [0.0, 2.0, 1.0, 0.0, 9.0])
    metrics = robustness.imagenet_a(tmp_path / "imagenet-a", model, head, CPU, crop_size=32, workers=0)
    assert metrics == {"top1": 0.5, "images": 6.0}
    with pytest.raises(UserError, match="no class n01491361"):
        image(tmp_path / "imagenet-a" / W4 / "0.jpg")
        robustness.imagenet_a(tmp_path / "imagenet-a", model, constant_head([W1, W2, W3], [0, 0, 0]), CPU, 32, workers=0)


def write_vid_robust(root: Path) -> Path:
    """Three anchors: a (class 0, pm-set all class 0), b (class 0, one pm frame of class 1), c (class 1)."""
    frames = {"val/a/0.JPEG": [0], "val/a/1.JPEG": [0], "val/a/2.JPEG": [0, 1],
              "val/b/0.JPEG": [0], "val/b/1.JPEG": [1], "val/c/0.JPEG": [1], "val/c/1.JPEG": [1]}
    for rel in frames:
        image(root / rel)
    (root / "metadata").mkdir()
    (root / "misc").mkdir()
    (root / "metadata" / "labels.json").write_text(json.dumps(frames))
    pmsets = {"val/a/0.JPEG": ["val/a/1.JPEG", "val/a/2.JPEG"], "val/b/0.JPEG": ["val/b/1.JPEG"],
              "val/c/0.JPEG": ["val/c/1.JPEG"]}
    (root / "metadata" / "pmsets.json").write_text(json.dumps(pmsets))
    (root / "misc" / "imagenet_vid_class_index.json").write_text(json.dumps({"0": ["n02691156", "airplane"],
                                                                             "1": ["n02419796", "antelope"]}))
    (root / "misc" / "rev_wnid_map.json").write_text(json.dumps({"n02691156": [W1, W2], "n02419796": [W3]}))
    return root


def test_vid_robust_pm0_and_pm10_as_the_authors_score(tmp_path: Path, model: torch.nn.Module) -> None:
    root = write_vid_robust(tmp_path / "imagenet-vid-robust")
    # An index entry that rev_wnid_map does not map (the real file may hold one) is left out.
    index = json.loads((root / "misc" / "imagenet_vid_class_index.json").read_text())
    (root / "misc" / "imagenet_vid_class_index.json").write_text(json.dumps({**index, "2": ["n00000001", "extra"]}))
    # Every frame is predicted class 0 (W2 is the top logit): anchors a and b right (pm0 2/3); only
    # a's whole pm-set is right (b's second frame is class 1): pm10 1/3.
    head = constant_head([W1, W2, W3], [0.0, 3.0, 1.0])
    metrics = robustness.imagenet_vid_robust(root, model, head, CPU, crop_size=32, workers=0)
    assert metrics == pytest.approx({"pm0": 2 / 3, "pm10": 1 / 3, "anchors": 3.0})
    # The class score is the max over its ImageNet classes, not their mean or sum.
    logits = torch.tensor([[5.0, -9.0, 4.0], [1.0, 1.0, 1.5]])
    scores = robustness.project_max(logits, [torch.tensor([0, 1]), torch.tensor([2])])
    torch.testing.assert_close(scores, torch.tensor([[5.0, 4.0], [1.0, 1.5]]))
    labels = json.loads((root / "metadata" / "labels.json").read_text())
    (root / "metadata" / "labels.json").write_text(json.dumps({**labels, "val/c/1.JPEG": [2]}))
    with pytest.raises(UserError, match=r"vid classes \[2\] that rev_wnid_map.json does not map"):
        robustness.read_vid_robust(root)


def write_3dcc(root: Path) -> Path:
    """fog_3d severities 1 and 3, near_focus 1 (paper set) and iso_noise 1 (release, not the paper's)."""
    for corruption, severity, wnids in (("fog_3d", 1, [W1, W1, W2, W2]), ("fog_3d", 3, [W1]), ("near_focus", 1, [W2]),
                                        ("iso_noise", 1, [W1, W1, W1])):
        for i, wnid in enumerate(wnids):
            image(root / corruption / str(severity) / wnid / f"{i}.JPEG")
    return root


def test_3dcc_scores_the_papers_3d_set_by_default(tmp_path: Path, model: torch.nn.Module) -> None:
    root = write_3dcc(tmp_path / "3dcc")
    head = constant_head([W1, W2], [1.0, 0.0])  # always W1: fog 1 -> 0.5, fog 3 -> 1, near_focus 1 -> 0, iso_noise 1 -> 1
    result = robustness.imagenet_3dcc(root, model, head, CPU, crop_size=32, workers=0)
    assert result.table == {"fog_3d": {1: 0.5, 3: 1.0}, "near_focus": {1: 0.0}}  # iso_noise is not a 3-D corruption
    assert result.metrics() == pytest.approx({"top1": 0.5, "top1_s1": 0.25, "top1_s3": 1.0, "top1_fog_3d": 0.75,
                                              "top1_near_focus": 0.0})
    # Every corruption of the paper's set that the root lacks, and every missing severity, is named.
    assert result.missing == ["near_focus/2", "near_focus/3", "near_focus/4", "near_focus/5", "far_focus",
                              "fog_3d/2", "fog_3d/4", "fog_3d/5", "flash", "xy_motion_blur", "z_motion_blur"]
    everything = robustness.imagenet_3dcc(root, model, head, CPU, robustness.select_corruptions("all"), crop_size=32,
                                          workers=0)
    assert everything.metrics()["top1"] == pytest.approx((0.5 + 1.0 + 0.0 + 1.0) / 4)
    # Clean ImageNet val: 3 of 4 right (0.75); each metric also as its change from clean.
    for i, wnid in enumerate([W1, W1, W1, W2]):
        image(tmp_path / "val" / wnid / f"{i}.JPEG")
    with_clean = robustness.imagenet_3dcc(root, model, head, CPU, clean=tmp_path / "val", crop_size=32, workers=0)
    metrics = with_clean.metrics()
    assert metrics["clean_top1"] == 0.75 and metrics["delta_top1"] == pytest.approx(-0.25)
    assert metrics["delta_top1_s3"] == pytest.approx(0.25) and metrics["delta_top1_near_focus"] == pytest.approx(-0.75)
    out = robustness.plot_by_severity(with_clean, tmp_path / "plot.png", "test")
    assert np.asarray(Image.open(out).convert("L")).std() > 10


def test_3dcc_corruption_sets_are_the_releases_folder_names() -> None:
    assert robustness.select_corruptions("3d") == ("near_focus", "far_focus", "fog_3d", "flash", "xy_motion_blur",
                                                   "z_motion_blur")
    assert len(robustness.select_corruptions("all")) == 12
    assert robustness.select_corruptions("flash, low_light") == ("flash", "low_light")
    with pytest.raises(UserError, match="view_jitter not in ImageNet-3DCC"):
        robustness.select_corruptions("fog_3d,view_jitter")


def test_error_consistency_matches_a_hand_computation() -> None:
    # p1 = 0.5, p2 = 0.25: c_exp = 0.5*0.25 + 0.5*0.75 = 0.5; they agree on 3 of 4 trials: kappa = 0.5.
    got = human.error_consistency(np.array([1, 1, 0, 0], bool), np.array([1, 0, 0, 0], bool))
    assert got == pytest.approx({"accuracy_difference": 0.0625, "observed_consistency": 0.75, "error_consistency": 0.5})
    assert human.error_consistency(np.array([1, 0], bool), np.array([1, 0], bool))["error_consistency"] == 1.0
    assert human.short_imagename("0001_lp_s01_40_chair_10_n04099969_7577.png") == "n04099969_7577.png"
    assert human.short_imagename("0001_edg_s01_0_oven_00_oven10.png") == "oven10.png"


def write_model_vs_human(root: Path) -> Path:
    """edge: 4 images (2 cats, 2 dogs) and two subjects; low-pass: one kept and one excluded condition."""
    names = ["cat1", "cat2", "dog1", "dog2"]
    for n in names:
        image(root / "datasets" / "edge" / n[:3] / f"{n}.png")
    responses = {"subject-01": ["cat", "dog", "dog", "dog"], "subject-02": ["cat", "dog", "dog", "cat"]}
    for subject, answers in responses.items():
        (root / "raw-data" / "edge").mkdir(parents=True, exist_ok=True)
        rows = ["subj,session,trial,rt,object_response,category,condition,imagename"]
        rows += [f"{subject},1,{i + 1},0.9,{a},{n[:3]},0,{i + 1:04d}_edg_s01_0_{n[:3]}_00_{n}.png"
                 for i, (n, a) in enumerate(zip(names, answers))]
        (root / "raw-data" / "edge" / f"edge_{subject}_session_1.csv").write_text("\n".join(rows) + "\n")
    # low-pass: condition 3 (kept) and 40 (excluded by model-vs-human); the model is right on both cat images.
    lp_rows = ["subj,Session,trial,rt,object_response,category,condition,imagename"]
    for j, (condition, wnid_img) in enumerate((("3", "n02123045_1"), ("40", "n02123045_2"))):
        image(root / "datasets" / "low-pass" / "dnn" / "session-1" / f"{j + 1:04d}_lp_dnn_{condition}_cat_10_{wnid_img}.png")
        for s, answer in (("01", "cat"), ("02", "dog" if condition == "40" else "cat")):
            lp_rows.append(f"subject-{s},1,{j + 1},0.8,{answer},cat,{condition},{j + 1:04d}_lp_s{s}_{condition}_cat_10_{wnid_img}.png")
    (root / "raw-data" / "low-pass").mkdir(parents=True)
    for s in ("01", "02"):
        rows = [lp_rows[0]] + [r for r in lp_rows[1:] if r.startswith(f"subject-{s}")]
        (root / "raw-data" / "low-pass" / f"low-pass_subject-{s}_session_1.csv").write_text("\n".join(rows) + "\n")
    return root


def cat_head() -> LinearHead:
    """One wnid per model-vs-human category, the cat's logit highest: every image is called 'cat'."""
    categories = sorted(HUMAN_CATEGORIES)
    return constant_head([HUMAN_CATEGORIES[c][0] for c in categories], [5.0 if c == "cat" else 0.0 for c in categories])


def test_model_vs_human_against_hand_computed_consistency(tmp_path: Path, model: torch.nn.Module) -> None:
    root = write_model_vs_human(tmp_path / "mvh")
    metrics = human.model_vs_human(root, model, cat_head(), CPU, ("edge",), crop_size=32, workers=0)
    # Trials sorted by image id: cat1, cat2, dog1, dog2. Model (always cat): right, right, wrong, wrong.
    # Subject 1 [1,0,1,1]: c_obs 1/4, c_exp .5*.75+.5*.25 = .5, kappa -.5, acc diff (.5-.75)^2 = .0625.
    # Subject 2 [1,0,1,0]: c_obs 2/4, c_exp .5, kappa 0, acc diff 0.
    # Subjects 1 vs 2: c_obs 3/4, c_exp .75*.5+.25*.5 = .5, kappa .5 (the ceiling).
    expected = {"accuracy": 0.5, "accuracy_difference": 0.03125, "observed_consistency": 0.375,
                "error_consistency": -0.25, "error_consistency_human": 0.5, "error_consistency_over_human": -0.5}
    assert {k: metrics[k] for k in expected} == pytest.approx(expected)
    assert metrics["edge/error_consistency"] == pytest.approx(-0.25)
    # low-pass: only condition 3 counts (40 is excluded as in model-vs-human): model and both humans right.
    lp = human.model_vs_human(root, model, cat_head(), CPU, ("low-pass",), crop_size=32, workers=0)
    assert lp["accuracy"] == 1.0 and lp["observed_consistency"] == 1.0 and lp["error_consistency"] == 1.0


def test_cli_linear_saves_the_head_that_robustness_and_human_commands_read(tmp_path: Path) -> None:
    for split, n in (("train", 3), ("val", 1)):
        for wnid, colour in ((W1, (230, 20, 20)), (W2, (20, 20, 230))):
            for i in range(n):
                image(tmp_path / "imagenet" / split / wnid / f"{i}.jpg", colour)
    res = tmp_path / "res"
    common = ["--arch", "resnet18", "--crop-size", "32", "--workers", "0", "--device", "cpu", "--results-dir", str(res)]
    result = CliRunner().invoke(app, ["eval", "linear", "random", str(tmp_path / "imagenet"), "--lrs", "0.1",
                                      "--epochs", "2", *common])
    assert result.exit_code == 0, result.output + repr(result.exception)
    head_path = res / "linear-heads" / "random.pt"
    assert LinearHead.load(head_path, 512).classes == [W1, W2]
    for wnid in (W1, W2):
        image(tmp_path / "imagenet-a" / wnid / "0.jpg")
    result = CliRunner().invoke(app, ["eval", "imagenet-a", "random", str(tmp_path / "imagenet-a"), "--head",
                                      str(head_path), *common])
    assert result.exit_code == 0, result.output + repr(result.exception)
    record = json.loads((res / "random__imagenet-a__imagenet-a.json").read_text())
    assert record["metrics"]["top1"] in (0.0, 0.5, 1.0) and record["config"]["head"] == str(head_path)
    constant_head([W1, W2, W3], [0.0, 1.0, 0.0], tmp_path / "const.pt")
    write_vid_robust(tmp_path / "vid")
    result = CliRunner().invoke(app, ["eval", "imagenet-vid", "random", str(tmp_path / "vid"), "--head",
                                      str(tmp_path / "const.pt"), *common])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert json.loads((res / "random__imagenet-vid__vid.json").read_text())["metrics"]["pm0"] == pytest.approx(2 / 3)
    result = CliRunner().invoke(app, ["eval", "imagenet-3dcc", "random", str(tmp_path / "imagenet"), "--head",
                                      str(head_path), *common])
    assert result.exit_code != 0 and "not ImageNet-3DCC" in str(result.exception)
    write_3dcc(tmp_path / "3dcc")
    result = CliRunner().invoke(app, ["eval", "imagenet-3dcc", "random", str(tmp_path / "3dcc"), "--head",
                                      str(head_path), "--corruptions", "fog_3d,flash", *common])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "imagenet-3dcc: not in " in result.output and "left out: fog_3d/2, fog_3d/4, fog_3d/5, flash\n" in result.output
    record = json.loads((res / "random__imagenet-3dcc__3dcc.json").read_text())
    assert set(record["config"]["by_severity"]) == {"fog_3d"} and record["config"]["corruptions"] == ["fog_3d", "flash"]
    write_model_vs_human(tmp_path / "mvh")
    cat_head().save(tmp_path / "cat.pt")
    result = CliRunner().invoke(app, ["eval", "model-vs-human", "random", str(tmp_path / "mvh"), "--datasets", "edge",
                                      "--head", str(tmp_path / "cat.pt"), *common])
    assert result.exit_code == 0, result.output + repr(result.exception)
    result = CliRunner().invoke(app, ["eval", "summary", str(res)])
    assert "imagenet-vid/vid:pm10" in result.output and "model-vs-human/mvh:error_consistency_over_human" in result.output


def test_paper_fills_imagenet_a_and_vid_from_the_linear_head(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_vid_robust(data / "imagenet-vid-robust")
    for wnid in (W1, W2):
        image(data / "imagenet-a" / wnid / "0.jpg")
    with pytest.raises(UserError, match="--linear-head"):
        paper.check_layouts(data)
    constant_head([W1, W2, W3], [0.0, 1.0, 0.0], tmp_path / "head.pt")
    opts = paper.PaperOptions(arch="resnet18", workers=0, linear_head=tmp_path / "head.pt")
    results = paper.run_paper(load_backbone("random", arch="resnet18"), data, "r18", opts, Ranks(0, 1, CPU))
    header, rows = paper.tables("r18", results)["Table 1"]
    ours = {row[0]: row[1] for row in rows}
    assert ours["IN-A top-1"] == "50.0" and ours["IN-Vid pm0"] == "66.7" and ours["IN-Vid pm10"] == "33.3"


def write_all_shape_bias(root: Path) -> Path:
    """model-vs-human's four shape-bias datasets: cue-conflict laid out as edge, uniform-noise as low-pass."""
    import shutil

    write_model_vs_human(root)
    for source, target in (("edge", "cue-conflict"), ("low-pass", "uniform-noise")):
        shutil.copytree(root / "datasets" / source, root / "datasets" / target)
        (root / "raw-data" / target).mkdir()
        for csv_file in (root / "raw-data" / source).glob("*.csv"):
            (root / "raw-data" / target / csv_file.name.replace(source, target)).write_text(csv_file.read_text())
    return root


def test_paper_sets_model_vs_human_beside_table_3(tmp_path: Path, model: torch.nn.Module) -> None:
    cat_head().save(tmp_path / "cat.pt")
    write_model_vs_human(tmp_path / "partial" / "model-vs-human")
    with pytest.raises(UserError, match="cue-conflict"):  # the paper's four datasets, all of them
        paper.check_layouts(tmp_path / "partial", tmp_path / "cat.pt")
    data = tmp_path / "data"
    root = write_all_shape_bias(data / "model-vs-human")
    opts = paper.PaperOptions(arch="resnet18", workers=0, linear_head=tmp_path / "cat.pt")
    results = paper.run_paper(load_backbone("random", arch="resnet18"), data, "r18", opts, Ranks(0, 1, CPU))
    direct = human.model_vs_human(root, model, cat_head(), CPU, workers=0)
    header, rows = paper.tables("r18", results)["Human alignment, model-vs-human (Table 3)"]
    table = {row[0]: dict(zip(header, row)) for row in rows}
    ec = table["EC / human EC (paper: ceiled EC)"]
    assert float(ec["r18"]) == pytest.approx(direct["error_consistency_over_human"], abs=5e-4)
    assert ec["VITO (VideoNet) (paper)"] == "0.422" and ec["R3M (Ego4D)"] == "0.054"  # fractions, as Table 3
    assert float(ec["difference to the paper"]) == pytest.approx(direct["error_consistency_over_human"] - 0.422, abs=5e-4)
    assert float(table["observed consistency"]["r18"]) == pytest.approx(direct["observed_consistency"], abs=5e-4)
