"""imagesafety: benchmark image safety classifiers per category and per source.

The public API, imported on first use so `import imagesafety` stays light:
`evaluate`, `evaluate_many`, `robustness`, `embed`, `explain`, `redact`, `load_classifier`, `load_encoder`,
`load_dataset`, `leaderboard` (and `write_leaderboard`),
plus the taxonomies.
"""

from __future__ import annotations

import importlib

__version__ = "0.2.0"

_LAZY = {
    "evaluate": "imagesafety.bench.evaluate:evaluate",
    "evaluate_many": "imagesafety.bench.many:evaluate_many",
    "robustness": "imagesafety.bench.robustness.run:robustness",
    "leaderboard": "imagesafety.bench.leaderboard:leaderboard_from_folders",
    "write_leaderboard": "imagesafety.bench.report.leaderboard_files:write_leaderboard",
    "embed": "imagesafety.run.embed:embed",
    "explain": "imagesafety.evidence.api:explain",
    "redact": "imagesafety.evidence.redact:redact",
    "audit": "imagesafety.hashes.audit:audit",
    "load_classifier": "imagesafety.classifiers:load_classifier",
    "load_encoder": "imagesafety.encoders:load_encoder",
    "load_dataset": "imagesafety.data:load_dataset",
    "Category": "imagesafety.taxonomy:Category",
    "Taxonomy": "imagesafety.taxonomy:Taxonomy",
    "UNSAFEBENCH": "imagesafety.taxonomy:UNSAFEBENCH",
    "LLAVAGUARD": "imagesafety.taxonomy:LLAVAGUARD",
    "load_taxonomy": "imagesafety.taxonomy:load_taxonomy",
}
__all__ = [*_LAZY, "__version__"]


def __getattr__(name: str):
    """The public names, imported when first used (PEP 562)."""
    if name not in _LAZY:
        raise AttributeError(f"module 'imagesafety' has no attribute {name!r}")
    module, _, attr = _LAZY[name].partition(":")
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value
