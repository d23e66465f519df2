"""Marqo's timm NSFW detector through timm's own loader and evaluation transform, on a tiny random model saved as its
Hub repository is laid out."""

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("timm")

from imagesafety.classifiers import load_classifier  # noqa: E402
from tiny_models import make_tiny_timm_classifier  # noqa: E402


def images():
    rng = np.random.default_rng(4)
    return [Image.fromarray(rng.integers(0, 255, (50 + 9 * i, 70, 3), dtype=np.uint8)) for i in range(5)]


@pytest.mark.parametrize("labels", [("NSFW", "SFW"), ("SFW", "NSFW")])
def test_score_is_the_nsfw_label_probability_as_timm_computes_it(tmp_path, labels):
    import timm
    import torch

    folder = make_tiny_timm_classifier(tmp_path / "m", labels)
    clf = load_classifier(f"marqo-nsfw:{folder}", device="cpu")
    reference_model = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
    transform = timm.data.create_transform(**timm.data.resolve_model_data_config(reference_model), is_training=False)
    with torch.no_grad():
        probs = reference_model(torch.stack([transform(img) for img in images()])).softmax(-1).numpy()
    nsfw = probs[:, labels.index("NSFW")]
    preds = clf.predict(images())
    np.testing.assert_allclose([p.unsafe_score for p in preds], nsfw, atol=1e-5)
    assert [p.decision for p in preds] == [int(x >= 0.5) for x in nsfw] and 0 < sum(p.decision for p in preds) < 5
    assert preds[0].raw["probabilities"]["SFW"] == pytest.approx(1 - preds[0].unsafe_score, abs=1e-5)


def test_a_model_without_the_label_names_its_labels(tmp_path):
    folder = make_tiny_timm_classifier(tmp_path / "m", ("safe", "explicit"))
    with pytest.raises(ValueError, match="has no label 'NSFW'; its labels: safe, explicit"):
        load_classifier(f"marqo-nsfw:{folder}", device="cpu")
    assert (
        load_classifier(f"marqo-nsfw:{folder}", unsafe_label="explicit", device="cpu").config["unsafe_label"]
        == "explicit"
    )
