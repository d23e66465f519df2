"""Tiny randomly initialised models built from configs, saved the way users' checkpoints are."""

from __future__ import annotations

import json
from pathlib import Path


def byte_level_alphabet() -> list[str]:
    """The 256 printable characters byte-level BPE uses for the 256 byte values (GPT-2's table)."""
    printable = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    codes, extra = [], 0
    for b in range(256):
        if b in printable:
            codes.append(b)
        else:
            codes.append(256 + extra)
            extra += 1
    return [chr(c) for c in codes]


def write_tiny_clip_tokenizer(directory: Path) -> None:
    """A byte-level BPE vocabulary with no merges: every character is a token (enough for CLIPTokenizer)."""
    chars = byte_level_alphabet()
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (directory / "vocab.json").write_text(json.dumps(vocab))
    (directory / "merges.txt").write_text("#version: 0.2\n")


def make_tiny_clip(
    directory: Path, image_size: int = 32, seed: int = 0, patch_size: int = 8, projection_dim: int = 16
) -> Path:
    """Save a random 2-layer CLIP (projection dim 16 unless told) with its tokenizer into `directory`."""
    import torch
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    directory.mkdir(parents=True, exist_ok=True)
    write_tiny_clip_tokenizer(directory)
    tokenizer = CLIPTokenizer(str(directory / "vocab.json"), str(directory / "merges.txt"))
    tokenizer.save_pretrained(directory)
    vocab_size = len(tokenizer)
    torch.manual_seed(seed)
    config = CLIPConfig(
        text_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            vocab_size=vocab_size,
            max_position_embeddings=64,
            projection_dim=projection_dim,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        ),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=image_size,
            patch_size=patch_size,
            projection_dim=projection_dim,
        ),
        projection_dim=projection_dim,
    )
    CLIPModel(config).save_pretrained(directory)
    return directory


def make_tiny_llava(directory: Path, seed: int = 0) -> Path:
    """Save a random 2-layer LLaVA (CLIP vision tower, Llama text model) with its processor into `directory`."""
    import torch
    from transformers import (
        CLIPImageProcessor,
        CLIPTokenizer,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    directory.mkdir(parents=True, exist_ok=True)
    write_tiny_clip_tokenizer(directory)
    tokenizer = CLIPTokenizer(str(directory / "vocab.json"), str(directory / "merges.txt"))
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"], "pad_token": "<|endoftext|>"})
    template = (
        "{% for m in messages %}USER: {% for c in m['content'] %}{% if c['type'] == 'image' %}<image>\n{% else %}"
        "{{ c['text'] }}{% endif %}{% endfor %}{% endfor %} ASSISTANT:"
    )
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        tokenizer=tokenizer,
        patch_size=8,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=template,
    )
    torch.manual_seed(seed)
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
        ),
        text_config=LlamaConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
            vocab_size=len(tokenizer),
            max_position_embeddings=512,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        ),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
    )
    LlavaForConditionalGeneration(config).save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


def make_tiny_instruct_pix2pix(directory: Path, seed: int = 0, inpaint: bool = False) -> Path:
    """Save a random InstructPix2Pix pipeline (2-block UNet with 8 input channels, tiny VAE, tiny CLIP text encoder),
    or with `inpaint` a Stable Diffusion inpainting pipeline (9 input channels) of the same parts."""
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerAncestralDiscreteScheduler,
        StableDiffusionInpaintPipeline,
        StableDiffusionInstructPix2PixPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    directory.mkdir(parents=True, exist_ok=True)
    write_tiny_clip_tokenizer(directory)
    tokenizer = CLIPTokenizer(str(directory / "vocab.json"), str(directory / "merges.txt"), model_max_length=77)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=16,
        in_channels=9 if inpaint else 8,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        norm_num_groups=8,
    )
    vae = AutoencoderKL(
        block_out_channels=[32, 64],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2,
        latent_channels=4,
        norm_num_groups=8,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            vocab_size=len(tokenizer),
            max_position_embeddings=77,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    pipeline = StableDiffusionInpaintPipeline if inpaint else StableDiffusionInstructPix2PixPipeline
    pipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=EulerAncestralDiscreteScheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    ).save_pretrained(directory)
    return directory


# ---- the reference classifiers' checkpoints, laid out as their Hub repos (random weights) --------------------------

MULTIHEADED_HEADS = ("sexual", "violent", "disturbing", "hateful", "political")


