"""UCF-101 clip sampling, pooling heads and finetuning end to end on synthetic videos in the official layout."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from torchvision import models
from typer.testing import CliRunner

from videonet.cli import app
from videonet.evaluation.ucf101 import (
    POOLINGS,
    ClipClassifier,
    ClipConfig,
    TrainConfig,
    clip_indices,
    decode_video,
    read_split,
)
from videonet.torch_utils import forward_stages

pytestmark = pytest.mark.usefixtures("one_thread")  # one torch thread (tests/conftest.py)

FPS = 25


def write_video(path: Path, frames: list[np.ndarray]) -> None:
    """Encode RGB frames as an MPEG-4 .avi at 25 fps (the codec and container UCF-101 uses)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=FPS)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = 4_000_000
        for array in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def grey_ramp_video(path: Path, n: int = 75) -> None:
    """Frame i is uniformly grey with level 3*i, so a decoded frame tells which source frame it is."""
    write_video(path, [np.full((48, 64, 3), 3 * i, np.uint8) for i in range(n)])


def test_clips_are_2s_at_12fps_from_the_right_source_frames(tmp_path: Path) -> None:
    grey_ramp_video(tmp_path / "ramp.avi")
    frames, times = decode_video(tmp_path / "ramp.avi", short_side=24)
    assert frames.shape == (75, 24, 32, 3)  # decoder-side resize keeps the aspect ratio
    np.testing.assert_allclose(times, np.arange(75) / FPS, atol=1e-6)
    config = ClipConfig()
    assert config.frames == 24
    idx = clip_indices(times, start=0.5, config=config)
    # Sample j is shown at 0.5 + j/12 s: source frame floor(25 * (0.5 + j/12)).
    np.testing.assert_array_equal(idx, [int(np.floor(FPS * (0.5 + j / 12) + 1e-6)) for j in range(24)])
    levels = frames[idx].mean(axis=(1, 2, 3))
    np.testing.assert_allclose(levels, 3 * idx, atol=4)  # the decoded pixels really are those frames
    # A clip running past the end of a 3 s video repeats the last frame.
    assert clip_indices(times, start=2.5, config=config)[-1] == 74


def test_split_lists_are_parsed(tmp_path: Path) -> None:
    lists = tmp_path / "ucfTrainTestlist"
    lists.mkdir()
    (lists / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 Archery\n")
    (lists / "trainlist01.txt").write_text("Archery/v_Archery_g08_c01.avi 2\nApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\n")
    (lists / "testlist01.txt").write_text("Archery/v_Archery_g01_c01.avi\n")
    split = read_split(tmp_path, 1)
    assert split.classes == ["ApplyEyeMakeup", "Archery"]
    assert split.train == [("Archery/v_Archery_g08_c01.avi", 1), ("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi", 0)]
    assert split.test == [("Archery/v_Archery_g01_c01.avi", 1)]


@pytest.mark.parametrize("pooling", POOLINGS)
def test_pooling_heads_train_end_to_end(pooling: str) -> None:
    torch.manual_seed(0)
    model = ClipClassifier(models.resnet18(), num_classes=5, pooling=pooling)
    logits = model(torch.randn(2, 3, 3, 32, 32))  # 2 clips of 3 frames
    assert logits.shape == (2, 5)
    logits.sum().backward()
    assert model.backbone.conv1.weight.grad is not None  # finetuned, not frozen
    # resnet18: layer3 256-d, layer4 512-d. The paper's multiscale head: layer3 twice (two halves) + layer4.
    expected_dim = {"avg": 512, "multiscale": 2 * 256 + 512, "temporal-attention": 256 + 512,
                    "multiscale-concat": 256 + 512, "temporal-attention-linear": 512}[pooling]
    assert model.head.in_features == expected_dim
    if pooling == "temporal-attention-linear":
        assert model.time_score.weight.grad is not None
    if pooling == "temporal-attention":
        assert all(isinstance(a.score[1], torch.nn.Tanh) and a.score[0].weight.grad is not None for a in model.attention)


def test_multiscale_pools_layer3_over_each_half_of_the_clip() -> None:
    torch.manual_seed(0)
    model = ClipClassifier(models.resnet18(), num_classes=2, pooling="multiscale").eval()
    captured = {}
    model.head.register_forward_hook(lambda mod, inp, out: captured.setdefault("x", inp[0]))
    clips = torch.randn(1, 4, 3, 32, 32)
    with torch.no_grad():
        model(clips)
        layer3 = forward_stages(model.backbone, clips[0], ["layer3"])["layer3"].mean(dim=(2, 3))  # (4 frames, 256)
    torch.testing.assert_close(captured["x"][0, :256], layer3[:2].mean(dim=0))  # frames 0-1: the first second
    torch.testing.assert_close(captured["x"][0, 256:512], layer3[2:].mean(dim=0))  # frames 2-3: the second


def test_paper_schedule_is_adam_with_drops_at_6_10_14() -> None:
    config = TrainConfig.for_schedule("paper")
    assert (config.epochs, config.lr) == (16, 1e-4)
    opt, sched, per_step = config.optimizer([torch.nn.Parameter(torch.zeros(1))], steps_per_epoch=5)
    assert isinstance(opt, torch.optim.Adam) and not per_step
    lrs = []
    for _ in range(16):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:6] == [1e-4] * 6 and lrs[6:10] == pytest.approx([1e-5] * 4)
    assert lrs[10:14] == pytest.approx([1e-6] * 4) and lrs[14:] == pytest.approx([1e-7] * 2)
    old = TrainConfig.for_schedule("sgd-cosine", epochs=2)
    assert (old.epochs, old.lr, old.weight_decay) == (2, 0.01, 1e-4)
    assert isinstance(old.optimizer([torch.nn.Parameter(torch.zeros(1))], 5)[0], torch.optim.SGD)


