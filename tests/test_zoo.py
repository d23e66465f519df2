"""UnsafeBench's reference classifiers on random weights in the reference formats (the files laid out as their Hub
repos), checked against the reference computations written out here (and diffusers' own class for the SD filter)."""

import pickle

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


@pytest.fixture(scope="module")
def backbone(tmp_path_factory):
    """A tiny transformers CLIP whose image embedding is 768-d, like ViT-L/14's."""
    from tiny_models import make_tiny_clip

    return make_tiny_clip(tmp_path_factory.mktemp("zoo") / "clip768", projection_dim=768, seed=3)


def images(n=4, seed=0):
    rng = np.random.default_rng(seed)
    sizes = [(50, 37), (37, 61), (32, 32), (90, 45)]
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in sizes[:n]]


def reference_features(backbone, imgs):
    """CLIP image embeddings as the reference computes them: CLIPProcessor pixels -> get_image_features (not
    normalised)."""
    from transformers import CLIPModel
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    model = CLIPModel.from_pretrained(str(backbone)).eval()
    size = model.config.vision_config.image_size
    processor = CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    with torch.no_grad():
        out = model.get_image_features(pixel_values=processor(images=imgs, return_tensors="pt")["pixel_values"])
    return out if torch.is_tensor(out) else out.pooler_output


def unit(x):
    return x / x.norm(dim=-1, keepdim=True)


# ---- Q16 ----------------------------------------------------------------------------------------------------------


def test_q16_matches_its_reference_formula_on_a_pickled_float16_prompt_array(tmp_path, backbone):
    from imagesafety.classifiers import load_classifier
    from tiny_models import write_q16_prompts

    prompts = write_q16_prompts(tmp_path / "Q16")  # as in yiting/Q16: a pickled float16 numpy array
    clf = load_classifier("q16", weights=str(tmp_path / "Q16"), backbone=str(backbone), device="cpu")
    imgs = images()
    preds = clf.predict(imgs)
    text = unit(torch.from_numpy(prompts.astype(np.float32)))
    expected = torch.softmax(100.0 * unit(reference_features(backbone, imgs)) @ text.T, dim=-1)[:, 1].numpy()
    np.testing.assert_allclose([p.unsafe_score for p in preds], expected, atol=1e-5)
    assert [p.decision for p in preds] == [int(e >= 0.5) for e in expected]
    assert clf.covers == frozenset(set(transformers_free_ub_keys()) - {"sexual", "spam"})
    pixels = clf.input_pixels(imgs).requires_grad_(True)  # white-box: the logit agrees with the score
    logits = clf.unsafe_logits(pixels)
    np.testing.assert_allclose(torch.sigmoid(logits).detach().numpy(), expected, atol=1e-5)
    logits.sum().backward()
    assert torch.isfinite(pixels.grad).all() and pixels.grad.abs().sum() > 0


def transformers_free_ub_keys():
    from imagesafety.taxonomy import UNSAFEBENCH

    return UNSAFEBENCH.keys


def test_a_pickle_carrying_code_is_refused_without_running_it(tmp_path):
    from imagesafety.classifiers.zoo.common import WeightsError, load_numpy_pickle

    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    (tmp_path / "prompts.p").write_bytes(pickle.dumps(Payload(), protocol=2))
    with pytest.raises(WeightsError, match="refusing to load posix.system: this file may only hold a numpy array"):
        load_numpy_pickle(tmp_path / "prompts.p")
    assert not marker.exists()
    np.save(tmp_path / "a.npy", np.zeros(3))
    (tmp_path / "list.p").write_bytes(pickle.dumps([1, 2, 3], protocol=2))
    with pytest.raises(WeightsError, match="holds a list, expected a numpy array"):
        load_numpy_pickle(tmp_path / "list.p")


# ---- the multi-headed classifier ----------------------------------------------------------------------------------


