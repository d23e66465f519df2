"""HySAC light mode on synthetic quadruples embedded by a tiny random CLIP: ordering, classification, checkpoints."""

import json

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
from imagesafety.hysac.api import train_hysac  # noqa: E402
from imagesafety.hysac.data import embed_quadruples, read_quadruples  # noqa: E402
from imagesafety.hysac.train import HysacTrainConfig  # noqa: E402

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
        rows.append(
            {
                "safe": f"a photo of a {SAFE_WORDS[i % 5]} {i}",
                "nsfw": f"a photo of a {UNSAFE_WORDS[i % 5]} {i}",
                "safe_image": f"img/safe{i}.png",
                "unsafe_image": f"img/unsafe{i}.png",
                "tag": "violence",
            }
        )
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
    card = train_hysac(
        embedded,
        tmp_path / "model",
        config=HysacTrainConfig(epochs=60, batch_size=32, lr=1e-2, patience=60),
        progress=False,
    ).card
    b = card.bounds
    assert b["S"]["avg"] < b["V"]["avg"] < b["U"]["avg"] < b["G"]["avg"], b
    assert card.order["holds"] and set(b["V"]) >= {"avg", "low_05", "up_95"}
    model = HysacEmbedder(tmp_path / "model", encoder=encoder)
    safe = model.distance_to_origin(model.model.encode_image(torch.from_numpy(embedded.safe_image)).detach().numpy())
    unsafe = model.distance_to_origin(
        model.model.encode_image(torch.from_numpy(embedded.unsafe_image)).detach().numpy()
    )
    accuracy = ((safe < card.threshold).sum() + (unsafe >= card.threshold).sum()) / (len(safe) + len(unsafe))
    assert accuracy >= 0.9
    assert (tmp_path / "model" / "checkpoint.pt").is_file() and json.loads(
        (tmp_path / "model" / "history.json").read_text()
    )


def test_training_resumes_from_its_checkpoint(quads, tmp_path):
    _, _, embedded = quads
    config = HysacTrainConfig(epochs=3, batch_size=32, patience=99)
    train_hysac(embedded, tmp_path / "m", config=config, progress=False)
    records = []
    train_hysac(
        embedded,
        tmp_path / "m",
        config=HysacTrainConfig(epochs=5, batch_size=32, patience=99),
        progress=False,
        log=records.append,
    )
    assert [r["epoch"] for r in records] == [4, 5]


def test_divergence_stops_with_the_last_good_checkpoint(quads, tmp_path):
    from imagesafety.hysac.train import TrainingDiverged

    _, _, embedded = quads
    train_hysac(embedded, tmp_path / "m", config=HysacTrainConfig(epochs=2, batch_size=32, patience=99), progress=False)
    good = torch.load(tmp_path / "m" / "checkpoint.pt", weights_only=False)["state"]["epoch"]
    broken = embedded.subset(np.arange(len(embedded)))
    broken.safe_image = broken.safe_image * 1e30  # overflows: the loss turns non-finite
    with pytest.raises(TrainingDiverged, match="last good checkpoint kept"):
        train_hysac(
            broken, tmp_path / "m", config=HysacTrainConfig(epochs=4, batch_size=32, patience=99), progress=False
        )
    assert torch.load(tmp_path / "m" / "checkpoint.pt", weights_only=False)["state"]["epoch"] == good


def test_bad_quadruple_files_are_named(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps({"safe": "x", "safe_image": "a.png"}) + "\n")
    with pytest.raises(ValueError, match=r"missing columns \['unsafe_text', 'unsafe_image'\]"):
        read_quadruples(path)
    path.write_text(json.dumps({"safe": "", "nsfw": "y", "safe_image": "a.png", "unsafe_image": "b.png"}) + "\n")
    with pytest.raises(ValueError, match="row 1: empty safe_text"):
        read_quadruples(path)


def test_training_never_reads_test_rows_and_the_card_lists_the_training_images(tmp_path, tiny_clip_dir):
    """With train / validation / test splits, the trainer receives train rows only (validation for early stopping),
    and the card records the splits and the sha256 of every training image."""
    import hashlib

    from imagesafety.encoders import load_encoder
    from imagesafety.hysac import api

    path = write_quadruples(tmp_path / "q", n=30)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for i, row in enumerate(rows):
        row["split"] = "test" if i % 3 == 0 else "validation" if i % 3 == 1 else "train"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    embedded = embed_quadruples(read_quadruples(path), load_encoder(f"hf:{tiny_clip_dir}", "cpu"), progress=False)
    seen = []
    original = api.fit_rows
    api.fit_rows = lambda model, batches, train, val, *a: (
        seen.append((train.copy(), val.copy())) or original(model, batches, train, val, *a)
    )
    try:
        card = train_hysac(
            embedded, tmp_path / "model", config=HysacTrainConfig(epochs=2, batch_size=8, patience=9), progress=False
        ).card
    finally:
        api.fit_rows = original
    ((train, val),) = seen
    assert all(rows[i]["split"] == "train" for i in train) and all(rows[i]["split"] == "validation" for i in val)
    assert card.training["splits"]["rows"] == {"train": 10, "validation": 10} and card.training["splits"][
        "not_used"
    ] == ["test"]
    listed = set((tmp_path / "model" / "training_images.txt").read_text().split())
    train_files = {
        hashlib.sha256((tmp_path / "q" / rows[i][c]).read_bytes()).hexdigest()
        for i in train
        for c in ("safe_image", "unsafe_image")
    }
    test_files = {
        hashlib.sha256((tmp_path / "q" / rows[i][c]).read_bytes()).hexdigest()
        for i in range(30)
        if rows[i]["split"] == "test"
        for c in ("safe_image", "unsafe_image")
    }
    assert listed == train_files and not listed & test_files


def test_the_order_line_says_when_the_order_does_not_hold():
    from imagesafety.hysac.api import order_check, order_line

    holds = order_check({"S": {"avg": 0.5}, "V": {"avg": 0.7}, "U": {"avg": 0.9}, "G": {"avg": 1.2}})
    assert holds["holds"] and "the order holds" in order_line(holds)
    broken = order_check({"S": {"avg": 1.003}, "V": {"avg": 0.949}, "U": {"avg": 0.970}, "G": {"avg": 0.921}})
    line = order_line(broken)
    assert not broken["holds"] and "does NOT hold" in line and "<" not in line.split(":")[1].split("(")[0]
    assert "S < V fails by 0.054" in line and "U < G fails by 0.049" in line
