"""`capsim check`: the gate fails risky manifest changes, passes harmless ones, says what it compared."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from sim import check as gate
from sim import cli
from tests import simple_scenario as ss

ROOT = Path(__file__).resolve().parent.parent
SPIKE = {
    "kind": "spike",
    "base_rps": 50,
    "multiplier": 8,
    "start": "5m",
    "rise": "4m",
    "hold": "8m",
    "decay": "3m",
}


def capsim(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["capsim", *args])
    with pytest.raises(SystemExit) as done:
        cli.main()
        raise SystemExit(0)
    return int(done.value.code or 0)


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=repo,
        check=True,
        capture_output=True,
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A GitOps repository: one app's ScaledObject and Deployment in files, a scenario, all committed.

    With maxReplicaCount 30 the spike is absorbed (the SLO holds); the
    baseline is written for that state.
    """
    data = ss.scenario(traffic=SPIKE, max_replicas=30, horizon="25m", initial_replicas=3)
    inline = data["services"][0].pop("inline")
    app = tmp_path / "app"
    app.mkdir()
    yaml = YAML()
    with (app / "scaledobject.yaml").open("w") as f:
        f.write("# front door API: scale on request rate\n")
        yaml.dump(inline["scaled_object"], f)
    with (app / "deployment.yaml").open("w") as f:
        yaml.dump(inline["deployment"], f)
    data["services"][0]["manifests"] = ["app/scaledobject.yaml", "app/deployment.yaml"]
    ss.write(tmp_path, data, "spike.yaml")
    _git(tmp_path, "init", "-q", "-b", "main")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-q", "-m", "base")
    return tmp_path


def _set_max_replicas(repo: Path, value: int, comment: str = "") -> None:
    path = repo / "app" / "scaledobject.yaml"
    text = path.read_text()
    lines = [
        f"  maxReplicaCount: {value}{comment}" if line.strip().startswith("maxReplicaCount:") else line
        for line in text.splitlines()
    ]
    assert lines != text.splitlines()
    path.write_text("\n".join(lines) + "\n")


def _baseline(monkeypatch: pytest.MonkeyPatch, repo: Path) -> Path:
    path = repo / "reports" / "baseline.json"
    code = capsim(
        monkeypatch,
        "check",
        str(repo / "spike.yaml"),
        "--baseline",
        str(path),
        "--update-baseline",
        "--seeds",
        "2",
    )
    assert code == 0
    return path


def test_lowering_max_replicas_below_the_spike_fails_and_junit_names_scenario_and_slo(
    repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    baseline = _baseline(monkeypatch, repo)
    recorded = json.loads(baseline.read_text())["scenarios"]["engine-test"]
    assert recorded["seeds"] == [1, 2]
    assert min(recorded["measures"]["api-latency"]["values"]) >= 0.99

    _set_max_replicas(repo, 4)
    step_summary = tmp_path / "step-summary.md"
    step_summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step_summary))
    junit, md = tmp_path / "junit.xml", tmp_path / "check.md"
    code = capsim(
        monkeypatch,
        "check",
        str(repo / "spike.yaml"),
        "--baseline",
        str(baseline),
        "--junit",
        str(junit),
        "--markdown",
        str(md),
    )
    assert code == 1
    out = capsys.readouterr().out
    assert "BROKEN" in out and "FAILED" in out
    assert f"recorded in {baseline}" in out

    root = ET.parse(junit).getroot()
    assert root.tag == "testsuites" and int(root.get("failures", "0")) >= 1
    suite = root.find("testsuite[@name='engine-test']")
    assert suite is not None
    failed = {
        case.get("name"): case.find("failure")
        for case in suite.iter("testcase")
        if case.find("failure") is not None
    }
    assert "api-latency" in failed
    failure = failed["api-latency"]
    assert failure is not None
    assert failure.get("type") == "BROKEN"
    assert "engine-test" in failure.get("message", "") and "api-latency" in failure.get("message", "")

    text = md.read_text()
    assert "capsim check FAILED" in text and "api-latency" in text
    summary = step_summary.read_text()
    assert summary.startswith("earlier step\n") and "capsim check FAILED" in summary


