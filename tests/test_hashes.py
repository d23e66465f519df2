"""Perceptual hashes against Meta's reference, banks against brute force, and matching on images whose answer is known
by construction (transformed copies of bank images, and unrelated images)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("pdqhash")
pytest.importorskip("faiss")

from imagesafety.hashes import BankError, HashBank, build, load_bank, match  # noqa: E402
from imagesafety.hashes.compute import ImageHash, from_hex, hamming, pdq, pdq_dihedral, phash  # noqa: E402
from imagesafety.images import decode_image  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures" / "pdq"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())


def test_pdq_equals_metas_reference_on_its_own_images():
    import pdqhash

    for name, expected in EXPECTED.items():
        if not name.endswith(".jpg"):
            continue
        image = decode_image((FIXTURES / name).read_bytes())
        ours = pdq(image)
        bits, quality = pdqhash.compute(np.asarray(image))  # Meta's C++ called directly on the same pixels
        assert ours.hex == np.packbits(bits).tobytes().hex() and ours.quality == quality
        if quality >= 50 or name == "small.jpg":
            assert ours.hex == expected, name  # bit for bit with the reference's published hash
        else:  # q0003 (quality 3: a flat image, which is why such hashes are never matched on)
            assert int(hamming(ours.bits, from_hex(expected, "pdq"))) <= 16
            assert not ours.reliable


def test_dihedral_hashes_are_the_reference_hashes_of_the_rotated_and_flipped_files():
    key = next(k for k in EXPECTED if k.startswith("bridge-1"))
    dihedral = pdq_dihedral(decode_image((FIXTURES / "bridge-1-original.jpg").read_bytes()))
    distances = [int(hamming(h.bits, from_hex(e, "pdq"))) for h, e in zip(dihedral, EXPECTED[key])]
    assert max(distances) <= 16, distances  # the reference's own tolerance across its implementations
    others = [int(hamming(dihedral[0].bits, from_hex(e, "pdq"))) for e in EXPECTED[key][1:]]
    assert min(others) > 64  # and far from the other transforms


def smooth(seed: int, size=(192, 160)) -> Image.Image:
    """A distinct picture with a natural image's spectrum (power falling as 1/f^3): high PDQ quality, unlike any other
    seed's."""
    rng = np.random.default_rng(seed)
    fy, fx = np.fft.fftfreq(size[1])[:, None], np.fft.fftfreq(size[0])[None, :]
    f = np.sqrt(fx**2 + fy**2)
    f[0, 0] = 1
    planes = [
        np.real(np.fft.ifft2((rng.normal(size=f.shape) + 1j * rng.normal(size=f.shape)) / f**1.5)) for _ in range(3)
    ]
    out = np.stack(planes, -1)
    return Image.fromarray(((out - out.min()) / (out.max() - out.min()) * 255).astype(np.uint8))


def photo_crops(n: int) -> list[Image.Image]:
    """Crops of scikit-image's photographs at places far apart (distinct known images with real photographs'
    statistics)."""
    from skimage import data

    photos = [
        data.astronaut(),
        data.coffee(),
        data.chelsea(),
        data.rocket(),
        data.hubble_deep_field(),
        data.immunohistochemistry(),
        data.retina(),
        data.colorwheel() if hasattr(data, "colorwheel") else data.astronaut(),
    ]
    out, rng = [], np.random.default_rng(0)
    while len(out) < n:
        src = photos[len(out) % len(photos)]
        h, w = src.shape[:2]
        side = int(min(h, w) * rng.uniform(0.35, 0.6))
        y, x = int(rng.integers(0, h - side)), int(rng.integers(0, w - side))
        crop = Image.fromarray(src[y : y + side, x : x + side]).convert("RGB").resize((192, 192), Image.BICUBIC)
        if pdq(crop).quality >= 50 and all(int(hamming(pdq(crop).bits, pdq(o).bits)) > 31 for o in out):
            out.append(crop)
    return out


