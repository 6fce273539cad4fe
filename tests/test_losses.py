"""Rank-N-Contrast against a float64 loop written straight from Eq. (1), and CoReEcho's stop-gradient."""
import math

import pytest
import torch

from echobook.losses import L1EFLoss, RnCLoss, label_distances, feature_distances, rnc_loss
from echobook.methods.coreecho import CoReEchoModel, Stage1Loss


def rnc_eq1_loop(features, labels, temperature):
    """Eq. (1) of Rank-N-Contrast, term by term, in float64 with a stable log-sum-exp."""
    f = features.double()
    y = labels.double().reshape(len(labels), -1)
    n = len(f)
    total = 0.0
    for i in range(n):
        for k in range(n):
            if k == i:
                continue
            d_ik = (y[i] - y[k]).abs().sum()
            s = [-(f[i] - f[j]).norm() / temperature for j in range(n)]
            denominator = [s[j] for j in range(n) if j != i and (y[i] - y[j]).abs().sum() >= d_ik]
            total -= (s[k] - torch.logsumexp(torch.stack(denominator), 0)).item()
    return total / (n * (n - 1))


def integer_labels(n, generator, low=20, high=80):
    # integers make label distances exact in any precision, so ties are the same ties everywhere
    return torch.randint(low, high, (n,), generator=generator).float()


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("n", [2, 5, 12])
def test_rnc_matches_equation_loop(n, temperature):
    g = torch.Generator().manual_seed(n * 10 + int(temperature * 4))
    features = torch.randn(n, 7, generator=g)
    labels = integer_labels(n, g)
    got = rnc_loss(features, labels, temperature).item()
    assert got == pytest.approx(rnc_eq1_loop(features, labels, temperature), abs=1e-5)


def test_rnc_with_many_ties_and_two_views():
    g = torch.Generator().manual_seed(3)
    ef = torch.tensor([40.0, 55.0, 55.0, 60.0, 40.0, 70.0])
    labels = torch.cat([ef, ef])  # two clips of each video, as in training
    features = torch.randn(12, 5, generator=g)
    assert rnc_loss(features, labels, 1.0).item() == pytest.approx(rnc_eq1_loop(features, labels, 1.0), abs=1e-5)
    all_equal = torch.full((8,), 50.0)
    features = torch.randn(8, 5, generator=g)
    assert rnc_loss(features, all_equal).item() == pytest.approx(rnc_eq1_loop(features, all_equal, 1.0), abs=1e-5)


def test_rnc_multidimensional_labels_sum_l1():
    g = torch.Generator().manual_seed(4)
    features, labels = torch.randn(6, 3, generator=g), torch.randint(0, 5, (6, 2), generator=g).float()
    assert rnc_loss(features, labels).item() == pytest.approx(rnc_eq1_loop(features, labels, 1.0), abs=1e-5)


def naive_reference_form(features, labels, temperature):
    """The reference implementation's arithmetic: log(sum(exp(.))) in the input precision."""
    n = len(features)
    logits = -torch.cdist(features, features) / temperature
    d = (labels[:, None] - labels[None]).abs()
    keep = ~torch.eye(n, dtype=torch.bool)
    logits, d = logits[keep].view(n, n - 1), d[keep].view(n, n - 1)
    total = 0.0
    for k in range(n - 1):
        mask = (d >= d[:, k:k + 1]).float()
        total = total - (logits[:, k] - torch.log((mask * logits.exp()).sum(1))).sum()
    return total / (n * (n - 1))


def test_rnc_large_distances_finite_where_naive_form_fails():
    g = torch.Generator().manual_seed(5)
    features = 100.0 * torch.randn(16, 32, generator=g)  # pairwise distances of about 800
    labels = integer_labels(16, g)
    assert not torch.isfinite(naive_reference_form(features, labels, 1.0))
    got = rnc_loss(features, labels, 1.0)
    assert torch.isfinite(got)
    assert got.item() == pytest.approx(rnc_eq1_loop(features, labels, 1.0), rel=1e-5)


def test_rnc_gradients_finite_with_large_distances_and_duplicates():
    g = torch.Generator().manual_seed(6)
    features = 100.0 * torch.randn(8, 16, generator=g)
    features = torch.cat([features, features[:2]]).requires_grad_()  # identical rows: zero distances
    labels = integer_labels(10, g)
    rnc_loss(features, labels).backward()
    assert torch.isfinite(features.grad).all()


