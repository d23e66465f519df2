"""NudeNet's YOLOv8 detector converted to torch (`runtime=torch`): raw outputs and detections equal onnxruntime's on
the same inputs, and the unsafe logit is differentiable (white-box attacks leave the letterbox padding alone:
tests/test_robustness.py).
Reference equivalence is checked on the CPU (a GPU's TF32 convolutions round differently)."""

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("onnx2torch")
pytest.importorskip("onnxruntime")

from imagesafety.classifiers import load_classifier  # noqa: E402
from imagesafety.data.example import synthetic_image  # noqa: E402


@pytest.fixture(scope="module")
def pair():
    return load_classifier("nudenet", runtime="onnx"), load_classifier("nudenet", runtime="torch", device="cpu")


def pictures() -> list[Image.Image]:
    from skimage import data

    rng = np.random.default_rng(5)
    real = [Image.fromarray(a) for a in (data.astronaut(), data.chelsea(), data.coffee(), data.rocket())]
    return (
        real
        + [synthetic_image(rng, size=s, warm=True) for s in (120, 320, 480)]
        + [synthetic_image(rng).resize((300, 90))]
    )


def test_raw_outputs_equal_onnxruntime_before_nms(pair):
    onnx_clf, torch_clf = pair
    batch = np.stack([onnx_clf.prepare(img)[0] for img in pictures()])
    theirs, ours = onnx_clf.raw_outputs(batch), torch_clf.raw_outputs(batch)
    assert ours.shape == theirs.shape == (len(batch), 22, 2100)
    np.testing.assert_allclose(ours[:, 4:], theirs[:, 4:], atol=1e-4)  # class scores
    np.testing.assert_allclose(ours[:, :4], theirs[:, :4], rtol=1e-5, atol=2e-3)  # boxes, in input pixels (0-320)
    assert theirs[:, 4:].max() > 0.05  # some class really fires: equal outputs are not equal zeros


def test_detections_after_nms_are_identical_on_the_example_images(pair, tmp_path):
    from imagesafety.data.example import write_example_dataset

    onnx_clf, torch_clf = pair
    root = write_example_dataset(tmp_path / "ex")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".jpg", ".png", ".jpeg", ".webp"))
    images = []
    for path in files:
        try:
            with Image.open(path) as img:
                images.append(img.convert("RGB"))
        except OSError:  # the example set's truncated file
            continue
    images += pictures()
    a, b = onnx_clf.predict(images), torch_clf.predict(images)
    assert [p.raw["detections"] for p in a] == [p.raw["detections"] for p in b]
    assert sum(len(p.raw["detections"]) for p in a) > 0
    np.testing.assert_allclose([p.unsafe_score for p in a], [p.unsafe_score for p in b], atol=1e-4)
    assert [p.decision for p in a] == [p.decision for p in b]


def test_unsafe_logit_is_the_score_and_has_gradients(pair):
    import torch

    from imagesafety.classifiers.base import Differentiable

    onnx_clf, torch_clf = pair
    assert isinstance(torch_clf, Differentiable) and not isinstance(onnx_clf, Differentiable)
    images = pictures()
    x = torch_clf.input_pixels(images).requires_grad_(True)
    logits = torch_clf.unsafe_logits(x)
    scores = np.array([p.unsafe_score for p in torch_clf.predict(images)])
    above = scores >= 0.01  # below 0.01 the logit follows the best counted class (documented), not the score of 0
    assert above.any()
    np.testing.assert_allclose(torch.sigmoid(logits).detach().numpy()[above], scores[above], atol=1e-4)
    logits.sum().backward()
    assert (x.grad.flatten(1).abs().sum(1) > 0).all()  # every image gets a gradient, counted anchors or not


def test_runtime_option_is_checked(pair):
    with pytest.raises(ValueError, match="runtime=tensorrt: choose one of torch, onnx"):
        load_classifier("nudenet", runtime="tensorrt")
    with pytest.raises(ValueError, match="threads= sets onnxruntime's threads"):
        load_classifier("nudenet", runtime="torch", threads=2)
    from imagesafety.classifiers.base import cache_key

    assert cache_key(pair[0]) == cache_key(pair[1])  # the same model: cached predictions are shared
