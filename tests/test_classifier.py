"""Classifier loading: torchvision's real weight path against a weights file on disk, and failures."""

from __future__ import annotations

import operator
import shutil

import numpy as np
import pytest
import torch
import torchvision
from torchvision.transforms.v2.functional import normalize

from videonet.curation.judge.classifier import (ClassifierSettings, cpu_has_bf16, load_classifier, resolve_device,
                                                resolve_engine, resolve_precision)
from videonet.curation.judge.cpu_graph import OneDNNConv2d, fold_batchnorm, fuse_onednn
from videonet.errors import UserError
from videonet.curation.judge.frames import iter_frames


@pytest.fixture(scope="module")
def random_resnet50(tmp_path_factory):
    """A ResNet-50 state dict with fixed random weights, standing in for the downloaded file."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "resnet50-random.pth"
    torch.save(torchvision.models.resnet50().state_dict(), path)
    return path


@pytest.fixture(scope="module")
def frames(demo_dir):
    return np.stack(list(iter_frames(str(demo_dir / "coffee_cup.mp4"), 4)))


def _reference_top1(path, frames):
    model = torchvision.models.resnet50().eval()
    model.load_state_dict(torch.load(path, weights_only=True))
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
    x = normalize(x, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    with torch.no_grad():
        return model(x).argmax(1).numpy()


def test_resnet50_from_a_weights_file(random_resnet50, frames):
    classifier = load_classifier("resnet50", str(random_resnet50), device="cpu", precision="fp32")
    labels, scores = classifier.top1(frames)
    np.testing.assert_array_equal(labels, _reference_top1(random_resnet50, frames))
    assert ((scores > 0) & (scores <= 1)).all()


def test_resnet50_enum_goes_through_torchvision_cache(random_resnet50, frames, tmp_path, monkeypatch):
    """IMAGENET1K_V2 resolves like any torchvision user's: $TORCH_HOME/hub/checkpoints/<file>."""
    from torchvision.models import ResNet50_Weights

    checkpoints = tmp_path / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    shutil.copy(random_resnet50, checkpoints / ResNet50_Weights.IMAGENET1K_V2.url.rsplit("/", 1)[1])
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    classifier = load_classifier("resnet50", "ResNet50_Weights.IMAGENET1K_V2", device="cpu", precision="fp32")
    np.testing.assert_array_equal(classifier.top1(frames)[0], _reference_top1(random_resnet50, frames))


def test_offline_download_failure_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # empty cache: torchvision must download
    monkeypatch.setattr(torch.hub, "_get_torch_home", lambda: str(tmp_path))
    import socket

    def no_network(*args, **kwargs):
        raise OSError("network unreachable (test)")

    monkeypatch.setattr(socket, "create_connection", no_network)  # also offline where a network exists
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    with pytest.raises(UserError, match="torchvision download") as info:
        load_classifier("resnet50", "IMAGENET1K_V1", device="cpu")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("content, needle", [
    (None, "cannot read classifier weights"),
    (b"this is not a checkpoint", "not a torch state dict"),
])
def test_missing_or_corrupt_weights(tmp_path, content, needle):
    path = tmp_path / "weights.pth"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(UserError, match=needle):
        load_classifier("resnet50", str(path), device="cpu")


def test_weights_of_another_model_are_refused(tmp_path):
    path = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    with pytest.raises(UserError, match="do not fit ResNet-50"):
        load_classifier("resnet50", str(path), device="cpu")


def test_bad_names_and_devices():
    with pytest.raises(UserError, match="NOT_A_WEIGHT"):
        load_classifier("resnet50", "NOT_A_WEIGHT", device="cpu")
    with pytest.raises(UserError, match="--classifier"):
        load_classifier("vgg16", device="cpu")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA"):
            resolve_device("cuda")
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")


def test_offline_classifier_recognises_real_photos(lite0, demo_dir):
    from videonet.curation.vocabulary.classes import class_name

    coffee = np.stack(list(iter_frames(str(demo_dir / "coffee_cup.mp4"), 3)))
    cat = np.stack(list(iter_frames(str(demo_dir / "chelsea_cat.mp4"), 3)))
    assert {class_name(int(i)) for i in lite0.top1(coffee)[0]} == {"espresso"}
    assert {class_name(int(i)) for i in lite0.top1(cat)[0]} <= {"Egyptian cat", "tabby", "tiger cat"}


