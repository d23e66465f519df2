"""`redact`: copies of a folder's images with the evidence regions of a classifier's flags removed (blurred by default),
what NudeNet users ask for; images the classifier does not flag are copied unchanged, unreadable ones are listed."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from imagesafety.classifiers.base import SafetyClassifier
from imagesafety.data.sample import ReadPolicy, Sample
from imagesafety.evidence.api import ExplainSettings, explain_image
from imagesafety.evidence.regions import remove


@dataclass
class Redaction:
    """What `redact` did: files written, how many had regions removed, and the files it could not read (with why)."""

    written: list[Path] = field(default_factory=list)
    redacted: int = 0
    failed: dict[str, str] = field(default_factory=dict)


def redact(
    classifier: SafetyClassifier | str,
    images: str | Path,
    out_dir: str | Path,
    *,
    fill: str = "blur",
    method: str = "auto",
    margin: float = 0.02,
    progress: bool = False,
) -> Redaction:
    """For every image under `images`: if the classifier flags it, the union of its top evidence boxes (and a detector's
    own
    boxes), grown by `margin` of each side, is replaced by `fill`; the copy keeps the relative path and format."""
    from imagesafety import registry
    from imagesafety.data.decoding import decoded_samples

    clf = registry.build("classifier", classifier) if isinstance(classifier, str) else classifier
    root, out = Path(images), Path(out_dir)
    if not root.is_dir():
        raise ValueError(f"{root}: not a folder")
    if out.resolve() == root.resolve():
        raise ValueError("--out must differ from --images: redact never overwrites the originals")
    settings = ExplainSettings(
        method=method, fill=fill, box_level=0.2
    )  # generous regions: redaction errs toward removing more
    policy = ReadPolicy(root=root.resolve())
    samples = [
        Sample(str(p.relative_to(root)), str(p), policy=policy)
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    ]
    result = Redaction()
    for item in decoded_samples(samples):
        if item.error is not None:
            result.failed[item.sample.id] = item.error
            continue
        image = item.image
        target = out / item.sample.id
        target.parent.mkdir(parents=True, exist_ok=True)
        prediction = clf.predict([image])[0]
        if prediction.decision:
            evidence = explain_image(clf, image, settings, item.sample.id, faithfulness=False)
            mask = np.zeros((image.height, image.width), dtype=bool)
            dx, dy = margin * image.width, margin * image.height
            for x0, y0, x1, y1, *_ in evidence.boxes + evidence.detector_boxes:
                mask[max(0, int(y0 - dy)) : int(np.ceil(y1 + dy)), max(0, int(x0 - dx)) : int(np.ceil(x1 + dx))] = True
            pixels = np.asarray(image, dtype=np.float32) / 255
            image = Image.fromarray((remove(pixels, mask, fill) * 255).round().astype(np.uint8))
            result.redacted += 1
        suffix = target.suffix.lower()
        image.save(
            target, **({"quality": 95} if suffix in (".jpg", ".jpeg") else {}), **({} if suffix else {"format": "PNG"})
        )
        result.written.append(target)
    return result
