"""Unit checks of the VITO pieces against direct reference computations."""

from __future__ import annotations

import copy
import math
import random
import statistics

import pytest
import torch
import torchvision
from torch import nn

from videonet.vito.ema import ema_rate, ema_update
from videonet.vito.lars import LARS, param_groups, warmup_cosine
from videonet.vito.loss import info_nce
from videonet.vito.model import AttentionPool, MultiScalePooling, Online, VitoNet, load_exported
from videonet.vito.sampling import SAMPLERS, WINDOW_S

pytestmark = pytest.mark.usefixtures("one_thread")  # one torch thread (tests/conftest.py)


def reference_info_nce(online: list[torch.Tensor], target: list[torch.Tensor], tau: float,
                       same_view_negatives: bool) -> float:
    """The paper's L^{ij} written out: -log(exp(pos) / (exp(pos) + sum over negatives)), summed over
    ordered view pairs, mean over clips. Negatives: view j of the other clips, and (MoCLR/DetCon)
    view i of the other clips too."""
    def sim(a: torch.Tensor, b: torch.Tensor) -> float:
        return float(a @ b) / float(a.norm() * b.norm()) / tau

    total = 0.0
    n = online[0].shape[0]
    for i in range(len(online)):
        for j in range(len(target)):
            if i == j:
                continue
            pair = 0.0
            for b in range(n):
                positive = sim(online[i][b], target[j][b])
                negatives = [sim(online[i][b], target[j][c]) for c in range(n) if c != b]
                if same_view_negatives:
                    negatives += [sim(online[i][b], target[i][c]) for c in range(n) if c != b]
                pair += -positive + math.log(math.exp(positive) + sum(math.exp(s) for s in negatives))
            total += pair / n
    return total


@pytest.mark.parametrize("negatives", ["moclr", "mocov3"])
def test_info_nce_matches_the_papers_equation_written_as_loops(negatives: str) -> None:
    g = torch.Generator().manual_seed(0)
    online = [torch.randn(5, 7, generator=g, dtype=torch.float64) for _ in range(3)]
    target = [torch.randn(5, 7, generator=g, dtype=torch.float64) for _ in range(3)]
    got = info_nce([o.float() for o in online], [t.float() for t in target], tau=0.1, negatives=negatives)
    expected = reference_info_nce(online, target, 0.1, same_view_negatives=negatives == "moclr")
    assert got.item() == pytest.approx(expected, rel=1e-5)
    other = reference_info_nce(online, target, 0.1, same_view_negatives=negatives != "moclr")
    assert got.item() != pytest.approx(other, rel=1e-3)  # the two forms differ on these vectors
    assert info_nce(online, target).item() == pytest.approx(reference_info_nce(online, target, 0.1, True), rel=1e-5)


def test_info_nce_is_low_when_views_agree_and_gradient_reaches_online_only() -> None:
    g = torch.Generator().manual_seed(1)
    base = torch.randn(8, 16, generator=g)
    agree = info_nce([base.clone().requires_grad_(), base.clone()], [base, base])
    shuffled = info_nce([base, base], [base[torch.randperm(8, generator=g)], base])
    assert agree.item() < 0.01 < shuffled.item()
    q = torch.randn(8, 16, generator=g, requires_grad=True)
    info_nce([q, q], [base, base]).backward()
    assert q.grad is not None and q.grad.abs().sum() > 0


def test_attention_weights_sum_to_one_over_space_and_pool_is_weighted_mean() -> None:
    torch.manual_seed(0)
    pool = AttentionPool(dim=6, hidden=4)
    x = torch.randn(3, 6, 5, 7)
    w = pool.weights(x)
    assert w.shape == (3, 35)
    assert torch.allclose(w.sum(dim=1), torch.ones(3), atol=1e-6)
    assert (w > 0).all()
    expected = (x.flatten(2) * w[:, None, :]).sum(-1)
    assert torch.allclose(pool(x), expected, atol=1e-5)