def test_weights_from_a_url_readable_by_every_worker(random_resnet50, frames, tmp_path, monkeypatch):
    from localserver import serve

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    base, stop = serve(random_resnet50.parent, [])
    try:
        classifier = load_classifier("resnet50", f"{base}/{random_resnet50.name}", device="cpu", precision="fp32")
        with pytest.raises(UserError, match="cannot download classifier weights"):
            load_classifier("resnet50", f"{base}/missing.pth", device="cpu")
    finally:
        stop()
    np.testing.assert_array_equal(classifier.top1(frames)[0], _reference_top1(random_resnet50, frames))


def _logits(classifier, frames):
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(255)
    x = normalize(x, list(classifier.mean), list(classifier.std)).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        return classifier.model(x)


@pytest.mark.parametrize("name", ["efficientnet-lite0", "resnet50"])
def test_fast_path_keeps_the_outputs(name, random_resnet50, frames):
    """BatchNorm folding leaves no BatchNorm, and the folded, fused fp32 net gives the plain net's logits."""
    weights = str(random_resnet50) if name == "resnet50" else None
    plain = load_classifier(name, weights, device="cpu", precision="fp32", fold=False)
    count = lambda m, kind: sum(isinstance(x, kind) for x in m.modules())  # noqa: E731
    assert count(plain.model, torch.nn.BatchNorm2d) > 40 and count(fold_batchnorm(plain.model), torch.nn.BatchNorm2d) == 0
    fast = load_classifier(name, weights, device="cpu", precision="fp32", engine="torch")
    assert fast.baked and count(fast.model, torch.nn.BatchNorm2d) == 0
    # every convolution fused, with every activation (ReLU, lite0's ReLU6) and residual add
    assert count(fast.model, OneDNNConv2d) == count(plain.model, torch.nn.Conv2d) == {"resnet50": 53}.get(name, 49)
    assert count(fast.model, torch.nn.ReLU) == count(fast.model, torch.nn.ReLU6) == 0
    assert not any(n.target is operator.add for n in fast.model.graph.nodes)
    expected, got = _logits(plain, frames), _logits(fast, frames)
    torch.testing.assert_close(got, expected, rtol=1e-3, atol=1e-3 * expected.abs().max().item())
    np.testing.assert_array_equal(fast.top1(frames)[0], plain.top1(frames)[0])


class _Patterns(torch.nn.Module):
    """Every shape of convolution the oneDNN fusion matches, and two it must leave alone."""

    class PaddedConv(torch.nn.Conv2d):  # own forward, traced into: an asymmetric pad, then a fused conv2d
        def forward(self, x):
            return super().forward(torch.nn.functional.pad(x, (0, 1, 0, 1)))

    class ScaledConv(torch.nn.Conv2d):  # weights computed in forward: nothing to lay out once, left alone
        def forward(self, x):
            return torch.nn.functional.conv2d(x, self.weight * 0.5, self.bias)

    def __init__(self):
        super().__init__()
        conv = torch.nn.Conv2d
        self.stem, self.relu = conv(3, 16, 7, stride=2, padding=3), torch.nn.ReLU()
        self.depthwise = conv(16, 16, 3, padding=1, groups=16, bias=False)  # + F.relu
        self.pointwise = conv(16, 16, 1)  # the second operand of a residual add, then a ReLU module
        self.dilated = conv(16, 16, 3, padding=2, dilation=2)  # alone: no activation after it
        self.downsample = conv(16, 32, 1, stride=2)  # + add of another conv's output + relu method
        self.strided = conv(16, 32, 3, stride=2, padding=1)  # that other conv: fused alone
        self.padded = self.PaddedConv(32, 8, 2)
        self.zero_pad, self.pad_conv, self.relu6 = torch.nn.ZeroPad2d(1), conv(8, 8, 3), torch.nn.ReLU6()
        self.same, self.scaled = conv(8, 8, 3, padding="same"), self.ScaledConv(8, 8, 1)  # left alone
        self.head = conv(8, 4, 1)  # + ReLU whose input is also used elsewhere: only the conv fuses

    def forward(self, x):
        x = self.relu(self.stem(x))
        y = torch.nn.functional.relu(self.depthwise(x))
        x = self.relu(x + self.pointwise(y))
        x = self.dilated(x)
        x = (self.downsample(x) + self.strided(x)).relu()
        h = self.relu6(self.pad_conv(self.zero_pad(self.padded(x))))  # symmetric pad folded, ReLU6 fused
        h = self.head(self.scaled(self.same(h)))
        return torch.relu(h) + h


