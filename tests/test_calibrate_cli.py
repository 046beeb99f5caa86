"""`capsim calibrate` and `capsim backtest` on the bundled demo history: no Prometheus needed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from sim import cli

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "scenarios" / "data" / "history" / "demo.om.gz"
SCENARIO = ROOT / "scenarios" / "diurnal-day.yaml"


def capsim(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["capsim", *args])
    with pytest.raises(SystemExit) as done:
        cli.main()
        raise SystemExit(0)
    return int(done.value.code or 0)


def test_calibrate_from_the_bundled_history(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "models" / "front.yaml"
    args = ("--from-file", str(DEMO), "--service", "front", "--namespace", "dev", "--start", "2024-03-08")
    assert capsim(monkeypatch, "calibrate", *args, "-o", str(out)) == 0
    printed = capsys.readouterr().out
    assert "calibrated parameters" in printed and f"wrote {out}" in printed
    doc = YAML(typ="safe").load(out.read_text())
    model = doc["model"]
    assert model["workers"] == 4  # the ingress histogram beside the app's pins it
    assert model["service_time"]["distribution"] == "lognormal"
    assert abs(float(model["service_time"]["mean"].removesuffix("ms")) - 60.0) <= 3.0
    assert doc["calibrated"]["query_sets"] == {
        "app": "prometheus_client",
        "ingress": "ingress_nginx",
        "probed": doc["calibrated"]["query_sets"]["probed"],
    }
    assert doc["calibrated"]["observed"]["node_instance_types"]
    # Histograms exist only in the last hour: said so, not averaged over.
    assert any(i["kind"] == "missing" and "bucket" in i["signal"] for i in doc["history"]["issues"])
    assert doc["parameters"]["traffic.profile"]["status"] == "too_short"  # 2.6 days < 3
    assert (out.parent / "front.traffic.csv").read_text().startswith("timestamp,rps\n")


def test_flask_concurrency_is_not_identifiable_from_handler_time_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "flask.yaml"
    args = (
        "--from-file",
        str(DEMO),
        "--service",
        "flask-app-2",
        "--namespace",
        "dev",
        "--start",
        "2024-03-09",
    )
    assert capsim(monkeypatch, "calibrate", *args, "-o", str(out)) == 0
    text = out.read_text()
    assert "NOT IDENTIFIABLE" in text
    assert YAML(typ="safe").load(text)["parameters"]["workers"]["status"] == "not_identifiable"


def test_backtest_from_the_bundled_history(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reports = tmp_path / "reports"
    code = capsim(
        monkeypatch,
        "backtest",
        str(SCENARIO),
        "--from-file",
        str(DEMO),
        "--start",
        "2024-03-10T09:00:00Z",
        "--reports",
        str(reports),
        "--run-id",
        "bt",
        "--fail-on-poor",
    )
    assert code == 0
    run = reports / "diurnal-day" / "bt"
    doc = json.loads((run / "backtest.json").read_text())
    assert set(doc["services"]) == {"front", "flask-app-2"}
    front = doc["services"]["front"]
    assert front["verdict"] == "good"
    assert front["figures"]["replicas_mae"] <= 0.5 and front["figures"]["latency_intervals"] > 60
    assert "p95_window_rel_error" in front["figures"] and "nodes_mae" in front["figures"]
    md = (run / "backtest.md").read_text()
    assert "![front](front.png)" in md and (run / "front.png").stat().st_size > 10_000


@pytest.mark.parametrize(
    "args",
    [
        ("calibrate", "--service", "front"),
        ("calibrate", "--service", "front", "--from-file", str(DEMO), "--prometheus", "http://x:9090"),
        ("calibrate", "--service", "front", "--from-file", str(DEMO), "--start", "last tuesday"),
        ("calibrate", "--service", "front", "--from-file", "/no/such/history.om"),
        ("backtest", str(SCENARIO), "--from-file", str(DEMO), "--service", "nope"),
    ],
)
def test_bad_input_exits_2(
    args: tuple[str, ...], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert capsim(monkeypatch, *args) == 2
    assert "error:" in capsys.readouterr().err
