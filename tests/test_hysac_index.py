"""The Lorentz FAISS index against brute force, redirection, the hysac classifier, and the CLI end to end."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("faiss")
from typer.testing import CliRunner  # noqa: E402

from imagesafety.hyperbolic import lorentz as L  # noqa: E402
from imagesafety.hyperbolic.index import LorentzIndex, brute_force_search  # noqa: E402
from imagesafety.hyperbolic.redirect import redirect  # noqa: E402


def random_points(n, d=16, seed=0, scale=1.0):
    return (np.random.default_rng(seed).normal(size=(n, d)) * scale).astype(np.float32)


@pytest.mark.parametrize("c", [0.5, 1.0, 3.0])
def test_exact_index_returns_the_brute_force_lorentz_neighbours(c):
    gallery, queries = random_points(2000, seed=1), random_points(50, seed=2)
    index = LorentzIndex.build(gallery, c, "m")
    d_idx, r_idx = index.search(queries, 10)
    d_bf, r_bf = brute_force_search(queries, gallery, c, 10)
    np.testing.assert_array_equal(r_idx, r_bf)
    np.testing.assert_allclose(d_idx, d_bf, rtol=1e-3, atol=1e-3)
    exact = L.pairwise_dist(torch.from_numpy(queries).double(), torch.from_numpy(gallery).double(), c).numpy()
    np.testing.assert_array_equal(r_idx, np.argsort(exact, axis=1)[:, :10])


def test_approximate_indexes_mostly_agree():
    gallery, queries = random_points(3000, seed=3), random_points(40, seed=4)
    _, exact = brute_force_search(queries, gallery, 1.0, 10)
    for kind in ("hnsw", "ivf"):
        _, rows = LorentzIndex.build(gallery, 1.0, "m", kind=kind).search(queries, 10)
        overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(rows, exact)])
        assert overlap > 0.8, kind


def test_index_round_trip_and_refusals(tmp_path):
    gallery = random_points(100)
    index = LorentzIndex.build(gallery, 1.0, "model-a", labels=np.zeros(100))
    index.save(tmp_path / "idx")
    back = LorentzIndex.load(tmp_path / "idx")
    np.testing.assert_array_equal(back.search(gallery[:5], 3)[1], index.search(gallery[:5], 3)[1])
    with pytest.raises(ValueError, match="built with model 'model-a'"):
        back.search(gallery[:1], 3, model_id="model-b")
    with pytest.raises(ValueError, match="built at curvature 1"):
        back.search(gallery[:1], 3, curvature=2.0)
    bad = gallery[:2].copy()
    bad[1, 3] = np.nan
    with pytest.raises(ValueError, match="queries: 1 embeddings contain NaN or Inf"):
        back.search(bad, 3)
    with pytest.raises(ValueError, match="gallery: 1 embeddings contain NaN"):
        LorentzIndex.build(bad, 1.0, "m")
    with pytest.raises(ValueError, match="not a HySAC index"):
        LorentzIndex.load(tmp_path)
    faiss_file = tmp_path / "idx" / "faiss.index"
    faiss_file.write_bytes(
        faiss_file.read_bytes()[: faiss_file.stat().st_size // 2]
    )  # truncated (a full disk, a bad copy)
    with pytest.raises(
        ValueError, match=r"faiss.index: damaged or truncated FAISS index .*rebuild it with `imagesafety hysac index`"
    ):
        LorentzIndex.load(tmp_path / "idx")


def test_redirection_walks_toward_the_origin_until_neighbours_are_safe():
    rng = np.random.default_rng(5)
    direction = rng.normal(size=8).astype(np.float32)
    direction /= np.linalg.norm(direction)
    near = direction * rng.uniform(0.2, 0.8, (50, 1)).astype(np.float32) + rng.normal(scale=0.05, size=(50, 8)).astype(
        np.float32
    )
    far = direction * rng.uniform(3.0, 4.0, (50, 1)).astype(np.float32) + rng.normal(scale=0.05, size=(50, 8)).astype(
        np.float32
    )
    index = LorentzIndex.build(np.r_[near, far], 1.0, "m", labels=np.r_[np.zeros(50), np.ones(50)])
    query = direction * 3.5
    plain = index.search(query[None], 5)[1][0]
    assert (index.labels[plain] == 1).all()
    red = redirect(query, index, k=5, steps=20)
    assert red.safe_share == 1.0 and 0 < red.fraction < 1 and red.moved > 0 and red.reached_safe
    assert (index.labels[red.rows] == 0).all()
    # a gallery with nothing safe: the walk reaches the origin, and says it found no safe results
    unsafe_only = LorentzIndex.build(np.r_[near, far], 1.0, "m", labels=np.ones(100))
    hopeless = redirect(query, unsafe_only, k=5, steps=20)
    assert hopeless.fraction == 1.0 and not hopeless.reached_safe and hopeless.safe_share == 0.0


def test_hysac_classifier_and_cli_end_to_end(tmp_path, tiny_clip_dir):
    from imagesafety.classifiers import load_classifier
    from imagesafety.cli import app
    from test_hysac_train import write_quadruples

    runner = CliRunner()
    quads = write_quadruples(tmp_path / "q", n=60)

    def invoke(*args):
        result = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.stdout

    output = invoke(
        "hysac",
        "train",
        "--data",
        quads,
        "--out",
        tmp_path / "model",
        "--encoder",
        f"hf:{tiny_clip_dir}",
        "--epochs",
        60,
        "--batch-size",
        32,
        "--lr",
        0.01,
        "--patience",
        60,
    )
    assert "image threshold" in output
    # a labelled gallery: the training images as a folder dataset, in its validation split (what calibration reads)
    gallery = tmp_path / "gallery" / "validation"
    for label in ("safe", "unsafe"):
        (gallery / label).mkdir(parents=True)
        for i in range(20):
            (gallery / label / f"{i}.png").write_bytes((tmp_path / "q" / "img" / f"{label}{i}.png").read_bytes())
    calibrated = invoke("hysac", "calibrate", "--model", tmp_path / "model", "--dataset", gallery.parent)
    assert "validation (40 images)" in " ".join(calibrated.split())
    clf = load_classifier(f"hysac:{tmp_path / 'model'}")
    from PIL import Image

    images = [
        Image.open(gallery / label / f"{i}.png").convert("RGB") for label in ("safe", "unsafe") for i in range(20)
    ]
    preds = clf.predict(images)
    accuracy = np.mean([p.decision == (i >= 20) for i, p in enumerate(preds)])
    assert accuracy >= 0.9
    assert all(p.decision == (p.raw["distance_to_origin"] >= clf.distance_threshold) for p in preds)
    pixels = clf.embedder.pixels([clf.prepare(images[0])]).requires_grad_(True)
    clf.unsafe_logits(pixels).sum().backward()
    assert torch.isfinite(pixels.grad).all()

    invoke("hysac", "index", "--model", tmp_path / "model", "--gallery", gallery, "--out", tmp_path / "index")
    plain = json.loads(
        invoke(
            "hysac",
            "search",
            "a photo of a bloody knife 3",
            "--index",
            tmp_path / "index",
            "--model",
            tmp_path / "model",
            "--k",
            5,
            "--json",
        )
    )
    redirected = json.loads(
        invoke(
            "hysac",
            "search",
            "a photo of a bloody knife 3",
            "--index",
            tmp_path / "index",
            "--model",
            tmp_path / "model",
            "--k",
            5,
            "--redirect",
            "--json",
        )
    )
    assert len(plain["results"]) == 5
    safe_share = lambda r: np.mean([x["unsafe"] == 0 for x in r["results"]])  # noqa: E731
    assert safe_share(redirected) >= safe_share(plain) and safe_share(redirected) == 1.0
    by_image = invoke(
        "hysac",
        "search",
        "--image",
        gallery / "safe" / "0.png",
        "--index",
        tmp_path / "index",
        "--model",
        tmp_path / "model",
        "--json",
    )
    assert json.loads(by_image)["results"][0]["id"].endswith("safe/0.png")
    eval_out = invoke("hysac", "eval", "--model", tmp_path / "model", "--data", quads, "--out", tmp_path / "eval")
    report = json.loads((tmp_path / "eval" / "hysac_metrics.json").read_text())
    assert (
        report["unsafe text, redirected -> mixed gallery (safe target)"]["safe share %"]
        >= report["unsafe text -> mixed gallery (safe target)"]["safe share %"]
    )
    assert "R@1" in report["safe text -> safe images"] and "classification" in eval_out
    empty = runner.invoke(
        app, ["hysac", "search", "  ", "--index", str(tmp_path / "index"), "--model", str(tmp_path / "model")]
    )
    assert empty.exit_code == 2 and "empty query" in empty.output


def test_guard_heads_train_on_hysac_embeddings(tmp_path, tiny_clip_dir):
    """`embed --encoder hysac:DIR` gives hyperbolic embeddings that guard training takes like any other."""
    from imagesafety.encoders import load_encoder
    from imagesafety.guard import GuardConfig, train_guard
    from imagesafety.hysac.api import train_hysac
    from imagesafety.hysac.data import embed_quadruples, read_quadruples
    from imagesafety.hysac.train import HysacTrainConfig
    from imagesafety.run.embed import embed
    from test_hysac_train import write_quadruples

    quads = write_quadruples(tmp_path / "q", n=40)
    embedded = embed_quadruples(read_quadruples(quads), load_encoder(f"hf:{tiny_clip_dir}", "cpu"), progress=False)
    train_hysac(
        embedded,
        tmp_path / "model",
        config=HysacTrainConfig(epochs=30, batch_size=32, lr=1e-2, patience=30),
        progress=False,
    )
    gallery = tmp_path / "gallery"
    for label in ("safe", "unsafe"):
        (gallery / label).mkdir(parents=True)
        for i in range(20):
            (gallery / label / f"{i}.png").write_bytes((tmp_path / "q" / "img" / f"{label}{i}.png").read_bytes())
    emb = embed(f"hysac:{tmp_path / 'model'}", gallery, tmp_path / "emb.parquet", cache=None, progress=False)
    assert emb.encoder.startswith("hysac:") and emb.dim == 16
    result = train_guard(tmp_path / "emb.parquet", config=GuardConfig(val_fraction=0.25, epochs=100))
    assert result.card.metrics["validation"]["unsafe"]["f1"] >= 0.9
