"""open_clip encoders: a tiny architecture registered from a config, its random weights saved as a checkpoint
file and loaded by path, the way air-gapped users load theirs (`ARCH/PATH/TO/CHECKPOINT`)."""

import json

import numpy as np
import pytest

open_clip = pytest.importorskip("open_clip")
torch = pytest.importorskip("torch")

TINY = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("openclip")
    (root / "tiny-vit-test.json").write_text(json.dumps(TINY))
    open_clip.add_model_config(root / "tiny-vit-test.json")
    torch.manual_seed(0)
    model = open_clip.create_model("tiny-vit-test", pretrained=None)
    torch.save(model.state_dict(), root / "tiny.pt")
    return root / "tiny.pt", model.eval()


def test_open_clip_checkpoint_by_path_matches_the_model(checkpoint):
    from PIL import Image

    from imagesafety.encoders import load_encoder

    path, model = checkpoint
    encoder = load_encoder(f"clip:tiny-vit-test/{path}", device="cpu")
    assert encoder.name == f"clip:tiny-vit-test/{path}" and encoder.embed_dim == 16 and encoder.image_size == 32
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8))
    ours = encoder.encode_images([image])[0]
    with torch.no_grad():
        mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(open_clip.OPENAI_DATASET_STD).view(1, 3, 1, 1)
        feats = model.encode_image((encoder.pixels([encoder.prepare(image)]) - mean) / std)[0]
        text = model.encode_text(open_clip.get_tokenizer("tiny-vit-test")(["a photo"]))[0]
    np.testing.assert_allclose(ours, (feats / feats.norm()).numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(encoder.encode_texts(["a photo"])[0], (text / text.norm()).numpy(), rtol=1e-4, atol=1e-5)


def test_open_clip_zero_shot_classifier(checkpoint):
    from imagesafety.classifiers import load_classifier

    path, _ = checkpoint
    clf = load_classifier(f"clip-zeroshot:tiny-vit-test/{path}", device="cpu")
    from PIL import Image

    pred = clf.predict([Image.new("RGB", (32, 32), (10, 200, 30))])[0]
    assert len(pred.category_scores) == 11 and pred.unsafe_score == max(pred.category_scores.values())


def test_a_tag_resolved_to_its_file_keeps_the_tags_quickgelu(checkpoint, monkeypatch):
    """OpenAI's tags were trained with QuickGELU; loading the downloaded file must not fall back to nn.GELU."""
    from imagesafety.encoders import torch_clip

    path, model = checkpoint
    monkeypatch.setattr(torch_clip, "resolve_open_clip_checkpoint", lambda arch, tag: str(path))
    monkeypatch.setattr(
        open_clip, "get_pretrained_cfg", lambda arch, tag: {"quick_gelu": True} if tag == "faketag" else {}
    )
    tagged = torch_clip.load_open_clip("tiny-vit-test", "faketag", device="cpu")
    activations = {type(m).__name__ for m in tagged.backend.model.visual.modules()}
    assert "QuickGELU" in activations and "GELU" not in activations
    by_path = torch_clip.load_open_clip("tiny-vit-test", str(path), device="cpu")
    assert "QuickGELU" not in {type(m).__name__ for m in by_path.backend.model.visual.modules()}
