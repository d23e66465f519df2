"""`embed`: embeddings read back equal the encoder's own output; cached re-runs call no encoder."""

import json

import numpy as np
import pandas as pd
import pytest

from conftest import jpeg_bytes
from imagesafety.data import load_dataset
from imagesafety.encoders import load_encoder
from imagesafety.images import decode_image
from imagesafety.run.embed import embed, read_embeddings

pytest.importorskip("torch")


class CountingEncoder:
    def __init__(self, inner):
        self.inner, self.calls = inner, 0
        self.name, self.identity, self.embed_dim, self.logit_scale = (
            inner.name,
            inner.identity,
            inner.embed_dim,
            inner.logit_scale,
        )

    def prepare(self, image):
        return self.inner.prepare(image)

    def encode_prepared(self, items):
        self.calls += len(items)
        return self.inner.encode_prepared(items)

    def encode_images(self, images):
        return self.encode_prepared([self.prepare(i) for i in images])

    def encode_texts(self, texts):
        return self.inner.encode_texts(texts)


@pytest.fixture(scope="module")
def encoder(tiny_clip_dir):
    return load_encoder(f"hf:{tiny_clip_dir}", device="cpu")


def test_embeddings_round_trip_and_match_the_encoder(red_folder, tmp_path, encoder):
    result = embed(encoder, red_folder, tmp_path / "emb.parquet", progress=False, batch_size=5)
    back = read_embeddings(tmp_path / "emb.parquet")
    assert back.encoder == encoder.name and back.dim == 16 and len(back.frame) == 12
    samples = {s.id: s for s in load_dataset(red_folder)}
    ids = back.ok["id"].tolist()
    expected = encoder.encode_images([decode_image(samples[i].load_bytes()) for i in ids])
    np.testing.assert_allclose(back.matrix, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(back.matrix, axis=1), 1.0, rtol=1e-5)
    assert back.ok["label"].tolist() == [samples[i].label for i in ids]
    assert result.stats.predicted == 12


def test_cached_rerun_calls_no_encoder_and_npz_output(red_folder, tmp_path, encoder):
    from imagesafety.store import PredictionCache

    cache = PredictionCache(tmp_path / "c.sqlite")
    first = CountingEncoder(encoder)
    a = embed(first, red_folder, tmp_path / "a.parquet", cache=cache, progress=False)
    second = CountingEncoder(encoder)
    b = embed(second, red_folder, tmp_path / "b.npz", cache=cache, progress=False)
    assert first.calls == 12 and second.calls == 0 and b.stats.cached == 12
    back = read_embeddings(tmp_path / "b.npz")
    np.testing.assert_array_equal(back.matrix, a.matrix)
    assert (
        back.frame["id"].tolist() == a.frame["id"].tolist()
        and back.frame["label"].tolist() == a.frame["label"].tolist()
    )


def test_broken_images_are_error_rows_and_captions_are_embedded(tmp_path, encoder):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "ok.jpg").write_bytes(jpeg_bytes())
    (tmp_path / "img" / "bad.jpg").write_bytes(b"nope")
    rows = [
        {"path": "img/ok.jpg", "label": 1, "text": "a red square"},
        {"path": "img/bad.jpg", "label": 0, "text": "broken"},
    ]
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    result = embed(encoder, tmp_path / "m.jsonl", tmp_path / "e.parquet", text=True, progress=False)
    back = read_embeddings(tmp_path / "e.parquet")
    assert back.frame["error"].notna().tolist() == [False, True]
    np.testing.assert_allclose(
        back.frame["text_embedding"][0], encoder.encode_texts(["a red square"])[0], rtol=1e-5, atol=1e-6
    )
    assert result.metadata["errors"] == 1


def test_foreign_files_are_refused(tmp_path):
    pd.DataFrame({"a": [1]}).to_parquet(tmp_path / "x.parquet")
    with pytest.raises(ValueError, match="not an imagesafety embeddings file"):
        read_embeddings(tmp_path / "x.parquet")
    with pytest.raises(ValueError, match="embeddings file not found"):
        read_embeddings(tmp_path / "missing.parquet")
