"""The shared torch plumbing: weights through any Beam filesystem, one-line errors, ResNet detection, devices.

Remote paths are ``vntest://`` URLs of :mod:`remotefs`, a Beam filesystem that is not the local
one, so these tests fail if a reader or writer treats a URL as a local path (as ``gs://`` would
be on a machine without the bucket).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from torchvision import models
from typer.testing import CliRunner

import remotefs
from videonet.errors import UserError
from videonet.evaluation.backbone import load_backbone
from videonet.torch_utils import (
    detect_arch, forward_stages, load_state_dict, read_backbone, resolve_device, scaled_size, stage_channels,
    torch_device, write_backbone,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # one torch thread (tests/conftest.py)


@pytest.fixture
def remote_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The local directory behind ``vntest://``."""
    root = tmp_path / "remote"
    root.mkdir()
    monkeypatch.setenv(remotefs.ROOT_ENV, str(root))
    return root


def assert_same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_state_dict_through_a_non_local_beam_filesystem(remote_root: Path) -> None:
    torch.manual_seed(0)
    state = models.resnet18().state_dict()
    (remote_root / "weights").mkdir()
    torch.save(state, remote_root / "weights" / "plain.pt")
    torch.save({"state_dict": state, "epoch": 3}, remote_root / "weights" / "wrapped.pt")

    assert_same_state(load_state_dict(remotefs.url("weights/plain.pt")), state)
    assert_same_state(load_state_dict(remotefs.url("weights/wrapped.pt")), state)  # {"state_dict": ...} unwrapped


def test_backbone_written_and_read_remotely_is_the_same_network(remote_root: Path) -> None:
    torch.manual_seed(1)
    net = models.resnet18()
    write_backbone(net, remotefs.url("run/backbone.pt"))
    assert (remote_root / "run" / "backbone.pt").is_file()
    assert not any(k.startswith("fc.") for k in torch.load(remote_root / "run" / "backbone.pt", weights_only=True))

    model, arch = read_backbone(remotefs.url("run/backbone.pt"))
    net.fc = torch.nn.Identity()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), net.eval()(x))
    assert arch == "resnet18"
    # The eval CHECKPOINT spec takes the remote run dir (a prefix holding backbone.pt) like a local one.
    loaded = load_backbone(remotefs.url("run"))
    assert (loaded.arch, loaded.name, loaded.source) == ("resnet18", "run", remotefs.url("run"))
    assert_same_state(loaded.model.state_dict(), model.state_dict())


def test_train_export_reads_and_writes_a_remote_run(remote_root: Path) -> None:
    from videonet.cli import app
    from videonet.vito.model import load_exported
    from videonet.vito.train import CHECKPOINT_FORMAT, TrainConfig

    cfg = TrainConfig(data="unused", out="unused", arch="resnet18", proj_hidden=32, proj_dim=8)
    torch.manual_seed(2)
    online = cfg.build_online()
    (remote_root / "run").mkdir()
    torch.save({"format": CHECKPOINT_FORMAT, "step": 1, "config": asdict(cfg), "online": online.state_dict(),
                "target": online.net.state_dict()}, remote_root / "run" / "checkpoint.pt")

    result = CliRunner().invoke(app, ["train", "--export", remotefs.url("run")])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert f"wrote {remotefs.url('run/backbone.pt')}" in result.output
    backbone, pool = load_exported(remotefs.url("run/backbone.pt"), remotefs.url("run/attention.pt"))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(pool.eval()(backbone.eval()(x)), online.net.eval().represent(x))


def test_unreadable_files_fail_in_one_line_naming_the_path(tmp_path: Path, remote_root: Path) -> None:
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    torch.save(["a", "list"], tmp_path / "list.pt")
    torch.save({"conv.weight": torch.zeros(1), "note": "text"}, tmp_path / "mixed.pt")
    cases = {
        str(tmp_path / "missing.pt"): "cannot read weights .*missing.pt",
        remotefs.url("missing.pt"): "cannot read weights vntest://missing.pt",
        "nobeamfs://bucket/missing.pt": "cannot read weights nobeamfs://bucket/missing.pt",
        str(tmp_path / "garbage.pt"): "cannot read weights .*garbage.pt: not a torch state dict",
        str(tmp_path / "list.pt"): "weights .*list.pt is not a state dict of tensors",
        str(tmp_path / "mixed.pt"): "weights .*mixed.pt is not a state dict of tensors",
    }
    for path, message in cases.items():
        with pytest.raises(UserError, match=message) as info:
            load_state_dict(path)
        assert "\n" not in str(info.value), path


def test_http_weights_come_through_the_torch_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from localserver import serve

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    state = {"w": torch.arange(4.0)}
    (tmp_path / "served").mkdir()
    torch.save(state, tmp_path / "served" / "tiny.pth")
    base, stop = serve(tmp_path / "served", [])
    try:
        assert_same_state(load_state_dict(f"{base}/tiny.pth"), state)
        with pytest.raises(UserError, match=f"cannot download weights {base}/missing.pth: HTTP Error 404") as info:
            load_state_dict(f"{base}/missing.pth")
        assert "\n" not in str(info.value)
    finally:
        stop()
    assert (tmp_path / "torch" / "hub" / "checkpoints" / "tiny.pth").is_file()
    assert_same_state(load_state_dict(f"{base}/tiny.pth"), state)  # server gone: read from the cache


def test_detect_arch_from_keys() -> None:
    assert detect_arch(models.resnet18().state_dict()) == "resnet18"
    r50 = {k: v for k, v in models.resnet50().state_dict().items() if not k.startswith("fc.")}
    assert detect_arch(r50) == "resnet50"
    with pytest.raises(UserError, match="not a torchvision ResNet"):
        detect_arch({"features.0.weight": torch.zeros(1)})


@pytest.mark.parametrize("arch, widths", [("resnet18", [64, 128, 256, 512]), ("resnet50", [256, 512, 1024, 2048])])
def test_stage_channels_and_forward_stages(arch: str, widths: list[int]) -> None:
    model = getattr(models, arch)().eval()
    assert [stage_channels(model, layer) for layer in ("layer1", "layer2", "layer3", "layer4")] == widths
    with torch.no_grad():
        maps = forward_stages(model, torch.randn(1, 3, 64, 64), ["layer2", "layer4"])
    shapes = {k: tuple(v.shape) for k, v in maps.items()}
    assert shapes == {"layer2": (1, widths[1], 8, 8), "layer4": (1, widths[3], 2, 2)}
    with pytest.raises(ValueError, match="unknown layers"):
        forward_stages(model, torch.randn(1, 3, 64, 64), ["layer5"])


def test_device_choice_and_its_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu" and resolve_device("cpu") == "cpu"
    assert torch_device("auto") == torch.device("cpu")
    for device in ("cuda", "cuda:1"):
        with pytest.raises(UserError, match="--device cuda asked for, but no CUDA device is available"):
            resolve_device(device)
    with pytest.raises(UserError, match="expected auto, cpu or cuda"):
        torch_device("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda" and torch_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(UserError, match="--device 'cuda:x'") as info:
        torch_device("cuda:x")
    assert "\n" not in str(info.value)


def test_scaled_size_keeps_aspect_with_short_side() -> None:
    assert scaled_size(640, 480) == (341, 256)
    assert scaled_size(480, 640, short_side=128) == (128, 171)
    assert scaled_size(100, 100) == (256, 256)
