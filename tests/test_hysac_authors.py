"""HySAC checkpoints as the authors' code writes them (aimagelab/HySAC `HySAC.state_dict()` + hysac_bounds.json),
in both peft key layouts, loaded through `hysac:FOLDER`, the embedder and the CLI, and checked against an
independent computation of the authors' forward pass on the same weights (plain CLIP towers with the LoRA
deltas folded in by hand, projection, alpha scaling, exponential map)."""

import json
import math

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
LORA_SCALING = 1 / 16  # the released config: lora_alpha 1, r 16
PATCH = "visual.base_model.model.vision_model.embeddings.patch_embedding"


def authors_state(backbone, layout: str, seed: int = 0) -> dict:
    """A state dict shaped as the authors' HySAC saves it, with random values everywhere (LoRA B included)."""
    from imagesafety.hyperbolic.model import LoraHyperbolicCLIP

    torch.manual_seed(seed)
    model = LoraHyperbolicCLIP(str(backbone))
    g = torch.Generator().manual_seed(seed + 1)
    state = {}
    for key, value in model.state_dict().items():
        if "lora_" in key:
            value = torch.randn(value.shape, generator=g) * 0.2
        if layout == "peft-0.4.0":  # wrapped layers keep their own weights
            key = key.replace(".base_layer.", ".")
        state[key] = value.clone()
    if layout == "peft-0.4.0":  # peft 0.4.0's lora.Conv2d was built with a (random, frozen) bias
        state[f"{PATCH}.bias"] = torch.randn(model.patch_embedding().out_channels, generator=g) * 0.5
    state["curv"] = torch.tensor(0.8).log()
    state["visual_alpha"] = torch.tensor(0.9).log()
    state["textual_alpha"] = torch.tensor(0.7).log()
    state["logit_scale"] = torch.tensor(20.0).log()
    state["pixel_mean"] = torch.tensor(IMAGENET_MEAN).view(-1, 1, 1)  # saved by their model, never used
    state["pixel_std"] = torch.tensor(IMAGENET_STD).view(-1, 1, 1)
    return state


def write_checkpoint(folder, state):
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / "hysac_model.pth")
    bounds = {g: {"up_95": 1.0 + i, "low_05": 0.2 + i, "avg": 0.6 + i} for i, g in enumerate("SVUG")}
    (folder / "hysac_bounds.json").write_text(json.dumps(bounds))
    return folder


def folded_tower(cls, backbone, state, prefix):
    """A plain transformers tower with the authors' LoRA deltas folded into its weights (W + B A * alpha / r)."""
    tower = cls.from_pretrained(str(backbone)).eval()
    plain = {}
    for key, value in state.items():
        if not key.startswith(prefix) or "lora_" in key:
            continue
        name = key[len(prefix) :].replace(".base_layer.", ".")
        stem = key.replace(".base_layer.", ".").rsplit(".", 1)[0]
        a_key = next(
            (k for k in (f"{stem}.lora_A.default.weight", f"{stem}.base_layer.lora_A.default.weight") if k in state),
            None,
        )
        if name.endswith(".weight") and a_key:
            a, b = state[a_key], state[a_key.replace("lora_A", "lora_B")]
            delta = (b.reshape(b.shape[0], -1) @ a.reshape(a.shape[0], -1)).reshape(value.shape)
            value = value + delta * LORA_SCALING
        plain[name] = value
    patch = tower.vision_model.embeddings.patch_embedding if prefix.startswith("visual") else None
    if patch is not None and "vision_model.embeddings.patch_embedding.bias" in plain:
        patch.bias = torch.nn.Parameter(torch.zeros(patch.out_channels))
    missing, unexpected = tower.load_state_dict(plain, strict=False)
    assert not unexpected and all("position_ids" in m for m in missing), (missing, unexpected)
    return tower


def exp_map0(v, c):
    r = math.sqrt(c) * v.norm(dim=-1, keepdim=True)
    return torch.sinh(r) * v / r