def test_harmless_change_passes(
    repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    baseline = _baseline(monkeypatch, repo)
    _set_max_replicas(repo, 40, "  # headroom the spike never reaches")
    code = capsim(monkeypatch, "check", str(repo / "spike.yaml"), "--baseline", str(baseline))
    out = capsys.readouterr().out
    assert code == 0, out
    assert "passed" in out
    assert "inputs changed since the baseline: app/scaledobject.yaml" in out


def test_strict_fails_on_slo_already_broken_in_the_baseline(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _set_max_replicas(repo, 4)
    baseline = _baseline(monkeypatch, repo)
    args = ["check", str(repo / "spike.yaml"), "--baseline", str(baseline)]
    assert capsim(monkeypatch, *args) == 0
    assert capsim(monkeypatch, *args, "--strict") == 1


def _failing(junit: Path) -> set[str]:
    return {
        str(case.get("name"))
        for case in ET.parse(junit).getroot().iter("testcase")
        if case.find("failure") is not None
    }


def test_stale_baseline_is_resimulated_from_the_base_ref(
    repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    baseline = _baseline(monkeypatch, repo)
    data = json.loads(baseline.read_text())
    entry = data["scenarios"]["engine-test"]
    entry["capsim_version"] = "0.0.1"
    # Numbers no simulation of the base would give: trusting them hides the SLO regression below.
    entry["measures"]["api-latency"]["values"] = [0.2, 0.2]
    baseline.write_text(json.dumps(data))
    _set_max_replicas(repo, 4)
    capsys.readouterr()
    junit = tmp_path / "junit.xml"
    args = ["check", str(repo / "spike.yaml"), "--baseline", str(baseline), "--junit", str(junit)]

    capsim(monkeypatch, *args)
    out = capsys.readouterr().out
    assert "STALE (capsim 0.0.1" in out and "--base-ref" in out
    assert "api-latency" not in _failing(junit)

    assert capsim(monkeypatch, *args, "--base-ref", "main") == 1
    out = capsys.readouterr().out
    assert "re-simulated from main (capsim 0.0.1 → " in out
    assert "api-latency" in _failing(junit)


def test_base_ref_uses_the_recorded_numbers_when_they_match(
    repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    baseline = _baseline(monkeypatch, repo)
    capsys.readouterr()
    assert (
        capsim(
            monkeypatch, "check", str(repo / "spike.yaml"), "--baseline", str(baseline), "--base-ref", "main"
        )
        == 0
    )
    assert "matches main" in capsys.readouterr().out


def test_missing_baseline_is_bad_input(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert capsim(monkeypatch, "check", str(repo / "spike.yaml"), "--baseline", str(repo / "none.json")) == 2


def test_unknown_base_ref_is_an_external_failure(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    baseline = _baseline(monkeypatch, repo)
    args = ["check", str(repo / "spike.yaml"), "--baseline", str(baseline), "--base-ref", "no-such-branch"]
    assert capsim(monkeypatch, *args) == 3


def _measure(values: tuple[float, ...], kind: str = "slo") -> gate.Measure:
    if kind == "cost":
        return gate.Measure("cost", "cost", None, "lower", "USD", values)
    return gate.Measure("slo", "slo", "api", "higher", "attainment", values, objective=0.99)


@pytest.mark.parametrize(
    ("base", "head", "verdict"),
    [
        # seed-to-seed noise straddling the objective is not a regression
        ((0.9903, 0.9897, 0.9906), (0.9900, 0.9894, 0.9903), gate.Verdict.WITHIN_NOISE),
        ((0.995, 0.996, 0.995), (0.970, 0.975, 0.972), gate.Verdict.BROKEN),
        ((0.95, 0.96, 0.95), (0.90, 0.91, 0.90), gate.Verdict.WORSE),
        ((0.95, 0.96, 0.95), (0.95, 0.96, 0.95), gate.Verdict.STILL_BROKEN),
        ((0.95, 0.96, 0.95), (0.995, 0.996, 0.995), gate.Verdict.FIXED),
        ((0.995, 0.996, 0.995), (0.999, 0.999, 0.999), gate.Verdict.IMPROVED),
        # paired differences that are large but inconsistent across seeds stay within noise
        ((0.995, 0.980, 0.995), (0.980, 0.995, 0.981), gate.Verdict.WITHIN_NOISE),
    ],
)
def test_slo_verdicts(base: tuple[float, ...], head: tuple[float, ...], verdict: gate.Verdict) -> None:
    assert gate.compare_measure(_measure(base), _measure(head), True, 0.05).verdict is verdict


@pytest.mark.parametrize(
    ("base", "head", "verdict"),
    [
        ((100.0, 101.0), (104.0, 105.0), gate.Verdict.OK),
        ((100.0, 101.0), (110.0, 111.0), gate.Verdict.COST_UP),
        ((100.0, 101.0), (90.0, 91.0), gate.Verdict.IMPROVED),
    ],
)
def test_cost_tolerance(base: tuple[float, ...], head: tuple[float, ...], verdict: gate.Verdict) -> None:
    assert gate.compare_measure(_measure(base, "cost"), _measure(head, "cost"), True, 0.05).verdict is verdict


def test_cost_prefers_node_usd_over_pod_hours() -> None:
    services = {"api": {"pod_seconds": 7200.0}}
    assert gate.cost_of({"services": services}) == (2.0, "pod-h")
    assert gate.cost_of({"services": services, "cost": {"total_usd": 3.5}}) == (3.5, "USD")


def test_committed_demo_baseline_passes(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(ROOT)
    baseline = json.loads((ROOT / "reports" / "baseline.json").read_text())
    scenarios = [e["file"] for e in baseline["scenarios"].values()]
    assert len(scenarios) >= 3
    code = capsim(monkeypatch, "check", *scenarios)
    assert code == 0, capsys.readouterr().out


def test_changed_capsim_code_makes_the_baseline_stale(
    repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    baseline = _baseline(monkeypatch, repo)
    data = json.loads(baseline.read_text())
    data["scenarios"]["engine-test"]["code_hash"] = "0" * 16
    baseline.write_text(json.dumps(data))
    capsys.readouterr()
    args = ["check", str(repo / "spike.yaml"), "--baseline", str(baseline), "--base-ref", "main"]
    assert capsim(monkeypatch, *args) == 0
    assert "re-simulated from main (capsim's code changed (0000000000000000 → " in capsys.readouterr().out
