"""Llama Guard 4 on a tiny random Llama 4 saved as its repository is laid out: the prompt is the processor's own
chat template (categories excluded as asked), the score is P(unsafe) against P(safe) where the answer starts (checked
by a separate forward pass), and answers become S-codes and categories (known answers)."""

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from imagesafety.classifiers import load_classifier  # noqa: E402
from imagesafety.classifiers.llamaguard4 import parse_answer  # noqa: E402


@pytest.fixture(scope="module")
def guard_dir(tmp_path_factory):
    from tiny_models import make_tiny_llamaguard4

    return make_tiny_llamaguard4(tmp_path_factory.mktemp("lg4") / "Llama-Guard-4")


def images():
    rng = np.random.default_rng(7)
    return [Image.fromarray(rng.integers(0, 255, (40 + 6 * i, 52, 3), dtype=np.uint8)) for i in range(3)]


def test_the_prompt_is_the_processors_own_with_the_exclusions(guard_dir):
    from transformers import AutoProcessor

    clf = load_classifier(f"llamaguard4:{guard_dir}", exclude="S5,S7", device="cpu")
    processor = AutoProcessor.from_pretrained(guard_dir)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": ""}]}]
    expected = processor.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=False, excluded_category_keys=["S5", "S7"]
    )
    assert clf.prompt() == expected
    assert "S4: Child Exploitation." in expected and "S5: Defamation." not in expected and "S7:" not in expected
    assert "S14" not in expected  # offered only without an image
    assert "defamation" not in clf.covers and "privacy" not in clf.covers and len(clf.covers) == 11


def test_the_score_is_p_unsafe_against_p_safe_where_the_answer_starts(guard_dir):
    from transformers import AutoProcessor, Llama4ForConditionalGeneration

    clf = load_classifier(f"llamaguard4:{guard_dir}", device="cpu")
    processor = AutoProcessor.from_pretrained(guard_dir)
    model = Llama4ForConditionalGeneration.from_pretrained(guard_dir).eval()
    unsafe, safe = processor.tokenizer.encode("unsafe")[0], processor.tokenizer.encode("safe")[0]
    for image, pred in zip(images(), clf.predict(images())):
        inputs = processor(text=[clf.prompt()], images=[image], return_tensors="pt")
        inputs["pixel_values"] = inputs["pixel_values"].float()
        with torch.no_grad():
            answer = model.generate(**inputs, max_new_tokens=10, do_sample=False)[0, inputs["input_ids"].shape[1] :]
        start = next(i for i, t in enumerate(answer.tolist()) if processor.tokenizer.decode([t]).strip())
        prefix = torch.cat([inputs["input_ids"], answer[None, :start]], dim=1)
        with torch.no_grad():  # one forward pass over the prompt and the answer so far: the next token's logits
            logits = model(input_ids=prefix, pixel_values=inputs["pixel_values"]).logits[0, -1]
        expected = torch.stack([logits[unsafe], logits[safe]]).softmax(-1)[0].item()
        assert pred.unsafe_score == pytest.approx(expected, abs=1e-4)
        assert pred.raw["answer"] == processor.tokenizer.decode(answer, skip_special_tokens=True)
        assert pred.decision == int(pred.unsafe_score >= 0.5)


def test_answers_become_codes_and_categories(guard_dir, monkeypatch):
    assert parse_answer("\n\nunsafe\nS1,S12") == ("unsafe", ["S1", "S12"])
    assert parse_answer("\n\nsafe") == ("safe", [])
    assert parse_answer("unsafe") == ("unsafe", []) and parse_answer("I cannot tell") == (None, [])
    clf = load_classifier(f"llamaguard4:{guard_dir}", device="cpu")
    monkeypatch.setattr(clf, "answer", lambda image: ("\n\nunsafe\nS1, S12", 0.9))
    pred = clf.predict(images()[:1])[0]
    assert pred.decision == 1 and pred.raw["codes"] == ["S1", "S12"]
    assert {k for k, v in pred.category_scores.items() if v} == {"violent_crimes", "sexual_content"}
    monkeypatch.setattr(clf, "answer", lambda image: ("", None))
    assert "no answer in 10 tokens" in str(clf.predict(images()[:1])[0])


def test_an_unknown_category_code_is_refused(guard_dir):
    with pytest.raises(ValueError, match=r"unknown category codes \['S99'\]; Llama Guard 4's are S1-S13"):
        load_classifier(f"llamaguard4:{guard_dir}", exclude="S99", device="cpu")