def test_multiheaded_matches_its_reference_heads_on_the_raw_embedding(tmp_path, backbone):
    from imagesafety.classifiers import load_classifier
    from tiny_models import write_multiheaded

    folder = tmp_path / "MultiHeaded"
    heads = write_multiheaded(folder)
    clf = load_classifier("multiheaded", weights=str(folder), backbone=str(backbone), device="cpu")
    imgs = images()
    preds = clf.predict(imgs)
    feats = reference_features(backbone, imgs)  # not L2-normalised, as the authors feed it
    with torch.no_grad():
        per_head = torch.stack([torch.sigmoid(h(feats))[:, 0] for h in heads.values()], dim=1).numpy()
    np.testing.assert_allclose([p.unsafe_score for p in preds], per_head.max(axis=1), atol=1e-5)
    for p, row in zip(preds, per_head):
        np.testing.assert_allclose(
            [p.category_scores[c] for c in ("sexual", "violence", "shocking", "hate", "political")], row, atol=1e-5
        )
    assert clf.covers == {"sexual", "violence", "shocking", "hate", "political"}


def test_a_checkpoint_of_the_wrong_layout_names_the_file_and_the_layout(tmp_path, backbone):
    from imagesafety.classifiers import load_classifier
    from imagesafety.classifiers.zoo.common import WeightsError

    folder = tmp_path / "MultiHeaded"
    folder.mkdir()
    torch.save({"weight": torch.zeros(3)}, folder / "sexual.pt")
    with pytest.raises(
        WeightsError, match="sexual.pt does not match the expected layout \\(a torch.nn.Sequential state dict"
    ):
        load_classifier("multiheaded", weights=str(folder), backbone=str(backbone), device="cpu")
    with pytest.raises(
        WeightsError, match="no sexual.pt at .*elsewhere .*laid out as https://huggingface.co/yiting/MultiHeaded"
    ):
        load_classifier("multiheaded", weights=str(tmp_path / "elsewhere"), backbone=str(backbone), device="cpu")


# ---- LAION's detectors --------------------------------------------------------------------------------------------


def test_laion_l14_matches_the_autokeras_port_on_the_normalised_embedding(tmp_path, backbone):
    from imagesafety.classifiers import load_classifier
    from tiny_models import write_laion_l14

    state = write_laion_l14(tmp_path / "clip_autokeras_binary_nsfw.pth")
    clf = load_classifier(
        "laion-nsfw", weights=str(tmp_path / "clip_autokeras_binary_nsfw.pth"), backbone=str(backbone), device="cpu"
    )
    imgs = images()
    x = unit(reference_features(backbone, imgs))
    x = (x - state["norm.mean"]) / state["norm.variance"].sqrt()
    for i in (1, 2, 3):
        x = torch.relu(x @ state[f"linear_{i}.weight"].T + state[f"linear_{i}.bias"])
    expected = torch.sigmoid(x @ state["linear_4.weight"].T + state["linear_4.bias"])[:, 0].numpy()
    np.testing.assert_allclose([p.unsafe_score for p in clf.predict(imgs)], expected, atol=1e-5)
    assert clf.covers == {"harassment", "sexual"}


def test_laion_h14_matches_its_mlp(tmp_path):
    from imagesafety.classifiers import load_classifier
    from tiny_models import make_tiny_clip

    h14_backbone = make_tiny_clip(tmp_path / "clip1024", projection_dim=1024, seed=6)
    g = torch.Generator().manual_seed(6)
    sizes = [1024, 1024, 2048, 1024, 256, 128, 16, 1]
    state, linear_index = {}, [0, 3, 6, 9, 12, 15, 16]
    for index, (a, b) in zip(linear_index, zip(sizes, sizes[1:])):
        state[f"layers.{index}.weight"] = torch.randn(b, a, generator=g) * (1 / a) ** 0.5
        state[f"layers.{index}.bias"] = torch.randn(b, generator=g) * 0.05
    torch.save(state, tmp_path / "h14_nsfw.pth")
    clf = load_classifier(
        "laion-nsfw:h14", weights=str(tmp_path / "h14_nsfw.pth"), backbone=str(h14_backbone), device="cpu"
    )
    imgs = images()
    x = unit(reference_features(h14_backbone, imgs))
    for index in linear_index[:-2]:
        x = torch.relu(x @ state[f"layers.{index}.weight"].T + state[f"layers.{index}.bias"])
    x = x @ state["layers.15.weight"].T + state["layers.15.bias"]
    expected = (x @ state["layers.16.weight"].T + state["layers.16.bias"])[:, 0].clamp(0, 1).numpy()
    np.testing.assert_allclose([p.unsafe_score for p in clf.predict(imgs)], expected, atol=1e-5)


