"""Freepik's four-level NSFW detector through transformers' timm wrapper, on a tiny random model saved as its Hub
repository is laid out; transformers' own image-classification pipeline is the reference."""

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("timm")
pytest.importorskip("transformers")

from imagesafety.classifiers import load_classifier  # noqa: E402

LEVELS = {0: "neutral", 1: "low", 2: "medium", 3: "high"}


def tiny_freepik(folder, id2label=LEVELS):
    """A random `test_vit` behind transformers' timm wrapper, saved with its image-processing config."""
    import torch
    from transformers import TimmWrapperConfig, TimmWrapperForImageClassification

    torch.manual_seed(0)
    config = TimmWrapperConfig(
        architecture="test_vit",
        num_labels=len(id2label),
        id2label=id2label,
        label2id={v: k for k, v in id2label.items()},
        pretrained_cfg={
            "input_size": [3, 64, 64],
            "mean": [0.48, 0.46, 0.41],
            "std": [0.27, 0.26, 0.28],
            "interpolation": "bicubic",
            "crop_pct": 0.9,
            "crop_mode": "center",
            "num_classes": len(id2label),
        },
    )
    model = TimmWrapperForImageClassification(config)
    with torch.no_grad():  # spread the head so the levels differ clearly
        for p in model.timm_model.get_classifier().parameters():
            p.mul_(40)
    model.save_pretrained(folder)
    return folder


def images():
    rng = np.random.default_rng(5)
    return [Image.fromarray(rng.integers(0, 255, (60 + 7 * i, 80, 3), dtype=np.uint8)) for i in range(6)]


@pytest.mark.parametrize("level", ["low", "medium", "high"])
def test_the_score_is_the_probability_of_the_level_or_above_as_the_pipeline_computes_it(tmp_path, level):
    from transformers import pipeline

    folder = tiny_freepik(tmp_path / "m")
    clf = load_classifier(f"freepik-nsfw:{folder}", level=level, device="cpu")
    reference = pipeline("image-classification", model=str(folder), device="cpu")
    order = ["neutral", "low", "medium", "high"]
    for image, pred in zip(images(), clf.predict(images())):
        probs = {r["label"]: r["score"] for r in reference(image, top_k=4)}
        expected = sum(probs[x] for x in order[order.index(level) :])
        assert pred.unsafe_score == pytest.approx(expected, abs=1e-5)
        assert pred.raw["levels"] == pytest.approx(probs, abs=1e-5)
        assert pred.decision == int(expected >= 0.5) and pred.category_scores == {"sexual": pred.unsafe_score}


def test_levels_are_read_by_name_and_a_model_without_them_says_which_it_has(tmp_path):
    shuffled = tiny_freepik(tmp_path / "s", {0: "high", 1: "neutral", 2: "medium", 3: "low"})
    pred = load_classifier(f"freepik-nsfw:{shuffled}", device="cpu").predict(images()[:1])[0]
    assert pred.unsafe_score == pytest.approx(1 - pred.raw["levels"]["neutral"], abs=1e-6)
    binary = tiny_freepik(tmp_path / "b", {0: "sfw", 1: "nsfw"})
    with pytest.raises(ValueError, match=r"has no level neutral, low, medium, high; its labels: nsfw, sfw"):
        load_classifier(f"freepik-nsfw:{binary}", device="cpu")
    with pytest.raises(ValueError, match="unknown level 'extreme': use low, medium, high"):
        load_classifier(f"freepik-nsfw:{shuffled}", level="extreme", device="cpu")
