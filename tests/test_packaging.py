"""Both wheels, built for real (hatchling, offline), carry what the README's install section promises.

Asserted: ``py.typed`` in each package, the MIT LICENSE in each wheel's metadata, the package README as the long
description, the core's runtime dependency on the OpenTelemetry API only (SDK and exporters behind the ``otlp`` extra,
which the ``cli`` extra includes), the integration's LangChain ranges up to the next major, and that every extra the
README names exists.
"""

from __future__ import annotations

import re
import zipfile
from email.message import Message
from email.parser import Parser
from pathlib import Path

import pytest
from hatchling.builders.wheel import WheelBuilder

ROOT = Path(__file__).resolve().parents[1]
INTEGRATION = ROOT / "integrations" / "langgraph"


class Wheel:
    """A built wheel: its file names and its parsed METADATA."""

    def __init__(self, path: Path) -> None:
        with zipfile.ZipFile(path) as archive:
            self.names = set(archive.namelist())
            [metadata_name] = [n for n in self.names if n.endswith(".dist-info/METADATA")]
            self.metadata: Message = Parser().parsestr(archive.read(metadata_name).decode())
            [license_name] = [n for n in self.names if n.endswith(".dist-info/licenses/LICENSE")]
            self.license = archive.read(license_name).decode()

    def requirements(self, extra: str | None = None) -> set[str]:
        """Requirement names (lower case) without a marker, or those of one extra."""
        found = set()
        for line in self.metadata.get_all("Requires-Dist") or []:
            requirement, _, marker = line.partition(";")
            in_extra = re.search(r"extra == '([^']+)'", marker)
            if (in_extra.group(1) if in_extra else None) == extra:
                found.add(requirement.strip())
        return found

    def requirement_names(self, extra: str | None = None) -> set[str]:
        return {re.split(r"[<>=!~\[ ]", r, maxsplit=1)[0].lower() for r in self.requirements(extra)}


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Wheel]:
    out = tmp_path_factory.mktemp("wheels")
    built = {}
    for name, root in (("core", ROOT), ("integration", INTEGRATION)):
        [path] = WheelBuilder(str(root)).build(directory=str(out), versions=["standard"])
        built[name] = Wheel(Path(path))
    return built


def test_each_wheel_is_typed_licensed_and_described(wheels: dict[str, Wheel]) -> None:
    for wheel, package, readme in (
        (wheels["core"], "critic_guard", ROOT / "README.md"),
        (wheels["integration"], "critic_guard_langgraph", INTEGRATION / "README.md"),
    ):
        assert f"{package}/py.typed" in wheel.names
        assert wheel.metadata["License-Expression"] == "MIT"
        assert wheel.license.startswith("MIT License") and "critic-guard authors" in wheel.license
        assert wheel.metadata["Description-Content-Type"] == "text/markdown"
        assert wheel.metadata.get_payload().strip() == readme.read_text(encoding="utf-8").strip()
    assert (ROOT / "LICENSE").read_text() == (INTEGRATION / "LICENSE").read_text()


def test_the_core_needs_the_opentelemetry_api_only(wheels: dict[str, Wheel]) -> None:
    core = wheels["core"]
    runtime = core.requirement_names()
    assert "opentelemetry-api" in runtime
    assert not {name for name in runtime if name.startswith("opentelemetry-") and name != "opentelemetry-api"}
    assert not runtime & {"matplotlib", "langchain", "langchain-core", "langgraph"}
    sdk_and_exporters = {
        "opentelemetry-sdk",
        "opentelemetry-exporter-otlp-proto-common",
        "opentelemetry-exporter-otlp-proto-http",
    }
    assert core.requirement_names("otlp") == sdk_and_exporters
    assert core.requirement_names("cli") == sdk_and_exporters | {"matplotlib"}  # `pilot` / `traces` and `report`


def test_the_integration_accepts_every_langchain_1x_from_the_oldest_tested(wheels: dict[str, Wheel]) -> None:
    requirements = wheels["integration"].requirements()
    assert {"langchain<2,>=1.3", "langchain-core<2,>=1.0", "langgraph<2,>=1"} <= requirements
    assert "critic-guard<0.2,>=0.1" in requirements
    makefile = (ROOT / "Makefile").read_text()
    oldest = re.search(r"^OLDEST_LANGCHAIN\s*\?=\s*(.+)$", makefile, re.MULTILINE)
    assert oldest is not None, "the Makefile names the oldest LangChain versions the tests run on"
    assert "'langchain==1.3.0'" in oldest.group(1)  # the range's lower bound is what CI tests


def test_every_extra_the_readme_names_exists(wheels: dict[str, Wheel]) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    named = {
        (package, extra.strip())
        for package, extras in re.findall(r"(critic-guard(?:-langgraph)?)\[([a-z,\s]+)\]", readme)
        for extra in extras.split(",")
    }
    assert ("critic-guard", "otlp") in named and ("critic-guard", "cli") in named
    provided = {
        "critic-guard": set(wheels["core"].metadata.get_all("Provides-Extra") or []),
        "critic-guard-langgraph": set(wheels["integration"].metadata.get_all("Provides-Extra") or []),
    }
    assert {(package, extra) for package, extra in named if extra not in provided[package]} == set()
