"""Malformed scenarios and manifests are rejected up front, naming file, field and line.

The cases are data (tests/data/bad/cases.yaml, one scenario per case), so the
CLI tests can run the same fixtures through `capsim run` and check exit code 2.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from sim.errors import InputError
from sim.scenario import load_scenario

BAD = Path(__file__).parent / "data" / "bad"
CASES: list[dict[str, Any]] = YAML(typ="safe").load((BAD / "cases.yaml").read_text())


def test_the_base_the_cases_vary_is_valid() -> None:
    scenario = load_scenario(BAD / "good.yaml")
    assert scenario.service("api").workload.cpu_request_millicores == 250.0


def test_every_fixture_scenario_is_indexed() -> None:
    indexed = {case["scenario"] for case in CASES}
    on_disk = {p.name for p in BAD.glob("*.yaml")} - {"cases.yaml", "good.yaml"}
    assert on_disk == indexed
    assert len(CASES) >= 15


@pytest.mark.parametrize("case", CASES, ids=[c["scenario"].removesuffix(".yaml") for c in CASES])
def test_bad_input_names_file_field_and_line(case: dict[str, Any]) -> None:
    with pytest.raises(InputError) as caught:
        load_scenario(BAD / case["scenario"])
    error = caught.value
    expected_file = Path(os.path.normpath(BAD / case.get("file", case["scenario"])))
    assert Path(os.path.normpath(str(error.file))) == expected_file
    assert error.field == case["field"]
    assert error.line == case["line"]
    assert case["message"] in error.message
    text = str(error)
    assert f":{case['line']}:" in text
    if case["field"]:
        assert case["field"] in text


def test_unknown_field_lists_what_is_valid() -> None:
    with pytest.raises(InputError) as caught:
        load_scenario(BAD / "unknown-field.yaml")
    assert caught.value.valid is not None
    assert "workers" in caught.value.valid and "service_time" in caught.value.valid


def test_scaledobject_unknown_field_lists_the_crd_fields() -> None:
    with pytest.raises(InputError) as caught:
        load_scenario(BAD / "so-unknown-field.yaml")
    assert caught.value.valid is not None and "pollingInterval" in caught.value.valid


def _scenario(tmp_path: Path, body: str) -> Path:
    """A copy of good.yaml with one edit, next to the shared valid manifests."""
    (tmp_path / "_app").symlink_to(BAD / "_app")
    path = tmp_path / "case.yaml"
    path.write_text(body)
    return path


def _edited(old: str, new: str) -> str:
    text = (BAD / "good.yaml").read_text()
    assert old in text
    return text.replace(old, new, 1)


@pytest.mark.parametrize(
    ("old", "new", "field", "valid_part"),
    [
        ("rps: 50}", "rps: 50, burst: 2}", "services[0].traffic.burst", "rps"),
        ("seed: 1", "seed: 1\nsede: 2", "sede", "horizon"),
        ("objective: 0.99}", "objective: 0.99, percentile: 95}", "slos[0].percentile", "threshold"),
    ],
)
def test_unknown_fields_inside_unions_name_the_members_fields(
    tmp_path: Path, old: str, new: str, field: str, valid_part: str
) -> None:
    with pytest.raises(InputError) as caught:
        load_scenario(_scenario(tmp_path, _edited(old, new)))
    assert caught.value.field == field
    assert caught.value.valid is not None and valid_part in caught.value.valid


def test_window_slo_window_must_be_a_multiple_of_step(tmp_path: Path) -> None:
    body = _edited(
        "kind: latency, threshold: 300ms, objective: 0.99}",
        "kind: latency_window, percentile: 95, threshold: 300ms, window: 12s, objective: 0.99}",
    )
    with pytest.raises(InputError) as caught:
        load_scenario(_scenario(tmp_path, body))
    assert caught.value.field == "slos[0].window"


def test_duplicate_service_names(tmp_path: Path) -> None:
    text = (BAD / "good.yaml").read_text()
    services, slos = text.split("slos:")
    block = services.split("services:\n")[1]
    body = services + block + "slos:" + slos
    with pytest.raises(InputError) as caught:
        load_scenario(_scenario(tmp_path, body))
    lines = body.splitlines()
    second = lines.index("  - name: api", lines.index("  - name: api") + 1) + 1
    assert caught.value.field == "services[1].name"
    assert caught.value.line == second


def test_missing_scenario_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="file not found"):
        load_scenario(tmp_path / "nope.yaml")


def test_empty_scenario_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing yet\n")
    with pytest.raises(InputError, match="empty"):
        load_scenario(path)
