"""NSFWJS's three real models ported to torch, against NSFWJS itself on Node (tfjs CPU backend) on the same images:
generated ones and the photographs that ship with scikit-image. Also: the package checks, the converted-weights cache,
a PGD run on real photographs, and the encoder."""

import base64
import json
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

NODE_DIR = Path(__file__).parent / "node"
MODELS = {"mobilenet_v2": "MobileNetV2", "mobilenet_v2_mid": "MobileNetV2Mid", "inception_v3": "InceptionV3"}
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera")
#: InceptionV3 costs NSFWJS about 40 s an image on tfjs's pure-JavaScript CPU backend: it is compared on these
#: (both resize paths, three photographs); its top class on the other photographs is checked on the port alone
INCEPTION_SUBSET = ("noise_299", "small_37x61", "astronaut", "coffee", "camera")


def node_modules() -> Path:
    """tests/node/node_modules with nsfwjs and @tensorflow/tfjs (installed from the npm registry when missing)."""
    if not (NODE_DIR / "node_modules" / "nsfwjs" / "package.json").is_file():
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--silent"],
            cwd=NODE_DIR,
            check=True,
            timeout=900,
        )
    return NODE_DIR / "node_modules"


@pytest.fixture(scope="session")
def node():
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node/npm are not installed: NSFWJS itself (the reference) cannot run here")
    node_modules()
    return NODE_DIR


@pytest.fixture(scope="session")
def package():
    """The unpacked nsfwjs@4.4.0 package (the one the Node reference runs)."""
    if shutil.which("npm") is None and not (NODE_DIR / "node_modules" / "nsfwjs").is_dir():
        pytest.skip("npm is not installed and tests/node/node_modules is absent: no NSFWJS package to read")
    return node_modules() / "nsfwjs"


@pytest.fixture(scope="session")
def images():
    """Generated images (exactly the input size, larger, smaller, odd aspect) and scikit-image's photographs."""
    data = pytest.importorskip("skimage.data")
    rng = np.random.default_rng(0)
    generated = {
        "noise_224": rng.integers(0, 256, (224, 224, 3), dtype=np.uint8),
        "noise_299": rng.integers(0, 256, (299, 299, 3), dtype=np.uint8),
        "gradient_300x200": np.dstack(
            [*np.meshgrid(np.linspace(0, 255, 200), np.linspace(0, 255, 300)), np.full((300, 200), 90.0)]
        ).astype(np.uint8),
        "small_37x61": rng.integers(0, 256, (37, 61, 3), dtype=np.uint8),
    }
    photos = {name: np.asarray(Image.fromarray(getattr(data, name)()).convert("RGB")) for name in PHOTOS}
    return {**generated, **photos}


