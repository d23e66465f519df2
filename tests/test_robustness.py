"""Attacks on tiny torch classifiers and NudeNet, corruptions against independent definitions, the robustness run."""

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
from imagesafety.bench.robustness.attacks import AttackSpec, deepfool, fgsm, pgd, run_attack  # noqa: E402
from imagesafety.bench.robustness.corruptions import corrupt, corruption_names  # noqa: E402
from imagesafety.classifiers.base import Prediction, decide  # noqa: E402
from imagesafety.pixels import PixelSpec  # noqa: E402
from imagesafety.taxonomy import UNSAFEBENCH  # noqa: E402


class TinyTorchClassifier:
    """A random linear model on 16x16 pixels: unsafe logit = w . x + b, decision at logit 0."""

    name, version, taxonomy, threshold = "tiny-torch", "1", UNSAFEBENCH, 0.5
    pixel_spec = PixelSpec(16, resize="stretch", interpolation="bilinear")

    def __init__(self, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.w = torch.randn(3 * 16 * 16, generator=g) / 16
        self.config = {"seed": seed}

    def input_pixels(self, images):
        arrays = [
            np.asarray(img.convert("RGB").resize((16, 16), Image.BILINEAR), dtype=np.float32) / 255 for img in images
        ]
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()

    @property
    def logit_threshold(self):
        return 0.0

    def unsafe_logits(self, pixels):
        return (pixels.flatten(1) - 0.5) @ self.w

    def predict(self, images):
        with torch.no_grad():
            logits = self.unsafe_logits(self.input_pixels(images))
        return [
            Prediction(
                float(torch.sigmoid(z)), decide(float(torch.sigmoid(z)), 0.5), {"sexual": float(torch.sigmoid(z))}
            )
            for z in logits
        ]


def images_and_labels(n=40, seed=1):
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)) for _ in range(n)]


def correctly_labelled(clf, images):
    x = clf.input_pixels(images)
    with torch.no_grad():
        labels = (clf.unsafe_logits(x) >= 0).long()
    return x, labels


def test_pgd_stays_in_the_eps_ball_and_valid_range_and_beats_clean_accuracy():
    clf = TinyTorchClassifier()
    x, labels = correctly_labelled(clf, images_and_labels())
    eps = 0.03
    adv = pgd(x, labels, clf.unsafe_logits, 0.0, eps, steps=20)
    assert (adv - x).abs().max() <= eps + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    with torch.no_grad():
        robust = ((clf.unsafe_logits(adv) >= 0).long() == labels).float().mean()
    assert robust < 1.0  # clean accuracy is 1 by construction
    fg = fgsm(x, labels, clf.unsafe_logits, 0.0, eps)
    assert (fg - x).abs().max() <= eps + 1e-6
    df = deepfool(x, labels, clf.unsafe_logits, 0.0, steps=50, max_linf=eps)
    assert (df - x).abs().max() <= eps + 1e-6


def test_our_pgd_matches_the_art_implementation():
    """Success rates of our PGD and ART's ProjectedGradientDescent on the same model, eps and steps agree within 10
    points."""
    pytest.importorskip("art")
    from art.attacks.evasion import ProjectedGradientDescent
    from art.estimators.classification import PyTorchClassifier

    clf = TinyTorchClassifier(seed=3)
    x, labels = correctly_labelled(clf, images_and_labels(80, seed=4))

    class TwoClass(torch.nn.Module):
        def forward(self, pixels):
            z = clf.unsafe_logits(pixels)
            return torch.stack([torch.zeros_like(z), z], dim=1)

    estimator = PyTorchClassifier(
        TwoClass(), loss=torch.nn.CrossEntropyLoss(), input_shape=(3, 16, 16), nb_classes=2, clip_values=(0, 1)
    )
    for eps in (0.005, 0.01, 0.02):
        theirs = ProjectedGradientDescent(
            estimator, norm=np.inf, eps=eps, eps_step=2.5 * eps / 20, max_iter=20, num_random_init=1, verbose=False
        ).generate(x.numpy(), y=labels.numpy())
        ours = pgd(x, labels, clf.unsafe_logits, 0.0, eps, steps=20)
        with torch.no_grad():
            asr_ours = ((clf.unsafe_logits(ours) >= 0).long() != labels).float().mean().item()
            asr_theirs = ((clf.unsafe_logits(torch.from_numpy(theirs)) >= 0).long() != labels).float().mean().item()
        assert abs(asr_ours - asr_theirs) <= 0.10, (eps, asr_ours, asr_theirs)


def test_attacks_are_deterministic_under_a_seed():
    clf = TinyTorchClassifier()
    x, labels = correctly_labelled(clf, images_and_labels(8))
    for name in ("gn", "pgd"):
        a = run_attack(AttackSpec(name, 0.02, steps=5), x, labels, clf.unsafe_logits, 0.0, seed=7)
        b = run_attack(AttackSpec(name, 0.02, steps=5), x, labels, clf.unsafe_logits, 0.0, seed=7)
        assert torch.equal(a, b)


