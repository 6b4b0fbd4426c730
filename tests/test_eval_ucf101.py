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

from test_eval_backbone import one_thread  # noqa: F401  (autouse: one torch thread)
from videonet.cli import app
from videonet.evaluation.ucf101 import POOLINGS, ClipClassifier, ClipConfig, clip_indices, decode_video, read_split

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
    expected_dim = 256 + 512 if pooling == "multiscale" else 512
    assert model.head.in_features == expected_dim
    if pooling == "temporal-attention":
        assert model.time_score.weight.grad is not None


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


def test_cli_ucf101_finetunes_and_records_top1(tmp_path: Path) -> None:
    root = write_ucf(tmp_path / "ucf")
    args = ["eval", "ucf101", "random", str(root), "--arch", "resnet18", "--pooling", "temporal-attention",
            "--epochs", "2", "--batch-size", "2", "--lr", "0.05", "--fps", "4", "--seconds", "1", "--test-clips", "2",
            "--resize", "32", "--crop-size", "32", "--workers", "0", "--device", "cpu", "--results-dir", str(tmp_path / "res")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    record = json.loads((tmp_path / "res" / "random__ucf101-temporal-attention__ucf.json").read_text())
    assert record["config"]["fps"] == 4.0 and record["config"]["test_clips"] == 2
    # Video-level accuracy over the 2 test videos (a few steps from random init cannot promise more).
    assert record["config"]["test_videos"] == 2 and record["metrics"]["top1"] in (0.0, 0.5, 1.0)


def test_cli_ucf101_missing_layout(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["eval", "ucf101", "random", str(tmp_path)])
    assert result.exit_code != 0 and "UCF-101" in str(result.exception)
