"""NudeNet 3 as a safety classifier: the ONNX detector inside the `nudenet` wheel, fed correctly.

We run the wheel's `320n.onnx` ourselves rather than through `nudenet.NudeDetector`, because that
class reads arrays as BGR (a PIL/RGB array reaches the network with its channels swapped) and
raises on files it cannot read. Images arrive here already decoded, upright and RGB; the network
(a YOLOv8 export) takes RGB in [0, 1], letterboxed: NudeNet pads to a square at the bottom/right and
resizes; we resize the long side first and then pad, the same geometry without ever building a square
of the longest side (a 100000 x 600 image would need 30 GB).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from imagesafety.classifiers.base import Classifier, Prediction, TorchClassifier, decide
from imagesafety.identity import path_digest
from imagesafety.pixels import PixelSpec
from imagesafety.taxonomy import UNSAFEBENCH, Taxonomy

LABELS = (
    "FEMALE_GENITALIA_COVERED",
    "FACE_FEMALE",
    "BUTTOCKS_EXPOSED",
    "FEMALE_BREAST_EXPOSED",
    "FEMALE_GENITALIA_EXPOSED",
    "MALE_BREAST_EXPOSED",
    "ANUS_EXPOSED",
    "FEET_EXPOSED",
    "BELLY_COVERED",
    "FEET_COVERED",
    "ARMPITS_COVERED",
    "ARMPITS_EXPOSED",
    "FACE_MALE",
    "BELLY_EXPOSED",
    "MALE_GENITALIA_EXPOSED",
    "ANUS_COVERED",
    "FEMALE_BREAST_COVERED",
    "BUTTOCKS_COVERED",
)

#: Detections that make an image sexual by default (explicit nudity).
DEFAULT_UNSAFE_LABELS = (
    "FEMALE_GENITALIA_EXPOSED",
    "MALE_GENITALIA_EXPOSED",
    "FEMALE_BREAST_EXPOSED",
    "BUTTOCKS_EXPOSED",
    "ANUS_EXPOSED",
)

#: NudeNet keeps a detection at score >= 0.25 (its NMS score threshold); so do we, by default.
DEFAULT_THRESHOLD = 0.25
MIN_DETECTION_SCORE = 0.2
NMS_IOU = 0.45

TAXONOMY = Taxonomy("nudenet", (UNSAFEBENCH.get("sexual"),))


def model_path() -> str:
    """Path of the ONNX detector shipped inside the `nudenet` wheel."""
    import importlib.util

    spec = importlib.util.find_spec("nudenet")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the NudeNet classifier needs the nudenet package: pip install nudenet")
    return os.path.join(list(spec.submodule_search_locations)[0], "320n.onnx")


class NudeNetClassifier(Classifier):
    """Unsafe score = the confidence of NudeNet's best detection among the counted (exposed) labels."""

    name = "nudenet"
    version = "3.4-320n"
    taxonomy = TAXONOMY
    covers = frozenset({"sexual"})

    def __init__(
        self,
        labels: tuple[str, ...] | list[str] | str = DEFAULT_UNSAFE_LABELS,
        threshold: float = DEFAULT_THRESHOLD,
        resolution: int = 320,
        threads: int | None = None,
        model: str | None = None,
    ):
        if isinstance(labels, str):
            labels = [s.strip().upper() for s in labels.split(",") if s.strip()]
        unknown = [lab for lab in labels if lab not in LABELS]
        if unknown:
            raise ValueError(f"unknown NudeNet labels {unknown}; known: {', '.join(LABELS)}")
        self.labels = tuple(labels)
        self.threshold = float(threshold)
        self.resolution = int(resolution)
        self.pixel_spec = PixelSpec(self.resolution, resize="letterbox", interpolation="bilinear_cv2")
        self.model_file = str(Path(model).expanduser().resolve()) if model else model_path()
        if not Path(self.model_file).is_file():
            raise ValueError(f"NudeNet model {self.model_file}: no such file")
        self._counted = np.array([lab in self.labels for lab in LABELS])
        self.load_runtime(threads)
        # threshold is applied at decision time, so it is not part of the cache key; the model file by its content
        self.weights = path_digest(self.model_file)
        self.config = {
            "labels": sorted(self.labels),
            "resolution": self.resolution,
            "model": os.path.basename(self.model_file),
            "weights": self.weights,
        }

    def load_runtime(self, threads: int | None) -> None:
        """The onnxruntime session that runs the detector."""
        import onnxruntime

        options = onnxruntime.SessionOptions()
        # Idle ONNX threads sleep instead of spinning, leaving the cores to the decoding threads between ops.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            options.intra_op_num_threads = int(threads)
        self.session = onnxruntime.InferenceSession(self.model_file, options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def preprocess(self, image: Image.Image) -> np.ndarray:
        """RGB image -> float32 CHW in [0, 1]: the long side resized to the input size, zero-padded at the
        bottom/right."""
        return (self.pixel_spec.prepare(image).astype(np.float32) / 255.0).transpose(2, 0, 1)

    def image_region(self, prepared: tuple[np.ndarray, tuple[int, int]]) -> tuple[int, int]:
        """Rows and columns of the prepared input that hold the image (the rest is padding)."""
        return self.pixel_spec.image_region(prepared[1])

    def prepare(self, image: Image.Image) -> tuple[np.ndarray, tuple[int, int]]:
        """The per-image CPU work (run by the evaluation's background workers): input array and original size."""
        return self.preprocess(image), image.size

    def predict_prepared(self, items: list[tuple[np.ndarray, tuple[int, int]]]) -> list[Prediction]:
        """One batched forward pass over prepared images."""
        if not items:
            return []
        output = self.raw_outputs(np.stack([x for x, _ in items]))  # (B, 4 + 18, anchors)
        return [self._prediction(out, size) for out, (_, size) in zip(output, items)]

    def raw_outputs(self, batch: np.ndarray) -> np.ndarray:
        """The detector's output before NMS, (B, 4 + 18, anchors): box centre and size in input pixels, class scores."""
        return self.session.run(None, {self.input_name: batch})[0]

    def _prediction(self, output: np.ndarray, size: tuple[int, int]) -> Prediction:
        boxes, class_scores = output[:4].T, output[4:].T  # (anchors, 4), (anchors, 18)
        best_class = class_scores.argmax(axis=1)
        best_score = class_scores.max(axis=1)
        counted = self._counted[best_class]
        score = float(best_score[counted].max()) if counted.any() else 0.0
        detections = self._detections(boxes, best_class, best_score, size)
        return Prediction(score, decide(score, self.threshold), {"sexual": score}, {"detections": detections})

    def evidence_boxes(self, prediction: Prediction) -> list[list[float]]:
        """The counted (exposed) detections as [x0, y0, x1, y1, score] in the image's pixels, most confident first."""
        found = [d for d in (prediction.raw or {}).get("detections", []) if d["class"] in self.labels]
        return [
            [
                float(d["box"][0]),
                float(d["box"][1]),
                float(d["box"][0] + d["box"][2]),
                float(d["box"][1] + d["box"][3]),
                float(d["score"]),
            ]
            for d in sorted(found, key=lambda d: -d["score"])
        ]

    def _detections(
        self, boxes: np.ndarray, cls: np.ndarray, score: np.ndarray, size: tuple[int, int]
    ) -> list[dict[str, Any]]:
        """NudeNet's own detection list (score >= 0.2, NMS), with boxes in original pixels [x, y, w, h]."""
        import cv2

        keep = score >= MIN_DETECTION_SCORE
        if not keep.any():
            return []
        width, height = size
        scale = max(width, height) / self.resolution
        xywh = boxes[keep].astype(np.float64)
        xywh[:, 0] -= xywh[:, 2] / 2
        xywh[:, 1] -= xywh[:, 3] / 2
        xywh *= scale
        kept_scores, kept_cls = score[keep], cls[keep]
        indices = cv2.dnn.NMSBoxes(xywh.tolist(), kept_scores.tolist(), DEFAULT_THRESHOLD, NMS_IOU)
        found = []
        for i in np.asarray(indices).reshape(-1):
            x, y, w, h = xywh[i]
            x, y = min(max(0.0, x), width), min(max(0.0, y), height)
            found.append(
                {
                    "class": LABELS[kept_cls[i]],
                    "score": round(float(kept_scores[i]), 4),
                    "box": [int(x), int(y), int(min(w, width - x)), int(min(h, height - y))],
                }
            )
        return found


class NudeNetTorch(NudeNetClassifier, TorchClassifier):
    """The same detector converted to torch (`imagesafety.onnx_module`): white-box. Predictions and detections come
    from the same raw outputs as on onnxruntime; `unsafe_logits` is the logit of the unsafe score before NMS (the
    highest best-class score among anchors whose best class is counted), differentiable in the input pixels."""

    def __init__(
        self,
        labels: tuple[str, ...] | list[str] | str = DEFAULT_UNSAFE_LABELS,
        threshold: float = DEFAULT_THRESHOLD,
        resolution: int = 320,
        model: str | None = None,
        device: str | None = None,
    ):
        import torch

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        super().__init__(labels, threshold, resolution, None, model)

    def load_runtime(self, threads: int | None) -> None:
        """The detector converted to torch, on `self.device`."""
        import torch

        from imagesafety.onnx_module import load_onnx_module

        self.module = load_onnx_module(self.model_file, self.device)[0]
        self._counted_t = torch.from_numpy(self._counted).to(self.device)

    def pixels(self, items: list[tuple[np.ndarray, tuple[int, int]]]):
        """[0, 1] tensor (B, 3, H, W) of prepared (letterboxed) images."""
        import torch

        return torch.from_numpy(np.stack([x for x, _ in items])).to(self.device)

    def raw_outputs(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            return self.module(torch.from_numpy(batch).to(self.device)).float().cpu().numpy()

    def unsafe_logits(self, pixels):
        """logit of the unsafe score. Where no anchor's best class is counted the score is 0 on both runtimes; the
        logit then uses a hundredth of the best counted-class score instead, so gradients still point somewhere
        (below 0.01, under any threshold in use: the decision stays the detector's)."""
        import torch

        scores = self.module(pixels)[:, 4:]  # (B, 18, anchors)
        best, best_class = scores.max(dim=1)
        counted = self._counted_t[best_class]
        exact = torch.where(counted, best, torch.zeros_like(best)).amax(dim=1)
        floor = scores[:, self._counted_t].amax(dim=(1, 2)) * 0.01
        p = torch.maximum(exact, floor).clamp(1e-12, 1 - 1e-7)
        return p.log() - (-p).log1p()


def from_spec(
    arg: str | None,
    *,
    labels: str | list[str] = DEFAULT_UNSAFE_LABELS,
    threshold: float = DEFAULT_THRESHOLD,
    resolution: int = 320,
    threads: int | None = None,
    model: str | None = None,
    runtime: str = "onnx",
    device: str | None = None,
) -> NudeNetClassifier:
    """`nudenet` or `nudenet:PATH/TO/model.onnx` (another NudeNet export, e.g. the 640m model). `runtime=onnx` (the
    default:
    onnxruntime, as NudeNet runs it, in the base install and about 2.5x faster on a CPU) or `runtime=torch` (white-box:
    gradient attacks and evidence maps; `pip install 'imagesafety[onnx-torch]'`). Both share cached predictions."""
    from imagesafety.onnx_module import check_runtime

    if check_runtime(runtime) == "onnx":
        return NudeNetClassifier(labels, threshold, resolution, threads, model or arg)
    if threads:
        raise ValueError("threads= sets onnxruntime's threads: it goes with runtime=onnx")
    return NudeNetTorch(labels, threshold, resolution, model or arg, device)
