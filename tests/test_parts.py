"""The composable parts: targets against hand-computed values, autoencoder geometry, losses, heads."""

from __future__ import annotations

import math

import pytest
import torch

from deepclust.encoders import ConvAutoencoder, MLPAutoencoder
from deepclust.errors import DeepclustError
from deepclust.heads import SoftmaxHead, StudentTHead
from deepclust.losses import layerwise_reconstruction_loss, soft_cross_entropy
from deepclust.targets import dec_target, depict_target

P = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]], dtype=torch.float64)  # column sums f = 1.7, 1.3


def test_depict_target_matches_hand_computation() -> None:
    f = [1.7, 1.3]
    for i, row in enumerate(P.tolist()):
        raw = [row[k] / math.sqrt(f[k]) for k in range(2)]
        expected = [r / sum(raw) for r in raw]
        assert depict_target(P)[i].tolist() == pytest.approx(expected, abs=1e-12)
    # first row by hand: 0.9/√1.7 = 0.690268, 0.1/√1.3 = 0.087706, sum 0.777974 → 0.887264, 0.112736
    assert depict_target(P)[0].tolist() == pytest.approx([0.887264, 0.112736], abs=1e-6)


def test_depict_target_prior_enters_as_square_root() -> None:
    u = torch.tensor([0.8, 0.2], dtype=torch.float64)
    q = depict_target(P, u)
    raw = P * torch.sqrt(u / P.sum(0))
    torch.testing.assert_close(q, raw / raw.sum(1, keepdim=True))
    torch.testing.assert_close(depict_target(P, [1.0, 1.0]), depict_target(P))  # uniform = the default
    assert q[:, 0].sum() > depict_target(P)[:, 0].sum()  # a prior favouring cluster 0 moves mass to it


def test_dec_target_matches_hand_computation() -> None:
    # row 0: 0.81/1.7 = 0.476471, 0.01/1.3 = 0.007692 → 0.984113, 0.015887
    assert dec_target(P)[0].tolist() == pytest.approx([0.984113, 0.015887], abs=1e-6)
    assert torch.allclose(dec_target(P).sum(1), torch.ones(3, dtype=torch.float64))


def test_dec_target_sharpens_more_than_the_paper_target() -> None:
    assert (dec_target(P).max(1).values >= depict_target(P).max(1).values).all()


SHAPES = [(1, 28, 28), (1, 16, 16), (1, 32, 32), (3, 32, 32), (1, 31, 31), (1, 31, 17), (1, 8, 8), (3, 4, 4)]


@pytest.mark.parametrize("shape", SHAPES)
def test_conv_autoencoder_reconstructs_every_layer_at_its_shape(shape: tuple[int, int, int]) -> None:
    ae = ConvAutoencoder(shape, 7)
    out = ae(torch.randn(3, *shape), corrupt=True)
    assert out.embedding.shape == (3, 7) and out.embedding.abs().max() <= 1  # tanh
    assert [d.shape for d in out.decoded] == [e.shape for e in out.encoded]
    assert out.decoded[0].abs().max() <= 1


def test_conv_autoencoder_geometry_of_the_paper() -> None:
    assert ConvAutoencoder((1, 28, 28), 10).sizes == [(28, 28), (13, 13), (7, 7)]
    assert ConvAutoencoder((1, 16, 16), 10).sizes == [(16, 16), (7, 7), (4, 4)]


def test_conv_autoencoder_refuses_tiny_images() -> None:
    with pytest.raises(DeepclustError, match="too small"):
        ConvAutoencoder((1, 3, 3), 4)


def test_clean_pathway_is_deterministic_and_noisy_is_not() -> None:
    torch.manual_seed(0)
    ae = ConvAutoencoder((1, 16, 16), 5)
    x = torch.randn(4, 1, 16, 16)
    assert torch.equal(ae.encode(x), ae.encode(x))
    assert not torch.equal(ae(x, corrupt=True).embedding, ae(x, corrupt=True).embedding)


def test_mlp_autoencoder_layers_align() -> None:
    ae = MLPAutoencoder(20, 3, hidden_dims=(8, 6))
    out = ae(torch.randn(5, 20))
    assert [tuple(e.shape) for e in out.encoded] == [(5, 20), (5, 8), (5, 6)]
    assert [d.shape for d in out.decoded] == [e.shape for e in out.encoded]


def test_layerwise_loss_is_zero_for_identical_layers_and_weights_hidden_ones() -> None:
    layers = [torch.randn(4, 3), torch.randn(4, 5), torch.randn(4, 2)]
    assert float(layerwise_reconstruction_loss(layers, layers)) == 0.0
    shifted = [layers[0], layers[1] + 1.0, layers[2]]  # only a hidden layer differs, MSE 1
    assert float(layerwise_reconstruction_loss(shifted, layers, hidden_weight=0.1)) == pytest.approx(0.1)
    moved = [layers[0] + 2.0, layers[1], layers[2]]  # the input differs, MSE 4
    assert float(layerwise_reconstruction_loss(moved, layers, hidden_weight=0.1)) == pytest.approx(4.0)


def test_soft_cross_entropy_is_minimal_at_the_target() -> None:
    q = torch.tensor([[0.7, 0.3]])
    at_target = soft_cross_entropy(torch.log(q), q)
    assert float(at_target) == pytest.approx(-(0.7 * math.log(0.7) + 0.3 * math.log(0.3)), abs=1e-6)
    assert float(soft_cross_entropy(torch.tensor([[0.0, 0.0]]), q)) > float(at_target)


def test_softmax_head_from_centroids_assigns_by_cosine() -> None:
    centroids = torch.tensor([[3.0, 0.0], [0.0, 0.5]])
    head = SoftmaxHead(2, 2)
    head.init_from_centroids(centroids)
    torch.testing.assert_close(head.linear.weight, torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    assert head.proba(torch.tensor([[0.9, 0.1], [0.1, 0.9]])).argmax(1).tolist() == [0, 1]


def test_student_t_head_matches_formula() -> None:
    head = StudentTHead(torch.tensor([[0.0, 0.0], [2.0, 0.0]]))
    q = head.proba(torch.tensor([[1.0, 1.0]]))
    k = [1 / (1 + 2.0), 1 / (1 + 2.0)]  # both centroids at squared distance 2
    assert q[0].tolist() == pytest.approx([k[0] / sum(k), k[1] / sum(k)])


def test_training_loop_records_epochs_and_survives_ctrl_c() -> None:
    from deepclust.training import train_epochs

    w = torch.nn.Parameter(torch.tensor([3.0]))
    X = torch.randn(50)
    calls = {"n": 0}

    def loss_fn(idx: torch.Tensor) -> dict[str, torch.Tensor]:
        calls["n"] += 1
        if calls["n"] > 12:
            raise KeyboardInterrupt
        return {"loss": ((w - X[idx]) ** 2).mean()}

    history = train_epochs([w], loss_fn, 50, epochs=10, batch_size=16, device=torch.device("cpu"),
                           generator=torch.Generator().manual_seed(0), lr=0.1)
    assert len(history) == 3 and history.interrupted  # 4 batches an epoch: the 13th call is in epoch 4
    assert history[-1]["loss"] < history[0]["loss"] and history[0]["epoch"] == 1
