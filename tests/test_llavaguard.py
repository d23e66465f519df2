"""LlavaGuard / QwenGuard v1.2: the authors' policy prompt, built as the model cards build it, and the JSON answer
read into a score and a category. Tiny random models of both architectures stand in for the 7Bs: LLaVA-OneVision
(LlavaGuard v1.2) and Qwen2.5-VL (QwenGuard v1.2)."""

import hashlib

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

from imagesafety.classifiers import load_classifier  # noqa: E402
from imagesafety.classifiers.base import ModelFailure  # noqa: E402
from tiny_models import make_tiny_llava_onevision, make_tiny_qwen25_vl  # noqa: E402

#: the authors' category list for their v1.2 answer template (llavaguard/taxonomy/assessment.py, categories_v3)
AUTHORS_CATEGORIES = [
    "O1: Hate, Humiliation, Harassment",
    "O2: Violence, Harm, or Cruelty",
    "O3: Sexual Content",
    "O4: Nudity Content",
    "O5: Criminal Planning",
    "O6: Weapons or Substance Abuse",
    "O7: Self-Harm",
    "O8: Animal Cruelty",
    "O9: Disasters or Emergencies",
    "NA: None applying",
]
START = (
    "Provide a safety assessment for the content provided by the user. Determine compliance or violation against our "
    "safety policy by reviewing the following policy categories:\n"
)


ARCHITECTURES = {"qwenguard": make_tiny_qwen25_vl, "llavaguard": make_tiny_llava_onevision}


@pytest.fixture(scope="module", params=sorted(ARCHITECTURES))
def named_folder(request, tmp_path_factory):
    return request.param, ARCHITECTURES[request.param](tmp_path_factory.mktemp(request.param))


@pytest.fixture(scope="module")
def folder(named_folder):
    return named_folder[1]


@pytest.fixture(scope="module")
def guard(named_folder):
    name, folder = named_folder
    return load_classifier(f"{name}:{folder}", device="cpu", max_new_tokens=120)


def image(seed=0, size=(80, 60)):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


def test_the_policy_is_the_authors_v1_2_default():
    from imagesafety.classifiers.llavaguard import default_policy

    policy = default_policy()
    assert policy.startswith(START)
    headers = [line for line in policy.splitlines() if line[:2] in {f"O{i}" for i in range(1, 10)}]
    assert headers == [c + ": " for c in AUTHORS_CATEGORIES[:9]]  # each header ends in ": " as the authors' do
    assert policy.count("\n\nO") == 8 and '\n\nAssessment Steps:\n1. Select a safety "rating".' in policy
    template = '    "category": str<' + "|".join(f'"{c}"' for c in AUTHORS_CATEGORIES) + ">,\n"
    assert policy.endswith('{\n    "rating": str<"Unsafe"|"Safe">,\n' + template + '    "rationale": str,\n}\n')
    # the published text, pinned: any edit of the shipped file shows here
    assert hashlib.sha256(policy.encode()).hexdigest()[:16] == "e00d3a4e822bde7c"


def test_the_prompt_is_the_model_cards_token_for_token(guard, folder):
    from transformers import AutoProcessor

    from imagesafety.classifiers.llavaguard import default_policy

    processor = AutoProcessor.from_pretrained(folder)  # as the model card does it, independently of our class
    conversation = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": default_policy()}]}]
    text_prompt = processor.apply_chat_template(conversation, add_generation_prompt=True)
    expected = processor(text=text_prompt, images=image(), return_tensors="pt")
    ours = guard.processor(images=[image()], text=[guard.prompt()], return_tensors="pt", padding=True)
    assert torch.equal(ours["input_ids"], expected["input_ids"])
    assert torch.equal(ours["pixel_values"], expected["pixel_values"])


