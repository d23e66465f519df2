"""Nearest neighbours by Lorentz distance through FAISS.

<x, y>_L = x.y - x_t y_t = [x, -x_t] . [y, y_t], and distance falls as <x, y>_L grows, so storing
[y, y_t] and querying with [x, -x_t] turns Lorentz nearest neighbours into maximum-inner-product
search, exact with IndexFlatIP. Graph and cluster indexes (HNSW, IVF) need a metric among the
stored points too, so for them each stored vector gets one more coordinate sqrt(M - |v|^2) (all
stored vectors then have norm^2 M) and queries a 0: the L2-nearest stored vector is then the one
with the largest inner product, i.e. the Lorentz-nearest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imagesafety.files import read_json

META = "index.json"
KINDS = ("exact", "hnsw", "ivf")


def _require_faiss():
    try:
        import faiss
    except ImportError as exc:
        raise ImportError("the HySAC index needs faiss: pip install 'imagesafety[hyperbolic]'") from exc
    return faiss


def lorentz_database_vectors(x: np.ndarray, c: float) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    t = np.sqrt(1 / c + (x.astype(np.float64) ** 2).sum(1)).astype(np.float32)
    return np.ascontiguousarray(np.c_[x, t])


def lorentz_query_vectors(x: np.ndarray, c: float) -> np.ndarray:
    v = lorentz_database_vectors(x, c)
    v[:, -1] *= -1
    return v


def check_finite(x: np.ndarray, what: str) -> None:
    bad = ~np.isfinite(np.asarray(x)).all(axis=1)
    if bad.any():
        raise ValueError(
            f"{what}: {int(bad.sum())} embeddings contain NaN or Inf (first at row {int(np.flatnonzero(bad)[0])})"
        )


@dataclass
class LorentzIndex:
    index: object
    curvature: float
    model_id: str
    dim: int
    kind: str
    ids: list[str]
    labels: np.ndarray | None = None  # 1 = unsafe, 0 = safe, -1 = unknown
    augment_norm: float = 0.0  # M of the L2 reduction (approximate kinds)

    @classmethod
    def build(
        cls,
        points: np.ndarray,
        curvature: float,
        model_id: str,
        ids: list[str] | None = None,
        labels: np.ndarray | None = None,
        kind: str = "exact",
        nlist: int | None = None,
        hnsw_m: int = 32,
    ) -> LorentzIndex:
        faiss = _require_faiss()
        if kind not in KINDS:
            raise ValueError(f"unknown index kind {kind!r}: use {', '.join(KINDS)}")
        check_finite(points, "gallery")
        vectors = lorentz_database_vectors(points, curvature)
        augment_norm = 0.0
        if kind == "exact":
            index = faiss.IndexFlatIP(vectors.shape[1])
        else:
            sq = (vectors.astype(np.float64) ** 2).sum(1)
            augment_norm = float(sq.max() * 1.0001 + 1e-6)
            vectors = np.ascontiguousarray(np.c_[vectors, np.sqrt(augment_norm - sq)].astype(np.float32))
            d = vectors.shape[1]
            if kind == "hnsw":
                index = faiss.IndexHNSWFlat(d, hnsw_m)
                index.hnsw.efConstruction = 200
                index.hnsw.efSearch = 128
            else:
                nlist = nlist or max(1, int(np.sqrt(len(vectors))))
                index = faiss.IndexIVFFlat(faiss.IndexFlatL2(d), d, nlist)
                index.train(vectors)
                index.nprobe = max(1, nlist // 4)
        index.add(vectors)
        ids = ids if ids is not None else [str(i) for i in range(len(points))]
        return cls(
            index,
            float(curvature),
            model_id,
            int(points.shape[1]),
            kind,
            list(ids),
            None if labels is None else np.asarray(labels, dtype=np.int8),
            augment_norm,
        )

    def search(self, queries: np.ndarray, k: int = 10, curvature: float | None = None, model_id: str | None = None):
        """(distances, row indices), each (n, k), nearest first; refuses queries from another model or curvature."""
        if model_id is not None and model_id != self.model_id:
            raise ValueError(
                f"index was built with model {self.model_id!r}, queries come from {model_id!r}: rebuild the index"
            )
        if curvature is not None and not np.isclose(curvature, self.curvature, rtol=1e-5):
            raise ValueError(
                f"index was built at curvature {self.curvature:.6g}, queries use {curvature:.6g}: rebuild the index"
            )
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        if queries.shape[1] != self.dim:
            raise ValueError(f"queries are {queries.shape[1]}-d, the index holds {self.dim}-d embeddings")
        check_finite(queries, "queries")
        q = lorentz_query_vectors(queries, self.curvature)
        if self.kind == "exact":
            inner, rows = self.index.search(q, k)
        else:  # L2 on the augmented vectors: |q - v|^2 = |q|^2 + M - 2 q.v
            q = np.ascontiguousarray(np.c_[q, np.zeros(len(q), np.float32)])
            l2, rows = self.index.search(q, k)
            inner = ((q.astype(np.float64) ** 2).sum(1)[:, None] + self.augment_norm - l2) / 2
        distances = np.arccosh(np.maximum(-self.curvature * inner.astype(np.float64), 1.0)) / np.sqrt(self.curvature)
        return distances, rows

    def save(self, directory: str | Path) -> Path:
        faiss = _require_faiss()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.index, str(directory / "faiss.index"))
        meta = {
            "curvature": self.curvature,
            "model_id": self.model_id,
            "dim": self.dim,
            "kind": self.kind,
            "size": len(self.ids),
            "augment_norm": self.augment_norm,
        }
        (directory / META).write_text(json.dumps(meta, indent=2), encoding="utf-8")
        (directory / "ids.json").write_text(json.dumps(self.ids), encoding="utf-8")
        if self.labels is not None:
            np.save(directory / "labels.npy", self.labels)
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> LorentzIndex:
        faiss = _require_faiss()
        directory = Path(directory)
        if not (directory / META).is_file():
            raise ValueError(f"{directory}: not a HySAC index (no {META})")
        meta = read_json(directory / META)
        labels = np.load(directory / "labels.npy") if (directory / "labels.npy").is_file() else None
        ids = read_json(directory / "ids.json")
        try:
            index = faiss.read_index(str(directory / "faiss.index"))
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ValueError(
                f"{directory / 'faiss.index'}: damaged or truncated FAISS index ({first[:160]}); rebuild it with "
                "`imagesafety hysac index`"
            ) from None
        if index.ntotal != len(ids) or index.ntotal != meta.get("size", index.ntotal):
            raise ValueError(
                f"{directory / 'faiss.index'}: holds {index.ntotal} vectors but the index lists {len(ids)} images; "
                "rebuild it with `imagesafety hysac index`"
            )
        return cls(
            index,
            meta["curvature"],
            meta["model_id"],
            meta["dim"],
            meta["kind"],
            ids,
            labels,
            meta.get("augment_norm", 0.0),
        )


def brute_force_search(queries: np.ndarray, gallery: np.ndarray, curvature: float, k: int = 10):
    """Exact top-k by computing every Lorentz distance in torch (the released code's way); for checks and benchmarks."""
    import torch

    from imagesafety.hyperbolic import lorentz as L

    with torch.no_grad():
        d = L.pairwise_dist(
            torch.from_numpy(np.asarray(queries, np.float32)),
            torch.from_numpy(np.asarray(gallery, np.float32)),
            curvature,
        )
        values, rows = torch.topk(d, k, dim=1, largest=False)
    return values.numpy(), rows.numpy()
