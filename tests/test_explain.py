"""Evidence maps against known answers (a classifier that fires on a planted patch) and against captum and the RISE
formula computed independently here."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from imagesafety.evidence import ExplainSettings, explain, explain_image
from imagesafety.evidence.maps import occlusion_map, rise_map, rise_masks
from planted import MAGENTA, PlantedPatchClassifier


def photos(n: int, seed: int = 0, patch: int = 14):
    """Random crops of scikit-image's photographs (stand-ins of random sizes) with a magenta square at a random
    place."""
    from skimage import data

    rng = np.random.default_rng(seed)
    sources = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    out = []
    for i in range(n):
        src = sources[i % len(sources)]
        h, w = int(rng.integers(96, 160)), int(rng.integers(96, 160))
        y, x = int(rng.integers(0, src.shape[0] - h)), int(rng.integers(0, src.shape[1] - w))
        crop = src[y : y + h, x : x + w].copy()
        py, px = int(rng.integers(0, h - patch)), int(rng.integers(0, w - patch))
        crop[py : py + patch, px : px + patch] = MAGENTA
        out.append((Image.fromarray(crop), [px, py, px + patch, py + patch]))
    return out


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.mark.parametrize("method", ["occlusion", "rise"])
def test_planted_patch_is_found_flipped_and_beats_random(method):
    clf = PlantedPatchClassifier(gain=60.0, threshold=0.1)  # flipping needs all but ~1/8 of the patch removed
    settings = ExplainSettings(method=method, window=8, stride=4, patch=4, rise_masks=400, rise_cells=16)
    found = []
    for image, truth in photos(10):
        ev = explain_image(clf, image, settings)
        assert ev.score >= 0.5
        found.append(iou(ev.boxes[0], truth) >= 0.5)
        fx0, fy0, fx1, fy1 = ev.flip_box
        covered = max(0, min(fx1, truth[2]) - max(fx0, truth[0])) * max(0, min(fy1, truth[3]) - max(fy0, truth[1]))
        assert covered >= 0.8 * 14 * 14  # the flipping region covers the patch
        assert ev.flip_fraction < 0.1 and ev.score_after_flip < 0.1
        assert ev.deletion_auc < ev.random_deletion_auc
        assert ev.heatmap.shape == (image.height, image.width)
    assert np.mean(found) >= 0.9, found


def test_a_shuffled_map_fails_the_planted_check():
    from imagesafety.evidence import regions

    clf = PlantedPatchClassifier(gain=60.0)
    image, truth = photos(1, seed=3)[0]
    work = np.asarray(image, dtype=np.float32) / 255
    from imagesafety.evidence.api import scorer_for

    heat = occlusion_map(work, scorer_for(clf, None), 8, 4)
    shuffled = np.random.default_rng(0).permutation(heat.ravel()).reshape(heat.shape)
    box = regions.top_boxes(shuffled)[0]
    assert iou(box, truth) < 0.5
    d_true, _ = regions.deletion_insertion(work, heat, scorer_for(clf, None))
    d_shuffled, _ = regions.deletion_insertion(work, shuffled, scorer_for(clf, None))
    assert d_true < d_shuffled


def test_no_flip_within_the_area_budget_is_a_result():
    class Always(PlantedPatchClassifier):
        def predict_prepared(self, items):
            from imagesafety.classifiers.base import Prediction

            return [Prediction(0.9, 1, {"sexual": 0.9}) for _ in items]

    image, _ = photos(1)[0]
    ev = explain_image(Always(), image, ExplainSettings(method="occlusion"))
    assert ev.flip_fraction is None and ev.flip_box is None and ev.error is None


def test_black_box_gradient_request_and_unknown_category_are_refused():
    clf = PlantedPatchClassifier()
    image, _ = photos(1)[0]
    with pytest.raises(ValueError, match="black-box .* supports: auto, occlusion, rise"):
        explain(clf, [image], method="integrated-gradients")
    with pytest.raises(ValueError, match="does not score category 'hate'; it scores: sexual, violence"):
        explain(clf, [image], method="occlusion", category="hate")


def test_batched_occlusion_equals_captum_on_a_zoo_torch_classifier(tiny_clip_dir):
    torch = pytest.importorskip("torch")
    from captum.attr import Occlusion

    from imagesafety.classifiers import load_classifier

    clf = load_classifier(f"clip-zeroshot:{tiny_clip_dir}")
    image = np.random.default_rng(0).random((32, 32, 3)).astype(np.float32)

    def forward(x):  # (B, 3, H, W) [0, 1] -> unsafe probability (resized to the model's 32 px inside)
        return torch.sigmoid(
            clf.unsafe_logits(torch.nn.functional.interpolate(x, size=(32, 32), mode="bilinear"))
        ).reshape(-1)

    def scorer(arrays):
        with torch.no_grad():
            return forward(torch.from_numpy(np.stack(arrays).transpose(0, 3, 1, 2))).numpy()

    ours = occlusion_map(image, scorer, window=8, stride=4, baseline=0.0, batch_size=7)
    x = torch.from_numpy(image.transpose(2, 0, 1))[None]
    theirs = Occlusion(forward).attribute(
        x, sliding_window_shapes=(3, 8, 8), strides=(3, 4, 4), baselines=0.0, perturbations_per_eval=1
    )
    assert np.abs(theirs[0, 0].numpy() - ours).max() < 1e-5
    assert np.allclose(theirs[0, 0].numpy(), theirs[0, 2].numpy())
    odd = occlusion_map(image[:30, :29], scorer, window=8, stride=5)  # windows clipped at the border, as captum's
    theirs = Occlusion(forward).attribute(
        x[:, :, :30, :29], sliding_window_shapes=(3, 8, 8), strides=(3, 5, 5), baselines=0.0
    )
    assert np.abs(theirs[0, 0].numpy() - odd).max() < 1e-5


def test_rise_equals_the_papers_formula_with_the_same_masks(tiny_clip_dir):
    torch = pytest.importorskip("torch")
    from imagesafety.classifiers import load_classifier

    clf = load_classifier(f"clip-zeroshot:{tiny_clip_dir}")
    image = np.random.default_rng(1).random((32, 32, 3)).astype(np.float32)
    masks = rise_masks(50, 32, 32, cells=4, p=0.5, seed=3)

    def scorer(arrays):
        with torch.no_grad():
            return (
                torch.sigmoid(clf.unsafe_logits(torch.from_numpy(np.stack(arrays).transpose(0, 3, 1, 2))))
                .reshape(-1)
                .numpy()
            )

    ours = rise_map(image, scorer, masks, p=0.5, batch_size=9)
    # Petsiuk et al.: S(x) = 1 / (E[M] N) * sum_i f(I . M_i) M_i(x)
    expected = np.zeros((32, 32))
    for m in masks:
        expected += float(scorer([image * m[..., None]])[0]) * m
    expected /= 0.5 * len(masks)
    assert np.abs(ours - expected).max() < 1e-5
    stacked = np.stack(list(masks))
    assert (
        stacked.shape == (50, 32, 32) and stacked.min() >= 0 and stacked.max() <= 1 and (stacked == masks[0:50]).all()
    )


def test_explain_cli_writes_evidence_maps_and_report_and_resumes(tmp_path, monkeypatch):
    import json

    import pandas as pd
    from typer.testing import CliRunner

    from imagesafety import registry
    from imagesafety.cli import app
    from planted import register_planted

    register_planted(monkeypatch)
    try:
        root = tmp_path / "data"
        (root / "unsafe" / "sexual").mkdir(parents=True)
        (root / "safe").mkdir()
        truths = {}
        for i, (image, truth) in enumerate(photos(3)):
            image.save(root / "unsafe" / "sexual" / f"{i}.png")
            truths[f"unsafe/sexual/{i}.png"] = truth
        (root / "unsafe" / "sexual" / "broken.png").write_bytes(b"not an image")
        out = tmp_path / "explain"
        args = [
            "explain",
            "-c",
            "planted",
            "-d",
            str(root),
            "-o",
            str(out),
            "--method",
            "occlusion",
            "--work-side",
            "160",
        ]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        table = pd.read_parquet(out / "evidence.parquet").set_index("id")
        assert table.loc["unsafe/sexual/broken.png", "error"]  # an error row stays an error row
        for image_id, truth in truths.items():
            row = table.loc[image_id]
            assert iou(json.loads(row["boxes"])[0], truth) >= 0.5
            heat = np.load(row["heatmap"])
            assert heat.dtype == np.float16 and heat.shape == Image.open(root / image_id).size[::-1]
            assert row["deletion_auc"] < row["random_deletion_auc"] and row["image_category"] == "sexual"
        page = (out / "explain.html").read_text()
        assert "What makes these images unsafe" in page and page.count("<figure>") == 3
        before = len(list((out / "evidence-cache").rglob("*.json")))
        assert before == 3
        clf = PlantedPatchClassifier()
        again = explain(clf, str(root), method="occlusion", out_dir=out, work_side=160)
        assert clf.images_seen == 0 and len(again) == 4  # cached per image under the same key: resumed, not recomputed
        bad = CliRunner().invoke(app, ["explain", "-c", "planted", "-d", str(root), "--method", "gradcam"])
        assert bad.exit_code == 2 and "unknown method 'gradcam'" in bad.output
    finally:
        registry._plugins.cache_clear()


def test_redact_removes_the_planted_patch_and_copies_the_rest(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from imagesafety import registry
    from imagesafety.cli import app
    from planted import register_planted, scene

    register_planted(monkeypatch)
    try:
        src = tmp_path / "in" / "sub"
        src.mkdir(parents=True)
        image, truth = photos(1, seed=11, patch=18)[0]
        image.save(src / "flagged.png")
        Image.fromarray(scene(np.random.default_rng(2))).save(src / "plain.png")
        (src / "broken.jpg").write_bytes(b"nope")
        result = CliRunner().invoke(
            app, ["redact", "-c", "planted", "-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--fill", "mean"]
        )
        assert result.exit_code == 0, result.output
        said = " ".join(result.output.split())
        assert "2 images written" in said and "1 redacted" in said and "1 unreadable" in said
        after = Image.open(tmp_path / "out" / "sub" / "flagged.png")
        assert PlantedPatchClassifier().predict([after])[0].decision == 0
        x0, y0, x1, y1 = truth
        assert not (np.asarray(after)[y0:y1, x0:x1] == MAGENTA).all(axis=-1).any()
        outside = np.asarray(after).copy(), np.asarray(image)
        assert (
            outside[0][:, : max(0, x0 - 12)] == outside[1][:, : max(0, x0 - 12)]
        ).all()  # far from the evidence: untouched
        assert (
            np.asarray(Image.open(tmp_path / "out" / "sub" / "plain.png")) == np.asarray(Image.open(src / "plain.png"))
        ).all()
        same = CliRunner().invoke(
            app, ["redact", "-c", "planted", "-i", str(tmp_path / "in"), "-o", str(tmp_path / "in")]
        )
        assert same.exit_code == 2 and "never overwrites" in same.output
    finally:
        registry._plugins.cache_clear()


def test_an_animation_is_explained_on_its_most_unsafe_frame(tmp_path):
    """A GIF whose middle frame alone carries the planted patch: `explain` reads every frame (not the first only),
    keeps the evidence of that frame, and its top box is the patch."""
    from imagesafety.data.sample import Sample

    image, truth = photos(1, seed=3)[0]
    x0, y0, x1, y1 = truth
    pixels = np.asarray(image).copy()
    pixels[y0:y1, x0:x1] = pixels[y0:y1, x0:x1].mean(axis=(0, 1)).astype(np.uint8) // 2  # the patch painted over
    clean = Image.fromarray(pixels)
    path = tmp_path / "anim.gif"
    clean.save(path, save_all=True, append_images=[image, clean], duration=100, loop=0)
    clf = PlantedPatchClassifier(gain=60.0, threshold=0.1)
    (ev,) = explain(clf, [Sample("anim", str(path))], method="occlusion", window=8, stride=4, patch=4)
    assert ev.error is None and ev.frame == 1 and ev.score >= 0.5
    assert iou(ev.boxes[0], truth) >= 0.5
    assert clf.predict([clean])[0].unsafe_score < 0.1  # the other frames are clean: the frame choice is the answer
