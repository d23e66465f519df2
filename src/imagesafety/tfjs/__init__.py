"""A small reader of TensorFlow.js models into torch: the model JSON (as a file, or wrapped in a browserify bundle as
NSFWJS ships it), its weight shards (binary or base64 bundles, dequantised), and the two topologies: Keras layers
models (`layers.py`) and TensorFlow graph models (`graph.py`). A layer type or op it does not know is named in the
error.
"""

from imagesafety.tfjs.model import TfjsError, TfjsModel, build_module, read_model

__all__ = ["TfjsError", "TfjsModel", "build_module", "read_model"]
