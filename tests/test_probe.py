"""The probe classifier: a saved guard head over a tiny encoder, checked against the math done by hand."""

import json

import numpy as np
import pytest

from imagesafety.classifiers import load_classifier
from imagesafety.data.example import synthetic_image
from imagesafety.taxonomy import LLAVAGUARD

torch = pytest.importorskip("torch")


def saved_guard(tmp_path, encoder_spec, embed_dim=16, head="linear"):
    from imagesafety.classifiers.probe import build_head, save_guard

    torch.manual_seed(0)
    module = build_head(head, embed_dim, 3)
    card = {
        "name": "test-guard",
        "encoder": encoder_spec,
        "head": head,
        "embed_dim": embed_dim,
        "outputs": ["unsafe", "o3", "o4"],
        "thresholds": {"unsafe": 0.5, "o3": 0.4, "o4": 0.6},
        "taxonomy": LLAVAGUARD.to_dict(),
    }
    return save_guard(tmp_path / "guard", module, card), module


@pytest.mark.parametrize("head", ["linear", "mlp"])
def test_probe_predictions_equal_head_on_embeddings(tmp_path, tiny_clip_dir, head):
    path, module = saved_guard(tmp_path, f"hf:{tiny_clip_dir}", head=head)
    probe = load_classifier(f"probe:{path}", device="cpu")
    images = [synthetic_image(np.random.default_rng(i)) for i in range(3)]
    emb = torch.as_tensor(probe.encoder.encode_images(images))
    with torch.no_grad():
        expected = torch.sigmoid(module(emb)).numpy()
    for pred, row in zip(probe.predict(images), expected):
        assert pred.unsafe_score == pytest.approx(row[0], rel=1e-5)
        assert pred.category_scores == pytest.approx({"o3": row[1], "o4": row[2]}, rel=1e-5)
        assert pred.decision == int(row[0] >= 0.5)
    assert probe.taxonomy == LLAVAGUARD


def test_probe_refuses_mismatched_encoder(tmp_path, tiny_clip_dir):
    path, _ = saved_guard(tmp_path, f"hf:{tiny_clip_dir}", embed_dim=768)
    with pytest.raises(ValueError, match="expects 768-d embeddings.*gives 16-d"):
        load_classifier(f"probe:{path}", device="cpu")


def test_probe_errors_for_missing_or_foreign_files(tmp_path, tiny_clip_dir):
    with pytest.raises(ValueError, match="not a saved guard \\(missing guard.json\\)"):
        load_classifier(f"probe:{tmp_path}")
    path, _ = saved_guard(tmp_path, f"hf:{tiny_clip_dir}")
    card = json.loads((path / "guard.json").read_text())
    (path / "guard.json").write_text(json.dumps({**card, "format": "other/9"}))
    with pytest.raises(ValueError, match="unknown format 'other/9'"):
        load_classifier(f"probe:{path}")
    with pytest.raises(ValueError, match="probe needs a guard folder"):
        load_classifier("probe")
