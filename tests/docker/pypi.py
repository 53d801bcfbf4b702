"""Which files PyPI has for a pinned package, and whether one installs on an image's platform.

PyPI's JSON simple index (PEP 691) lists every file of a project; a pinned
release's files never change, so each answer is cached on disk and a second
run asks PyPI nothing.
"""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import FrozenSet, List, Optional

from packaging import tags
from packaging.utils import parse_sdist_filename, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from tfx_pipeline.config import REPO_ROOT

INDEX = "https://pypi.org/simple"
_JSON = "application/vnd.pypi.simple.v1+json"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mlbandits" / "pypi"


@dataclasses.dataclass(frozen=True)
class Platform:
    """What an image's base gives pip: CPython 3.10 on x86_64 glibc, maybe a compiler."""

    description: str
    glibc: tuple
    compiler: bool

    @property
    def wheel_tags(self) -> FrozenSet[tags.Tag]:
        major, newest = self.glibc
        platforms = [f"manylinux_{major}_{minor}_x86_64" for minor in range(newest, 4, -1)]
        platforms += ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"]
        abis = ["cp310", "abi3", "none"]
        return frozenset(tags.cpython_tags((3, 10), abis, platforms)) | frozenset(
            tags.compatible_tags((3, 10), "cp310", platforms)
        )


@dataclasses.dataclass(frozen=True)
class ReleaseFile:
    filename: str
    url: str


def pypi_unreachable_reason() -> Optional[str]:
    """Why PyPI cannot be asked, or None when it answers."""
    try:
        _get(f"{INDEX}/pip/")
    except (urllib.error.URLError, OSError) as error:
        return f"PyPI ({INDEX}) is unreachable: {error}"
    return None


def release_files(name: str, version: str) -> List[ReleaseFile]:
    """Every file PyPI has for name==version (wheels and sdists)."""
    cached = CACHE / f"{name}-{version}.json"
    if cached.exists():
        return [ReleaseFile(**item) for item in json.loads(cached.read_text())]
    index = json.loads(_get(f"{INDEX}/{name}/"))
    files = [
        ReleaseFile(item["filename"], item["url"])
        for item in index["files"]
        if not item.get("yanked") and _version_of(item["filename"]) == Version(version)
    ]
    CACHE.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps([dataclasses.asdict(item) for item in files]))
    return files


def install_problem(name: str, version: str, platform: Platform) -> Optional[str]:
    """Why pip could not install name==version on `platform`, or None if it can.

    A matching wheel installs anywhere. Without one, pip builds the sdist:
    fine with a compiler; without one only if the sdist is pure Python, which
    is shown by building it here and looking at the wheel's tag.
    """
    files = release_files(name, version)
    wheels = [f for f in files if f.filename.endswith(".whl")]
    if any(set(parse_wheel_filename(w.filename)[3]) & platform.wheel_tags for w in wheels):
        return None
    sdists = [f for f in files if not f.filename.endswith(".whl")]
    needed = f"{name}=={version} has no wheel for CPython 3.10 on {platform.description}"
    if not sdists:
        return f"{needed} and no sdist either"
    if platform.compiler:
        return None
    built = _built_wheel_tags(sdists[0])
    if built is None:
        return f"{needed}, and its sdist {sdists[0].filename} does not build here"
    if not all(tag.abi == "none" and tag.platform == "any" for tag in built):
        return (
            f"{needed}, and its sdist compiles native code ({sorted(map(str, built))}), which "
            "this image has no compiler for: pin a version with a manylinux wheel, drop the "
            "package from the lock, or build on a base image with a compiler"
        )
    return None


def uv_command() -> List[str]:
    """uv on PATH, else the one scripts/bootstrap.sh installs."""
    found = shutil.which("uv") or REPO_ROOT / ".tools" / "bin" / "uv"
    if not Path(found).exists():
        raise FileNotFoundError("uv not found: run scripts/bootstrap.sh, which installs it")
    return [str(found)]


def _built_wheel_tags(sdist: ReleaseFile) -> Optional[FrozenSet[tags.Tag]]:
    cached = CACHE / f"{sdist.filename}.tags.json"
    if cached.exists():
        return frozenset(t for text in json.loads(cached.read_text()) for t in tags.parse_tag(text))
    with tempfile.TemporaryDirectory() as scratch:
        archive = Path(scratch) / sdist.filename
        archive.write_bytes(_get(sdist.url, accept="*/*"))
        out = Path(scratch) / "wheel"
        build = [*uv_command(), "build", "--wheel", "--python", sys.executable, "-o", str(out)]
        if subprocess.run([*build, str(archive)], capture_output=True).returncode != 0:
            return None
        (wheel,) = out.glob("*.whl")
        built = frozenset(parse_wheel_filename(wheel.name)[3])
    cached.write_text(json.dumps(sorted(map(str, built))))
    return built


def _version_of(filename: str) -> Optional[Version]:
    try:
        if filename.endswith(".whl"):
            return parse_wheel_filename(filename)[1]
        return parse_sdist_filename(filename)[1]
    except (ValueError, InvalidVersion):
        return None  # eggs, .exe installers and misnamed uploads


def _get(url: str, accept: str = _JSON) -> bytes:
    request = urllib.request.Request(url, headers={"Accept": accept})
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.read()
