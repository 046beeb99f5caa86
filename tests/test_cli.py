"""The `capsim` command: exit codes, artefacts, and nothing half-written on bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from ruamel.yaml import YAML

from sim import cli
from tests import simple_scenario as ss

BAD = Path(__file__).parent / "data" / "bad"
CASES: list[dict[str, Any]] = YAML(typ="safe").load((BAD / "cases.yaml").read_text())


def capsim(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["capsim", *args])
    with pytest.raises(SystemExit) as done:
        cli.main()
        raise SystemExit(0)
    return int(done.value.code or 0)


@pytest.mark.parametrize("case", CASES, ids=[c["scenario"].removesuffix(".yaml") for c in CASES])
def test_bad_input_exits_2_names_the_field_and_writes_nothing(
    case: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    reports = tmp_path / "reports"
    code = capsim(monkeypatch, "run", str(BAD / case["scenario"]), "--reports", str(reports), "--quiet")
    assert code == 2
    err = capsys.readouterr().err
    assert "error:" in err
    if case["field"]:
        assert case["field"] in err.replace("\n", "")
    assert not reports.exists() or not any(reports.rglob("*"))


def test_run_writes_every_artefact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scenario = ss.write(tmp_path, ss.scenario(horizon="20m"))
    reports = tmp_path / "reports"
    code = capsim(monkeypatch, "run", str(scenario), "--reports", str(reports), "--run-id", "r1", "--quiet")
    assert code == 0
    run_dir = reports / "engine-test" / "r1"
    names = {p.name for p in run_dir.iterdir()}
    assert {"timeseries.parquet", "summary.json", "events.csv", "report.md"} <= names
    pngs = [p for p in run_dir.glob("*.png") if p.stat().st_size > 1000]
    assert len(pngs) == 4
    report = (run_dir / "report.md").read_text()
    for png in pngs:
        assert f"]({png.name})" in report
    ts = pd.read_parquet(run_dir / "timeseries.parquet")
    assert {"offered_rps", "replicas_desired", "replicas_ready", "latency_p95_ms", "metric_value"} <= set(
        ts.columns
    )
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["seed"] == 1 and summary["slos"][0]["name"] == "api-latency"
    assert not [p for p in (reports / "engine-test").iterdir() if p.name.startswith(".")]


def test_fail_on_slo_exits_1_when_breached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    overload = ss.scenario(traffic={"kind": "constant", "rps": 400}, max_replicas=2, horizon="10m")
    scenario = ss.write(tmp_path, overload)
    args = ["run", str(scenario), "--reports", str(tmp_path / "r"), "--quiet"]
    assert capsim(monkeypatch, *args) == 0
    assert capsim(monkeypatch, *args, "--fail-on-slo") == 1


def test_schema_is_json_schema_of_the_scenario(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert capsim(monkeypatch, "schema") == 0
    schema = json.loads(capsys.readouterr().out)
    assert "services" in schema["properties"]
    assert "horizon" in schema["required"]


def test_console_script_maps_bad_input_to_exit_code_2(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("capsim")
    done = subprocess.run(
        [str(exe), "run", str(BAD / "unknown-field.yaml"), "--reports", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "services[0].model.wrkers" in done.stderr.replace("\n", "")
    assert "Traceback" not in done.stderr
