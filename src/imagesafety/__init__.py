"""imagesafety: benchmark image safety classifiers per category and per source."""

__version__ = "0.1.0"

from imagesafety.taxonomy import LLAVAGUARD, UNSAFEBENCH, Category, Taxonomy, load_taxonomy  # noqa: E402

__all__ = ["Category", "Taxonomy", "UNSAFEBENCH", "LLAVAGUARD", "load_taxonomy", "__version__"]
