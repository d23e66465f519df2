"""`nsfwjs[:MODEL]`: NSFWJS's classes (Drawing, Hentai, Neutral, Porn, Sexy) as raw output, an unsafe score (by default
P(Porn) + P(Hentai)) covering the Sexual category, with NSFWJS's own preprocessing: RGB / 255, stretched to the model's
square input with TensorFlow's bilinear resize (aligned corners, no antialiasing), unchanged when already that size.
White-box: the unsafe logit is log P(unsafe classes) - log P(the others). `encoder:nsfwjs:MODEL` gives the penultimate
features (the input of the final dense layer) for `embed` and `guard train`."""

from __future__ import annotations

import numpy as np

from imagesafety.classifiers.base import Prediction, TorchClassifier, decide
from imagesafety.classifiers.nsfwjs.convert import load_program
from imagesafety.classifiers.nsfwjs.package import MODELS, VERSION
from imagesafety.pixels import PixelSpec
from imagesafety.taxonomy import UNSAFEBENCH

CLASSES = ("Drawing", "Hentai", "Neutral", "Porn", "Sexy")
DEFAULT_MODEL = "mobilenet_v2"
DEFAULT_UNSAFE = ("porn", "hentai")


def nsfwjs_pixel_spec(size: int) -> PixelSpec:
    return PixelSpec(size, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "stretch", "bilinear_aligned")


def parse_unsafe(value: str | list[str] | tuple[str, ...]) -> tuple[int, ...]:
    """`porn,hentai` -> the class indices."""
    names = [v.strip().lower() for v in (value.split(",") if isinstance(value, str) else value) if v.strip()]
    known = [c.lower() for c in CLASSES]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise ValueError(f"unsafe={','.join(names) or '(empty)'}: name NSFWJS classes among {', '.join(known)}")
    if len(set(names)) == len(known):
        raise ValueError("unsafe= names every class: the score would always be 1")
    return tuple(sorted(known.index(n) for n in set(names)))


def _model(arg: str | None) -> str:
    model = arg or DEFAULT_MODEL
    if model not in MODELS:
        raise ValueError(f"unknown NSFWJS model {model!r}; models: {', '.join(MODELS)}")
    return model


class NsfwjsClassifier(TorchClassifier):
    version = "1"
    taxonomy = UNSAFEBENCH
    covers = frozenset({"sexual"})

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        package: str | None = None,
        unsafe: str | list[str] = DEFAULT_UNSAFE,
        threshold: float = 0.5,
        device: str | None = None,
    ):
        import torch

        self.model = _model(model)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        program, identity = load_program(self.model, package)
        self.program = program.to(self.device).requires_grad_(False)
        self.pixel_spec = nsfwjs_pixel_spec(MODELS[self.model])
        self.unsafe = parse_unsafe(unsafe)
        self.threshold = float(threshold)
        self.name = f"nsfwjs:{self.model}"
        self.weights = identity
        self.config = {
            "model": self.model,
            "weights": self.weights,
            "package": f"nsfwjs@{VERSION}",
            "unsafe": [CLASSES[i].lower() for i in self.unsafe],
        }

    def unsafe_logits(self, pixels):
        """log(P(unsafe classes) / P(other classes)): its sigmoid is the unsafe score."""
        import torch

        logits = self.program(pixels)
        mask = torch.zeros(logits.shape[1], dtype=torch.bool, device=logits.device)
        mask[list(self.unsafe)] = True
        return torch.logsumexp(logits[:, mask], dim=1) - torch.logsumexp(logits[:, ~mask], dim=1)

    def probabilities(self, items: list[np.ndarray]) -> np.ndarray:
        import torch

        with torch.no_grad():
            return self.program.probabilities(self.pixels(items)).float().cpu().numpy()

    def predict_prepared(self, items: list[np.ndarray]) -> list[Prediction]:
        out = []
        for probs in self.probabilities(items):
            score = float(probs[list(self.unsafe)].sum())
            raw = {"probabilities": {c: float(p) for c, p in zip(CLASSES, probs)}, "top": CLASSES[int(probs.argmax())]}
            out.append(Prediction(score, decide(score, self.threshold), {"sexual": score}, raw))
        return out


class NsfwjsEncoder:
    """The penultimate features of an NSFWJS model (the input of its final dense layer), L2-normalised."""

    def __init__(self, model: str = DEFAULT_MODEL, package: str | None = None, device: str | None = None):
        import torch

        self.model = _model(model)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        program, self.identity = load_program(self.model, package)
        self.program = program.to(self.device).requires_grad_(False)
        self.pixel_spec = nsfwjs_pixel_spec(MODELS[self.model])
        self.name = f"nsfwjs:{self.model}"
        with torch.no_grad():
            probe = torch.zeros(1, 3, self.pixel_spec.height, self.pixel_spec.width, device=self.device)
            self.embed_dim = int(self.program.features(probe).shape[-1])

    def prepare(self, image):
        return self.pixel_spec.prepare(image)

    def pixels(self, items):
        return self.pixel_spec.tensor(items, self.device)

    def image_features(self, pixels):
        """Differentiable: [0, 1] pixels -> L2-normalised penultimate features."""
        feats = self.program.features(pixels)
        return feats / feats.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    def encode_prepared(self, items) -> np.ndarray:
        import torch

        with torch.no_grad():
            return self.image_features(self.pixels(items)).float().cpu().numpy()

    def encode_images(self, images) -> np.ndarray:
        return self.encode_prepared([self.prepare(img) for img in images])


def from_spec(
    arg: str | None,
    *,
    package: str | None = None,
    unsafe: str | list[str] = DEFAULT_UNSAFE,
    threshold: float = 0.5,
    device: str | None = None,
) -> NsfwjsClassifier:
    """`nsfwjs` (mobilenet_v2), `nsfwjs:inception_v3`, `nsfwjs:mobilenet_v2_mid`."""
    return NsfwjsClassifier(_model(arg), package, unsafe, threshold, device)


def encoder_from_spec(arg: str | None, *, package: str | None = None, device: str | None = None) -> NsfwjsEncoder:
    return NsfwjsEncoder(_model(arg), package, device)
