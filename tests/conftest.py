from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))

from imagesafety.classifiers.base import Prediction, decide  # noqa: E402
from imagesafety.taxonomy import UNSAFEBENCH  # noqa: E402


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own default cache file, never the user's."""
    monkeypatch.setenv("IMAGESAFETY_CACHE", str(tmp_path_factory.mktemp("cache") / "cache.sqlite"))


@pytest.fixture(scope="session", autouse=True)
def written_metrics_follow_the_schema(tmp_path_factory):
    """After the session: every metrics.json and robustness.json the tests wrote validates against its shipped JSON
    Schema (files under a `not-valid` folder are the tests' deliberately broken ones)."""
    yield
    jsonschema = pytest.importorskip("jsonschema")
    import json

    records = Path(__file__).resolve().parents[1] / "src" / "imagesafety" / "records"
    bad = []
    for name, schema in (("metrics.json", "metrics"), ("robustness.json", "robustness")):
        shipped = json.loads((records / f"{schema}.schema.json").read_text(encoding="utf-8"))
        validator = jsonschema.Draft202012Validator(shipped)
        for file in tmp_path_factory.getbasetemp().rglob(name):
            if "not-valid" in file.parts:
                continue
            errors = list(validator.iter_errors(json.loads(file.read_text(encoding="utf-8"))))
            if errors:
                bad.append(f"{file}: {errors[0].json_path}: {errors[0].message}")
    assert not bad, "files that do not follow their shipped schema:\n" + "\n".join(bad)


def jpeg_bytes(colour=(200, 30, 30), size=(48, 40), quality=90) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


class MeanRedClassifier:
    """Unsafe score = mean red channel / 255; counts every image it is asked about."""

    name = "mean-red"
    version = "1"
    taxonomy = UNSAFEBENCH
    threshold = 0.5

    def __init__(self, fail_on_green: bool = False):
        self.calls = 0
        self.images_seen = 0
        self.fail_on_green = fail_on_green
        self.config = {"fail_on_green": fail_on_green}

    def predict(self, images):
        self.calls += 1
        self.images_seen += len(images)
        out = []
        for img in images:
            arr = np.asarray(img, dtype=np.float64)
            if self.fail_on_green and arr[..., 1].mean() > 200:
                raise RuntimeError("green images break this model")
            score = float(arr[..., 0].mean() / 255)
            out.append(Prediction(score, decide(score, self.threshold), {"sexual": score}, {"mean_red": score}))
        return out


@pytest.fixture
def red_classifier():
    return MeanRedClassifier()


def write_red_folder(root: Path, n_per_label: int = 6, seed: int = 0) -> Path:
    """safe/ images are dark red, unsafe/ bright red; categories sexual/violence, sources real/generated."""
    rng = np.random.default_rng(seed)
    for label, lo, hi in (("safe", 20, 150), ("unsafe", 110, 250)):
        for i in range(n_per_label):
            category = ("sexual", "violence")[i % 2]
            source = ("real", "generated")[(i // 2) % 2]
            folder = root / label / category / source
            folder.mkdir(parents=True, exist_ok=True)
            red = int(rng.integers(lo, hi))
            (folder / f"{i:03d}.jpg").write_bytes(jpeg_bytes((red, 40, 40)))
    return root


@pytest.fixture
def red_folder(tmp_path) -> Path:
    return write_red_folder(tmp_path / "red")


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory) -> Path:
    pytest.importorskip("transformers")
    from tiny_models import make_tiny_clip

    return make_tiny_clip(tmp_path_factory.mktemp("models") / "tiny-clip")
