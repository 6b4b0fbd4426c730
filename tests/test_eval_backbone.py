"""Checkpoint loading (every accepted spec and the one-line errors) and layer access of the eval backbone."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchvision import models

from videonet.errors import UserError
from videonet.evaluation.backbone import load_backbone, remove_stride
from videonet.torch_utils import forward_stages

pytestmark = pytest.mark.usefixtures("one_thread")  # one torch thread (tests/conftest.py)


def save_state(model: torch.nn.Module, path: Path, drop_fc: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v for k, v in model.state_dict().items() if not (drop_fc and k.startswith("fc."))}, path)
    return path


def features(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)


def test_state_dict_file_and_run_dir_load_the_same_weights_as_random_init(tmp_path: Path) -> None:
    torch.manual_seed(3)
    reference = models.resnet18()
    path = save_state(reference, tmp_path / "run" / "backbone.pt")
    x = torch.randn(2, 3, 64, 64)
    from_random = load_backbone("random", arch="resnet18", seed=3)
    from_file = load_backbone(str(path))
    from_dir = load_backbone(str(tmp_path / "run"))
    assert from_file.arch == from_dir.arch == "resnet18" and from_file.feature_dim == 512
    assert from_dir.name == from_file.name == "run" and from_random.name == "random"
    # fc is dropped: the model returns the 512-d pooled features, identical for all three specs.
    torch.testing.assert_close(features(from_file.model, x), features(from_random.model, x))
    torch.testing.assert_close(features(from_dir.model, x), features(from_random.model, x))
    assert features(from_file.model, x).shape == (2, 512)
    # A different seed is a different network.
    assert not torch.allclose(features(load_backbone("random", arch="resnet18", seed=4).model, x), features(from_file.model, x))


def test_bad_checkpoints_fail_with_one_line(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = models.resnet18()
    incomplete = {k: v for k, v in net.state_dict().items() if k != "layer2.0.bn1.weight"}
    torch.save(incomplete, tmp_path / "incomplete.pt")
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    (tmp_path / "empty_run").mkdir()
    save_state(net, tmp_path / "r18.pt")
    cases = {
        str(tmp_path / "incomplete.pt"): "does not match torchvision resnet18: e.g. layer2.0.bn1.weight",
        str(tmp_path / "garbage.pt"): "cannot read checkpoint",
        str(tmp_path / "empty_run"): "has no backbone.pt",
        str(tmp_path / "missing.pt"): "not found",
        "ResNet50_Weights.NOPE": "unknown checkpoint",
    }
    for spec, message in cases.items():
        with pytest.raises(UserError, match=message) as info:
            load_backbone(spec)
        assert "\n" not in str(info.value)
    with pytest.raises(UserError, match="holds a resnet18, not the requested --arch resnet50"):
        load_backbone(str(tmp_path / "r18.pt"), arch="resnet50")


def test_weights_name_without_network_fails_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty hub cache
    for var in ("https_proxy", "HTTPS_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")  # makes the download fail even on a machine with internet
    with pytest.raises(UserError, match=r"cannot download ResNet50_Weights.IMAGENET1K_V2 .*resnet50-11ad3fa6.pth") as info:
        load_backbone("ResNet50_Weights.IMAGENET1K_V2")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_remove_stride_makes_layer3_stride_8(arch: str) -> None:
    model = getattr(models, arch)().eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        before = forward_stages(model, x, ["layer3"])["layer3"]
        after = forward_stages(remove_stride(model, "layer3"), x, ["layer3"])["layer3"]
    assert before.shape[-2:] == (4, 6)  # stride 16
    assert after.shape[-2:] == (8, 12)  # stride 8, same channels and weights
    assert after.shape[1] == before.shape[1] == (1024 if arch == "resnet50" else 256)
