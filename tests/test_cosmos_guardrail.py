"""Cosmos guardrail's video content safety filter against its authors' computation written out in the test, on a tiny
random SigLIP and a random head in the published checkpoint layout."""

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("transformers")

from imagesafety.classifiers import load_classifier  # noqa: E402
from tiny_models import make_tiny_cosmos_guardrail  # noqa: E402


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return make_tiny_cosmos_guardrail(tmp_path_factory.mktemp("cosmos"))


def images(n=6):
    rng = np.random.default_rng(2)
    return [Image.fromarray(rng.integers(0, 255, (40 + 3 * i, 36, 3), dtype=np.uint8)) for i in range(n)]


def authors_probabilities(checkpoint, encoder, pictures) -> np.ndarray:
    """SigLIP features (the vision tower's pooled output, what get_image_features returned when the guardrail was
    written),
    L2-normalised, into Linear/BatchNorm/ReLU x2 + Linear
    loaded from the checkpoint's state dict, then softmax: the guardrail's inference, written independently."""
    import torch
    from transformers import SiglipImageProcessor, SiglipModel

    model = SiglipModel.from_pretrained(encoder).eval()
    pixels = SiglipImageProcessor.from_pretrained(encoder)(images=pictures, return_tensors="pt")["pixel_values"]
    state = torch.load(checkpoint / "video_content_safety_filter" / "safety_filter.pt", weights_only=True)["model"]
    with torch.no_grad():
        x = model.vision_model(pixel_values=pixels).pooler_output
        x = x / x.norm(dim=-1, keepdim=True)
        for i in (0, 3):
            w, b = state[f"network.layers.{i}.weight"], state[f"network.layers.{i}.bias"]
            bn = {k: state[f"network.layers.{i + 1}.{k}"] for k in ("weight", "bias", "running_mean", "running_var")}
            x = x @ w.T + b
            x = (x - bn["running_mean"]) / torch.sqrt(bn["running_var"] + 1e-5) * bn["weight"] + bn["bias"]
            x = x.clamp_min(0)
        logits = x @ state["network.layers.6.weight"].T + state["network.layers.6.bias"]
        return logits.softmax(-1).numpy()


def test_probabilities_and_decisions_equal_the_guardrails(folders):
    checkpoint, encoder = folders
    clf = load_classifier(f"cosmos-guardrail:{checkpoint}", encoder=str(encoder), device="cpu")
    pictures = images()
    reference = authors_probabilities(checkpoint, encoder, pictures)
    preds = clf.predict(pictures)
    ours = np.array(
        [
            [
                p.raw["probabilities"][c]
                for c in (
                    "safe",
                    "sexual_content",
                    "violence",
                    "drugs",
                    "child_abuse",
                    "hate_and_harassment",
                    "self_harm",
                )
            ]
            for p in preds
        ]
    )
    np.testing.assert_allclose(ours, reference, atol=1e-5)
    flagged = reference.argmax(axis=1) != 0  # the guardrail flags a frame whose most probable class is not Safe
    assert 0 < flagged.sum() < len(flagged)  # both outcomes occur, so equal decisions mean something
    assert [bool(p.decision) for p in preds] == flagged.tolist()
    best = reference[:, 1:].max(axis=1)
    np.testing.assert_allclose([p.unsafe_score for p in preds], best / (best + reference[:, 0]), atol=1e-5)
    assert preds[0].category_scores["hate"] == preds[0].category_scores["harassment"]
    assert clf.config["head"].startswith("sha256:")


def test_a_folder_without_the_head_and_a_damaged_head_are_named(folders, tmp_path):
    _, encoder = folders
    with pytest.raises(ValueError, match="has no video_content_safety_filter/safety_filter.pt"):
        load_classifier(f"cosmos-guardrail:{tmp_path}", encoder=str(encoder), device="cpu")
    bad = tmp_path / "safety_filter.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"Cosmos guardrail head .*safety_filter.pt cannot be read"):
        load_classifier(f"cosmos-guardrail:{bad}", encoder=str(encoder), device="cpu")
