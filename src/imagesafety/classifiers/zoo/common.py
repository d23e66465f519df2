"""What the reference classifiers share: where their weights come from (the Hub repo the paper used, a local
folder laid out like it, or the file itself), the CLIP backbone most of them sit on (built once per process and
shared, with a memo of image features so several heads on one backbone embed each image once), and a pickle
reader that executes nothing."""

from __future__ import annotations

import _codecs
import hashlib
import io
import pickle
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from imagesafety import hub
from imagesafety.classifiers.base import Prediction, TorchClassifier, decide
from imagesafety.encoders import load_encoder
from imagesafety.encoders.base import DifferentiableEncoder, RawFeatures

try:  # numpy 2 moved the array internals; pickles name either place
    from numpy._core.multiarray import _reconstruct
except ImportError:  # numpy 1
    from numpy.core.multiarray import _reconstruct

#: UnsafeBench's backbone for Q16, the multi-headed classifier and LAION's ViT-L/14 detector
VIT_L14 = "clip:ViT-L-14/openai"
FEATURE_MEMO_ITEMS = 20_000


class WeightsError(ValueError):
    """A missing or wrong checkpoint: names the file and the layout expected."""


def weights_file(option: str | Path | None, repo: str, filename: str, what: str) -> Path:
    """The checkpoint: `option` (the file, or a folder laid out as the Hub repo), else the repo's file from the Hub."""
    if option:
        path = Path(option).expanduser()
        candidate = path / filename if path.is_dir() else path
        if not candidate.is_file():
            raise WeightsError(
                f"{what}: no {filename} at {candidate} (expected the file itself, or a folder laid out as "
                f"https://huggingface.co/{repo} with {filename} inside)"
            )
        return candidate.resolve()
    return Path(hub.download(repo, filename, what))


def backbone_spec(backbone: str | None, default: str = VIT_L14, quickgelu_arch: str = "ViT-L-14-quickgelu") -> str:
    """The encoder spec of a zoo classifier's CLIP: the default open_clip model, a local open_clip checkpoint file
    (taken as
    the default architecture, QuickGELU as OpenAI trained it), a transformers CLIP folder, or any encoder spec."""
    if not backbone:
        return default
    path = Path(backbone).expanduser()
    if path.is_file():
        return f"clip:{quickgelu_arch}/{path.resolve()}"
    if path.is_dir():
        return f"hf:{path.resolve()}"
    return backbone


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and nothing else: only numpy's array-reconstruction globals may be named, so a pickle
    carrying code (os.system, eval, ...) is refused instead of run."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: this file may only hold a numpy array")
        if (module, name) == ("_codecs", "encode"):
            return _codecs.encode
        if name == "_reconstruct":
            return _reconstruct
        return getattr(np, name)


def load_numpy_pickle(path: str | Path) -> np.ndarray:
    """A pickled numpy array (as Q16's prompts.p), read without executing anything."""
    path = Path(path)
    try:
        value = RestrictedUnpickler(io.BytesIO(path.read_bytes())).load()
    except pickle.UnpicklingError as exc:
        raise WeightsError(f"{path}: {exc}") from None
    except Exception as exc:
        raise WeightsError(f"{path}: not a pickled numpy array ({type(exc).__name__}: {exc})") from None
    if not isinstance(value, np.ndarray):
        raise WeightsError(f"{path}: holds a {type(value).__name__}, expected a numpy array")
    return value


def load_state_dict(path: Path, what: str) -> dict:
    """A torch state dict, loaded with weights_only (no code runs)."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"{what}: {path} is not a torch state dict ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict):
        raise WeightsError(f"{what}: {path} holds a {type(state).__name__}, expected a state dict")
    return state


def check_state(module, state: dict, path: Path, what: str, layout: str) -> None:
    """Load `state` into `module`, naming the file and the expected layout on any mismatch."""
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise WeightsError(f"{what}: {path} does not match the expected layout ({layout}): {first}") from None


class FeatureMemo:
    """Raw image features of recently seen prepared images, by content: several classifiers on one backbone (Q16, the
    multi-headed classifier, LAION's detector) embed each image once per process."""

    def __init__(self, max_items: int = FEATURE_MEMO_ITEMS):
        self.max_items = max_items
        self.items: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self.lock = threading.Lock()

    @staticmethod
    def key(array: np.ndarray) -> bytes:
        return (
            hashlib.blake2b(np.ascontiguousarray(array).view(np.uint8), digest_size=16).digest()
            + str(array.shape).encode()
        )

    def features(self, encoder: RawFeatures, items: list[np.ndarray]) -> np.ndarray:
        """(n, d) raw (not normalised) image features of the prepared arrays, computed only for unseen ones."""
        import torch

        keys = [self.key(a) for a in items]
        with self.lock:
            found = {k: self.items[k] for k in keys if k in self.items}
        todo = [i for i, k in enumerate(keys) if k not in found]
        if todo:
            with torch.no_grad():
                fresh = encoder.raw_image_features(encoder.pixels([items[i] for i in todo])).float().cpu().numpy()
            with self.lock:
                for i, vector in zip(todo, fresh):
                    found[keys[i]] = self.items[keys[i]] = vector
                    self.items.move_to_end(keys[i])
                while len(self.items) > self.max_items:
                    self.items.popitem(last=False)
        return np.stack([found[k] for k in keys])


_MEMOS: dict[int, FeatureMemo] = {}


def memo_for(encoder) -> FeatureMemo:
    """The feature memo of one loaded encoder (shared by every classifier built on it)."""
    return _MEMOS.setdefault(id(encoder), FeatureMemo())


class ClipHeadClassifier(TorchClassifier):
    """A head on a shared CLIP backbone: `head_logit(raw_features)` gives the unsafe logit (differentiable) and
    `head_output(raw_features)` the (unsafe score, category scores, raw) of a batch."""

    covers: frozenset[str] | None = None

    def __init__(
        self,
        backbone: str | None,
        device: str | None,
        default_backbone: str = VIT_L14,
        quickgelu_arch: str = "ViT-L-14-quickgelu",
    ):
        encoder = load_encoder(backbone_spec(backbone, default_backbone, quickgelu_arch), device)
        if not (isinstance(encoder, RawFeatures) and isinstance(encoder, DifferentiableEncoder)):
            raise WeightsError(f"{encoder.name}: the zoo's heads need a torch CLIP encoder with raw image features")
        self.encoder = encoder
        self.pixel_spec, self.device = encoder.pixel_spec, encoder.device
        self.memo = memo_for(self.encoder)

    def head_logit(self, feats):
        raise NotImplementedError

    def head_output(self, feats: np.ndarray) -> list[Prediction]:
        raise NotImplementedError

    def unsafe_logits(self, pixels):
        return self.head_logit(self.encoder.raw_image_features(pixels))

    def predict_prepared(self, items: list[np.ndarray]) -> list[Prediction]:
        return self.head_output(self.memo.features(self.encoder, items))

    def check_dim(self, expected: int, what: str) -> None:
        if self.encoder.embed_dim != expected:
            raise WeightsError(
                f"{what} expects {expected}-d CLIP features, but backbone {self.encoder.name} gives "
                f"{self.encoder.embed_dim}-d"
            )


def prediction(score: float, threshold: float, categories: dict[str, float], raw: dict) -> Prediction:
    return Prediction(float(score), decide(float(score), threshold), {k: float(v) for k, v in categories.items()}, raw)
