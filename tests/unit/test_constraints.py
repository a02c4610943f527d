"""constraints.txt pins the image's runtime dependencies: every dependency pyproject.toml declares, and
every dependency of theirs (as the installed distributions declare them, extras and markers followed),
pinned with `==` to a version their requirements allow; no test tool is pinned."""

from __future__ import annotations

import importlib.metadata as metadata
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]


def pins() -> dict[str, str]:
    """Canonical name -> pinned version; every line that is not a comment is a `name==version` pin."""
    pinned: dict[str, str] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        requirement = Requirement(line)
        [spec] = requirement.specifier
        assert spec.operator == "==" and not requirement.marker and not requirement.extras, line
        pinned[canonicalize_name(requirement.name)] = spec.version
    return pinned


def project() -> dict[str, object]:
    with (ROOT / "pyproject.toml").open("rb") as file:
        doc: dict[str, object] = tomllib.load(file)["project"]
        return doc


def applies(requirement: Requirement, extras: set[str]) -> bool:
    if requirement.marker is None:
        return True
    return any(requirement.marker.evaluate({"extra": extra}) for extra in {"", *extras})


def runtime_requirements() -> list[Requirement]:
    """pyproject's dependencies and, transitively, those of their installed distributions."""
    top = [Requirement(text) for text in project()["dependencies"]]  # type: ignore[attr-defined]
    found: list[Requirement] = []
    seen: set[tuple[str, frozenset[str]]] = set()
    queue = [(requirement, set[str]()) for requirement in top]
    while queue:
        requirement, parent_extras = queue.pop()
        if not applies(requirement, parent_extras):
            continue
        found.append(requirement)
        key = (canonicalize_name(requirement.name), frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        for text in metadata.distribution(requirement.name).requires or []:
            queue.append((Requirement(text), set(requirement.extras)))
    return found


def test_every_runtime_dependency_and_theirs_is_pinned_to_a_version_they_allow() -> None:
    pinned = pins()
    requirements = runtime_requirements()
    names = {canonicalize_name(r.name) for r in requirements}
    assert {"ccxt", "sqlalchemy", "greenlet", "prometheus-client", "aiohttp", "yarl"} <= names
    assert sorted(names - set(pinned)) == []
    for requirement in requirements:
        version = pinned[canonicalize_name(requirement.name)]
        assert requirement.specifier.contains(version, prereleases=True), (str(requirement), version)
    assert "deltakeeper" not in pinned


def test_no_test_tool_is_pinned_unless_the_service_needs_it() -> None:
    pinned = set(pins())
    needed = {canonicalize_name(r.name) for r in runtime_requirements()}
    test_only = {
        canonicalize_name(Requirement(text).name)
        for text in project()["optional-dependencies"]["test"]  # type: ignore[index]
    } - needed
    assert test_only and pinned & test_only == set()
