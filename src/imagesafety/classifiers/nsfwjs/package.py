"""NSFWJS's npm package, pinned: `--option package=PATH` (an unpacked folder or the .tgz), else the copy in the cache,
else `npm pack nsfwjs@4.4.0` once (when npm is on PATH) with the registry's integrity checked. Every model file is
checked against the release's digests before use, so another version or a corrupted shard stops with its name."""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from imagesafety.files import read_json
from imagesafety.identity import file_digest
from imagesafety.store import default_cache_path

VERSION = "4.4.0"
TARBALL = f"nsfwjs-{VERSION}.tgz"
INTEGRITY = "sha512-krC1fgeTLXtZwgdpKJ0jm7hqv0gTSRQQRL+FhOaxaJ9Wj92t42BO3csO2odwgTAgZgf2RvkwPtp0R8Aa7dc+MA=="
REGISTRY_URL = f"https://registry.npmjs.org/nsfwjs/-/{TARBALL}"
MODELS = {"mobilenet_v2": 224, "mobilenet_v2_mid": 224, "inception_v3": 299}
#: sha256 of each model file in nsfwjs@4.4.0 (dist/models/...)
FILES = {
    "inception_v3/group1-shard1of6.min.js": "e9316ac20ff634f990e483062050afe9a4826885c3a212d676ce2cfda93a4884",
    "inception_v3/group1-shard2of6.min.js": "467b33d62b4c470edf8acd3da554e331f2d49f3f93ddd718f944f595c516cd82",
    "inception_v3/group1-shard3of6.min.js": "075300e057ca7e9fd2e282afbc3a6596a0404288c94bf781e9b20658cbeee664",
    "inception_v3/group1-shard4of6.min.js": "b51ee46e062e752e81c28761a56369432671bfb3d59f4f062f5bd4dd58ff5303",
    "inception_v3/group1-shard5of6.min.js": "d4149969b3c61e0d4dde1d4f555f5b00f4fc87f6bab1a4cd4967b24f62725de6",
    "inception_v3/group1-shard6of6.min.js": "b684762a7d7c39b80183d260bdab6f072321349300f9f2ff144a085a382acfc4",
    "inception_v3/model.min.js": "8c2b793b9d277840fc757725bf3b135c96d5a54ec020e2b4ab569fc3df6b3848",
    "mobilenet_v2/group1-shard1of1.min.js": "ef2e0a63f7d2c4960b37b024b669313f65d3c45cd59e9042636c55b39de53517",
    "mobilenet_v2/model.min.js": "c32f104fd562b08cdff5ed69dfe1209643afa47e792fb12751d2949aa61a397a",
    "mobilenet_v2_mid/group1-shard1of2.min.js": "f2e79a209e44d668220ec5f1533a98f2be954e3953685bf074d201b82fefc29a",
    "mobilenet_v2_mid/group1-shard2of2.min.js": "f291df992a0131741372506a6072fb9f1645bff7c973c983fd6276f5f9625d5e",
    "mobilenet_v2_mid/model.min.js": "a7a9e701491e2449b221dab7c424957f853e700602b5575da33cfd745616f964",
}
HOW_TO_GET = (
    f"NSFWJS's weights ship in its npm package: install Node.js/npm (then it is fetched once with "
    f"`npm pack nsfwjs@{VERSION}`), or download {REGISTRY_URL} elsewhere and pass --option package=PATH/TO/{TARBALL}"
)


class PackageError(ValueError):
    """No usable NSFWJS package: says which file is wrong and what was expected, or how to get the package."""


def cache_root() -> Path:
    """Where the package and the converted weights are kept: beside the prediction cache."""
    return default_cache_path().parent / "nsfwjs" / VERSION


def integrity_of(path: Path) -> str:
    digest = hashlib.sha512()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return "sha512-" + base64.b64encode(digest.digest()).decode()


def check_package(root: Path, models: list[str] | None = None) -> Path:
    """`root` (an unpacked package: package.json, dist/models/...) checked: its version, and every file of the
    models."""
    manifest = root / "package.json"
    if not manifest.is_file():
        raise PackageError(f"{root}: no package.json (expected the unpacked nsfwjs@{VERSION} package, or its .tgz)")
    meta = read_json(manifest, PackageError)
    if meta.get("name") != "nsfwjs" or meta.get("version") != VERSION:
        raise PackageError(
            f"{manifest}: {meta.get('name')}@{meta.get('version')}, expected nsfwjs@{VERSION} (the port is "
            f"checked against that release)"
        )
    for relative, expected in FILES.items():
        if models and relative.split("/")[0] not in models:
            continue
        file = root / "dist" / "models" / relative
        if not file.is_file():
            raise PackageError(f"{file}: missing from the package (expected nsfwjs@{VERSION}'s dist/models/{relative})")
        if file_digest(file) != expected:
            raise PackageError(
                f"{file}: corrupted or altered (sha256 {file_digest(file)[:16]}..., expected {expected[:16]}... "
                f"as released in nsfwjs@{VERSION})"
            )
    return root


def unpack(tarball: Path, destination: Path) -> Path:
    """The .tgz checked against the registry's integrity, unpacked (files only, nothing outside) into `destination`."""
    found = integrity_of(tarball)
    if found != INTEGRITY:
        raise PackageError(
            f"{tarball}: integrity {found[:24]}..., expected {INTEGRITY[:24]}... (nsfwjs@{VERSION} from the npm "
            "registry)"
        )
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="nsfwjs-", dir=destination.parent))
    try:
        with tarfile.open(tarball, "r:gz") as archive:
            archive.extractall(staging, filter="data")
        shutil.rmtree(destination, ignore_errors=True)
        (staging / "package").rename(destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return destination


def npm_pack(into: Path) -> Path:
    """`npm pack nsfwjs@VERSION` into a folder; the tarball's path."""
    npm = shutil.which("npm")
    if npm is None:
        raise PackageError(f"no NSFWJS package in the cache and npm is not installed. {HOW_TO_GET}")
    done = subprocess.run(
        [npm, "pack", f"nsfwjs@{VERSION}", "--pack-destination", str(into), "--json", "--silent"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    tarball = into / TARBALL
    if done.returncode != 0 or not tarball.is_file():
        last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise PackageError(f"`npm pack nsfwjs@{VERSION}` failed ({last[0]}). {HOW_TO_GET}")
    return tarball


def locate_package(package: str | Path | None = None, models: list[str] | None = None) -> Path:
    """The unpacked, checked nsfwjs@4.4.0 package: the given folder or .tgz, else the cache, else fetched with npm."""
    root = cache_root()
    if package:
        path = Path(package).expanduser().resolve()
        if path.is_file():
            return check_package(unpack(path, root / "package"), models)
        if path.is_dir():
            return check_package(path / "package" if (path / "package" / "package.json").is_file() else path, models)
        raise PackageError(f"--option package={package}: no such file or folder. {HOW_TO_GET}")
    cached = root / "package"
    if (cached / "package.json").is_file():
        return check_package(cached, models)
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        return check_package(unpack(npm_pack(Path(tmp)), cached), models)
