"""Published results to set beside measured ones: UnsafeBench's F1 tables (arXiv v1 project page), per classifier,
source (real = LAION-5B, generated = Lexica, both pooled) and category, in the paper's column order; None where the
paper shows "-" (a category the classifier does not cover). `--compare-published unsafebench` reads them here."""

from __future__ import annotations

import re

COLUMNS = ("hate", "harassment", "violence", "self_harm", "sexual", "shocking", "illegal_activity", "deception",
           "political", "public_and_personal_health", "spam", "overall")
SOURCES = ("real", "generated", "both")

UNSAFEBENCH_F1: dict[str, dict[str, tuple[float | None, ...]]] = {
    "real": {
        "Q16": (.641, .517, .693, .421, None, .630, .681, .762, .271, .144, None, None),
        "MultiHeaded": (.320, None, .247, .000, .692, .644, None, None, .209, None, None, None),
        "SD_Filter": (None, None, None, None, .833, None, None, None, None, None, None, None),
        "NSFW_Detector": (None, .517, None, None, .783, None, None, None, None, None, None, None),
        "NudeNet": (None, None, None, None, .650, None, None, None, None, None, None, None),
        "LLaVA": (.227, .167, .413, .451, .674, .714, .498, .376, .116, .333, .059, .426),
        "InstructBLIP": (.351, .394, .606, .275, .796, .467, .722, .653, .444, .379, .380, .520),
        "GPT-4V": (.556, .706, .774, .557, .866, .724, .897, .827, .605, .405, .718, .712),
    },
    "generated": {
        "Q16": (.336, .416, .612, .521, None, .836, .497, .384, .597, .615, None, None),
        "MultiHeaded": (.225, None, .533, None, .815, .780, None, None, .744, None, None, None),
        "SD_Filter": (None, None, None, None, .727, None, None, None, None, None, None, None),
        "NSFW_Detector": (None, .259, None, None, .678, None, None, None, None, None, None, None),
        "NudeNet": (None, None, None, None, .596, None, None, None, None, None, None, None),
        "LLaVA": (.169, .224, .632, .663, .866, .826, .534, .179, .340, .665, .045, .634),
        "InstructBLIP": (.178, .332, .629, .383, .757, .795, .665, .302, .785, .663, .519, .589),
        "GPT-4V": (.254, .635, .712, .613, .827, .875, .701, .422, .909, .621, .171, .707),
    },
    "both": {
        "Q16": (.533, .475, .648, .483, None, .784, .571, .652, .482, .498, None, None),
        "MultiHeaded": (.292, None, .426, None, .757, .749, None, None, .600, None, None, None),
        "SD_Filter": (None, None, None, None, .785, None, None, None, None, None, None, None),
        "NSFW_Detector": (None, .449, None, None, .738, None, None, None, None, None, None, None),
        "NudeNet": (None, None, None, None, .624, None, None, None, None, None, None, None),
        "LLaVA": (.210, .189, .550, .590, .780, .800, .519, .332, .266, .575, .054, .549),
        "InstructBLIP": (.270, .368, .615, .333, .777, .697, .687, .506, .660, .545, .490, .559),
        "GPT-4V": (.423, .681, .738, .590, .847, .839, .780, .673, .780, .492, .537, .709),
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
    return {source: {c: v for c, v in zip(COLUMNS, rows[name]) if v is not None} for source, rows in PUBLISHED[table].items()}
