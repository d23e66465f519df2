"""Published results to set beside measured ones: UnsafeBench's F1 tables (arXiv v1 project page), per classifier,
source (real = LAION-5B, generated = Lexica, both pooled) and category, in the paper's column order; None where the
paper shows "-" (a category the classifier does not cover). `--compare-published unsafebench` reads them here."""

from __future__ import annotations

import re

COLUMNS = (
    "hate",
    "harassment",
    "violence",
    "self_harm",
    "sexual",
    "shocking",
    "illegal_activity",
    "deception",
    "political",
    "public_and_personal_health",
    "spam",
    "overall",
)
SOURCES = ("real", "generated", "both")

UNSAFEBENCH_F1: dict[str, dict[str, tuple[float | None, ...]]] = {
    "real": {
        "Q16": (0.641, 0.517, 0.693, 0.421, None, 0.630, 0.681, 0.762, 0.271, 0.144, None, None),
        "MultiHeaded": (0.320, None, 0.247, 0.000, 0.692, 0.644, None, None, 0.209, None, None, None),
        "SD_Filter": (None, None, None, None, 0.833, None, None, None, None, None, None, None),
        "NSFW_Detector": (None, 0.517, None, None, 0.783, None, None, None, None, None, None, None),
        "NudeNet": (None, None, None, None, 0.650, None, None, None, None, None, None, None),
        "LLaVA": (0.227, 0.167, 0.413, 0.451, 0.674, 0.714, 0.498, 0.376, 0.116, 0.333, 0.059, 0.426),
        "InstructBLIP": (0.351, 0.394, 0.606, 0.275, 0.796, 0.467, 0.722, 0.653, 0.444, 0.379, 0.380, 0.520),
        "GPT-4V": (0.556, 0.706, 0.774, 0.557, 0.866, 0.724, 0.897, 0.827, 0.605, 0.405, 0.718, 0.712),
    },
    "generated": {
        "Q16": (0.336, 0.416, 0.612, 0.521, None, 0.836, 0.497, 0.384, 0.597, 0.615, None, None),
        "MultiHeaded": (0.225, None, 0.533, None, 0.815, 0.780, None, None, 0.744, None, None, None),
        "SD_Filter": (None, None, None, None, 0.727, None, None, None, None, None, None, None),
        "NSFW_Detector": (None, 0.259, None, None, 0.678, None, None, None, None, None, None, None),
        "NudeNet": (None, None, None, None, 0.596, None, None, None, None, None, None, None),
        "LLaVA": (0.169, 0.224, 0.632, 0.663, 0.866, 0.826, 0.534, 0.179, 0.340, 0.665, 0.045, 0.634),
        "InstructBLIP": (0.178, 0.332, 0.629, 0.383, 0.757, 0.795, 0.665, 0.302, 0.785, 0.663, 0.519, 0.589),
        "GPT-4V": (0.254, 0.635, 0.712, 0.613, 0.827, 0.875, 0.701, 0.422, 0.909, 0.621, 0.171, 0.707),
    },
    "both": {
        "Q16": (0.533, 0.475, 0.648, 0.483, None, 0.784, 0.571, 0.652, 0.482, 0.498, None, None),
        "MultiHeaded": (0.292, None, 0.426, None, 0.757, 0.749, None, None, 0.600, None, None, None),
        "SD_Filter": (None, None, None, None, 0.785, None, None, None, None, None, None, None),
        "NSFW_Detector": (None, 0.449, None, None, 0.738, None, None, None, None, None, None, None),
        "NudeNet": (None, None, None, None, 0.624, None, None, None, None, None, None, None),
        "LLaVA": (0.210, 0.189, 0.550, 0.590, 0.780, 0.800, 0.519, 0.332, 0.266, 0.575, 0.054, 0.549),
        "InstructBLIP": (0.270, 0.368, 0.615, 0.333, 0.777, 0.697, 0.687, 0.506, 0.660, 0.545, 0.490, 0.559),
        "GPT-4V": (0.423, 0.681, 0.738, 0.590, 0.847, 0.839, 0.780, 0.673, 0.780, 0.492, 0.537, 0.709),
    },
}

#: the paper's classifier names, and which of ours each one is (by classifier name)
PAPER_NAMES = (
    (re.compile(r"^q16$"), "Q16"),
    (re.compile(r"^multiheaded$"), "MultiHeaded"),
    (re.compile(r"^sd-safety-checker$"), "SD_Filter"),
    (re.compile(r"^laion-nsfw$"), "NSFW_Detector"),  # the ViT-L/14 detector the paper used, not :h14
    (re.compile(r"^nudenet$"), "NudeNet"),
    (re.compile(r"llava.?v?1\.5.?7b|^replay:llava", re.I), "LLaVA"),
    (re.compile(r"instructblip", re.I), "InstructBLIP"),
    (re.compile(r"gpt-4v|gpt-4-vision", re.I), "GPT-4V"),
)
PUBLISHED = {"unsafebench": UNSAFEBENCH_F1}


def paper_name(classifier: str) -> str | None:
    """The published row a classifier of ours reproduces, or None."""
    for pattern, name in PAPER_NAMES:
        if pattern.search(classifier):
            return name
    return None


def published_f1(table: str, classifier: str) -> dict[str, dict[str, float]] | None:
    """{source: {category or 'overall': F1}} published for this classifier (covered cells only), or None."""
    if table not in PUBLISHED:
        raise ValueError(f"no published results named {table!r} (known: {', '.join(PUBLISHED)})")
    name = paper_name(classifier)
    if name is None:
        return None
    return {
        source: {c: v for c, v in zip(COLUMNS, rows[name]) if v is not None}
        for source, rows in PUBLISHED[table].items()
    }
