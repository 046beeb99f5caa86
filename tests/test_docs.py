"""Generated docs stay in step with the code."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from ruamel.yaml import YAML

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


def _capsim_invocations(text: str) -> list[list[str]]:
    """`capsim ...` command lines in a shell snippet, tokenised (GitHub expressions replaced by a word)."""
    text = re.sub(r"\$\{\{[^}]*\}\}", "X", text).replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        if "capsim " in line and not line.lstrip().startswith("#"):
            words = shlex.split(line[line.index("capsim ") :], comments=True)
            out.append(words[: words.index("&&")] if "&&" in words else words)
    return out


def test_example_workflows_call_commands_and_options_that_exist() -> None:
    import typer

    from sim import cli

    commands = typer.main.get_command(cli.app).commands  # type: ignore[attr-defined]
    seen = set()
    for path in sorted((ROOT / "docs" / "ci").glob("*.yml")):
        workflow = YAML(typ="safe").load(path.read_text())
        runs = [step["run"] for job in workflow["jobs"].values() for step in job["steps"] if "run" in step]
        for words in (w for run in runs for w in _capsim_invocations(run)):
            command = commands.get(words[1])
            assert command is not None, f"{path.name}: capsim {words[1]} does not exist"
            options = {opt for p in command.params for opt in p.opts + p.secondary_opts}
            for word in words[2:]:
                if word.startswith("--"):
                    assert word in options, f"{path.name}: capsim {words[1]} has no option {word}"
            seen.add(words[1])
    assert {"check", "tune", "pr"} <= seen