def authors_image_points(backbone, state, images):
    """The authors' encode_image(project=True): CLIPProcessor pixels -> vision tower -> image_embeds -> alpha -> exp
    map."""
    from transformers import CLIPVisionModelWithProjection
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    tower = folded_tower(CLIPVisionModelWithProjection, backbone, state, "visual.base_model.model.")
    size = tower.config.image_size
    processor = CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    pixels = processor(images=images, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        feats = tower(pixel_values=pixels).image_embeds
    return exp_map0(feats * state["visual_alpha"].exp(), state["curv"].exp().item())


def authors_text_points(backbone, state, texts):
    from transformers import AutoTokenizer, CLIPTextModelWithProjection

    tower = folded_tower(CLIPTextModelWithProjection, backbone, state, "textual.base_model.model.")
    tokens = AutoTokenizer.from_pretrained(str(backbone))(
        texts,
        return_tensors="pt",
        padding="max_length",
        truncation=True,
        max_length=tower.config.max_position_embeddings,
    )
    with torch.no_grad():
        feats = tower(input_ids=tokens["input_ids"]).text_embeds
    return exp_map0(feats * state["textual_alpha"].exp(), state["curv"].exp().item())


def odd_images():
    """Images whose short side does not scale to a whole number (the int-vs-round difference)."""
    rng = np.random.default_rng(0)
    return [
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in ((333, 250), (250, 333), (101, 77))
    ]


@pytest.mark.parametrize("layout", ["peft-0.4.0", "current-peft"])
def test_authors_checkpoints_load_and_match_their_forward_pass(tmp_path, tiny_clip_dir, layout):
    from imagesafety.classifiers import load_classifier
    from imagesafety.hyperbolic.embedder import HysacEmbedder

    state = authors_state(tiny_clip_dir, layout)
    folder = write_checkpoint(tmp_path / "HySAC", state)
    embedder = HysacEmbedder(folder, backbone=str(tiny_clip_dir))
    images = odd_images()
    np.testing.assert_allclose(
        embedder.encode_images(images), authors_image_points(tiny_clip_dir, state, images).numpy(), atol=1e-5, rtol=1e-5
    )
    texts = ["a calm lake at dawn", "a burning car"]
    np.testing.assert_allclose(
        embedder.encode_texts(texts), authors_text_points(tiny_clip_dir, state, texts).numpy(), atol=1e-5, rtol=1e-5
    )
    assert embedder.curvature == pytest.approx(0.8, rel=1e-6)
    if layout == "peft-0.4.0":  # the frozen patch bias is loaded, not dropped
        assert torch.equal(embedder.model.patch_embedding().bias.detach(), state[f"{PATCH}.bias"])
    clf = load_classifier(f"hysac:{folder}", backbone=str(tiny_clip_dir))
    assert clf.distance_threshold == pytest.approx(2.0)  # V up_95, read as the authors' code reads the bounds
    assert len(clf.predict(images)) == 3


def test_authors_checkpoint_through_the_cli_and_unknown_keys_in_one_line(tmp_path, tiny_clip_dir):
    from typer.testing import CliRunner

    from imagesafety.cli import app

    folder = write_checkpoint(tmp_path / "HySAC", authors_state(tiny_clip_dir, "peft-0.4.0"))
    gallery = tmp_path / "gallery" / "safe"
    gallery.mkdir(parents=True)
    for i, image in enumerate(odd_images()):
        image.save(gallery / f"{i}.png")
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "eval",
            "-c",
            f"hysac:{folder}",
            "-d",
            str(tmp_path / "gallery"),
            "-o",
            str(tmp_path / "out"),
            "-q",
            "--option",
            f"backbone={tiny_clip_dir}",
        ],
    )
    assert result.exit_code == 0, result.output
    broken = authors_state(tiny_clip_dir, "peft-0.4.0")
    broken["visual.base_model.model.vision_model.mystery.weight"] = torch.zeros(3)
    write_checkpoint(tmp_path / "broken", broken)
    result = runner.invoke(
        app,
        [
            "eval",
            "-c",
            f"hysac:{tmp_path / 'broken'}",
            "-d",
            str(tmp_path / "gallery"),
            "-q",
            "--option",
            f"backbone={tiny_clip_dir}",
        ],
    )
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "unexpected key 'visual.base_model.model.vision_model.mystery.weight'" in " ".join(result.output.split())


def test_our_pixels_equal_clipprocessors_on_sides_that_do_not_divide(tiny_clip_dir):
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    from imagesafety.hyperbolic.model import LoraHyperbolicCLIP

    spec = LoraHyperbolicCLIP(str(tiny_clip_dir)).pixel_spec
    processor = CLIPImageProcessorPil(
        size={"shortest_edge": spec.height}, crop_size={"height": spec.height, "width": spec.width}
    )
    for image in odd_images():
        theirs = processor(images=[image], return_tensors="pt")["pixel_values"]
        ours = spec.normalize(spec.tensor([spec.prepare(image)]))
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), atol=1e-5)


def test_two_checkpoints_in_folders_of_the_same_name_never_share_cached_predictions(tmp_path, tiny_clip_dir):
    from imagesafety.bench.evaluate import evaluate
    from imagesafety.classifiers import load_classifier
    from imagesafety.store import PredictionCache

    data = tmp_path / "data" / "safe"
    data.mkdir(parents=True)
    for i, image in enumerate(odd_images()):
        image.save(data / f"{i}.png")
    cache = PredictionCache(tmp_path / "c.sqlite")
    first = write_checkpoint(tmp_path / "a" / "HySAC", authors_state(tiny_clip_dir, "peft-0.4.0", seed=0))
    second = write_checkpoint(tmp_path / "b" / "HySAC", authors_state(tiny_clip_dir, "peft-0.4.0", seed=5))
    a = evaluate(
        load_classifier(f"hysac:{first}", backbone=str(tiny_clip_dir)),
        tmp_path / "data",
        cache=cache,
        progress=False,
        n_boot=10,
    )
    b = evaluate(
        load_classifier(f"hysac:{second}", backbone=str(tiny_clip_dir)),
        tmp_path / "data",
        cache=cache,
        progress=False,
        n_boot=10,
    )
    assert b.stats.cached == 0 and b.stats.predicted == 3
    assert not np.allclose(a.predictions["score"], b.predictions["score"])