# ---- Stable Diffusion's safety checker ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def safety_checker_dir(tmp_path_factory):
    """A random StableDiffusionSafetyChecker saved as the Hub repo lays it out (pytorch_model.bin, config,
    preprocessor)."""
    pytest.importorskip("diffusers")
    from tiny_models import write_sd_safety_checker

    return write_sd_safety_checker(tmp_path_factory.mktemp("sdchecker"))


def test_sd_safety_checker_scores_and_decisions_match_diffusers_and_the_formula(safety_checker_dir):
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    from imagesafety.classifiers import load_classifier

    clf = load_classifier("sd-safety-checker", weights=str(safety_checker_dir), device="cpu")
    imgs = images() + images(4, seed=9)
    preds = clf.predict(imgs)
    reference = StableDiffusionSafetyChecker.from_pretrained(str(safety_checker_dir)).eval()
    pixels = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})(
        images=imgs, return_tensors="pt"
    )["pixel_values"]
    _, flagged = reference(clip_input=pixels, images=[np.zeros((2, 2, 3)) for _ in imgs])
    assert [p.decision for p in preds] == [int(f) for f in flagged]  # the library's own decisions
    assert any(flagged) and not all(flagged)
    assert any(p.raw["special_care"] for p in preds) and not all(p.raw["special_care"] for p in preds)
    assert all(abs(p.unsafe_score) > 5e-4 for p in preds)  # the library rounds to 3 decimals before deciding
    with torch.no_grad():  # the formula, written out: cosine - threshold, +0.01 once a special-care concept fires
        embeds = unit(reference.visual_projection(reference.vision_model(pixels)[1]))
        special = embeds @ unit(reference.special_care_embeds).T - reference.special_care_embeds_weights
        concepts = (
            embeds @ unit(reference.concept_embeds).T
            - reference.concept_embeds_weights
            + 0.01 * (special > 0).any(1, keepdim=True)
        )
    np.testing.assert_allclose([p.unsafe_score for p in preds], concepts.max(1).values.numpy(), atol=1e-5)
    np.testing.assert_allclose([p.raw["concept_scores"] for p in preds], concepts.numpy(), atol=1e-4)
    np.testing.assert_allclose([p.raw["special_scores"] for p in preds], special.numpy(), atol=1e-4)
    assert clf.covers == {"sexual"}


# ---- any Hugging Face image classifier ----------------------------------------------------------------------------


def test_hf_image_classifier_matches_the_library_pipeline(tmp_path):
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    from imagesafety.classifiers import load_classifier

    torch.manual_seed(8)
    config = ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=2,
        id2label={0: "normal", 1: "nsfw"},
        label2id={"normal": 0, "nsfw": 1},
    )
    ViTForImageClassification(config).save_pretrained(tmp_path / "vit")
    processor = ViTImageProcessor(size={"height": 32, "width": 32})
    processor.save_pretrained(tmp_path / "vit")
    clf = load_classifier(f"hf-image-classifier:{tmp_path / 'vit'}", device="cpu")
    assert clf.label_categories == {"nsfw": "sexual"} and clf.covers == {"sexual"}
    imgs = images()
    model = ViTForImageClassification.from_pretrained(tmp_path / "vit").eval()
    with torch.no_grad():
        expected = torch.softmax(model(**processor(images=imgs, return_tensors="pt")).logits, -1)[:, 1].numpy()
    np.testing.assert_allclose(
        [p.unsafe_score for p in clf.predict(imgs)], expected, atol=2e-3
    )  # processor: torchvision resize
    with pytest.raises(ValueError, match="no label 'porn'"):
        load_classifier(f"hf-image-classifier:{tmp_path / 'vit'}", unsafe_labels="porn", device="cpu")
