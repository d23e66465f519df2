"""Explanations on request (`POST /v1/classify` with `explain=true|boxes|heatmap`): the top evidence boxes of each file
(the deciding frame for animations and videos), and with `heatmap` a small PNG of the map, within a per-request budget
of model calls checked before any explanation starts."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

from imagesafety.classifiers.base import Prediction, SafetyClassifier
from imagesafety.evidence.api import ExplainSettings, explain_image, model_calls
from imagesafety.media import FramePolicy, ViewInfo, read_views, view_picture
from imagesafety.serve.errors import APIError

MODES = {"true": "boxes", "boxes": "boxes", "heatmap": "heatmap"}
#: the side explanations work at in the service (a small map keeps a request's model calls bounded)
SERVE_SETTINGS = ExplainSettings(method="occlusion", work_side=96)


def explain_mode(value: str | None) -> str | None:
    if value is None or value.lower() in ("", "false", "0", "no"):
        return None
    if value.lower() not in MODES:
        raise APIError(400, f"explain must be true, boxes or heatmap, not {value!r}", param="explain")
    return MODES[value.lower()]


def check_budget(files: list[tuple[str, bytes]], frames: FramePolicy, max_pixels: int, budget: int) -> int:
    """The model calls explaining these files costs (from their headers); over `budget`, a 413 naming it."""
    calls = 0
    for where, data in files:
        try:
            sampling, _ = read_views(data, frames, max_pixels, where)
        except ValueError:
            continue  # the classification refuses it with its own error
        calls += model_calls(SERVE_SETTINGS, (sampling.width, sampling.height), faithfulness=False)
    if calls > budget:
        raise APIError(
            413,
            f"explaining these {len(files)} files needs {calls} model calls, over this server's budget of {budget} "
            "per request (--max-explain-calls); send fewer files per request, or none with explain",
            code="explain_budget_exceeded",
            param="explain",
        )
    return calls


def heatmap_png(heat: np.ndarray, side: int = 64) -> str:
    lifted = np.clip(heat - np.median(heat), 0, None)
    lifted = lifted / lifted.max() if lifted.max() > 0 else lifted
    img = Image.fromarray((lifted * 255).astype(np.uint8), mode="L")
    img.thumbnail((side, side))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def explain_file(
    classifier: SafetyClassifier, data: bytes, prediction: Prediction, mode: str, max_pixels: int, name: str
) -> dict:
    """What the answer says of one file's evidence (boxes in the file's pixels, on the frame that decided)."""
    decided = prediction.views.decided_by if prediction.views is not None else None
    view = ViewInfo(decided.frame, decided.timestamp_s, decided.background) if decided is not None else None
    picture = view_picture(data, view, max_pixels, name)
    evidence = explain_image(classifier, picture, SERVE_SETTINGS, name, faithfulness=False)
    out = {
        "method": evidence.method,
        "boxes": evidence.boxes,
        "detector_boxes": evidence.detector_boxes,
        "frame": decided.frame if decided is not None else 0,
        "timestamp_s": decided.timestamp_s if decided is not None else None,
    }
    if mode == "heatmap":
        out["heatmap"] = heatmap_png(evidence.heatmap)
    return out