# ---- corruptions ----------------------------------------------------------------------------


def photo(seed=0, size=(40, 32)):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


@pytest.mark.parametrize("name", sorted(corruption_names()))
def test_corruptions_are_deterministic_and_keep_the_size(name):
    img = photo()
    for severity in (1, 5):
        a, b = corrupt(img, name, severity, seed=3), corrupt(img, name, severity, seed=3)
        assert a.size == img.size and a.mode == "RGB"
        assert np.array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(corrupt(img, name, 5, 3)), np.asarray(img))


def test_corruptions_match_the_imagenet_c_definitions_on_a_fixed_image():
    """Reference: ImageNet-C's formulas written out with scikit-image (gaussian blur, brightness) and numpy."""
    pytest.importorskip("skimage")
    from skimage.color import hsv2rgb, rgb2hsv
    from skimage.filters import gaussian

    img = photo(5)
    x = np.asarray(img, dtype=np.float64) / 255
    ref_blur = np.clip(gaussian(x, sigma=2, channel_axis=-1), 0, 1) * 255
    np.testing.assert_allclose(np.asarray(corrupt(img, "gaussian_blur", 2)), ref_blur, atol=1.0)
    hsv = rgb2hsv(x)
    hsv[..., 2] = np.clip(hsv[..., 2] + 0.3, 0, 1)
    np.testing.assert_allclose(np.asarray(corrupt(img, "brightness", 3)), np.clip(hsv2rgb(hsv), 0, 1) * 255, atol=1.0)
    means = x.mean(axis=(0, 1), keepdims=True)
    np.testing.assert_allclose(
        np.asarray(corrupt(img, "contrast", 4)), np.clip((x - means) * 0.1 + means, 0, 1) * 255, atol=1.0
    )
    noisy = np.asarray(corrupt(photo(6, (200, 200)), "gaussian_noise", 1), dtype=np.float64) / 255
    base = np.asarray(photo(6, (200, 200)), dtype=np.float64) / 255
    inside = (base > 0.35) & (base < 0.65)  # away from clipping, the noise std is ImageNet-C's 0.08 at severity 1
    assert abs((noisy - base)[inside].std() - 0.08) < 0.005


# ---- the whole run --------------------------------------------------------------------------


def test_robustness_run_on_a_tiny_torch_classifier(red_folder, tmp_path):
    from imagesafety.bench.robustness.run import robustness
    from imagesafety.data import load_dataset

    clf = TinyTorchClassifier(seed=1)
    result = robustness(
        clf,
        red_folder,
        tmp_path / "out",
        attacks=["gn", "fgsm", "pgd", "deepfool"],
        eps=0.03,
        k=8,
        steps=10,
        corruptions=["jpeg", "resize"],
        severities=[1, 5],
        save_adversarial=tmp_path / "adv",
        progress=False,
        n_boot=20,
    )
    m = result.metrics
    assert m["protocol"]["attacked"] + m["protocol"]["excluded_misclassified"] <= 12
    pgd_ra = m["attacks"]["pgd"]["overall"]["robust_accuracy"]
    assert pgd_ra < 1.0 and m["attacks"]["pgd"]["overall"]["mean_linf"] <= 0.03 + 1e-6
    curve = m["eps_curves"]["pgd"]
    values = [v for _, v in sorted((float(e), v) for e, v in curve.items())]
    assert values == sorted(values)  # more budget, more success
    assert set(m["corruptions"]) == {"jpeg", "resize"} and set(m["corruptions"]["jpeg"]) == {"1", "5"}
    saved = json.loads((tmp_path / "out" / "robustness.json").read_text())
    assert saved["attacks"]["pgd"]["overall"]["robust_accuracy"] == pytest.approx(pgd_ra)
    html = (tmp_path / "out" / "robustness.html").read_text()
    assert "Robust accuracy" in html and html.count("<svg ") == 1  # eps curve
    assert html.count("data:image/png") >= 3  # clean, adversarial, difference
    assert "severity 5" in html and "severity 2" not in html  # columns are the severities that ran
    adversarial = list(load_dataset(tmp_path / "adv" / "manifest.jsonl"))
    assert len(adversarial) == 4 * m["protocol"]["attacked"] and all(s.label in (0, 1) for s in adversarial)


