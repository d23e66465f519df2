"""`vlm:hf/PATH` on a tiny randomly initialised LLaVA built from a config and saved like a real checkpoint."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from imagesafety.classifiers.registry import load_classifier  # noqa: E402
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
    prompt = processor.apply_chat_template([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": clf.prompts[0]}]}],
                                           add_generation_prompt=True)
    for img, pred in zip(images, preds):
        inputs = processor(images=[img.convert("RGB")], text=[prompt], return_tensors="pt")
        out = model.generate(**inputs, max_new_tokens=64, do_sample=False)
        expected = processor.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)[0]
        assert pred.raw["answers"][0] == expected


def test_local_vlm_runs_through_eval(llava_dir, red_folder):
    from imagesafety.bench.evaluate import evaluate

    result = evaluate(load_classifier(f"vlm:hf/{llava_dir}", protocol="unsafebench", unsure="unsafe", device="cpu", max_new_tokens=8),
                      red_folder, limit=4, cache=None, progress=False, n_boot=10)
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
    assert set(pred.category_scores) == set(clf.taxonomy.keys) and pred.unsafe_score == max(pred.category_scores.values())
    model = AutoModelForImageTextToText.from_pretrained(llava_dir).eval()
    inputs = processor(images=[img], text=[clf.chat_prompts[3]], return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits[0, -1]
    expected = torch.softmax(torch.stack([logits[yes], logits[no]]), 0)[0].item()
    assert pred.category_scores[clf.taxonomy.keys[3]] == pytest.approx(expected, rel=1e-4)
