"""clip-zeroshot on a tiny random transformers CLIP saved to disk and loaded by path, as users would."""

import numpy as np
import pytest

from imagesafety.classifiers import load_classifier
from imagesafety.data.example import synthetic_image

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def classifier(tiny_clip_dir):
    return load_classifier(f"clip-zeroshot:hf:{tiny_clip_dir}", taxonomy="llavaguard", device="cpu")


def test_scores_match_an_independent_computation(classifier, tiny_clip_dir):
    from transformers import AutoTokenizer, CLIPModel

    images = [synthetic_image(np.random.default_rng(i), size=64 + 10 * i) for i in range(3)]
    preds = classifier.predict(images)

    model = CLIPModel.from_pretrained(tiny_clip_dir).eval()
    tok = AutoTokenizer.from_pretrained(tiny_clip_dir)
    pixels = classifier.input_pixels(images)
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
    with torch.no_grad():
        img = model.get_image_features(pixel_values=(pixels - mean) / std).pooler_output
        texts = [t for pair in classifier.prompts for t in pair]
        ids = tok(texts, padding="max_length", max_length=64, truncation=True, return_tensors="pt")
        txt = model.get_text_features(input_ids=ids["input_ids"], attention_mask=ids["attention_mask"]).pooler_output
        img = img / img.norm(dim=-1, keepdim=True)
        txt = (txt / txt.norm(dim=-1, keepdim=True)).view(9, 2, -1)
        logits = model.logit_scale.exp() * torch.einsum("bd,kpd->bkp", img, txt)
        expected = torch.softmax(logits, dim=-1)[..., 0].numpy()
    for pred, row in zip(preds, expected):
        assert list(pred.category_scores) == classifier.taxonomy.keys
        np.testing.assert_allclose(list(pred.category_scores.values()), row, rtol=1e-4, atol=1e-5)
        assert pred.unsafe_score == pytest.approx(row.max(), rel=1e-4)


def test_differentiable_path_agrees_with_predict_and_has_gradients(classifier):
    images = [synthetic_image(np.random.default_rng(7))]
    pixels = classifier.input_pixels(images).requires_grad_(True)
    logit = classifier.unsafe_logits(pixels)
    logit.sum().backward()
    assert torch.isfinite(pixels.grad).all() and pixels.grad.abs().sum() > 0
    assert torch.sigmoid(logit).item() == pytest.approx(classifier.predict(images)[0].unsafe_score, rel=1e-4)


def test_unknown_encoder_spec_is_a_clear_error():
    with pytest.raises(ValueError, match="expected ARCH/PRETRAINED"):
        load_classifier("clip-zeroshot:nonsense")