def test_rerun_is_resumed_from_the_cache(red_folder, tmp_path):
    from imagesafety.bench.robustness import run as R
    from imagesafety.store import PredictionCache

    cache = PredictionCache(tmp_path / "c.sqlite")
    clf = TinyTorchClassifier(seed=1)
    first = R.robustness(
        clf,
        red_folder,
        attacks=["pgd"],
        eps=0.03,
        k=8,
        steps=10,
        eps_curve=False,
        cache=cache,
        progress=False,
        n_boot=10,
    )
    calls = []
    original = R.run_attack
    R.run_attack = lambda *a, **kw: calls.append(1) or original(*a, **kw)
    try:
        second = R.robustness(
            clf,
            red_folder,
            attacks=["pgd"],
            eps=0.03,
            k=8,
            steps=10,
            eps_curve=False,
            cache=cache,
            progress=False,
            n_boot=10,
        )
    finally:
        R.run_attack = original
    assert calls == [] and second.metrics["attacks"] == first.metrics["attacks"]


def test_white_box_on_a_classifier_without_gradients_suggests_black_box(red_folder):
    from imagesafety.bench.robustness.run import robustness

    with pytest.raises(ValueError, match="no gradients.*--attacks square"):
        robustness("nudenet", red_folder, attacks=["pgd"], progress=False)


def test_black_box_square_attack_on_nudenet(tmp_path):
    """NudeNet is ONNX: the Square attack queries its scores on the padded 320x320 input it really sees."""
    pytest.importorskip("art")
    from imagesafety.bench.robustness.run import robustness
    from imagesafety.data.example import synthetic_image

    root = tmp_path / "d"
    (root / "safe").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(3):
        synthetic_image(rng, size=96).save(root / "safe" / f"{i}.jpg")
    result = robustness(
        "nudenet", root, attacks=["square"], eps=0.05, k=2, steps=5, eps_curve=False, progress=False, n_boot=10
    )
    block = result.metrics["attacks"]["square"]["overall"]
    assert block["attacked"] == 2 and 0.0 <= block["robust_accuracy"] <= 1.0 and block["mean_linf"] <= 0.05 + 1e-6


def test_eps_in_normalised_units_uses_the_classifiers_own_std(red_folder, tiny_clip_dir):
    """UnsafeBench's eps is on the normalised input: in [0, 1] pixels it is eps times the smallest channel std of the
    model's normalisation (CLIP's, read from its preprocessing record), and the attack runs at that budget."""
    from imagesafety.bench.robustness.run import robustness
    from imagesafety.classifiers import load_classifier

    clf = load_classifier(f"clip-zeroshot:hf:{tiny_clip_dir}", device="cpu")
    clip_std = (0.26862954, 0.26130258, 0.27577711)  # the published CLIP statistics, written out independently
    result = robustness(
        clf,
        red_folder,
        attacks=["pgd"],
        eps=0.01,
        eps_space="normalized",
        k=6,
        steps=5,
        eps_curve=False,
        cache=None,
        progress=False,
        n_boot=10,
    )
    protocol = result.metrics["protocol"]
    assert protocol["eps_pixel_units"] == pytest.approx(0.01 * min(clip_std))
    assert protocol["eps_normalized_units"] == pytest.approx(0.01)
    assert result.metrics["attacks"]["pgd"]["overall"]["mean_linf"] <= 0.01 * min(clip_std) + 1e-6


@pytest.mark.parametrize(
    "attack, runtime, eps, module", [("square", "onnx", 0.2, "art"), ("pgd", "torch", 0.03, "onnx2torch")]
)
def test_attacks_leave_nudenets_padding_untouched(attack, runtime, eps, module):
    """A wide image fills only the top rows of NudeNet's square input: the attack may change those rows, never the
    padding
    (black-box on onnxruntime, white-box on the torch conversion)."""
    pytest.importorskip(module)
    from imagesafety.bench.robustness.attacks import AttackSpec
    from imagesafety.bench.robustness.run import attack_images
    from imagesafety.classifiers import load_classifier
    from imagesafety.data.example import synthetic_image

    clf = load_classifier("nudenet", runtime=runtime)
    image = synthetic_image(np.random.default_rng(3), size=240, warm=True).resize((240, 96))
    chosen = pd.DataFrame([{"id": "wide", "sha256": "x", "label": 0, "category": "sexual", "source": "real"}])
    outcome, examples = attack_images(
        clf,
        AttackSpec(attack, eps, 20 if attack == "square" else 5),
        chosen,
        {"wide": image},
        None,
        0,
        1,
        keep_examples=1,
    )
    clean, adv = examples[0]["clean"], examples[0]["adv"]
    rows, cols = clf.image_region(clf.prepare(image))
    assert (rows, cols) == (128, 320) and clean.shape == adv.shape == (3, 320, 320)
    assert np.abs(adv[:, :rows] - clean[:, :rows]).max() > 0  # the image's own pixels were attacked
    np.testing.assert_array_equal(adv[:, rows:], clean[:, rows:])  # the padding was not
    assert np.abs(adv - clean).max() <= eps + 1e-6
    if attack == "pgd":
        assert outcome[0]["adv_logit"] > outcome[0]["clean_logit"]  # pushed toward unsafe