def test_multiscale_pooling_concatenates_blocks_3_and_4() -> None:
    net = VitoNet("resnet18", "attn", 2, proj_hidden=32, proj_dim=8, attn_hidden=16)
    assert net.encoder.layers == ("layer3", "layer4") and net.pool.out_dim == 256 + 512
    assert net.represent(torch.randn(2, 3, 64, 64)).shape == (2, 768)
    avg = VitoNet("resnet18", "avg", 1, proj_hidden=32, proj_dim=8)
    assert avg.pool.out_dim == 512 and not list(avg.pool.parameters())
    feats = avg.encoder(torch.randn(2, 3, 64, 64))
    assert torch.allclose(avg.pool(feats), feats[0].mean(dim=(2, 3)))


def test_export_formats_load_into_plain_torchvision(tmp_path) -> None:
    net = VitoNet("resnet18", "attn", 2, proj_hidden=32, proj_dim=8, attn_hidden=16).eval()
    torch.save(net.encoder.net.state_dict(), tmp_path / "backbone.pt")
    torch.save(net.pool.export("resnet18"), tmp_path / "attention.pt")
    state = torch.load(tmp_path / "backbone.pt", weights_only=True)
    assert not any(k.startswith("fc.") for k in state)
    plain = torchvision.models.resnet18()
    plain.fc = nn.Identity()
    plain.load_state_dict(state)  # strict: exactly torchvision's keys minus fc
    backbone, pool = load_exported(str(tmp_path / "backbone.pt"), str(tmp_path / "attention.pt"))
    x = torch.randn(2, 3, 64, 64)
    assert torch.allclose(pool.eval()(backbone.eval()(x)), net.represent(x), atol=1e-5)
    with pytest.raises(ValueError):
        MultiScalePooling.from_export({"format": "something else"})


def test_ema_update_and_schedule() -> None:
    torch.manual_seed(0)
    online = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    target = copy.deepcopy(online)
    online(torch.randn(8, 3))  # moves BN running stats and num_batches_tracked
    with torch.no_grad():
        for p in online.parameters():
            p.add_(1.0)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    ema_update(target, online, rate=0.9)
    for key, value in target.state_dict().items():
        if value.is_floating_point():
            assert torch.allclose(value, 0.9 * before[key] + 0.1 * online.state_dict()[key]), key
        else:
            assert torch.equal(value, online.state_dict()[key]), key
    assert ema_rate(0, 100) == pytest.approx(0.996)
    assert ema_rate(50, 100) == pytest.approx(0.998)
    assert ema_rate(100, 100) == pytest.approx(1.0)


def test_lars_excludes_bias_and_batchnorm_from_decay_and_adaptation() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3))
    groups = param_groups(model, weight_decay=0.5)
    adapted = {id(p) for p in groups[0]["params"]}
    assert adapted == {id(model[0].weight)}
    assert {id(p) for p in groups[1]["params"]} == {id(model[0].bias), id(model[1].weight), id(model[1].bias)}
    assert groups[1]["weight_decay"] == 0.0 and not groups[1]["lars"]

    before = [p.detach().clone() for p in model.parameters()]
    grads = [torch.randn_like(p) for p in model.parameters()]
    for p, g in zip(model.parameters(), grads):
        p.grad = g.clone()
    LARS(groups, lr=0.1, eta=0.001, momentum=0.9).step()
    w, g = before[0], grads[0]
    update = g + 0.5 * w
    expected = w - 0.1 * (0.001 * w.norm() / update.norm()) * update
    assert torch.allclose(model[0].weight, expected, atol=1e-7)
    for p, b, g in zip(list(model.parameters())[1:], before[1:], grads[1:]):
        assert torch.allclose(p, b - 0.1 * g, atol=1e-7)  # plain SGD step: no decay, no trust ratio


def byol_learning_schedule(step: int, total: int, warmup: int, peak: float) -> float:
    """BYOL's ``learning_schedule`` (deepmind-research byol/utils/schedules.py), restated."""
    if warmup > 0 and step < warmup:
        return step / warmup * peak
    progress = min(step - warmup, total - warmup)
    return peak * 0.5 * (1 + math.cos(math.pi * progress / (total - warmup)))


