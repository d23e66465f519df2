"""LoRA mode on a tiny random CLIP: a few training steps, our folder format, and the released checkpoint format."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")
from imagesafety.hyperbolic.checkpoint import released_rescale  # noqa: E402
from imagesafety.hyperbolic.embedder import HysacEmbedder  # noqa: E402
from imagesafety.hysac.api import train_hysac  # noqa: E402
from imagesafety.hysac.train import HysacTrainConfig  # noqa: E402
from test_hysac_train import write_quadruples  # noqa: E402


@pytest.fixture(scope="module")
def lora_model(tmp_path_factory, tiny_clip_dir):
    root = tmp_path_factory.mktemp("lora")
    quads = write_quadruples(root / "q", n=24)
    before = {k: v.clone() for k, v in _fresh(tiny_clip_dir).state_dict().items() if "lora_B" in k}
    card = train_hysac(
        quads,
        root / "model",
        mode="lora",
        backbone=str(tiny_clip_dir),
        config=HysacTrainConfig(mode="lora", epochs=2, batch_size=8, lr=1e-3, patience=99),
        progress=False,
    ).card
    return root, card, before


def _fresh(backbone):
    from imagesafety.hyperbolic.model import LoraHyperbolicCLIP

    torch.manual_seed(0)
    return LoraHyperbolicCLIP(str(backbone))


def test_lora_training_updates_adapters_and_reloads(lora_model):
    root, card, before = lora_model
    assert card.mode == "lora" and card.training["epochs_run"] == 2
    embedder = HysacEmbedder(root / "model")
    trained = embedder.model.state_dict()
    assert any(not torch.equal(trained[k], v) for k, v in before.items())  # LoRA B starts at zero and moved
    from PIL import Image

    img = Image.open(root / "q" / "img" / "safe0.png").convert("RGB")
    a = embedder.encode_images([img])
    b = HysacEmbedder(root / "model").encode_images([img])
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert embedder.encode_texts(["a calm lake"]).shape == (1, card.embed_dim)


def test_released_checkpoint_format_loads(lora_model, tiny_clip_dir, tmp_path):
    from PIL import Image

    from imagesafety.classifiers.hysac import HysacClassifier

    root, card, _ = lora_model
    ours = HysacEmbedder(root / "model")
    released = tmp_path / "released"
    released.mkdir()
    torch.save(ours.model.state_dict(), released / "hysac_model.pth")
    (released / "hysac_bounds.json").write_text(
        json.dumps({"V": {"up_95": card.bounds["V"]["up_95"]}, "S": {"up_95": card.bounds["S"]["up_95"]}})
    )
    loaded = HysacEmbedder(released, backbone=str(tiny_clip_dir))
    img = Image.open(root / "q" / "img" / "unsafe3.png").convert("RGB")
    np.testing.assert_allclose(loaded.encode_images([img]), ours.encode_images([img]), rtol=1e-5, atol=1e-6)
    clf = HysacClassifier(released, backbone=str(tiny_clip_dir))
    assert clf.distance_threshold == pytest.approx(card.bounds["V"]["up_95"])
    assert len(clf.predict([img])) == 1


def test_released_rescaling_rule():
    bounds = {"V": {"up_95": 1.0}}
    limit = 1.0 + (np.tanh((1.0 - 0.8) / 1.0) + 1)
    far = torch.tensor([[10.0, 0.0], [0.0, -20.0]])
    near = torch.tensor([[0.3, 0.1]])
    out = released_rescale(torch.cat([far, near]), bounds, 1.0)
    assert torch.allclose(out[:2].norm(dim=-1), torch.tensor([limit, limit], dtype=torch.float32))
    assert torch.allclose(out[:2] / out[:2].norm(dim=-1, keepdim=True), far / far.norm(dim=-1, keepdim=True))
    assert torch.equal(out[2], near[0])