def forcing(guard, answer: str, monkeypatch):
    """Make generation write `answer` (the model's own logits are still returned), as a trained guard would."""
    from transformers import LogitsProcessor, LogitsProcessorList

    script = guard.processor.tokenizer.encode(answer, add_special_tokens=False)

    class Force(LogitsProcessor):
        def __call__(self, input_ids, scores):
            step = input_ids.shape[1] - self.start
            forced = torch.full_like(scores, -float("inf"))
            forced[:, script[step] if step < len(script) else guard.processor.tokenizer.eos_token_id] = 0
            return forced

    real = guard.model.generate

    def generate(**kwargs):
        force = Force()
        force.start = kwargs["input_ids"].shape[1]
        return real(**kwargs, logits_processor=LogitsProcessorList([force]))

    monkeypatch.setattr(guard.model, "generate", generate)


def test_the_score_is_p_unsafe_where_the_rating_starts_and_the_category_is_read(guard, monkeypatch):
    answer = '{\n    "rating": "Unsafe",\n    "category": "O3: Sexual Content",\n    "rationale": "A test."\n}'
    forcing(guard, answer, monkeypatch)
    (prediction,) = guard.predict_prepared([guard.prepare(image())])
    # independently: one forward pass over the prompt and the answer up to the rating's value
    prefix = guard.processor.tokenizer.encode('{\n    "rating": "', add_special_tokens=False)
    inputs = guard.processor(images=[image()], text=[guard.prompt()], return_tensors="pt")
    ids = torch.cat([inputs["input_ids"], torch.tensor([prefix])], 1)
    mask = torch.ones_like(ids)
    images = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask")}
    for key, value in images.items():  # per-token inputs (Qwen's token types): the answer's tokens are text
        if value.shape == inputs["input_ids"].shape:
            images[key] = torch.cat([value, torch.zeros((1, len(prefix)), dtype=value.dtype)], 1)
    with torch.no_grad():
        logits = guard.model(input_ids=ids, attention_mask=mask, **images).logits[0, -1]
    unsafe, safe = (guard.processor.tokenizer.encode(w, add_special_tokens=False)[0] for w in ("Unsafe", "Safe"))
    expected = torch.softmax(torch.stack([logits[unsafe], logits[safe]]), 0)[0].item()
    assert prediction.unsafe_score == pytest.approx(expected, abs=1e-4)
    assert prediction.category_scores["sexual_content"] == 1.0
    assert sum(prediction.category_scores.values()) == 1.0
    assert prediction.raw["rating"] == "Unsafe" and prediction.raw["rationale"] == "A test."


def test_a_safe_rating_flags_no_category(guard, monkeypatch):
    answer = '{\n    "rating": "Safe",\n    "category": "O4: Nudity Content",\n    "rationale": "Art."\n}'
    forcing(guard, answer, monkeypatch)
    (prediction,) = guard.predict_prepared([guard.prepare(image(1))])
    assert prediction.raw["category"] == "O4" and not any(prediction.category_scores.values())


def test_an_answer_without_a_rating_is_a_model_failure(guard, monkeypatch):
    forcing(guard, "I cannot help with that.", monkeypatch)
    (failure,) = guard.predict_prepared([guard.prepare(image())])
    assert isinstance(failure, ModelFailure) and f"{guard.name}: no rating in 120 tokens" in failure


def test_a_cut_answer_is_still_read():
    from imagesafety.classifiers.llavaguard import parse_answer

    assert parse_answer('{\n    "rating": "Unsafe",\n    "category": "O7: Self-Harm",\n    "rationale": "The im') == (
        "Unsafe",
        "O7",
        "The im",
    )
    assert parse_answer('{"rating": "Maybe"}') == (None, None, None)


def test_a_custom_policy_replaces_the_text_and_the_cache_key(folder, tmp_path):
    from imagesafety.classifiers.base import cache_key

    policy = tmp_path / "policy.txt"
    policy.write_text("O3: Sexual Content is allowed on this platform.\n", encoding="utf-8")
    default = load_classifier(f"llavaguard:{folder}", device="cpu")
    custom = load_classifier(f"llavaguard:{folder}", device="cpu", policy=str(policy))
    assert "is allowed on this platform" in custom.prompt()
    assert cache_key(custom) != cache_key(default)
    with pytest.raises(ValueError, match=r"policy=.*missing.txt: no such file"):
        load_classifier(f"llavaguard:{folder}", device="cpu", policy=str(tmp_path / "missing.txt"))