def reference(node_dir: Path, model: str, arrays: dict[str, np.ndarray], tmp: Path) -> np.ndarray:
    """NSFWJS's five probabilities per image, computed by NSFWJS on Node."""
    payload = [
        {"shape": list(a.shape), "data": base64.b64encode(np.ascontiguousarray(a).tobytes()).decode()}
        for a in arrays.values()
    ]
    (tmp / "images.json").write_text(json.dumps(payload))
    done = subprocess.run(
        ["node", str(node_dir / "nsfwjs_reference.cjs"), "classify", MODELS[model], str(tmp / "images.json")],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return np.array(json.loads(done.stdout))


@pytest.mark.parametrize("model", list(MODELS))
def test_the_port_matches_nsfwjs_on_node(model, node, package, images, tmp_path):
    from imagesafety.classifiers import load_classifier
    from imagesafety.classifiers.nsfwjs.classifier import CLASSES

    clf = load_classifier(f"nsfwjs:{model}", package=str(package), device="cpu")
    preds = dict(zip(images, clf.predict([Image.fromarray(a) for a in images.values()])))
    compared = {k: images[k] for k in (INCEPTION_SUBSET if model == "inception_v3" else images)}
    ours = np.array([[preds[k].raw["probabilities"][c] for c in CLASSES] for k in compared])
    theirs = reference(node, model, compared, tmp_path)
    np.testing.assert_allclose(ours, theirs, atol=1e-4, rtol=0)
    assert [preds[k].raw["top"] for k in compared] == [CLASSES[i] for i in theirs.argmax(1)]
    assert [preds[k].unsafe_score for k in compared] == pytest.approx(
        list(theirs[:, 1] + theirs[:, 3]), abs=2e-4
    )  # Hentai + Porn
    tops = {name: p.raw["top"] for name, p in preds.items() if name in PHOTOS}
    if model == "inception_v3":
        assert set(tops.values()) == {"Neutral"}  # InceptionV3 calls every photograph Neutral
    else:
        assert "Drawing" in tops.values() and "Neutral" in tops.values()  # the MobileNets call some of them Drawing


def test_same_padding_puts_the_odd_pixel_after():
    """TensorFlow's rule (an independent statement of it): total = max((ceil(n/s)-1)*s + k - n, 0), the extra one
    after."""
    from imagesafety.tfjs.ops import same_padding

    assert same_padding(224, 3, 2) == (0, 1) and same_padding(224, 3, 1) == (1, 1) and same_padding(7, 3, 2) == (1, 1)
    assert (
        same_padding(8, 4, 1) == (1, 2)
        and same_padding(5, 1, 1) == (0, 0)
        and same_padding(10, 3, 1, dilation=2) == (2, 2)
    )


def test_converted_weights_are_cached_and_a_truncated_cache_is_rebuilt(package, images):
    from imagesafety.classifiers import load_classifier
    from imagesafety.classifiers.nsfwjs.convert import converted_path

    first = load_classifier("nsfwjs", package=str(package), device="cpu")
    cache = converted_path("mobilenet_v2")
    assert cache.is_file()
    started = time.perf_counter()
    again = load_classifier("nsfwjs", device="cpu")  # no package needed once converted
    assert time.perf_counter() - started < 1.0
    batch = [Image.fromarray(images["coffee"]), Image.fromarray(images["noise_224"])]
    assert [p.raw for p in again.predict(batch)] == [p.raw for p in first.predict(batch)]
    assert again.config["weights"] == first.config["weights"] and again.config["weights"].startswith("sha256:")
    cache.write_bytes(cache.read_bytes()[: cache.stat().st_size // 2])  # truncated (a crash mid-copy, a full disk)
    rebuilt = load_classifier("nsfwjs", package=str(package), device="cpu")
    assert [p.raw for p in rebuilt.predict(batch)] == [p.raw for p in first.predict(batch)]
    assert load_classifier("nsfwjs", device="cpu").config == first.config  # the rebuilt cache is whole again


def test_another_version_or_a_corrupted_shard_stops_with_the_file_named(package, tmp_path):
    from imagesafety.classifiers.nsfwjs.package import PackageError, check_package, unpack

    copy = tmp_path / "nsfwjs"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("*.map", "browser"))
    meta = json.loads((copy / "package.json").read_text())
    (copy / "package.json").write_text(json.dumps(meta | {"version": "4.3.0"}))
    with pytest.raises(PackageError, match=r"package.json: nsfwjs@4.3.0, expected nsfwjs@4.4.0"):
        check_package(copy)
    (copy / "package.json").write_text(json.dumps(meta))
    shard = copy / "dist" / "models" / "mobilenet_v2" / "group1-shard1of1.min.js"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 1
    shard.write_bytes(bytes(data))
    with pytest.raises(
        PackageError, match=r"group1-shard1of1.min.js: corrupted or altered \(sha256 .*expected ef2e0a63f7d2c496"
    ):
        check_package(copy, ["mobilenet_v2"])
    check_package(copy, ["inception_v3"])  # the other models' files are fine
    (tmp_path / "fake.tgz").write_bytes(b"not a tarball")
    with pytest.raises(PackageError, match=r"fake.tgz: integrity sha512-.*expected sha512-krC1fgeT"):
        unpack(tmp_path / "fake.tgz", tmp_path / "out")


def test_a_shard_that_does_not_fit_its_manifest_is_named(package, tmp_path):
    """Below the release check: the reader itself refuses shards whose bytes do not match the manifest."""
    from imagesafety.tfjs import TfjsError, read_model

    folder = tmp_path / "mobilenet_v2"
    shutil.copytree(package / "dist" / "models" / "mobilenet_v2", folder)
    shard = folder / "group1-shard1of1.min.js"
    text = shard.read_text()
    cut = text.rindex('"}') - 400
    shard.write_text(text[:cut] + text[cut + 400 :])  # 300 bytes of weights gone, the bundle still well formed
    with pytest.raises(
        TfjsError, match=r"mobilenet_v2 group 1: the shards (end before weight|hold \d+ bytes but the manifest)"
    ):
        read_model(folder)


def test_an_unknown_layer_type_is_named():
    from imagesafety.tfjs import TfjsError, build_module

    spec = {
        "modelTopology": {
            "model_config": {
                "class_name": "Model",
                "config": {
                    "layers": [
                        {
                            "name": "in",
                            "class_name": "InputLayer",
                            "config": {"batch_input_shape": [None, 8, 8, 3]},
                            "inbound_nodes": [],
                        },
                        {
                            "name": "odd",
                            "class_name": "SeparableConv2D",
                            "config": {},
                            "inbound_nodes": [[["in", 0, 0, {}]]],
                        },
                    ],
                    "input_layers": [["in", 0, 0]],
                    "output_layers": [["odd", 0, 0]],
                },
            }
        },
        "weightsManifest": [],
    }
    with pytest.raises(TfjsError, match="layer 'odd' is a SeparableConv2D, which this reader does not know"):
        build_module(spec, {})
    graph = {
        "modelTopology": {
            "node": [
                {
                    "name": "x",
                    "op": "Placeholder",
                    "attr": {
                        "shape": {"shape": {"dim": [{"size": "-1"}, {"size": "8"}, {"size": "8"}, {"size": "3"}]}}
                    },
                },
                {"name": "y", "op": "Erf", "input": ["x"]},
            ]
        },
        "weightsManifest": [],
    }
    with pytest.raises(TfjsError, match="node 'y' is a Erf op, which this reader does not know"):
        build_module(graph, {})


def test_pgd_toward_porn_flips_most_photographs_within_the_eps_ball(package, images, tmp_path):
    """A real network on the CPU: PGD at eps 8/255 pushes NSFWJS's MobileNetV2 toward Porn on real photographs."""
    from imagesafety.bench.robustness.run import robustness
    from imagesafety.classifiers import load_classifier

    for name in PHOTOS:
        folder = tmp_path / "data" / "safe" / "sexual" / "real"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[name]).save(folder / f"{name}.png")
    clf = load_classifier("nsfwjs", package=str(package), unsafe="porn", device="cpu")
    result = robustness(
        clf,
        tmp_path / "data",
        tmp_path / "rob",
        attacks=["pgd"],
        eps=8 / 255,
        steps=10,
        k=len(PHOTOS),
        eps_curve=False,
        progress=False,
        n_boot=10,
    )
    attacked = result.metrics["protocol"]["attacked"]
    ra = result.metrics["attacks"]["pgd"]["overall"]["robust_accuracy"]
    assert attacked >= 4 and ra <= 0.5, result.metrics["attacks"]["pgd"]
    assert result.attack_rows["linf"].max() <= 8 / 255 + 1e-6
    for ex in result.examples:
        assert np.abs(ex["adv"] - ex["clean"]).max() <= 8 / 255 + 1e-6 and ex["adv"].min() >= 0 and ex["adv"].max() <= 1


def test_the_encoder_gives_penultimate_features(package, images):
    from imagesafety.classifiers.nsfwjs.classifier import NsfwjsEncoder
    from imagesafety.encoders import load_encoder

    encoder = NsfwjsEncoder("mobilenet_v2", str(package), device="cpu")
    vectors = encoder.encode_images([Image.fromarray(images["coffee"]), Image.fromarray(images["astronaut"])])
    assert vectors.shape == (2, encoder.embed_dim) and encoder.embed_dim == 128
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    spec_loaded = load_encoder("nsfwjs:mobilenet_v2", device="cpu")  # from the converted cache, by spec
    np.testing.assert_allclose(spec_loaded.encode_images([Image.fromarray(images["coffee"])])[0], vectors[0], atol=1e-6)
    assert spec_loaded.identity == encoder.identity


def test_unsafe_option_names_classes(package):
    from imagesafety.classifiers import load_classifier

    clf = load_classifier("nsfwjs", package=str(package), unsafe="porn,hentai,sexy", device="cpu")
    assert clf.config["unsafe"] == ["hentai", "porn", "sexy"] and clf.covers == {"sexual"}
    with pytest.raises(ValueError, match="unsafe=nude: name NSFWJS classes among drawing, hentai, neutral, porn, sexy"):
        load_classifier("nsfwjs", package=str(package), unsafe="nude", device="cpu")
