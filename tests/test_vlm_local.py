"""`vlm:hf/PATH` on a tiny randomly initialised LLaVA built from a config and saved like a real checkpoint."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from imagesafety.classifiers import load_classifier  # noqa: E402
from imagesafety.data.example import synthetic_image  # noqa: E402


@pytest.fixture(scope="module")
def llava_dir(tmp_path_factory):
    from tiny_models import make_tiny_llava

    return make_tiny_llava(tmp_path_factory.mktemp("vlm") / "tiny-llava")


def test_local_vlm_answers_are_the_models_greedy_generations(llava_dir):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    clf = load_classifier(f"vlm:hf/{llava_dir}", protocol="policy", unsure="safe", device="cpu")
    images = [synthetic_image(np.random.default_rng(i), size=48 + 8 * i) for i in range(3)]
    preds = clf.predict(images)
    assert len(preds) == 3 and all(p.raw["verdicts"][0] in ("safe", "unsafe", "unsure") for p in preds)
    # the same answer by hand, one image at a time, straight from transformers
    processor = AutoProcessor.from_pretrained(llava_dir)
    model = AutoModelForImageTextToText.from_pretrained(llava_dir).eval()
    prompt = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": clf.prompts[0]}]}],
        add_generation_prompt=True,
    )
    for img, pred in zip(images, preds):
        inputs = processor(images=[img.convert("RGB")], text=[prompt], return_tensors="pt")
        out = model.generate(**inputs, max_new_tokens=64, do_sample=False)
        expected = processor.batch_decode(out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)[0]
        assert pred.raw["answers"][0] == expected


def test_local_vlm_runs_through_eval(llava_dir, red_folder):
    from imagesafety.bench.evaluate import evaluate

    result = evaluate(
        load_classifier(f"vlm:hf/{llava_dir}", protocol="unsafebench", unsure="unsafe", device="cpu", max_new_tokens=8),
        red_folder,
        limit=4,
        cache=None,
        progress=False,
        n_boot=10,
    )
    assert len(result.predictions) == 4 and result.predictions["error"].isna().all()
    assert "answers" in result.metrics


def test_yes_no_scoring_reads_the_first_token_probabilities(llava_dir):
    """ShieldGemma-2 style: P(Yes) vs P(No) per category policy, token ids from the tokenizer itself."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from imagesafety.classifiers.vlm.hf_vlm import answer_token_ids

    clf = load_classifier(f"vlm:hf/{llava_dir}", scoring="yes_no", taxonomy="llavaguard", device="cpu")
    processor = AutoProcessor.from_pretrained(llava_dir)
    yes, no = answer_token_ids(processor.tokenizer)
    assert yes == processor.tokenizer.encode("Yes", add_special_tokens=False)[0] != no
    img = synthetic_image(np.random.default_rng(1))
    pred = clf.predict([img])[0]
    assert set(pred.category_scores) == set(clf.taxonomy.keys) and pred.unsafe_score == max(
        pred.category_scores.values()
    )
    model = AutoModelForImageTextToText.from_pretrained(llava_dir).eval()
    inputs = processor(images=[img], text=[clf.chat_prompts[3]], return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits[0, -1]
    expected = torch.softmax(torch.stack([logits[yes], logits[no]]), 0)[0].item()
    assert pred.category_scores[clf.taxonomy.keys[3]] == pytest.approx(expected, rel=1e-4)


def test_white_box_attack_on_a_local_vlm_targets_the_answer_word(llava_dir, red_folder):
    """The differentiable path scores 'unsafe' against 'safe' as the next token; PGD on it flips the answer word."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from imagesafety.bench.robustness.attacks import pgd
    from imagesafety.bench.robustness.run import robustness
    from imagesafety.classifiers.base import Differentiable

    clf = load_classifier(f"vlm:hf/{llava_dir}", device="cpu", max_new_tokens=4)
    assert isinstance(clf, Differentiable)
    images = [synthetic_image(np.random.default_rng(i), size=40) for i in range(4)]
    pixels = clf.input_pixels(images).requires_grad_(True)
    margin = clf.unsafe_logits(pixels)
    margin.sum().backward()
    assert torch.isfinite(pixels.grad).all() and pixels.grad.abs().sum() > 0
    # the margin by hand: the model's next-token logits after the one-word question, with these pixels
    processor = AutoProcessor.from_pretrained(llava_dir)
    model = AutoModelForImageTextToText.from_pretrained(llava_dir).eval()
    inputs = processor(images=[images[0].convert("RGB")], text=[clf._attack_prompt], return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits[0, -1]
    assert margin[0].item() == pytest.approx((logits[clf._unsafe_id] - logits[clf._safe_id]).item(), abs=2e-2)
    labels = (margin.detach() >= 0).long()
    adv = pgd(pixels.detach(), labels, clf.unsafe_logits, 0.0, eps=0.3, steps=20)
    with torch.no_grad():
        flipped = ((clf.unsafe_logits(adv) >= 0).long() != labels).float().mean().item()
    assert flipped > 0 and (adv - pixels).abs().max() <= 0.3 + 1e-6
    result = robustness(
        clf,
        red_folder,
        attacks=["fgsm"],
        eps=0.05,
        k=2,
        steps=5,
        eps_curve=False,
        limit=6,
        cache=None,
        progress=False,
        n_boot=10,
    )
    assert "fgsm" in result.metrics["attacks"]