def test_warmup_cosine_schedule_is_byols() -> None:
    lrs = [warmup_cosine(s, 100, 10, 1.0) for s in range(101)]
    assert lrs == pytest.approx([byol_learning_schedule(s, 100, 10, 1.0) for s in range(101)], abs=1e-12)
    assert lrs[0] == 0.0 and lrs[1] == pytest.approx(0.1) and lrs[9] == pytest.approx(0.9)
    assert lrs[10] == pytest.approx(1.0) and lrs[55] == pytest.approx(0.5) and lrs[100] == pytest.approx(0.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert warmup_cosine(0, 100, 0, 1.0) == 1.0  # no warm-up: the peak at once


def test_marginal_sampler_gap_distribution_matches_paper() -> None:
    rng = random.Random(0)
    gaps = [abs(t[0] - t[1]) for t in (SAMPLERS["marginal"](10.0, 2, rng) for _ in range(200_000))]
    assert statistics.median(gaps) == pytest.approx(0.76, abs=0.02)  # T (1 - 1/sqrt 2) = 0.750
    counts = [0] * 8  # histogram over [0, T]: triangular, so the first bin (gap ~ 0) is the mode
    for gap in gaps:
        counts[min(int(gap / WINDOW_S * 8), 7)] += 1
    assert counts.index(max(counts)) == 0 and all(a > b for a, b in zip(counts, counts[1:]))
    assert max(gaps) <= WINDOW_S


def test_samplers_stay_in_a_window_inside_the_clip() -> None:
    rng = random.Random(0)
    for name, sampler in SAMPLERS.items():
        for duration in (1.0, 2.56, 9.0):
            for _ in range(500):
                times = sampler(duration, 3, rng)
                assert len(times) == 3 and all(0.0 <= t <= duration for t in times), name
                if name != "single":
                    assert max(times) - min(times) <= min(duration, WINDOW_S) + 1e-9, name
    fixed = SAMPLERS["fixed"](9.0, 3, rng)
    assert fixed[1] - fixed[0] == pytest.approx(1.28) and fixed[2] - fixed[1] == pytest.approx(1.28)
    chunks = SAMPLERS["chunked"](2.56, 4, rng)
    assert all(0.64 * i <= t <= 0.64 * (i + 1) for i, t in enumerate(chunks))


def test_online_branch_has_predictor_and_target_shape_matches() -> None:
    net = VitoNet("resnet18", "attn", 2, proj_hidden=32, proj_dim=8, attn_hidden=16)
    online = Online(net, 32, 8)
    x = torch.randn(4, 3, 64, 64)
    assert online(x).shape == net(x).shape == (4, 8)
    assert sum(p.numel() for p in online.predictor.parameters()) > 0


def _distributed_loss(rank: int, world: int, port: int, online, target, results) -> None:
    """One gloo process: the loss of this rank's half of the batch against the gathered targets."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    n = online[0].shape[0] // world
    part = slice(rank * n, (rank + 1) * n)
    results[rank] = info_nce([o[part] for o in online], [t[part] for t in target], tau=0.1).item()
    dist.destroy_process_group()


def test_info_nce_gathers_negatives_across_processes() -> None:
    import multiprocessing
    import socket

    g = torch.Generator().manual_seed(2)
    online = [torch.randn(6, 5, generator=g) for _ in range(3)]
    target = [torch.randn(6, 5, generator=g) for _ in range(3)]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = multiprocessing.get_context("fork")
    results = ctx.Manager().dict()
    procs = [ctx.Process(target=_distributed_loss, args=(r, 2, port, online, target, results)) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert all(p.exitcode == 0 for p in procs)
    # Each rank's queries see all 6 targets as negatives, so the mean over ranks is the full-batch loss.
    assert (results[0] + results[1]) / 2 == pytest.approx(info_nce(online, target, 0.1).item(), rel=1e-5)
