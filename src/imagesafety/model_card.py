"""Saved models of ours (guard heads, HySAC models, LoRA adapters): weights + a format-tagged JSON card that
records the weights' sha256, written atomically and checked on load, so a truncated or swapped weights file
is refused instead of silently used."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from imagesafety.files import atomic_path, json_safe, read_json, write_json
from imagesafety.identity import file_digest
from imagesafety.records.cards import CardError, ModelCard, card_kind, parse_card

C = TypeVar("C", bound=ModelCard)

TRAINING_IMAGES = "training_images.txt"


@dataclass
class TrainedModel:
    """What every trainer returns: the model's card (its record), the folder it was saved to (None when it was not)
    and the training history (one row per epoch or step)."""

    card: ModelCard
    path: Path | None = None
    history: list[dict] = field(default_factory=list)


def save_weights(directory: str | Path, state: dict[str, Any], weights_file: str) -> str:
    """Write a torch state dict as safetensors (atomically); returns the file's sha256."""
    from safetensors.torch import save_file

    path = Path(directory) / weights_file
    with atomic_path(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(tmp))
    return file_digest(path)


def write_card(
    directory: str | Path, card_file: str, fmt: str, card: dict[str, Any], weights_file: str | None = None
) -> dict:
    """Write `card` tagged with its format (and the sha256 of `weights_file`, when given), validated by its record;
    returns what was written."""
    directory = Path(directory)
    full = {"format": fmt, **card}
    if weights_file is not None:
        full["weights_file"] = weights_file
        full["weights_sha256"] = file_digest(directory / weights_file)
    record = parse_card(json_safe(full), card_kind(fmt), str(directory / card_file))
    write_json(directory / card_file, record.to_json())
    return record.to_json()


def save_model(
    directory: str | Path, state: dict[str, Any], card: dict[str, Any], *, fmt: str, card_file: str, weights_file: str
) -> Path:
    """Weights (safetensors) and their card into `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_weights(directory, state, weights_file)
    write_card(directory, card_file, fmt, card, weights_file)
    return directory


def read_card(directory: str | Path, card_file: str, kind: type[C]) -> C:
    """The card of a model folder as its record (older formats migrated); the weights' sha256 is checked when the
    card records a weights file."""
    directory = Path(directory)
    path = directory / card_file
    if not path.is_file():
        raise CardError(f"{directory}: missing {card_file}")
    card = parse_card(read_json(path, CardError), kind, str(path))
    if card.weights_file:
        if not (directory / card.weights_file).is_file():
            raise CardError(f"{directory}: missing {card.weights_file}")
        actual = file_digest(directory / card.weights_file)
        if card.weights_sha256 and actual != card.weights_sha256:
            raise CardError(
                f"{directory / card.weights_file}: sha256 {actual[:12]}... does not match its card "
                f"({card.weights_sha256[:12]}...): the file was changed or truncated after saving"
            )
    return card


def load_weights(directory: str | Path, weights_file: str) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(Path(directory) / weights_file))


def write_training_images(directory: str | Path, sha256s: list[str]) -> dict:
    """The sha256 of every training image, one per line (sorted); returns the card's summary of the file."""
    lines = sorted(set(sha256s))
    path = Path(directory) / TRAINING_IMAGES
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")
    return {"file": TRAINING_IMAGES, "count": len(lines), "sha256": file_digest(path)}


TRAINING_PDQ = "training_pdq.npy"


def write_training_hashes(directory: str | Path, image_refs: list[str]) -> dict:
    """PDQ hashes of the training images still readable at their paths (so an evaluation can warn on near-duplicates,
    not only on identical files); returns the card's summary (how many were hashed, and why some were not)."""
    import numpy as np

    try:
        from imagesafety.hashes.compute import pdq
    except ImportError:
        return {
            "file": None,
            "note": "pdqhash not installed: no near-duplicate check (pip install 'imagesafety[hashes]')",
        }
    from imagesafety.images import decode_image

    hashes, skipped = [], 0
    for ref in sorted(set(r for r in image_refs if isinstance(r, str))):
        try:
            h = pdq(decode_image(Path(ref).read_bytes(), name=ref))
        except (OSError, ValueError):
            skipped += 1
            continue
        if h.reliable:
            hashes.append(h.bits)
    path = Path(directory) / TRAINING_PDQ
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, np.stack(hashes) if hashes else np.zeros((0, 32), np.uint8))
    return {"file": TRAINING_PDQ, "count": len(hashes), "unreadable": skipped, "algorithm": "pdq"}


def read_training_hashes(directory: str | Path):
    """The PDQ hashes of a model's training images (None when it records none)."""
    import numpy as np

    path = Path(directory) / TRAINING_PDQ
    if not path.is_file():
        return None
    return np.load(path, allow_pickle=False)


def read_training_images(directory: str | Path) -> frozenset[str]:
    """The training-image hashes a model folder records (empty when it records none)."""
    path = Path(directory) / TRAINING_IMAGES
    if not path.is_file():
        return frozenset()
    return frozenset(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())


__all__ = [
    "CardError",
    "TrainedModel",
    "CardError",
    "save_model",
    "save_weights",
    "write_card",
    "read_card",
    "load_weights",
    "json_safe",
    "write_training_images",
    "read_training_images",
    "write_training_hashes",
    "read_training_hashes",
]