def transformed(image: Image.Image) -> dict[str, Image.Image]:
    w, h = image.size
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=70)

    def crop(share):
        return image.crop((int(w * share / 2), int(h * share / 2), w - int(w * share / 2), h - int(h * share / 2)))

    return {
        "jpeg70": Image.open(io.BytesIO(buf.getvalue())).convert("RGB"),
        "half": image.resize((w // 2, h // 2), Image.BILINEAR),
        "crop2": crop(0.02),
        "crop5": crop(0.05),
        "rotate1": image.rotate(1, resample=Image.BILINEAR, fillcolor=(128, 128, 128)),
        "rotate2": image.rotate(2, resample=Image.BILINEAR, fillcolor=(128, 128, 128)),
    }


def test_matching_known_images_and_never_unrelated_ones(tmp_path):
    bank_dir = tmp_path / "known" / "sexual"
    bank_dir.mkdir(parents=True)
    known = photo_crops(50)
    for i, image in enumerate(known):
        image.save(bank_dir / f"{i}.png")
    report = build(tmp_path / "known", tmp_path / "bank")
    assert report.added == 50
    bank = load_bank(tmp_path / "bank")
    recall = {}
    for kind in ("jpeg70", "half", "crop2", "crop5", "rotate1", "rotate2"):
        hits = [bank.match({"pdq": [pdq(transformed(img)[kind])]}) for img in known]
        recall[kind] = float(
            np.mean([h is not None and known.index(img) == int(Path(h.source).stem) for h, img in zip(hits, known)])
        )
    false = [bank.match({"pdq": [pdq(smooth(10_000 + i))]}) for i in range(1000)]
    print(
        "PDQ recall per transform at distance 31:",
        recall,
        "; false matches on 1000 unrelated images:",
        sum(f is not None for f in false),
    )
    # PDQ is built for re-encoding and resizing; a 5% crop or a 2 degree turn moves most photographs past 31 bits
    # (printed)
    assert recall["jpeg70"] == 1.0 and recall["half"] >= 0.9 and recall["crop2"] >= 0.8
    assert sum(f is not None for f in false) == 0


def test_exact_index_equals_numpy_brute_force_and_approximate_recall(tmp_path):
    rng = np.random.default_rng(0)
    entries = rng.integers(0, 256, (5000, 32), dtype=np.uint8)
    bank = HashBank(("pdq",), {"pdq": 31}, {"pdq": entries}, [str(i) for i in range(5000)], ["x"] * 5000, ["s"] * 5000)
    queries = entries[rng.integers(0, 5000, 200)].copy()
    flips = (
        rng.integers(0, 256, queries.shape, dtype=np.uint8) & rng.integers(0, 2, queries.shape, dtype=np.uint8) * 0x11
    )
    queries ^= flips
    queries = np.vstack([queries, rng.integers(0, 256, (50, 32), dtype=np.uint8)])
    distances, rows = bank.search("pdq", queries, k=1)
    brute = np.unpackbits(queries[:, None, :] ^ entries[None], axis=-1).sum(-1)  # popcount of the xor, every pair
    assert (distances[:, 0] == brute.min(axis=1)).all()
    assert (brute[np.arange(len(queries)), rows[:, 0]] == brute.min(axis=1)).all()
    for kind in ("hnsw", "ivf"):
        approx = HashBank(("pdq",), {"pdq": 31}, {"pdq": entries}, bank.ids, bank.labels, bank.sources, kind)
        d, _ = approx.search("pdq", queries, k=1)
        close = brute.min(axis=1) <= 31
        print(f"{kind} recall of matches within 31: {np.mean(d[close, 0] == brute.min(axis=1)[close]):.3f}")


def test_hashmatch_is_a_classifier_for_eval(tmp_path):
    from imagesafety import evaluate

    for split, label in (("unsafe", "sexual"), ("safe", None)):
        folder = tmp_path / "data" / split
        folder.mkdir(parents=True)
    (tmp_path / "known" / "sexual").mkdir(parents=True)
    for i in range(6):
        smooth(i).save(tmp_path / "known" / "sexual" / f"{i}.png")
        transformed(smooth(i))["jpeg70"].save(tmp_path / "data" / "unsafe" / f"{i}.jpg")
        smooth(500 + i).save(tmp_path / "data" / "safe" / f"{i}.png")
    build(tmp_path / "known", tmp_path / "bank")
    result = evaluate(f"hashmatch:{tmp_path / 'bank'}", tmp_path / "data", None, cache=None, progress=False, n_boot=10)
    rows = result.predictions.set_index("id")
    assert (rows.loc[[f"unsafe/{i}.jpg" for i in range(6)], "classifier_decision"] == 1).all()
    assert (rows.loc[[f"safe/{i}.png" for i in range(6)], "classifier_decision"] == 0).all()
    raw = json.loads(rows.loc["unsafe/0.jpg", "raw"])
    assert raw["label"] == "sexual" and raw["distance"] <= 31 and raw["entry"]
    assert result.metrics["overall"]["f1"]["value"] == 1.0


def test_bad_banks_and_weak_hashes(tmp_path):
    (tmp_path / "known" / "sexual").mkdir(parents=True)
    smooth(1).save(tmp_path / "known" / "sexual" / "a.png")
    Image.new("RGB", (64, 64), (120, 120, 120)).save(tmp_path / "known" / "sexual" / "flat.png")
    report = build(tmp_path / "known", tmp_path / "bank")
    assert report.added == 1 and "quality" in report.unhashable["sexual/flat.png"]
    flat = pdq(Image.new("RGB", (64, 64), (120, 120, 120)))
    assert load_bank(tmp_path / "bank").match({"pdq": [ImageHash("pdq", flat.bits, flat.quality)]}) is None
    with pytest.raises(BankError, match="built with pdq, not phash"):
        load_bank(tmp_path / "bank", algorithm="phash")
    with pytest.raises(BankError, match="built with threshold .* not 10"):
        load_bank(tmp_path / "bank", threshold=10)
    (tmp_path / "bank" / "hashes-pdq.npy").write_bytes((tmp_path / "bank" / "hashes-pdq.npy").read_bytes()[:40])
    with pytest.raises(BankError, match="hashes-pdq.npy|damaged hash bank"):
        load_bank(tmp_path / "bank")
    (tmp_path / "plain").mkdir()
    smooth(2).save(tmp_path / "plain" / "b.png")  # directly in the folder: no category
    with pytest.raises(BankError, match="needs a label"):
        build(tmp_path / "plain", tmp_path / "bank2")
    assert build(tmp_path / "plain", tmp_path / "bank2", label="violence").added == 1


def test_phash_and_both(tmp_path):
    (tmp_path / "known" / "violence").mkdir(parents=True)
    smooth(3).save(tmp_path / "known" / "violence" / "a.png")
    build(tmp_path / "known", tmp_path / "bank", algorithm="both")
    bank = load_bank(tmp_path / "bank")
    assert bank.algorithms == ("pdq", "phash") and bank.thresholds == {"pdq": 31, "phash": 8}
    found = bank.match({"phash": [phash(transformed(smooth(3))["jpeg70"])]})
    assert found is not None and found.algorithm == "phash"
    table = match(tmp_path / "bank", tmp_path / "known")
    assert table["matched"].all() and (table["distance"] == 0).all()


def test_hashes_cli_round_trip(tmp_path):
    import pandas as pd
    from typer.testing import CliRunner

    from imagesafety.cli import app

    (tmp_path / "known" / "sexual").mkdir(parents=True)
    for i in range(3):
        smooth(i).save(tmp_path / "known" / "sexual" / f"{i}.png")
    runner = CliRunner()
    assert (
        runner.invoke(
            app, ["hashes", "compute", "-i", str(tmp_path / "known"), "-o", str(tmp_path / "h.csv")]
        ).exit_code
        == 0
    )
    table = pd.read_csv(tmp_path / "h.csv")
    assert list(table.columns[:4]) == ["path", "id", "algorithm", "hash"] and table["hash"].str.len().eq(64).all()
    assert (
        runner.invoke(app, ["hashes", "build", "-i", str(tmp_path / "known"), "-o", str(tmp_path / "bank")]).exit_code
        == 0
    )
    (tmp_path / "more" / "sexual").mkdir(parents=True)
    smooth(7).save(tmp_path / "more" / "sexual" / "7.png")
    assert (
        runner.invoke(app, ["hashes", "add", "-b", str(tmp_path / "bank"), "-i", str(tmp_path / "more")]).exit_code == 0
    )
    assert len(load_bank(tmp_path / "bank")) == 4
    result = runner.invoke(app, ["hashes", "remove", "-b", str(tmp_path / "bank"), "-i", str(tmp_path / "more")])
    assert result.exit_code == 0 and "1 entries removed" in result.output and len(load_bank(tmp_path / "bank")) == 3
    result = runner.invoke(
        app,
        [
            "hashes",
            "match",
            "-b",
            str(tmp_path / "bank"),
            "-d",
            str(tmp_path / "known"),
            "-o",
            str(tmp_path / "m.parquet"),
        ],
    )
    assert result.exit_code == 0 and "3 of 3 images match" in result.output
    (tmp_path / "bank" / "bank.json").write_text("{broken")
    bad = runner.invoke(app, ["hashes", "match", "-b", str(tmp_path / "bank"), "-d", str(tmp_path / "known")])
    assert (
        bad.exit_code == 2
        and "damaged hash bank" in bad.output
        and str(tmp_path / "bank") in " ".join(bad.output.split())
    )


def test_serve_answers_a_known_image_without_the_model_audits_it_and_never_stores_it(tmp_path):
    pytest.importorskip("fastapi")
    import httpx
    from sqlalchemy import create_engine, text

    from conftest import MeanRedClassifier, png_bytes
    from imagesafety.serve import ServeConfig
    from serve_helpers import image_input, running_server

    (tmp_path / "known" / "sexual").mkdir(parents=True)
    known = photo_crops(3)
    for i, image in enumerate(known):
        image.save(tmp_path / "known" / "sexual" / f"{i}.png")
    build(tmp_path / "known", tmp_path / "bank")
    audit = tmp_path / "audit.sqlite"
    model = MeanRedClassifier()
    config = ServeConfig(
        api_keys={"k": "bank-key"}, audit_url=f"sqlite:///{audit}", store_images=True, hash_bank=str(tmp_path / "bank")
    )
    headers = {"Authorization": "Bearer bank-key"}
    with running_server(config, {"red": model}) as (url, _, _):
        reencoded = io.BytesIO()
        known[1].save(reencoded, "JPEG", quality=80)
        r = httpx.post(f"{url}/v1/moderations", json={"input": [image_input(reencoded.getvalue())]}, headers=headers)
        assert r.status_code == 200, r.text
        result = r.json()["results"][0]
        assert result["flagged"] is True and result["categories"]["sexual"] is True
        assert model.calls == 0  # the model never ran
        other = httpx.post(
            f"{url}/v1/moderations", json={"input": [image_input(png_bytes(smooth(77)))]}, headers=headers
        )
        assert other.status_code == 200 and model.calls == 1  # an unknown image goes to the model
        (tmp_path / "known2" / "violence").mkdir(parents=True)
        smooth(77).save(tmp_path / "known2" / "violence" / "x.png")
        from imagesafety.hashes import add

        add(tmp_path / "bank", tmp_path / "known2")
        assert httpx.post(f"{url}/v1/admin/reload-hash-bank", headers={}).status_code == 401  # behind auth
        reloaded = httpx.post(f"{url}/v1/admin/reload-hash-bank", headers=headers)
        assert reloaded.status_code == 200 and reloaded.json()["entries"] == 4
        again = httpx.post(
            f"{url}/v1/moderations", json={"input": [image_input(png_bytes(smooth(77)))]}, headers=headers
        )
        assert again.json()["results"][0]["categories"]["violence"] is True and model.calls == 1
    with create_engine(f"sqlite:///{audit}").connect() as conn:
        rows = conn.execute(text("SELECT model, flagged, image, detail FROM audit_log ORDER BY id")).fetchall()
    assert [r[0] for r in rows] == ["hash-bank", "red", "hash-bank"]
    assert (
        rows[0][2] is None and rows[2][2] is None and rows[1][2] is not None
    )  # known images never stored, others as asked
    detail = json.loads(rows[0][3])
    assert detail["label"] == "sexual" and detail["source"].endswith("1.png") and detail["distance"] <= 31


def test_audit_finds_exactly_the_planted_leaks_and_conflicts(tmp_path):
    from imagesafety.hashes import audit

    crops = photo_crops(8)
    layout = {
        ("train", "unsafe", "sexual"): [0, 1, 2],
        ("train", "safe", None): [3, 4],
        ("test", "unsafe", "sexual"): [5],
        ("test", "safe", None): [6, 7],
    }
    for (split, label, category), idx in layout.items():
        folder = tmp_path / "data" / split / label / (category or "")
        folder.mkdir(parents=True, exist_ok=True)
        for i in idx:
            crops[i].save(folder / f"{i}.png")
    buf = io.BytesIO()
    crops[0].save(buf, "JPEG", quality=75)  # a re-encoded copy of a train image in test
    (tmp_path / "data" / "test" / "unsafe" / "sexual" / "leak.jpg").write_bytes(buf.getvalue())
    crops[3].save(
        tmp_path / "data" / "train" / "unsafe" / "sexual" / "conflict.png"
    )  # the same image labelled safe and unsafe
    (tmp_path / "data" / "test" / "safe" / "6-copy.png").write_bytes(
        (tmp_path / "data" / "test" / "safe" / "6.png").read_bytes()
    )
    (tmp_path / "data" / "test" / "safe" / "broken.png").write_bytes(b"nope")
    report = audit(tmp_path / "data", tmp_path / "audit")
    assert report["near_duplicates_across_splits"] == [
        ["train/unsafe/sexual/0.png", "test/unsafe/sexual/leak.jpg"]
    ] or sorted(map(sorted, report["near_duplicates_across_splits"])) == [
        sorted(["train/unsafe/sexual/0.png", "test/unsafe/sexual/leak.jpg"])
    ]
    assert sorted(map(sorted, report["label_conflicts"])) == [
        sorted(["train/safe/3.png", "train/unsafe/sexual/conflict.png"])
    ]
    assert sorted(map(sorted, report["exact_duplicates"])) == sorted(
        [
            sorted(["test/safe/6.png", "test/safe/6-copy.png"]),
            sorted(["train/safe/3.png", "train/unsafe/sexual/conflict.png"]),
        ]
    )
    assert [u["id"] for u in report["unreadable"]] == ["test/safe/broken.png"]
    saved = json.loads((tmp_path / "audit" / "audit.json").read_text())
    assert (
        saved["summary"]["near_duplicates_across_splits"] == 1
        and "Label conflicts (1)" in (tmp_path / "audit" / "audit.html").read_text()
    )


def test_hash_robustness_reports_recall_per_transform_and_false_matches(tmp_path):
    pytest.importorskip("scipy")
    from imagesafety import robustness

    (tmp_path / "data" / "unsafe" / "sexual").mkdir(parents=True)
    (tmp_path / "data" / "safe").mkdir(parents=True)
    for i, crop in enumerate(photo_crops(8)):
        crop.save(tmp_path / "data" / "unsafe" / "sexual" / f"{i}.png")
        smooth(900 + i).save(tmp_path / "data" / "safe" / f"{i}.png")
    build(tmp_path / "data" / "unsafe", tmp_path / "bank")
    result = robustness(
        f"hashmatch:{tmp_path / 'bank'}",
        tmp_path / "data",
        None,
        attacks=[],
        corruptions=["jpeg", "resize"],
        severities=[1],
        cache=None,
        progress=False,
    )
    for name in ("jpeg", "resize"):
        block = result.metrics["corruptions"][name]["1"]
        assert block["recall"] >= 0.75 and block["fpr"] == 0.0, (name, block)


def test_eval_warns_when_evaluated_images_are_near_duplicates_of_a_guards_training_images(tmp_path, tiny_clip_dir):
    from imagesafety.bench.evaluate import evaluate
    from imagesafety.classifiers import load_classifier
    from imagesafety.guard import GuardConfig, train_guard
    from imagesafety.run.embed import embed

    crops = photo_crops(8)
    for i, crop in enumerate(crops):
        folder = tmp_path / "train" / ("unsafe/sexual" if i % 2 else "safe")
        folder.mkdir(parents=True, exist_ok=True)
        crop.save(folder / f"{i}.png")
        again = tmp_path / "test" / ("unsafe/sexual" if i % 2 else "safe")
        again.mkdir(parents=True, exist_ok=True)
        crop.save(again / f"{i}.jpg", quality=85)  # re-encoded: another file, the same picture
    embed(f"hf:{tiny_clip_dir}", tmp_path / "train", tmp_path / "emb.parquet", cache=None, progress=False)
    train_guard(tmp_path / "emb.parquet", tmp_path / "guard", config=GuardConfig(epochs=2, val_fraction=0.25))
    card = json.loads((tmp_path / "guard" / "guard.json").read_text())
    assert card["training"]["training_hashes"]["count"] == 6  # the 6 training images (2 were held out for validation)
    report = evaluate(
        load_classifier(f"probe:{tmp_path / 'guard'}", device="cpu"),
        tmp_path / "test",
        None,
        cache=None,
        progress=False,
        n_boot=10,
    )
    near = [w for w in report.warnings if "near-duplicates" in w]
    assert near and near[0].startswith("6 of the 8 evaluated images are near-duplicates"), report.warnings
