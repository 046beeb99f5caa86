"""`capsim export --openmetrics`: the run round-trips through a real Prometheus beside "real" series."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import sim
from sim import cli
from sim.export import export_openmetrics
from sim.latency import quantile
from sim.report import write_run
from tests import prometheus_server as prom
from tests import simple_scenario as ss

DASHBOARD = Path(__file__).resolve().parent.parent / "docs" / "grafana" / "capsim-vs-real.json"


def _dashboard_queries(variables: dict[str, str]) -> list[tuple[str, str]]:
    """(legend, PromQL) of every panel target, with the dashboard's variables filled in."""
    out = []
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel["targets"]:
            expr = target["expr"]
            for name, value in variables.items():
                expr = expr.replace(f"${name}", value)
            out.append((target["legendFormat"], expr))
    return out


START = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
RUN = "spike/r1"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("export")
    data = ss.scenario(
        traffic={"kind": "spike", "base_rps": 50, "multiplier": 8, "start": "5m", "rise": "1m", "hold": "5m"},
        max_replicas=4,
        horizon="20m",
    )
    scn = sim.load_scenario(ss.write(tmp, data))
    out = write_run(sim.simulate(scn), tmp / "run", {}, scenario=scn)
    # Nodes by instance type, as a run with Karpenter records them (long form: one row per group and step).
    times = np.arange(0, 1200, 5.0)
    pd.DataFrame(
        [
            row
            for t in times
            for row in (
                {
                    "time_s": t,
                    "nodepool": "general",
                    "instance_type": "m6i.large",
                    "capacity_type": "on-demand",
                    "nodes": 2,
                },
                {
                    "time_s": t,
                    "nodepool": "spot",
                    "instance_type": "c6i.xlarge",
                    "capacity_type": "spot",
                    "nodes": 1 + int(t >= 400),
                },
            )
        ]
    ).to_parquet(out / "nodes.parquet")
    return out


def test_openmetrics_text_names_labels_and_eof(run_dir: Path, tmp_path: Path) -> None:
    stats = export_openmetrics(run_dir, tmp_path / "x.om", start=START, run=RUN)
    text = (tmp_path / "x.om").read_text()
    assert text.endswith("# EOF\n") and text.count("# EOF") == 1
    assert "# TYPE http_requests counter" in text and "# TYPE http_request_duration_seconds histogram" in text
    samples = [line for line in text.splitlines() if not line.startswith("#")]
    assert len(samples) == stats.samples
    assert all('source="capsim"' in line and f'run="{RUN}"' in line for line in samples)
    assert (
        'kube_horizontalpodautoscaler_status_desired_replicas{namespace="dev",horizontalpodautoscaler="keda-hpa-api"'
        in text
    )


def test_capsim_export_command(run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "cli.om"
    monkeypatch.setattr(
        sys,
        "argv",
        ["capsim", "export", str(run_dir), "--openmetrics", str(out), "--start", "2024-05-01T08:00:00"],
    )
    with pytest.raises(SystemExit) as done:
        cli.main()
    assert done.value.code == 0
    first = next(line for line in out.read_text().splitlines() if not line.startswith("#"))
    assert first.endswith(f" {START.timestamp():.3f}")


def test_round_trip_through_a_real_prometheus(run_dir: Path, tmp_path: Path) -> None:
    prom.binaries()
    sim_file = tmp_path / "sim.om"
    export_openmetrics(run_dir, sim_file, start=START, run=RUN, interval_s=30)
    t0 = START.timestamp()
    ts = pd.read_parquet(run_dir / "timeseries.parquet")
    hist = pd.read_parquet(run_dir / "latency_histogram.parquet")
    # The "real" cluster's series with the same name and labels: the simulated ones must sit beside them.
    real_file = tmp_path / "real.om"
    real_file.write_text(
        "# TYPE kube_deployment_spec_replicas gauge\n"
        + "".join(
            f'kube_deployment_spec_replicas{{namespace="dev",deployment="api"}} 3 {t0 + t:.3f}\n'
            for t in range(0, 1200, 30)
        )
        + "# EOF\n"
    )
    data = tmp_path / "tsdb"
    prom.backfill(sim_file, data)
    prom.backfill(real_file, data)
    with prom.serve(data) as server:
        replicas = server.query_range(
            f'kube_deployment_spec_replicas{{source="capsim",run="{RUN}"}}', t0, t0 + 1170, 30
        )
        assert len(replicas) == 1
        got = np.array([float(v) for _, v in replicas[0]["values"]])
        expected = ts["replicas_desired"].to_numpy()[5::6][: len(got)]  # samples at the end of every 6th step
        assert len(got) >= 38
        np.testing.assert_array_equal(got, expected)
        assert len(expected) and expected.max() == 4

        both = server.query('kube_deployment_spec_replicas{deployment="api"}', t0 + 600)
        assert sorted(r["metric"].get("source", "real") for r in both) == ["capsim", "real"]

        end = t0 + 1200
        served = server.query('http_requests_total{source="capsim",code="200"}', end)
        assert float(served[0]["value"][1]) == pytest.approx(ts["served_rps"].sum() * 5.0, rel=1e-9)
        failed = server.query('http_requests_total{source="capsim",code="503"}', end)
        assert float(failed[0]["value"][1]) == pytest.approx(ts["failed_rps"].sum() * 5.0, rel=1e-9)
        assert float(failed[0]["value"][1]) > 0

        p95 = server.query(
            'histogram_quantile(0.95, sum by (le) (http_request_duration_seconds_bucket{source="capsim"}))',
            end,
        )
        counts = hist.drop(columns=["service", "time_s"]).filter(regex=r"^[0-9+]").to_numpy().sum(axis=0)
        assert float(p95[0]["value"][1]) == pytest.approx(float(quantile(0.95, counts)), rel=1e-6)

        by_type = server.query(
            'count by (label_node_kubernetes_io_instance_type) (kube_node_labels{source="capsim"})', t0 + 600
        )
        counts_at = {
            r["metric"]["label_node_kubernetes_io_instance_type"]: float(r["value"][1]) for r in by_type
        }
        assert counts_at == {"m6i.large": 2.0, "c6i.xlarge": 2.0}

        # Every simulated panel of the shipped Grafana dashboard finds the exported series.
        variables = {"namespace": "dev", "deployment": "api", "service": "api", "run": RUN}
        for legend, expr in _dashboard_queries(variables):
            if legend.startswith("simulated"):
                assert server.query(expr, t0 + 600), f"dashboard query found nothing: {expr}"


def test_dashboard_pairs_real_and_simulated_in_every_panel() -> None:
    import promql_parser

    panels = json.loads(DASHBOARD.read_text())["panels"]
    assert panels
    for panel in panels:
        legends = [t["legendFormat"] for t in panel["targets"]]
        assert any(x.startswith("real") for x in legends) and any(x.startswith("simulated") for x in legends)
    for legend, expr in _dashboard_queries(
        {"namespace": "dev", "deployment": "api", "service": "api", "run": ".*"}
    ):
        promql_parser.parse(expr)
        assert ('source="capsim"' in expr) == legend.startswith("simulated")
