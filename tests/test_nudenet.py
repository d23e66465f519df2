"""NudeNet really run: the ONNX detector from the nudenet wheel on generated images."""

import numpy as np
import pytest
from PIL import Image

from imagesafety.classifiers import load_classifier
from imagesafety.data.example import synthetic_image

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def nudenet():
    return load_classifier("nudenet")


def test_preprocessing_matches_nudenet_on_rgb_arrays(nudenet):
    """NudeNet's own reader swaps channels twice for arrays, so on an RGB array it feeds the net RGB: so must we."""
    from nudenet.nudenet import _read_image

    img = synthetic_image(np.random.default_rng(1), size=200).crop((0, 0, 200, 130))
    theirs = _read_image(np.ascontiguousarray(np.asarray(img)), 320)[0][0]
    ours = nudenet.preprocess(img)
    assert ours.shape == theirs.shape == (3, 320, 320)
    np.testing.assert_allclose(ours, theirs, atol=1.5 / 255)


def test_channels_reach_the_network_as_rgb(nudenet):
    x = nudenet.preprocess(Image.new("RGB", (64, 64), (255, 0, 0)))
    assert x[0].max() == pytest.approx(1.0) and x[1].max() == 0 and x[2].max() == 0


def test_predictions_on_generated_images(nudenet):
    rng = np.random.default_rng(0)
    images = [synthetic_image(rng, size=s) for s in (96, 320, 500)] + [synthetic_image(rng).crop((0, 0, 256, 90))]
    preds = nudenet.predict(images)
    assert len(preds) == 4
    for p in preds:
        assert 0.0 <= p.unsafe_score <= 1.0
        assert p.decision == int(p.unsafe_score >= nudenet.threshold)
        assert p.category_scores == {"sexual": p.unsafe_score}
        assert isinstance(p.raw["detections"], list)
    # batching does not change a prediction
    alone = nudenet.predict(images[1:2])[0]
    assert alone.unsafe_score == pytest.approx(preds[1].unsafe_score, abs=1e-5)


def test_score_counts_only_chosen_labels(nudenet):
    """Counting every label can only raise the score, and does on some image; options are validated."""
    from imagesafety.classifiers.nudenet import LABELS

    everything = load_classifier("nudenet", labels=",".join(LABELS))
    rng = np.random.default_rng(2)
    images = [synthetic_image(rng, warm=True) for _ in range(8)]
    default = [p.unsafe_score for p in nudenet.predict(images)]
    wider = [p.unsafe_score for p in everything.predict(images)]
    assert all(w >= d for w, d in zip(wider, default))
    assert any(w > d for w, d in zip(wider, default))
    assert everything.config != nudenet.config
    with pytest.raises(ValueError, match="unknown NudeNet labels"):
        load_classifier("nudenet", labels="TAIL_EXPOSED")