def test_onednn_fusion_matches_the_unfused_graph():
    """Each fused pattern computes what the separate ops did, in fp32 and (rounded) in bf16."""
    torch.manual_seed(0)
    model = _Patterns().eval()
    x = torch.randn(3, 3, 224, 224).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        expected = model(x)
        fused32 = fuse_onednn(fold_batchnorm(model), torch.float32, batch=3)
        kinds = [type(m).__name__ for m in fused32.modules()]
        assert kinds.count("OneDNNConv2d") == 9 and kinds.count("Conv2d") == 1  # `same` left alone
        assert not {"ZeroPad2d", "ReLU", "ReLU6", "PaddedConv"} & set(kinds)  # folded or fused away
        functions = [n.target for n in fused32.graph.nodes if n.op in ("call_function", "call_method")]
        assert functions.count(torch.nn.functional.conv2d) == 1  # ScaledConv's, traced into and left alone
        assert torch.nn.functional.relu not in functions and functions.count(torch.nn.functional.pad) == 1
        torch.testing.assert_close(fused32(x), expected, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(fused32(x[:1]), expected[:1], rtol=1e-4, atol=1e-4)  # another batch size
        fused16 = fuse_onednn(fold_batchnorm(model).to(torch.bfloat16), torch.bfloat16, batch=3)
        got16 = fused16(x.to(torch.bfloat16)).float()
    assert not torch.equal(got16, expected)  # it ran in bf16...
    torch.testing.assert_close(got16, expected, rtol=0.05, atol=0.05 * expected.abs().max().item())  # ...close


def test_bf16_is_baked_into_the_cpu_weights(frames):
    """On CPU the torch bf16 path casts the weights once (no autocast) and stays close to fp32."""
    fp32 = load_classifier("efficientnet-lite0", device="cpu", precision="fp32", fold=False)
    bf16 = load_classifier("efficientnet-lite0", device="cpu", precision="bf16", engine="torch")
    assert bf16.baked
    with pytest.raises(RuntimeError):  # the graph holds bf16 weights: fp32 input no longer fits
        bf16.model(torch.zeros(1, 3, 224, 224).contiguous(memory_format=torch.channels_last))
    (labels, scores), (ref_labels, ref_scores) = bf16.top1(frames), fp32.top1(frames)
    np.testing.assert_array_equal(labels, ref_labels)  # the coffee frames are far from any tie
    assert not np.array_equal(scores, ref_scores)  # rounded in bf16...
    np.testing.assert_allclose(scores, ref_scores, atol=0.05)  # ...but close


def test_fp16_on_cpu_stays_on_autocast(frames):
    """Only fp32 and bf16 are baked into the CPU weights; fp16 runs the folded eager net under autocast."""
    fp16 = load_classifier("efficientnet-lite0", device="cpu", precision="fp16")
    fp32 = load_classifier("efficientnet-lite0", device="cpu", precision="fp32", fold=False)
    assert not fp16.baked
    np.testing.assert_array_equal(fp16.top1(frames)[0], fp32.top1(frames)[0])


def test_forward_batches_are_capped_without_changing_results(frames):
    classifier = load_classifier("efficientnet-lite0", device="cpu", precision="fp32")
    whole = classifier.top1(frames)
    classifier.max_batch = 3  # 4 frames: one forward of 3, one of 1
    split = classifier.top1(frames)
    np.testing.assert_array_equal(split[0], whole[0])
    np.testing.assert_allclose(split[1], whole[1], rtol=1e-4)


def test_auto_precision_is_bf16_only_where_the_cpu_has_it():
    flags = set(next((line for line in open("/proc/cpuinfo") if line.startswith("flags")), "").split())
    native = bool(flags & {"amx_bf16", "avx512_bf16"})
    assert cpu_has_bf16() == native
    assert resolve_precision("auto", "cpu") == ("bf16" if native else "fp32")
    assert resolve_precision("auto", "cuda") == "bf16" and resolve_precision("fp32", "cuda") == "fp32"


@pytest.mark.parametrize("name", ["efficientnet-lite0", "resnet50"])
def test_openvino_engine_gives_the_reference_logits(name, random_resnet50, frames):
    """The OpenVINO backend (normalisation compiled in, uint8 frames in) computes the plain torch net's logits."""
    weights = str(random_resnet50) if name == "resnet50" else None
    plain = load_classifier(name, weights, device="cpu", precision="fp32", fold=False)
    engine = load_classifier(name, weights, device="cpu", precision="fp32", engine="openvino")
    assert engine.engine == "openvino" and engine.model.precision == "fp32"
    expected = _logits(plain, frames)
    torch.testing.assert_close(torch.from_numpy(engine.model(frames)), expected,
                               rtol=1e-3, atol=1e-3 * expected.abs().max().item())
    np.testing.assert_array_equal(engine.top1(frames)[0], plain.top1(frames)[0])
    np.testing.assert_allclose(engine.top1(frames)[1], plain.top1(frames)[1], rtol=1e-3)


@pytest.mark.skipif(not cpu_has_bf16(), reason="bf16 is emulated on this CPU")
def test_openvino_bf16_keeps_the_verdicts_on_real_frames(demo_dir):
    """bf16 OpenVINO on real weights and real frames: the same top-1 as fp32 torch where the margin is clear."""
    frames = np.concatenate([np.stack(list(iter_frames(str(demo_dir / clip), 4)))
                             for clip in ("coffee_cup.mp4", "chelsea_cat.mp4")])
    reference = load_classifier("efficientnet-lite0", device="cpu", precision="fp32", fold=False)
    engine = load_classifier("efficientnet-lite0", device="cpu", precision="bf16", engine="openvino")
    assert engine.model.precision == "bf16"
    (labels, scores), (ref_labels, ref_scores) = engine.top1(frames), reference.top1(frames)
    clear = ref_scores > 0.5  # a top-1 far from a tie: bf16 rounding cannot flip it
    assert clear.sum() >= 4
    np.testing.assert_array_equal(labels[clear], ref_labels[clear])
    np.testing.assert_allclose(scores, ref_scores, atol=0.05)


def test_openvino_engine_serves_several_threads(frames):
    """A Beam worker shares one classifier among its threads: each gets its own infer request."""
    from concurrent.futures import ThreadPoolExecutor

    engine = load_classifier("efficientnet-lite0", device="cpu", precision="fp32", engine="openvino")
    alone = engine.top1(frames)[0]
    with ThreadPoolExecutor(4) as pool:
        for labels, _ in pool.map(engine.top1, [frames] * 8):
            np.testing.assert_array_equal(labels, alone)


def test_engine_choice(monkeypatch):
    """auto: OpenVINO where it runs (CPU, fp32/bf16, the fast path) and is installed; torch elsewhere."""
    assert ClassifierSettings().engine == "auto"
    assert resolve_engine("auto", "cpu", "bf16", compile=False, fold=True) == "openvino"
    assert resolve_engine("auto", "cpu", "fp32", compile=False, fold=True) == "openvino"
    assert resolve_engine("torch", "cpu", "bf16", compile=False, fold=True) == "torch"
    for device, precision, compile, fold in [("cuda", "bf16", False, True), ("cpu", "fp16", False, True),
                                             ("cpu", "fp32", True, True), ("cpu", "fp32", False, False)]:
        assert resolve_engine("auto", device, precision, compile, fold) == "torch"
        with pytest.raises(UserError, match="CPU only"):
            resolve_engine("openvino", device, precision, compile, fold)
    with pytest.raises(UserError, match="expected auto, torch or openvino"):
        resolve_engine("tensorrt", "cpu", "fp32", compile=False, fold=True)
    monkeypatch.setattr("videonet.curation.judge.openvino_engine.openvino_available", lambda: False)
    assert resolve_engine("auto", "cpu", "bf16", compile=False, fold=True) == "torch"
    with pytest.raises(UserError, match=r"videonet\[openvino\]"):
        resolve_engine("openvino", "cpu", "bf16", compile=False, fold=True)


def test_the_openvino_engine_sends_no_telemetry_and_writes_nothing_in_home(tmp_path):
    """OpenVINO's import sends a usage event and writes ~/intel unless told not to; videonet's engine
    must do neither (CI=true would hide it: openvino-telemetry stays off in CI, so it is removed here)."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("CI", "TF_BUILD", "JENKINS_URL")}
    env["HOME"] = str(tmp_path)
    code = ("import numpy as np\n"
            "from videonet.curation.judge.classifier import load_classifier\n"
            "c = load_classifier('efficientnet-lite0', device='cpu', precision='fp32', engine='openvino')\n"
            "print(c.engine, c.top1(np.zeros((1, 224, 224, 3), np.uint8))[0].shape)\n")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[0] == "openvino"
    assert list(tmp_path.rglob("*")) == []