def write_ucf(root: Path) -> Path:
    """Two classes told apart by colour (red vs blue moving square on grey), 2 train videos and 1 test video each."""
    classes = ["RedThing", "BlueThing"]
    lists = root / "ucfTrainTestlist"
    lists.mkdir(parents=True)
    (lists / "classInd.txt").write_text("".join(f"{i + 1} {c}\n" for i, c in enumerate(classes)))
    train, test = [], []
    for label, cls in enumerate(classes):
        colour = (220, 30, 30) if label == 0 else (30, 30, 220)
        for g in range(3):
            frames = []
            for t in range(30):
                f = np.full((48, 64, 3), 128, np.uint8)
                f[10:34, 2 + t : 26 + t] = colour
                frames.append(f)
            rel = f"{cls}/v_{cls}_g{g + 1:02d}_c01.avi"
            write_video(root / "UCF-101" / rel, frames)
            (train if g < 2 else test).append(rel)
    (lists / "trainlist01.txt").write_text("".join(f"{r} {1 + classes.index(r.split('/')[0])}\n" for r in train))
    (lists / "testlist01.txt").write_text("".join(r + "\n" for r in test))
    return root


@pytest.mark.slow
def test_cli_ucf101_finetunes_and_records_top1(tmp_path: Path) -> None:
    root = write_ucf(tmp_path / "ucf")
    args = ["eval", "ucf101", "random", str(root), "--arch", "resnet18", "--pooling", "temporal-attention",
            "--epochs", "2", "--batch-size", "2", "--fps", "4", "--seconds", "1", "--test-clips", "2",
            "--resize", "32", "--crop-size", "32", "--workers", "0", "--device", "cpu", "--results-dir", str(tmp_path / "res")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    record = json.loads((tmp_path / "res" / "random__ucf101-temporal-attention__ucf.json").read_text())
    assert record["config"]["fps"] == 4.0 and record["config"]["test_clips"] == 2
    assert record["config"]["schedule"] == "paper" and record["config"]["lr"] == 1e-4
    # Video-level accuracy over the 2 test videos (a few steps from random init cannot promise more).
    assert record["config"]["test_videos"] == 2 and record["metrics"]["top1"] in (0.0, 0.5, 1.0)


def test_cli_ucf101_missing_layout(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["eval", "ucf101", "random", str(tmp_path)])
    assert result.exit_code != 0 and "UCF-101" in str(result.exception)