def write_q16_prompts(folder: Path, dim: int = 768, seed: int = 1):
    """yiting/Q16: prompts.p, a pickled float16 numpy array (safe, unsafe) x dim."""
    import pickle

    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    prompts = np.random.default_rng(seed).normal(size=(2, dim)).astype(np.float16)
    with open(folder / "prompts.p", "wb") as fh:
        pickle.dump(prompts, fh, protocol=2)
    return prompts


def write_multiheaded(folder: Path, dim: int = 768, seed: int = 4) -> dict:
    """yiting/MultiHeaded: {head}.pt state dicts of Linear(dim, 384), ReLU, Dropout, BatchNorm1d(384), Linear(384,
    1)."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    heads = {}
    for name in MULTIHEADED_HEADS:
        head = torch.nn.Sequential(
            torch.nn.Linear(dim, 384),
            torch.nn.ReLU(),
            torch.nn.Dropout(0.5),
            torch.nn.BatchNorm1d(384),
            torch.nn.Linear(384, 1),
        )
        with torch.no_grad():  # non-trivial running statistics, as a trained head has
            head[3].running_mean.normal_(0, 0.3)
            head[3].running_var.uniform_(0.5, 2.0)
        torch.save(head.state_dict(), folder / f"{name}.pt")
        heads[name] = head.eval()
    return heads


def write_laion_l14(path: Path, dim: int = 768, seed: int = 5) -> dict:
    """yiting/NSFWDetector: clip_autokeras_binary_nsfw.pth (normalisation, then dim-64-512-256-1)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    state = {
        "norm.mean": torch.randn(dim, generator=g) * 0.01,
        "norm.variance": torch.rand(dim, generator=g) * 0.01 + 1e-3,
    }
    for i, (a, b) in enumerate(((dim, 64), (64, 512), (512, 256), (256, 1)), start=1):
        state[f"linear_{i}.weight"] = torch.randn(b, a, generator=g) * 0.1
        state[f"linear_{i}.bias"] = torch.randn(b, generator=g) * 0.1
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return state


def write_sd_safety_checker(
    folder: Path, vision: dict | None = None, projection_dim: int = 24, image_size: int = 32, seed: int = 7
):
    """CompVis/stable-diffusion-safety-checker's layout: pytorch_model.bin, config.json, preprocessor_config.json."""
    import json

    import torch
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    vision = vision or dict(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, patch_size=8
    )
    config = CLIPConfig(vision_config=dict(vision, image_size=image_size), projection_dim=projection_dim)
    checker = StableDiffusionSafetyChecker(config).eval()
    with torch.no_grad():
        for p in checker.vision_model.parameters():
            p.normal_(0, 0.2)
        checker.visual_projection.weight.normal_(0, 0.3)
        checker.concept_embeds.normal_()
        checker.special_care_embeds.normal_()
        checker.concept_embeds_weights.uniform_(0.51, 0.53)  # near these images' cosines: some flagged, some not
        checker.special_care_embeds_weights.uniform_(0.015, 0.025)  # special care fires for some images
    checker.save_pretrained(folder)
    for weights in folder.glob("*.safetensors"):  # the Hub repo ships pytorch_model.bin
        weights.unlink()
    torch.save(checker.state_dict(), folder / "pytorch_model.bin")
    mean, std = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
    (folder / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "crop_size": image_size,
                "do_center_crop": True,
                "do_normalize": True,
                "do_resize": True,
                "feature_extractor_type": "CLIPFeatureExtractor",
                "image_mean": list(mean),
                "image_std": list(std),
                "resample": 3,
                "size": image_size,
            }
        )
    )
    return folder


