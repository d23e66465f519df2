"""Safe redirection: move an unsafe query toward the origin along its geodesic until its neighbours are safe."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from imagesafety.hyperbolic import lorentz as L
from imagesafety.hyperbolic.index import LorentzIndex


@dataclass
class Redirection:
    point: np.ndarray  # the query after redirection
    fraction: float  # t of the geodesic walked toward the origin (0: not moved)
    moved: float  # hyperbolic distance between the original and redirected query
    distances: np.ndarray
    rows: np.ndarray
    safe_share: float
    reached_safe: bool  # False: the walk reached the origin and the results are still not safe enough


def redirect(
    query: np.ndarray, index: LorentzIndex, k: int = 10, steps: int = 20, required_safe_share: float = 1.0
) -> Redirection:
    """Walk t = 0, 1/steps, ..., 1 along the geodesic to the origin; stop at the first t whose top-k is safe enough.
    When even the origin's neighbours are not, the result says so (`reached_safe` False)."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if index.labels is None:
        raise ValueError(
            "redirection needs gallery labels (build the index from a labelled gallery or with a threshold)"
        )
    q = torch.from_numpy(np.asarray(query, dtype=np.float32).reshape(1, -1))
    best = None
    for t in np.linspace(0.0, 1.0, steps + 1):
        moved_point = L.toward_origin(q, float(t), index.curvature)
        distances, rows = index.search(moved_point.numpy(), k)
        share = float((index.labels[rows[0]] == 0).mean())
        best = Redirection(
            moved_point.numpy()[0],
            float(t),
            float(L.dist(q, moved_point, index.curvature)[0]),
            distances[0],
            rows[0],
            share,
            share >= required_safe_share,
        )
        if best.reached_safe:
            break
    return best
