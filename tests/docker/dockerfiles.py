"""Reading the two Dockerfiles and the locks they install, without a Docker engine."""

import re
import shlex
from pathlib import Path
from typing import Dict, List, Tuple

from tfx_pipeline.config import REPO_ROOT

DOCKER = REPO_ROOT / "docker"
REQUIREMENTS = REPO_ROOT / "requirements"
IMAGES = ("pipeline", "serving")


def dockerfile(image: str) -> Path:
    return DOCKER / f"{image}.Dockerfile"


def instructions(path: Path) -> List[Tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            pairs.append((keyword.upper(), rest.strip()))
    return pairs


def arguments(path: Path, keyword: str) -> List[str]:
    return [rest for word, rest in instructions(path) if word == keyword]


def copied(path: Path) -> List[str]:
    return [rest.split()[0] for rest in arguments(path, "COPY")]


def dockerfile_env(path: Path, build_args: Dict[str, str]) -> Dict[str, str]:
    """The image's ENV, with ${ARG} references expanded as `docker build` would."""
    args: Dict[str, str] = {}
    env: Dict[str, str] = {}
    for keyword, rest in instructions(path):
        if keyword == "ARG":
            name, _, default = rest.partition("=")
            args[name] = build_args.get(name, default)
        elif keyword == "ENV":
            for pair in shlex.split(rest):
                name, _, value = pair.partition("=")
                env[name] = re.sub(r"\$\{(\w+)\}", lambda m: {**args, **env}[m.group(1)], value)
    return env


def installed_lock(image: str) -> Path:
    """The one lock file the image installs (its only COPY from requirements/)."""
    (lock,) = [source for source in copied(dockerfile(image)) if source.startswith("requirements/")]
    return REPO_ROOT / lock


def pins(lock: Path) -> Dict[str, str]:
    """Normalized package name -> pinned version, from a `uv pip compile` lock."""
    found = re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)$", lock.read_text(), re.MULTILINE)
    return {normalize(name): version for name, version in found}


def requirement_names(requirements_in: Path) -> List[str]:
    """The normalized names a requirements .in file lists."""
    lines = (line.split("#")[0].strip() for line in requirements_in.read_text().splitlines())
    return sorted(normalize(re.split(r"[\[=<>!~; ]", line)[0]) for line in lines if line)


def normalize(name: str) -> str:
    """PEP 503 normalization, as pip and uv compare names."""
    return re.sub(r"[-_.]+", "-", name).lower()