def make_tiny_shieldgemma2(directory: Path, seed: int = 0) -> Path:
    """Save a random 2-layer ShieldGemma 2 (SigLIP vision tower, Gemma 3 text model) with a ShieldGemma2Processor:
    a character-level tokenizer that has Gemma 3's image tokens and whole-word "Yes" / "No" tokens."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import (
        Gemma3ImageProcessor,
        Gemma3TextConfig,
        PreTrainedTokenizerFast,
        ShieldGemma2Config,
        ShieldGemma2ForImageClassification,
        ShieldGemma2Processor,
        SiglipVisionConfig,
    )

    directory.mkdir(parents=True, exist_ok=True)
    specials = [
        "<pad>",
        "<eos>",
        "<bos>",
        "<unk>",
        "<start_of_image>",
        "<end_of_image>",
        "<image_soft_token>",
        "<start_of_turn>",
        "<end_of_turn>",
        "Yes",
        "No",
    ]
    vocab = {t: i for i, t in enumerate(specials + [chr(c) for c in range(32, 127)] + ["\n"])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    backend.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        additional_special_tokens=specials[4:9],
        extra_special_tokens={
            "boi_token": "<start_of_image>",
            "eoi_token": "<end_of_image>",
            "image_token": "<image_soft_token>",
        },
    )
    template = (
        "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ m['role'] }}\n{% for c in m['content'] %}"
        "{% if c['type'] == 'image' %}<start_of_image>{% else %}{{ c['text'] }}{% endif %}{% endfor %}<end_of_turn>\n"
        "{% endfor %}<start_of_turn>model\n"
    )
    processor = ShieldGemma2Processor(
        image_processor=Gemma3ImageProcessor(size={"height": 32, "width": 32}),
        tokenizer=tokenizer,
        chat_template=template,
        image_seq_length=4,
    )
    config = ShieldGemma2Config(
        vision_config=SiglipVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
        ).to_dict(),
        text_config=Gemma3TextConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=16,
            vocab_size=len(vocab),
            max_position_embeddings=512,
            sliding_window=64,
            pad_token_id=0,
            eos_token_id=1,
            bos_token_id=2,
        ).to_dict(),
        mm_tokens_per_image=4,
        boi_token_index=vocab["<start_of_image>"],
        eoi_token_index=vocab["<end_of_image>"],
        image_token_index=vocab["<image_soft_token>"],
    )
    config.yes_token_index, config.no_token_index = vocab["Yes"], vocab["No"]
    torch.manual_seed(seed)
    ShieldGemma2ForImageClassification(config).save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


def make_tiny_cosmos_guardrail(directory: Path, seed: int = 0) -> tuple[Path, Path]:
    """A random 2-layer SigLIP (image processor included) and a random head in the guardrail's checkpoint layout
    ({"model": state dict with network.layers.N keys}, batch-norm statistics set), under
    `directory/video_content_safety_filter/safety_filter.pt`. Returns (checkpoint folder, encoder folder)."""
    import torch
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel

    torch.manual_seed(seed)
    encoder = directory / "siglip"
    config = SiglipConfig(
        text_config=dict(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, vocab_size=64
        ),
        vision_config=dict(
            hidden_size=48,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
        ),
    )
    SiglipModel(config).save_pretrained(encoder)
    SiglipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(encoder)
    state = {}
    for i, (n_in, n_out) in enumerate(((48, 512), (512, 256))):
        state[f"network.layers.{3 * i}.weight"] = torch.randn(n_out, n_in) / n_in**0.5 * 4
        state[f"network.layers.{3 * i}.bias"] = torch.randn(n_out) * 0.1
        bn = f"network.layers.{3 * i + 1}"
        state |= {
            f"{bn}.weight": 1 + 0.1 * torch.randn(n_out),
            f"{bn}.bias": 0.1 * torch.randn(n_out),
            f"{bn}.running_mean": 0.1 * torch.randn(n_out),
            f"{bn}.running_var": 0.5 + torch.rand(n_out),
            f"{bn}.num_batches_tracked": torch.tensor(100),
        }
    state["network.layers.6.weight"] = torch.randn(7, 256) / 16 * 0.3
    state["network.layers.6.bias"] = torch.tensor([0.8, 0, 0, 0, 0, 0, 0])  # Safe wins on some images, not all
    head = directory / "video_content_safety_filter" / "safety_filter.pt"
    head.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": state}, head)
    return directory, encoder


def make_tiny_timm_classifier(directory: Path, labels=("NSFW", "SFW"), seed: int = 0) -> Path:
    """A random 2-block ViT (Marqo's architecture, vit_tiny_patch16_384, at 64 px) saved as a timm Hub repository is
    (config.json with its label names, model.safetensors)."""
    import timm
    import torch
    from timm.models import save_for_hf

    torch.manual_seed(seed)
    model = timm.create_model("vit_tiny_patch16_384", pretrained=False, num_classes=len(labels), img_size=64, depth=2)
    model.pretrained_cfg = {**model.pretrained_cfg, "input_size": (3, 64, 64), "crop_pct": 1.0}
    with torch.no_grad():
        model.head.weight.normal_(0, 1.0)  # scores away from 0.5 (timm starts heads at zero), so label order matters
    save_for_hf(
        model,
        directory,
        model_config={"label_names": list(labels)},
        model_args={"img_size": 64, "depth": 2, "num_classes": len(labels)},
    )
    return directory


# Llama Guard 4's chat template, written from the prompt its processor renders (Hugging Face's llama-recipes
# notebook): the categories (S14 only without an image), excluded_category_keys honoured, the answer instructions.
LLAMAGUARD4_CATEGORIES = [
    ("S1", "Violent Crimes"),
    ("S2", "Non-Violent Crimes"),
    ("S3", "Sex Crimes"),
    ("S4", "Child Exploitation"),
    ("S5", "Defamation"),
    ("S6", "Specialized Advice"),
    ("S7", "Privacy"),
    ("S8", "Intellectual Property"),
    ("S9", "Indiscriminate Weapons"),
    ("S10", "Hate"),
    ("S11", "Self-Harm"),
    ("S12", "Sexual Content"),
    ("S13", "Elections"),
    ("S14", "Code Interpreter Abuse"),
]
LLAMAGUARD4_TEMPLATE = (
    "{% set ns = namespace(image=false) %}"
    "{% for m in messages %}{% for c in m['content'] %}{% if c['type'] == 'image' %}{% set ns.image = true %}"
    "{% endif %}{% endfor %}{% endfor %}"
    "{% set excluded = excluded_category_keys if excluded_category_keys is defined else [] %}"
    "{{ bos_token }}<|header_start|>user<|header_end|>\n\n"
    "Task: Check if there is unsafe content in 'User' messages in conversations according to our safety policy "
    "with the below categories.\n\n<BEGIN UNSAFE CONTENT CATEGORIES>\n"
    "{% for code, name in categories %}{% if code not in excluded and not (code == 'S14' and ns.image) %}"
    "{{ code }}: {{ name }}.\n{% endif %}{% endfor %}"
    "<END UNSAFE CONTENT CATEGORIES>\n\n<BEGIN CONVERSATION>\n\n"
    "{% for m in messages %}User: {% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<|image|>{% else %}{{ c['text'] }}{% endif %}{% endfor %}\\n\\n\n\n{% endfor %}"
    "<END CONVERSATION>\n\nProvide your safety assessment for ONLY THE LAST User message in the above "
    "conversation:\n - First line must read 'safe' or 'unsafe'.\n - If unsafe, a second line must include a "
    "comma-separated list of violated categories. <|eot|><|header_start|>assistant<|header_end|>\n\n"
)


def make_tiny_llamaguard4(folder: Path) -> Path:
    """A random two-layer Llama 4 (vision tower, pixel shuffle, text model) with a byte-level tokenizer holding Llama
    4's special tokens and a processor carrying Llama Guard 4's prompt, saved as the Hub repository is laid out."""
    import torch
    from transformers import (
        Llama4Config,
        Llama4ForConditionalGeneration,
        Llama4ImageProcessor,
        Llama4Processor,
        Llama4TextConfig,
        Llama4VisionConfig,
    )

    special = [
        "<|begin_of_text|>",
        "<|eot|>",
        "<|header_start|>",
        "<|header_end|>",
        "<|image|>",
        "<|image_start|>",
        "<|image_end|>",
        "<|patch|>",
        "<|tile_x_separator|>",
        "<|tile_y_separator|>",
        "<|finetune_right_pad|>",
    ]
    tokenizer = byte_level_fast_tokenizer(
        special, bos_token="<|begin_of_text|>", eos_token="<|eot|>", pad_token="<|finetune_right_pad|>"
    )
    template = LLAMAGUARD4_TEMPLATE.replace(
        "{% for code, name in categories %}",
        "{% for code, name in " + repr([list(c) for c in LLAMAGUARD4_CATEGORIES]) + " %}",
    )
    processor = Llama4Processor(
        image_processor=Llama4ImageProcessor(size={"height": 28, "width": 28}, max_patches=1),
        tokenizer=tokenizer,
        patch_size=14,
        pixel_shuffle_ratio=0.5,
        chat_template=template,
    )
    ids = tokenizer.convert_tokens_to_ids
    text = Llama4TextConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        intermediate_size_mlp=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        num_local_experts=1,
        num_experts_per_tok=1,
        interleave_moe_layer_step=0,
        moe_layers=[],
        no_rope_layers=[1, 1],
        attention_chunk_size=4096,
        max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    vision = Llama4VisionConfig(
        hidden_size=32,
        intermediate_size=128,
        num_hidden_layers=1,
        num_attention_heads=4,
        image_size=28,
        patch_size=14,
        vision_output_dim=32,
        projector_input_dim=32,
        projector_output_dim=32,
        pixel_shuffle_ratio=0.5,
    )
    config = Llama4Config(
        text_config=text,
        vision_config=vision,
        image_token_index=ids("<|patch|>"),
        boi_token_index=ids("<|image_start|>"),
        eoi_token_index=ids("<|image_end|>"),
    )
    torch.manual_seed(0)
    Llama4ForConditionalGeneration(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def byte_level_fast_tokenizer(special: list[str], **roles: str):
    """A byte-level BPE tokenizer without merges (every byte a token) holding `special` tokens; `roles` name which
    special token is bos / eos / pad."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    raw = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    raw.decoder = decoders.ByteLevel()
    raw.add_special_tokens(special)
    return PreTrainedTokenizerFast(tokenizer_object=raw, **roles)


#: Qwen2-VL's chat template, reduced to what one user turn of images and text needs (the system turn included)
QWEN_VL_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}<|im_start|>system\n"
    "You are a helpful assistant.<|im_end|>\n{% endif %}<|im_start|>{{ message['role'] }}\n"
    "{% for content in message['content'] %}{% if content['type'] == 'image' %}"
    "<|vision_start|><|image_pad|><|vision_end|>{% else %}{{ content['text'] }}{% endif %}{% endfor %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def tiny_qwen2_text(tokenizer, max_positions: int) -> dict:
    """The two-layer Qwen2 text model both tiny guards share (Qwen2.5-VL's and LLaVA-OneVision's language half)."""
    ids = tokenizer.convert_tokens_to_ids
    return {
        "vocab_size": len(tokenizer),
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": max_positions,
        "eos_token_id": ids("<|im_end|>"),
        "pad_token_id": ids("<|endoftext|>"),
    }