def test_rnc_bfloat16_finite_and_close():
    g = torch.Generator().manual_seed(7)
    features = 50.0 * torch.randn(32, 64, generator=g)
    labels = integer_labels(32, g)
    low = rnc_loss(features.bfloat16().requires_grad_(), labels.bfloat16())
    assert torch.isfinite(low)
    assert low.item() == pytest.approx(rnc_loss(features.bfloat16().float(), labels).item(), rel=1e-5)
    features_bf16 = features.bfloat16().requires_grad_()
    rnc_loss(features_bf16, labels).backward()
    assert torch.isfinite(features_bf16.grad.float()).all()


def test_rnc_module_and_bad_input():
    loss = RnCLoss(temperature=2.0)
    assert "temperature=2.0" in repr(loss)
    with pytest.raises(ValueError, match="temperature"):
        RnCLoss(temperature=0)
    with pytest.raises(ValueError, match=r"\[n, C\]"):
        loss(torch.randn(4, 2, 3), torch.randn(4))
    with pytest.raises(ValueError, match="labels"):
        loss(torch.randn(4, 3), torch.randn(5))
    with pytest.raises(ValueError, match="at least 2"):
        loss(torch.randn(1, 3), torch.randn(1))


def test_rnc_ordered_embedding_scores_lower():
    labels = torch.arange(10.0)
    ordered = labels[:, None] * torch.tensor([[1.0, 0.0]])
    shuffled = ordered[torch.randperm(10, generator=torch.Generator().manual_seed(0))]
    assert rnc_loss(ordered, labels) < rnc_loss(shuffled, labels)


def test_stage1_loss_stop_gradient():
    """The model holds the detach (CoReEchoModel.stage1), the loss adds RnC and the head's L1."""
    g = torch.Generator().manual_seed(8)
    embeddings = torch.randn(8, 6, generator=g, requires_grad=True)
    ef = integer_labels(8, g)
    head = torch.nn.Linear(6, 1)
    model = CoReEchoModel(torch.nn.Identity(), torch.nn.Sequential(head, torch.nn.Flatten(0)))
    parts = Stage1Loss(temperature=1.0).parts(model.stage1(embeddings), ef)  # one label per clip
    assert parts["total"].item() == pytest.approx(parts["rnc"].item() + parts["l1"].item(), rel=1e-6)

    # the L1 term sends no gradient into the encoder's features ...
    (l1_grad,) = torch.autograd.grad(parts["l1"], embeddings, retain_graph=True, allow_unused=True)
    assert l1_grad is None  # not even a zero: the graph of l1 does not reach the features
    # ... so the total's gradient on the features is exactly the RnC gradient
    total_grad, = torch.autograd.grad(parts["total"], embeddings, retain_graph=True)
    rnc_grad, = torch.autograd.grad(rnc_loss(embeddings, ef, 1.0), embeddings)
    torch.testing.assert_close(total_grad, rnc_grad)
    # ... while the head does get the L1 gradient
    head_grad = torch.autograd.grad(parts["l1"], head.weight)[0]
    assert torch.count_nonzero(head_grad) > 0
    assert math.isfinite(parts["total"].item())


def test_l1_ef_loss_repeats_labels_per_clip():
    pred = torch.tensor([50.0, 52.0, 40.0, 44.0])  # two clips of two videos, video-major
    assert L1EFLoss()(pred, torch.tensor([51.0, 42.0])).item() == pytest.approx(1.5)


def naive_rnc(features, labels, temperature=1.0):
    """The reference's form: log(sum(exp(.))) per pair, in the features' precision."""
    logits, dist = -feature_distances(features) / temperature, label_distances(labels)
    terms = []
    for i in range(len(features)):
        for k in range(len(features)):
            if k != i:
                in_denominator = dist[i] >= dist[i, k]
                in_denominator[i] = False
                terms.append(torch.log(torch.exp(logits[i][in_denominator]).sum()) - logits[i, k])
    return torch.stack(terms).mean()


def test_naive_rnc_underflow():
    """The numbers of losses.py's docstring: float32's naive loss drifts, then is minus infinity (not plus)."""
    labels = torch.linspace(20, 80, 16)
    line = torch.cat([((labels - 20) / 60)[:, None], torch.zeros(16, 7)], 1)  # on a line, the farthest pair 1 apart
    for farthest, naive_reads, true_value in ((100, 0.32472, 0.32458), (103, 0.3221, 0.3244)):
        features = line * farthest
        assert naive_rnc(features, labels).item() == pytest.approx(naive_reads, abs=1e-4)
        assert rnc_loss(features, labels).item() == pytest.approx(true_value, abs=1e-4)
    features = line * 104
    assert naive_rnc(features, labels).item() == float("-inf")
    assert rnc_loss(features, labels).item() == pytest.approx(rnc_loss(features.double(), labels.double()).item(),
                                                              abs=1e-5)
