"""HySAC light mode on synthetic quadruples embedded by a tiny random CLIP: ordering, classification, checkpoints."""

import json

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
from imagesafety.hyperbolic.api import train_hysac  # noqa: E402
from imagesafety.hyperbolic.data import embed_quadruples, read_quadruples  # noqa: E402
from imagesafety.hyperbolic.train import HysacTrainConfig  # noqa: E402

SAFE_WORDS = ["calm lake", "green meadow", "quiet library", "sunny beach", "snowy hill"]
UNSAFE_WORDS = ["bloody knife", "burning car", "violent riot", "gore scene", "explosion victims"]


def write_quadruples(root, n=80, seed=0):
    """Safe images are cool-toned, unsafe ones hot red; captions differ in their safety words."""
    rng = np.random.default_rng(seed)
    (root / "img").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        base = rng.uniform(0, 1, (32, 32, 3)) * 0.3
        safe = base.copy()
        safe[..., 2] += 0.6
        unsafe = base.copy()
        unsafe[..., 0] += 0.7
        for name, arr in (("safe", safe), ("unsafe", unsafe)):
            Image.fromarray((np.clip(arr, 0, 1) * 255).astype(np.uint8)).save(root / "img" / f"{name}{i}.png")
        rows.append({"safe": f"a photo of a {SAFE_WORDS[i % 5]} {i}", "nsfw": f"a photo of a {UNSAFE_WORDS[i % 5]} {i}",
                     "safe_image": f"img/safe{i}.png", "unsafe_image": f"img/unsafe{i}.png", "tag": "violence"})
    path = root / "quads.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return path


@pytest.fixture(scope="module")
def quads(tmp_path_factory, tiny_clip_dir):
    from imagesafety.encoders import load_encoder

    root = tmp_path_factory.mktemp("quads")
    path = write_quadruples(root)
    encoder = load_encoder(f"hf:{tiny_clip_dir}", "cpu")
    return path, encoder, embed_quadruples(read_quadruples(path), encoder, progress=False)


def test_light_training_reaches_the_safety_ordering_and_classifies(quads, tmp_path):
    from imagesafety.hyperbolic.embedder import HysacEmbedder

    path, encoder, embedded = quads
    card = train_hysac(embedded, tmp_path / "model", config=HysacTrainConfig(epochs=60, batch_size=32, lr=1e-2, patience=60), progress=False)
    b = card["bounds"]
    assert b["S"]["mean"] < b["V"]["mean"] < b["S_unsafe"]["mean"] < b["V_unsafe"]["mean"], b
    model = HysacEmbedder(tmp_path / "model", encoder=encoder)
    safe = model.distance_to_origin(model.model.encode_image(torch.from_numpy(embedded.safe_image)).detach().numpy())
    unsafe = model.distance_to_origin(model.model.encode_image(torch.from_numpy(embedded.unsafe_image)).detach().numpy())
    accuracy = ((safe < card["threshold"]).sum() + (unsafe >= card["threshold"]).sum()) / (len(safe) + len(unsafe))
    assert accuracy >= 0.9
    assert (tmp_path / "model" / "checkpoint.pt").is_file() and json.loads((tmp_path / "model" / "history.json").read_text())


def test_training_resumes_from_its_checkpoint(quads, tmp_path):
    _, _, embedded = quads
    config = HysacTrainConfig(epochs=3, batch_size=32, patience=99)
    train_hysac(embedded, tmp_path / "m", config=config, progress=False)
    records = []
    train_hysac(embedded, tmp_path / "m", config=HysacTrainConfig(epochs=5, batch_size=32, patience=99), progress=False, log=records.append)
    assert [r["epoch"] for r in records] == [4, 5]


def test_divergence_stops_with_the_last_good_checkpoint(quads, tmp_path):
    from imagesafety.hyperbolic.train import TrainingDiverged

    _, _, embedded = quads
    train_hysac(embedded, tmp_path / "m", config=HysacTrainConfig(epochs=2, batch_size=32, patience=99), progress=False)
    good = torch.load(tmp_path / "m" / "checkpoint.pt", weights_only=False)["state"]["epoch"]
    broken = embedded.subset(np.arange(len(embedded)))
    broken.safe_image = broken.safe_image * 1e30  # overflows: the loss turns non-finite
    with pytest.raises(TrainingDiverged, match="last good checkpoint kept"):
        train_hysac(broken, tmp_path / "m", config=HysacTrainConfig(epochs=4, batch_size=32, patience=99), progress=False)
    assert torch.load(tmp_path / "m" / "checkpoint.pt", weights_only=False)["state"]["epoch"] == good


def test_bad_quadruple_files_are_named(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps({"safe": "x", "safe_image": "a.png"}) + "\n")
    with pytest.raises(ValueError, match=r"missing columns \['unsafe_text', 'unsafe_image'\]"):
        read_quadruples(path)
    path.write_text(json.dumps({"safe": "", "nsfw": "y", "safe_image": "a.png", "unsafe_image": "b.png"}) + "\n")
    with pytest.raises(ValueError, match="row 1: empty safe_text"):
        read_quadruples(path)
