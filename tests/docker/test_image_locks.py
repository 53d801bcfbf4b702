"""Each image's lock: what it holds, that it is consistent, and that it installs on the image.

The serving image runs on a slim base without a compiler, so every package it
locks needs a wheel for that platform (or must be pure Python); the pipeline
image builds on Beam's SDK image, which has one. The wheel checks ask PyPI and
skip, saying so, only when PyPI cannot be reached.
"""

import ast
import importlib.metadata
import importlib.util
import os
import sys
from typing import Dict, Iterator, List, Optional

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from tests.docker.dockerfiles import (
    REQUIREMENTS,
    arguments,
    dockerfile,
    installed_lock,
    normalize,
    pins,
    requirement_names,
)
from tests.docker.pypi import Platform, install_problem, pypi_unreachable_reason
from tfx_pipeline.config import REPO_ROOT

SERVING_PACKAGES = ("serving", "bandit_core")
# What each image's base gives pip. The slim image has no gcc; Beam's SDK image is built
# FROM python:3.10-bullseye (buildpack-deps, gcc included; its Dockerfile even wires ccache).
BASES: Dict[str, Platform] = {
    "python:3.10-slim-bookworm": Platform("Debian 12 slim (glibc 2.36)", (2, 36), compiler=False),
    "apache/beam_python3.10_sdk:2.59.0": Platform(
        "Beam's SDK image, Debian 11 (glibc 2.31)", (2, 31), compiler=True
    ),
}


def base_platform(image: str) -> Platform:
    (base,) = arguments(dockerfile(image), "FROM")
    assert base in BASES, f"{image}.Dockerfile's base {base!r}: add its platform to BASES"
    return BASES[base]


@pytest.fixture(scope="module")
def pypi() -> None:
    reason = pypi_unreachable_reason()
    if reason:
        pytest.skip(f"{reason}; the wheel check needs its index")


def third_party_imports(package: str) -> Iterator[str]:
    """Every dotted module a package imports that is neither ours nor the standard library."""
    for path in sorted((REPO_ROOT / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and not (REPO_ROOT / top).is_dir():
                    yield name


NAMESPACE = "namespace package"


def distribution_of(module: str, owners: Dict[str, str]) -> Optional[str]:
    """The installed distribution whose files hold `module` (or its nearest module parent).

    A namespace package such as `google.cloud` belongs to no one distribution;
    the modules imported from it are looked up on their own.
    """
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        try:
            spec = importlib.util.find_spec(".".join(parts[:end]))
        except (ImportError, ValueError):
            continue
        if spec is None:
            continue
        if spec.origin is None or spec.origin == "namespace":
            return NAMESPACE
        return owners.get(os.path.normpath(spec.origin))
    return None


@pytest.fixture(scope="module")
def file_owners() -> Dict[str, str]:
    """Installed module file -> its distribution's normalized name."""
    owners = {}
    for dist in importlib.metadata.distributions():
        name = normalize(dist.metadata["Name"])
        for file in dist.files or ():
            if file.suffix in (".py", ".so"):
                owners[os.path.normpath(dist.locate_file(file))] = name
    return owners


def test_serving_requirements_are_exactly_what_the_server_imports(file_owners):
    imported = {}
    for package in SERVING_PACKAGES:
        for module in third_party_imports(package):
            imported.setdefault(distribution_of(module, file_owners), module)
    imported.pop(NAMESPACE, None)
    assert None not in imported, f"no installed distribution provides {imported[None]!r}"
    listed = requirement_names(REQUIREMENTS / "serving.in")
    assert sorted(imported) == listed, (
        f"serving/ and bandit_core/ import {sorted(imported)}; requirements/serving.in lists "
        f"{listed}: edit serving.in and recompile serving.lock (command in its header)"
    )
    missing = set(imported) - set(pins(installed_lock("serving")))
    assert not missing, f"requirements/serving.lock lacks {sorted(missing)}: recompile it"


def test_serving_lock_has_no_pipeline_only_packages():
    assert not {"tfx", "apache-beam", "google-cloud-aiplatform", "kfp"} & set(
        pins(installed_lock("serving"))
    )


def test_serving_lock_pins_what_the_pipeline_lock_pins():
    serving, pipeline = pins(installed_lock("serving")), pins(installed_lock("pipeline"))
    differing = {
        name: (version, pipeline.get(name))
        for name, version in serving.items()
        if pipeline.get(name) != version
    }
    assert differing == {}, (
        "serving.lock and pipeline.lock disagree (serving, pipeline): recompile serving.lock "
        "with --constraint requirements/pipeline.lock"
    )


def check_requirements(lock: Dict[str, str]) -> List[str]:
    """`pip check` on a lock, offline: each package's requirements met within the lock.

    The requirements come from the installed distributions' metadata, so the
    lock must pin what this environment has (`installed_versions_differ`).
    Markers are evaluated for this interpreter (CPython 3.10 on Linux, as in
    the images); extras are not, as `pip check` does not.
    """
    problems = []
    for name in sorted(lock):
        for text in importlib.metadata.distribution(name).requires or ():
            requirement = Requirement(text)
            if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
                continue
            needed = normalize(requirement.name)
            if needed not in lock:
                problems.append(f"{name}=={lock[name]} requires {requirement}, not in the lock")
            elif not requirement.specifier.contains(lock[needed], prereleases=True):
                problems.append(
                    f"{name}=={lock[name]} requires {requirement}, the lock has {lock[needed]}"
                )
    return problems


def installed_versions_differ(lock: Dict[str, str]) -> Dict[str, tuple]:
    differ = {}
    for name, version in lock.items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            installed = None
        if installed is None or not SpecifierSet(f"=={version}").contains(installed, True):
            differ[name] = (version, installed)
    return differ


@pytest.mark.parametrize("image", ["pipeline", "serving"])
def test_each_lock_is_consistent_as_pip_check_would_find_it(image):
    lock = pins(installed_lock(image))
    assert installed_versions_differ(lock) == {}, (
        f"this environment differs from {installed_lock(image).name} (locked, installed): "
        "run scripts/bootstrap.sh"
    )
    assert check_requirements(lock) == []


def test_the_offline_check_reports_a_missing_or_wrong_requirement():
    lock = pins(installed_lock("serving"))
    without_six = {name: version for name, version in lock.items() if name != "six"}
    problems = check_requirements(without_six)
    assert any("requires six" in p and "not in the lock" in p for p in problems), problems
    old_numpy = {**lock, "numpy": "1.0"}
    assert any("the lock has 1.0" in p for p in check_requirements(old_numpy))


@pytest.mark.parametrize("image", ["pipeline", "serving"])
def test_every_locked_package_installs_on_its_images_platform(pypi, image):
    platform = base_platform(image)
    problems = [
        problem
        for name, version in sorted(pins(installed_lock(image)).items())
        if (problem := install_problem(name, version, platform))
    ]
    assert problems == [], f"{installed_lock(image).name} on {image}.Dockerfile's base:\n" + (
        "\n".join(problems)
    )


def test_the_wheel_check_refuses_a_native_sdist_on_a_base_without_compiler(pypi):
    # pyfarmhash 0.3.2 ships only Windows wheels and C++ sources: the pipeline lock
    # installed on the slim base is the build that used to fail.
    problem = install_problem("pyfarmhash", "0.3.2", base_platform("serving"))
    assert problem is not None and "pyfarmhash==0.3.2 has no wheel" in problem
    assert install_problem("pyfarmhash", "0.3.2", base_platform("pipeline")) is None
    assert install_problem("gym", "0.23.0", base_platform("serving")) is None  # pure Python
