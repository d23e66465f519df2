"""Counterfactual pairs offline: a deterministic compositing editor, a stub judge, verification reasons, resume."""

import io
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import MeanRedClassifier
from imagesafety.pairs.editors import MaskCompositeEditor
from imagesafety.pairs.plans import EditPlan, template_plans
from imagesafety.pairs.verify import Thresholds, verify_pair
from imagesafety.taxonomy import LLAVAGUARD

pytest.importorskip("skimage")


class RedJudge(MeanRedClassifier):
    """Unsafe when the image is red enough: the 'feature' is a red region."""

    threshold = 0.3


def scene(seed=0, size=96):
    """A bluish textured scene with no red."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 60, (size, size, 3)).astype(np.uint8)
    base[..., 2] += 120
    return Image.fromarray(base)


RED_PATCH = Image.new("RGB", (8, 8), (255, 0, 0))


def add_plan(category="violence_harm_or_cruelty"):
    return EditPlan("x", category, 0, 1, "Add visible blood. Keep everything else.")


def test_templates_flip_the_label_for_the_policy_categories():
    remove = template_plans("a", 1, "O6", LLAVAGUARD)
    assert [(p.category, p.source_label, p.target_label) for p in remove] == [("weapons_or_substance_abuse", 1, 0)]
    assert remove[0].instruction.startswith("Remove the weapon") and "Keep everything else" in remove[0].instruction
    add_all = template_plans("b", 0, None, LLAVAGUARD)
    assert len(add_all) == 9 and all(p.target_label == 1 and p.instruction.startswith("Add") for p in add_all)
    assert template_plans("c", 1, "not-in-policy", LLAVAGUARD) == []


def test_faithful_edits_pass_and_other_edits_are_rejected_with_the_right_reason():
    original = scene()
    judge = RedJudge()
    editor = MaskCompositeEditor(box=(0.1, 0.1, 0.7, 0.7), patch=RED_PATCH, jitter=0)
    plan = add_plan()
    good = verify_pair(original, editor.edit(original, plan, 0), 1, judge, editor.region(original, plan, 0))
    assert good.kept, good.reasons
    assert good.scores["outside_similarity"] == pytest.approx(1.0) and good.scores["judge_edited_decision"] == 1

    whole = MaskCompositeEditor(box=(0, 0, 1, 1), patch=RED_PATCH, jitter=0)
    everything = verify_pair(original, whole.edit(original, plan, 0), 1, judge, None)
    assert (
        not everything.kept
        and any("touched" in r for r in everything.reasons)
        and any("SSIM" in r for r in everything.reasons)
    )

    tiny = MaskCompositeEditor(box=(0.45, 0.45, 0.5, 0.5), patch=RED_PATCH, jitter=0)
    no_flip = verify_pair(original, tiny.edit(original, plan, 0), 1, judge, tiny.region(original, plan, 0))
    assert not no_flip.kept and no_flip.reasons == ["judge did not confirm the flip (edited judged safe)"]

    leaky = editor.edit(original, plan, 0)
    leaky.paste(Image.new("RGB", (26, 26), (0, 255, 0)), (70, 70))  # a change outside the declared region
    outside = verify_pair(original, leaky, 1, judge, editor.region(original, plan, 0))
    assert not outside.kept and any("outside the edited region" in r for r in outside.reasons)

    assert not verify_pair(original, original.resize((50, 50)), 1, judge).kept
    blank = verify_pair(original, Image.new("RGB", original.size, (255, 0, 0)), 1, judge)
    assert "edited image is blank" in blank.reasons


def test_generation_stores_pairs_and_rejections_resumes_and_feeds_eval(tmp_path):
    from imagesafety.bench.evaluate import evaluate
    from imagesafety.data import load_dataset
    from imagesafety.pairs.generate import generate_pairs

    root = tmp_path / "data" / "safe" / "violence_harm_or_cruelty"
    root.mkdir(parents=True)
    for i in range(3):
        scene(i).save(root / f"{i}.png")
    (tmp_path / "data" / "safe" / "violence_harm_or_cruelty" / "broken.png").write_bytes(b"nope")

    class FlakyEditor(MaskCompositeEditor):
        """Fails on seed 0 of the first image, returns a wrong size on seed 1 of the second."""

        def edit(self, image, plan, seed):
            if seed == 0 and image.getpixel((0, 0)) == scene(0).getpixel((0, 0)):
                raise RuntimeError("GPU fell over")
            if seed == 1 and image.getpixel((0, 0)) == scene(1).getpixel((0, 0)):
                return image.resize((10, 10))
            return (
                super().edit(image, plan, seed)
                if seed > 0 or image.getpixel((0, 0)) != scene(1).getpixel((0, 0))
                else image
            )

    editor = FlakyEditor(box=(0.1, 0.1, 0.7, 0.7), patch=RED_PATCH, jitter=0.02)
    stats = generate_pairs(tmp_path / "data", tmp_path / "pairs", editor, RedJudge(), seeds=3, progress=False)
    assert stats.skipped == 1 and stats.plans == 3
    candidates = [json.loads(line) for line in (tmp_path / "pairs" / "candidates.jsonl").read_text().splitlines()]
    reasons = [r for c in candidates for r in c["reasons"]]
    assert any("editor failed: RuntimeError: GPU fell over" in r for r in reasons)
    assert any("changed the size" in r for r in reasons)
    assert any("judge did not confirm" in r for r in reasons)  # image 1, seed 0: unedited
    kept = [c for c in candidates if c["kept"]]
    assert len(kept) == stats.kept == 3
    table = pd.read_parquet(tmp_path / "pairs" / "pairs.parquet")
    assert len(table) == 6 and set(table["role"]) == {"original", "edited"}

    again = generate_pairs(tmp_path / "data", tmp_path / "pairs", editor, RedJudge(), seeds=3, progress=False)
    assert again.kept == 3 and len((tmp_path / "pairs" / "candidates.jsonl").read_text().splitlines()) == len(
        candidates
    )

    samples = list(load_dataset(tmp_path / "pairs"))
    assert len(samples) == 6 and {s.role for s in samples} == {"original", "edited"} and all(s.pair_id for s in samples)
    result = evaluate(RedJudge(), tmp_path / "pairs", cache=None, progress=False, n_boot=10)
    assert (
        result.metrics["pairs"]["overall"]["pairs"] == 3
        and result.metrics["pairs"]["overall"]["flip_sensitivity"] == 1.0
    )


def test_pairs_generate_command(tmp_path):
    from typer.testing import CliRunner

    from imagesafety.cli import app

    for category in ("nudity_content", "violence_harm_or_cruelty"):
        root = tmp_path / "data" / "unsafe" / category
        root.mkdir(parents=True)
        for i in range(2):
            img = scene(i)
            img.paste(Image.new("RGB", (40, 40), (255, 0, 0)), (30, 30))  # the unsafe feature: a red block
            img.save(root / f"{i}.png")
    result = CliRunner().invoke(
        app,
        [
            "pairs",
            "generate",
            "-d",
            str(tmp_path / "data"),
            "-o",
            str(tmp_path / "pairs"),
            "--judge",
            "nudenet",
            "--editor-option",
            "box=0.25,0.25,0.8,0.8",
            "--editor-option",
            "fill=0,0,200",
            "--no-lpips",
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    # NudeNet judges Sexual only: the violence plans are skipped, and said to be, before any editing
    assert "judge nudenet judges only nudity_content, sexual_content of llavaguard's 9 categories" in output
    assert "pairs kept of 2 plans" in output and "2 plans for categories the judge cannot judge skipped" in output
    lines = (tmp_path / "pairs" / "candidates.jsonl").read_text().splitlines()
    assert lines and all("scores" in json.loads(line) for line in lines)
    bad = CliRunner().invoke(app, ["pairs", "generate", "-d", str(tmp_path / "data"), "--editor", "magic"])
    assert bad.exit_code == 2 and "unknown editor 'magic'" in bad.output


def test_diffusers_instruction_editor_on_a_tiny_random_pipeline(tmp_path):
    """The real loading and editing code path: a random InstructPix2Pix saved and loaded like a hub checkpoint."""
    pytest.importorskip("diffusers")
    from imagesafety.pairs.editors import load_editor
    from imagesafety.pairs.generate import generate_pairs
    from tiny_models import make_tiny_instruct_pix2pix

    editor = load_editor(f"diffusers:{make_tiny_instruct_pix2pix(tmp_path / 'ip2p')}", steps=2, device="cpu")
    assert editor.config["pipeline"] == "StableDiffusionInstructPix2PixPipeline"
    img, plan = scene(3, size=32), add_plan()
    a, b, c = editor.edit(img, plan, 0), editor.edit(img, plan, 0), editor.edit(img, plan, 1)
    assert (
        a.size == img.size
        and np.array_equal(np.asarray(a), np.asarray(b))
        and not np.array_equal(np.asarray(a), np.asarray(c))
    )
    root = tmp_path / "data" / "safe" / "violence_harm_or_cruelty"
    root.mkdir(parents=True)
    img.save(root / "0.png")
    stats = generate_pairs(tmp_path / "data", tmp_path / "pairs", editor, RedJudge(), seeds=2, progress=False)
    candidates = [json.loads(line) for line in (tmp_path / "pairs" / "candidates.jsonl").read_text().splitlines()]
    assert stats.plans == 1 and 1 <= len(candidates) <= 2
    assert all(c["editor"] == editor.name and "ssim" in c["scores"] for c in candidates)


def test_gallery_filters_and_review_round_trip_in_headless_chromium(tmp_path):
    """The gallery opened in a real browser: filter by verdict, accept a pair, and find the decision in the store."""
    import shutil
    import time

    webdriver = pytest.importorskip("selenium.webdriver")
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.skip("needs Debian's chromium and chromium-driver")
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    from imagesafety.pairs.gallery import review_app
    from imagesafety.pairs.generate import generate_pairs
    from serve_helpers import running_app

    root = tmp_path / "data" / "safe" / "violence_harm_or_cruelty"
    root.mkdir(parents=True)
    for i in range(3):
        scene(i).save(root / f"{i}.png")
    tiny = MaskCompositeEditor(box=(0.45, 0.45, 0.5, 0.5), patch=RED_PATCH, jitter=0)  # too small to flip: rejected
    generate_pairs(tmp_path / "data", tmp_path / "pairs", tiny, RedJudge(), seeds=1, progress=False, limit=1)
    good = MaskCompositeEditor(box=(0.1, 0.1, 0.7, 0.7), patch=RED_PATCH, jitter=0)
    generate_pairs(tmp_path / "data", tmp_path / "pairs", good, RedJudge(), seeds=2, progress=False)
    candidates = [json.loads(line) for line in (tmp_path / "pairs" / "candidates.jsonl").read_text().splitlines()]
    kept = [c for c in candidates if c["kept"]]
    assert kept and len(kept) < len(candidates)

    options = webdriver.ChromeOptions()
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chrome'}",
    ):
        options.add_argument(flag)
    options.binary_location = shutil.which("chromium")
    with running_app(review_app(tmp_path / "pairs")) as (url, _):
        driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
        try:
            driver.set_window_size(1300, 900)
            driver.get(url + "/")
            driver.save_screenshot(str(tmp_path / "gallery.png"))  # what a reviewer sees (kept with the test's files)
            assert int(driver.find_element(By.ID, "shown").text) == len(candidates)
            cards = driver.find_elements(By.CSS_SELECTOR, ".card")
            width = driver.execute_script("return document.documentElement.clientWidth")
            assert max(c.rect["x"] + c.rect["width"] for c in cards) > 0.9 * width  # the grid uses the window
            for card in cards:  # each card: the original and the edit side by side, labelled, with the file's name
                titles = [f.text for f in card.find_elements(By.CSS_SELECTOR, "figcaption")]
                assert titles == [
                    "original",
                    "edited" if card.get_attribute("data-verdict") == "kept" else "edited (rejected)",
                ]
                figures = card.find_elements(By.CSS_SELECTOR, "figure")
                assert figures[0].rect["y"] == figures[1].rect["y"] and figures[1].rect["x"] > figures[0].rect["x"]
                assert (
                    len(card.find_elements(By.CSS_SELECTOR, "figure img")) == 2
                )  # rejected edits shown too, not empty boxes
                assert card.find_element(By.CSS_SELECTOR, ".file").text.replace(
                    card.get_attribute("data-verdict"), ""
                ) in {"0.png", "1.png", "2.png"}
            from selenium.webdriver.support.ui import Select

            Select(driver.find_element(By.ID, "f-verdict")).select_by_visible_text("kept")
            assert int(driver.find_element(By.ID, "shown").text) == len(kept)
            visible = [c for c in driver.find_elements(By.CSS_SELECTOR, ".card") if c.is_displayed()]
            pair_id = visible[0].get_attribute("data-pair")
            visible[0].find_element(By.XPATH, ".//button[text()='accept']").click()
            deadline = time.time() + 10
            while time.time() < deadline:
                # one read of the bytes: pyarrow stats the path and then opens it, which races the server's os.replace
                table = pd.read_parquet(io.BytesIO((tmp_path / "pairs" / "pairs.parquet").read_bytes()))
                if table["review"].notna().any():
                    break
                time.sleep(0.1)
        finally:
            driver.quit()
    assert set(table.loc[table["pair_id"] == pair_id, "review"]) == {"accepted"}
    assert table.loc[table["pair_id"] != pair_id, "review"].isna().all()


def test_inpainting_editor_changes_only_its_region(tmp_path):
    pytest.importorskip("diffusers")
    from imagesafety.pairs.editors import load_editor
    from tiny_models import make_tiny_instruct_pix2pix

    editor = load_editor(
        f"diffusers-inpaint:{make_tiny_instruct_pix2pix(tmp_path / 'inpaint', inpaint=True)}",
        box="0.25,0.25,0.75,0.75",
        steps=2,
        device="cpu",
    )
    img, plan = scene(4, size=40), add_plan()
    out = editor.edit(img, plan, 0)
    region = editor.region(img, plan, 0)
    a, b = np.asarray(img), np.asarray(out)
    assert out.size == img.size and np.array_equal(a[~region], b[~region]) and not np.array_equal(a[region], b[region])
    assert np.array_equal(b, np.asarray(editor.edit(img, plan, 0)))  # seeded


def test_endpoint_editor_and_llm_written_plans(tmp_path):
    pytest.importorskip("openai")
    from fake_vlm_server import make_app
    from imagesafety.pairs.editors import load_editor
    from imagesafety.pairs.generate import generate_pairs
    from imagesafety.pairs.llm_plans import LLMPlanner
    from serve_helpers import running_app

    root = tmp_path / "data" / "safe" / "violence_harm_or_cruelty"
    root.mkdir(parents=True)
    scene(5).save(root / "0.png")
    app = make_app()
    with running_app(app) as (url, _):
        editor = load_editor("openai-edit:gpt-image-1", base_url=f"{url}/v1")
        planner = LLMPlanner("planner-vlm", base_url=f"{url}/v1")
        stats = generate_pairs(
            tmp_path / "data",
            tmp_path / "pairs",
            editor,
            RedJudge(),
            planner=planner,
            seeds=1,
            progress=False,
            thresholds=Thresholds(min_ssim=0.0),
        )
    candidate = json.loads((tmp_path / "pairs" / "candidates.jsonl").read_text().splitlines()[0])
    assert (
        candidate["instruction"].startswith("Remove the red blood stains from the floor.")
        and candidate["planner"] == "llm:planner-vlm"
    )
    assert candidate["editor"] == "openai-edit:gpt-image-1" and app.state.calls["images.edit"] == 1
    assert stats.kept == 1 and candidate["scores"]["judge_edited_decision"] == 1


def test_lpips_check_on_the_real_code_path():
    """LPIPS with its packaged linear weights and a random backbone (the pretrained one is a download)."""
    pytest.importorskip("lpips")
    from imagesafety.pairs.verify import LPIPSMetric, Thresholds

    metric = LPIPSMetric(pretrained_backbone=False)
    original = scene(6, size=64)
    assert metric(original, original) == pytest.approx(0.0, abs=1e-6)
    editor = MaskCompositeEditor(box=(0.1, 0.1, 0.7, 0.7), patch=RED_PATCH, jitter=0)
    edited = editor.edit(original, add_plan(), 0)
    distance = metric(original, edited)
    assert distance > 0
    strict = verify_pair(
        original,
        edited,
        1,
        RedJudge(),
        editor.region(original, add_plan(), 0),
        lpips=metric,
        thresholds=Thresholds(max_lpips=distance / 2),
    )
    assert (
        not strict.kept
        and any("LPIPS" in r for r in strict.reasons)
        and strict.scores["lpips"] == pytest.approx(distance)
    )


def test_pixel_scores_equal_their_plain_numpy_formulas():
    """The verifier's pixel statistics (computed channel by channel and from histograms, for speed) equal the plain
    formulas on random images and an irregular region."""
    from imagesafety.pairs.verify import similarity_scores

    rng = np.random.default_rng(5)
    a = rng.integers(0, 256, (67, 91, 3), dtype=np.uint8)
    b = a.copy()
    b[10:40, 20:70] = rng.integers(0, 256, (30, 50, 3), dtype=np.uint8)
    b[50:, :5] = np.clip(b[50:, :5].astype(int) + 12, 0, 255)  # small changes outside
    region = np.zeros(a.shape[:2], dtype=bool)
    region[8:42, 18:72] = True
    region[60, 80] = True
    scores = similarity_scores(Image.fromarray(a), Image.fromarray(b), region)
    diff = np.abs(a.astype(float) - b.astype(float))
    assert scores["changed_fraction"] == pytest.approx((diff.max(axis=2) > 16).mean(), abs=1e-12)
    assert scores["outside_similarity"] == pytest.approx(1 - diff[~region].mean() / 255, abs=1e-12)
    assert scores["inside_change"] == pytest.approx(diff[region].mean() / 255, abs=1e-12)
    assert scores["edited_std"] == pytest.approx(b.reshape(-1, 3).astype(float).std(axis=0).mean(), abs=1e-9)
