"""Generated docs stay in step with the code."""

from __future__ import annotations

import re
from pathlib import Path

from sim.scenario import ScenarioFile, scenario_json_schema
from sim.schema_doc import markdown

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "docs" / "scenario-reference.md"


def test_committed_scenario_reference_is_up_to_date() -> None:
    assert REFERENCE.read_text() == markdown(scenario_json_schema()), (
        "docs/scenario-reference.md is stale: run `capsim schema --markdown > docs/scenario-reference.md`"
    )


def test_reference_documents_every_top_level_field_and_links_resolve() -> None:
    text = markdown(scenario_json_schema())
    for name in ScenarioFile.model_fields:
        assert f"| `{name}`" in text
    headings = {h.lower() for h in re.findall(r"^## (\S+)$", text, flags=re.M)}
    for anchor in re.findall(r"\]\(#([a-z0-9]+)\)", text):
        assert anchor in headings