def make_tiny_qwen25_vl(folder: Path, seed: int = 0) -> Path:
    """A random two-layer Qwen2.5-VL (QwenGuard v1.2's architecture) with its processor, saved as a Hub repository
    is laid out."""
    import torch
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>"]
    special += ["<|image_pad|>", "<|video_pad|>"]
    tokenizer = byte_level_fast_tokenizer(special, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    pixels = {"min_pixels": 28 * 28 * 4, "max_pixels": 28 * 28 * 16}
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(**pixels),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(**pixels),
        chat_template=QWEN_VL_TEMPLATE,
    )
    ids = tokenizer.convert_tokens_to_ids
    config = Qwen2_5_VLConfig(
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": 32,
            "fullatt_block_indexes": [1],
            "window_size": 56,
        },
        text_config={
            **tiny_qwen2_text(tokenizer, 4096),
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [1, 1, 2]},
        },
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
    )
    torch.manual_seed(seed)
    Qwen2_5_VLForConditionalGeneration(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def make_tiny_llava_onevision(folder: Path, seed: int = 0) -> Path:
    """A random two-layer LLaVA-OneVision (LlavaGuard v1.2's architecture: SigLIP tower, Qwen2 text model) with its
    processor, saved as a Hub repository is laid out."""
    import torch
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        LlavaOnevisionImageProcessor,
        LlavaOnevisionProcessor,
        LlavaOnevisionVideoProcessor,
    )

    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"]
    tokenizer = byte_level_fast_tokenizer(special, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    template = QWEN_VL_TEMPLATE.replace("<|vision_start|><|image_pad|><|vision_end|>", "<image>\n")
    side = 28
    processor = LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessor(
            size={"height": side, "width": side}, image_grid_pinpoints=[[side, side], [side, 2 * side]]
        ),
        tokenizer=tokenizer,
        video_processor=LlavaOnevisionVideoProcessor(size={"height": side, "width": side}),
        num_image_tokens=(side // 14) ** 2,
        vision_feature_select_strategy="full",
        chat_template=template,
    )
    ids = tokenizer.convert_tokens_to_ids
    config = LlavaOnevisionConfig(
        vision_config={
            "model_type": "siglip_vision_model",
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": side,
            "patch_size": 14,
        },
        text_config={"model_type": "qwen2", **tiny_qwen2_text(tokenizer, 8192)},
        image_token_index=ids("<image>"),
        video_token_index=ids("<video>"),
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        image_grid_pinpoints=[[side, side], [side, 2 * side]],
    )
    torch.manual_seed(seed)
    LlavaOnevisionForConditionalGeneration(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
