"""ShieldGemma 2 through transformers' own processor and class, on a tiny random model in the published layout."""

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("transformers")

from imagesafety.classifiers import load_classifier  # noqa: E402
from tiny_models import make_tiny_shieldgemma2  # noqa: E402


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_tiny_shieldgemma2(tmp_path_factory.mktemp("shieldgemma2"))


def images():
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (30 + 7 * i, 41, 3), dtype=np.uint8)) for i in range(3)]


def test_scores_are_p_yes_of_the_next_token_for_each_image_and_policy(model_dir):
    """Independent of the class's `probabilities`: softmax over the language model's last-position logits of the
    tokenizer's own "Yes" and "No" ids, prompts built by the library's processor, image-major order."""
    import torch
    from transformers import AutoProcessor, ShieldGemma2ForImageClassification

    clf = load_classifier(f"shieldgemma2:{model_dir}", device="cpu")
    preds = clf.predict(images())
    processor = AutoProcessor.from_pretrained(model_dir)
    model = ShieldGemma2ForImageClassification.from_pretrained(model_dir).eval()
    yes, no = processor.tokenizer.convert_tokens_to_ids(["Yes", "No"])
    inputs = processor(images=images(), return_tensors="pt")
    with torch.no_grad():
        last = model.model(**inputs).logits[:, -1, [yes, no]].softmax(-1)[:, 0].numpy().reshape(3, 3)
    policies = list(processor.policy_definitions)
    assert policies == ["dangerous", "sexual", "violence"] and clf.policies == policies
    ours = np.array([[p.category_scores[k] for k in policies] for p in preds])
    np.testing.assert_allclose(ours, last, atol=1e-5)
    assert not np.allclose(ours, 1 - last, atol=1e-3)  # reading index 1 (the docstring's advice) would give P(No)
    assert [p.unsafe_score for p in preds] == pytest.approx(ours.max(axis=1).tolist())
    assert clf.covers == frozenset({"sexual", "violence"})


def test_each_prompt_carries_its_policy_text_and_custom_policies_join(model_dir, tmp_path):
    from transformers import AutoProcessor

    policy_file = tmp_path / "policies.yaml"
    policy_file.write_text('weapons: "No Weapons: The image shall not show firearms."\n')
    clf = load_classifier(
        f"shieldgemma2:{model_dir}", policy_file=str(policy_file), policies="weapons,sexual", device="cpu"
    )
    assert clf.policies == ["weapons", "sexual"] and clf.config["policies"]["weapons"].startswith("No Weapons")
    processor = AutoProcessor.from_pretrained(model_dir)
    batch = processor(images=images()[:1], policies=clf.policies, custom_policies=clf.custom, return_tensors="pt")
    texts = processor.tokenizer.batch_decode(batch["input_ids"], skip_special_tokens=False)
    assert "No Weapons: The image shall not show firearms." in texts[0] and "No Sexually Explicit content" in texts[1]
    assert set(clf.predict(images()[:1])[0].category_scores) == {"weapons", "sexual"}
    assert load_classifier(f"shieldgemma2:{model_dir}", device="cpu").config != clf.config  # policies key the cache


def test_a_policy_it_does_not_have_is_refused_with_those_it_has(model_dir, tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("weapons: No Weapons: no firearms\n")
    with pytest.raises(ValueError, match=r"policy file .*broken.yaml: mapping values are not allowed here") as info:
        load_classifier(f"shieldgemma2:{model_dir}", policy_file=str(broken), device="cpu")
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="ShieldGemma 2 has no policy hate; its policies: dangerous, sexual, violence"):
        load_classifier(f"shieldgemma2:{model_dir}", policies="hate", device="cpu")


def test_shieldgemma2_runs_through_eval(model_dir, red_folder):
    from imagesafety.bench.evaluate import evaluate

    result = evaluate(
        f"shieldgemma2:{model_dir}",
        red_folder,
        None,
        cache=None,
        progress=False,
        n_boot=10,
        classifier_options={"device": "cpu"},
    )
    assert result.predictions["error"].isna().all() and len(result.predictions) > 0

    assert {k for cell in result.predictions["category_scores"] for k in cell} == {"sexual", "violence", "dangerous"}
