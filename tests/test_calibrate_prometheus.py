"""Calibration and backtest against a real Prometheus holding histories with known ground truth.

One session: the simulator generates the histories (`calibrate_histories`),
promtool backfills them into a TSDB, and a Prometheus serves it on
127.0.0.1; a small proxy in front adds bearer-token auth, TLS and delays for
the fault tests. Without the binaries these tests skip, unless
CAPSIM_REQUIRE_PROMETHEUS=1 (CI), where they fail.
"""

from __future__ import annotations

import calendar
import json
import math
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from ruamel.yaml import YAML

import sim
from sim import cli
from sim.calibrate.backtest import backtest
from sim.calibrate.calibration import Calibration, Target, calibrate
from sim.calibrate.client import ConnectionSettings, PrometheusSource
from sim.calibrate.querysets import Catalog
from sim.calibrate.source import FileSource
from tests import calibrate_histories as ch
from tests import prometheus_server as ps

pytestmark = pytest.mark.prometheus
TLS = Path(__file__).parent / "data" / "tls"
TOKEN = "s3cr3t-t0ken-do-not-print-9f2c"


def _build(target: Path) -> None:
    ch.build_history(target)
    ch.build_backtest(target)
    for name in ("history.om", "api-history.om"):
        ps.backfill(target / name, target / "tsdb")


@pytest.fixture(scope="session")
def histories(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ps.binaries()  # skip (or fail in CI) before spending time on generation
    return ch.cached(tmp_path_factory.getbasetemp().parent, "histories", _build)


@pytest.fixture(scope="session")
def prometheus(histories: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ps.Server]:
    data = tmp_path_factory.mktemp("prometheus") / "data"
    shutil.copytree(histories / "tsdb", data)
    with ps.serve(data) as server:
        yield server


def _source(url: str, **kw: object) -> PrometheusSource:
    return PrometheusSource(ConnectionSettings(url=url, retries=0, **kw))  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def calibrated(prometheus: ps.Server) -> dict[str, Calibration]:
    src = _source(prometheus.url)
    return {
        name: calibrate(src, Target(name, ch.NAMESPACE), Catalog(), case.start_s, case.end_s)
        for name, case in ch.CASES.items()
    }


def _value(cal: Calibration, name: str) -> object:
    return cal.model.parameters[name].value


def _within(value: object, truth: float, tolerance: float) -> bool:
    assert isinstance(value, float | int), value
    return abs(value - truth) <= tolerance * truth


# --- accuracy ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(ch.CASES))
def test_service_time_is_recovered(name: str, calibrated: dict[str, Calibration]) -> None:
    cal, truth = calibrated[name], ch.CASES[name].model.service_time
    assert _within(_value(cal, "service_time.mean"), truth.mean_s, 0.05)
    assert _within(_value(cal, "service_time.cv"), truth.cv, 0.15)
    block = cal.model.model["service_time"]
    assert isinstance(block, dict) and block["distribution"] in ("lognormal", "gamma")


@pytest.mark.parametrize("name", list(ch.CASES))
def test_concurrency_exactly_when_identifiable(name: str, calibrated: dict[str, Calibration]) -> None:
    case, p = ch.CASES[name], calibrated[name].model.parameters["workers"]
    if case.workers_identifiable:
        assert (p.status, p.value) == ("fitted", case.model.workers)
        assert calibrated[name].model.model["workers"] == case.model.workers
    else:
        assert p.status == "not_identifiable" and p.value is None and p.note
        assert calibrated[name].model.model["workers"] is None
        assert p.uncertainty is not None and p.uncertainty["lower_bound"] <= case.model.workers


def test_cpu_startup_and_daily_profile_of_a_long_classic_history(calibrated: dict[str, Calibration]) -> None:
    cal, case = calibrated["front"], ch.CASES["front"]
    assert _within(_value(cal, "cpu_per_request"), case.model.cpu_per_request_s, 0.05)
    startup = cal.model.parameters["startup"]
    assert startup.uncertainty is not None and startup.uncertainty["starts"] >= 150
    assert isinstance(startup.value, dict)
    true_median = case.model.startup.mean_s / math.sqrt(1.0 + case.model.startup.cv**2)  # lognormal
    assert abs(startup.value["median"] - true_median) <= 0.10 * true_median
    assert cal.profile is not None and cal.profile.days >= 3.0
    hours = (np.arange(24) + 0.5) * 3600.0
    assert case.daily_shape is not None
    assert np.corrcoef(case.daily_shape(hours), cal.profile.hourly)[0, 1] >= 0.95
    synthetic = cal.model.traffic["synthetic"]
    assert isinstance(synthetic, dict) and abs(synthetic["peak_hour"] - 15.0) < 1.0
    launch = cal.model.parameters["node_launch"]
    assert launch.status == "fitted" and isinstance(launch.value, dict)
    assert abs(launch.value["mean"] - ch.NODE_LAUNCH.mean_s) <= 0.1 * ch.NODE_LAUNCH.mean_s


def test_cpu_is_not_identifiable_when_load_per_pod_never_varies(calibrated: dict[str, Calibration]) -> None:
    p = calibrated["billing"].model.parameters["cpu_per_request"]
    assert p.status == "not_identifiable" and "cannot be told apart" in (p.note or "")
    assert "cpu_per_request" not in calibrated["billing"].model.model


def test_file_and_server_give_the_same_model(histories: Path, prometheus: ps.Server) -> None:
    case = ch.CASES["orders"]
    target = Target("orders", ch.NAMESPACE)
    server = calibrate(_source(prometheus.url), target, Catalog(), case.start_s, case.end_s)
    local = calibrate(FileSource(histories / "history.om"), target, Catalog(), case.start_s, case.end_s)
    for name, p in server.model.parameters.items():
        q = local.model.parameters[name]
        assert p.status == q.status, name
        if isinstance(p.value, float):
            assert p.value == pytest.approx(q.value, rel=1e-9), name


def test_range_queries_are_chunked_to_the_points_limit(
    prometheus: ps.Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    case = ch.CASES["front"]
    src = _source(prometheus.url, max_points=2000)
    calls: list[tuple[float, float]] = []
    original = src._prom.custom_query_range

    def counting(query: str, start: object, end: object, **kw: object) -> object:
        calls.append((start.timestamp(), end.timestamp()))  # type: ignore[attr-defined]
        return original(query, start, end, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(src._prom, "custom_query_range", counting)
    t0, t1 = case.start_s, case.start_s + 2 * ch.DAY_S
    cal = calibrate(src, Target("front", ch.NAMESPACE), Catalog(), t0, t1)
    assert cal.grid.n_points > 2000
    assert all((b - a) / cal.grid.step_s + 1 <= 2000 for a, b in calls)
    assert len({c for c in calls}) >= math.ceil(cal.grid.n_points / 2000)
    whole = calibrate(_source(prometheus.url), Target("front", ch.NAMESPACE), Catalog(), t0, t1)
    assert _value(cal, "traffic.mean_rps") == pytest.approx(_value(whole, "traffic.mean_rps"), rel=1e-12)


def test_gaps_resets_nan_and_stale_series_are_reported(prometheus: ps.Server) -> None:
    cal = calibrate(
        _source(prometheus.url), Target("front", ch.FAULTS_NAMESPACE), Catalog(), ch.EPOCH, ch.FAULTS_END
    )
    issues = cal.model.issues
    kinds = {i["kind"] for i in issues}
    assert {"gap", "counter_reset", "nan", "stale"} <= kinds
    gap = next(i for i in issues if i["kind"] == "gap" and i["signal"].startswith("http_requests_total"))
    assert gap["start"] <= _iso(ch.FAULTS["gap"] + 60) and gap["end"] >= _iso(
        ch.FAULTS["gap"] + ch.GAP_S - 60
    )
    reset = next(i for i in issues if i["kind"] == "counter_reset")
    assert abs(_unix(reset["start"]) - ch.FAULTS["reset"]) <= 2 * ch.SCRAPE_S
    stale = next(i for i in issues if i["kind"] == "stale" and "cpu" in i["signal"])
    assert abs(_unix(stale["start"]) - ch.FAULTS["stale"]) <= 2 * ch.SCRAPE_S
    # The gap is left unknown, not averaged over; the rest of the traffic still reads right.
    offered = cal.requests.offered
    in_gap = (cal.grid.times[1:] > ch.FAULTS["gap"] + 60) & (
        cal.grid.times[1:] < ch.FAULTS["gap"] + ch.GAP_S - 60
    )
    assert np.isnan(offered[in_gap]).all()
    clean = calibrate(
        _source(prometheus.url), Target("front", ch.NAMESPACE), Catalog(), ch.EPOCH, ch.FAULTS_END
    )
    assert _value(cal, "traffic.mean_rps") == pytest.approx(_value(clean, "traffic.mean_rps"), rel=0.02)
    assert _within(_value(cal, "cpu_per_request"), ch.FRONT.cpu_per_request_s, 0.05)


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _unix(text: str) -> float:
    return float(calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ")))


# --- backtest ---------------------------------------------------------------------------------


def test_backtest_reproduces_replicas_recorded_in_the_per_request_mode(
    histories: Path, prometheus: ps.Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    t0 = ch.EPOCH + 2 * ch.DAY_S
    scn = sim.load_scenario(histories / "api-live.yaml")
    [bt] = backtest(scn, _source(prometheus.url), Catalog(), t0, t0 + 4500)
    f = bt.figures
    assert f["points"] > 100 and f["scale_up_events"] >= 3
    assert f["replicas_mae"] <= 0.5
    assert abs(f["scale_up_lag_median_s"]) <= 60.0
    assert bt.verdict == "good"
    # The comparison can fail: the same history against a config with a higher threshold does.
    data = YAML().load((histories / "api-live.yaml").read_text())
    data["services"][0]["inline"]["scaled_object"]["spec"]["triggers"][0]["metadata"]["threshold"] = "35"
    wrong = ch.write_yaml(tmp_path / "wrong.yaml", data)
    [off] = backtest(sim.load_scenario(wrong), _source(prometheus.url), Catalog(), t0, t0 + 4500)
    assert off.figures["replicas_mae"] > 0.5 and off.verdict == "poor"
    args = ("--prometheus", prometheus.url, "--start", _iso(t0), "--end", _iso(t0 + 4500))
    reports = ("--reports", str(tmp_path / "reports"))
    assert capsim(monkeypatch, "backtest", str(wrong), *args, *reports, "--fail-on-poor") == 1
    assert capsim(monkeypatch, "backtest", str(wrong), *args, *reports) == 0


# --- the command line -----------------------------------------------------------------------


def capsim(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["capsim", *args])
    with pytest.raises(SystemExit) as done:
        cli.main()
        raise SystemExit(0)
    return int(done.value.code or 0)


WINDOW = ("--start", _iso(ch.CASES["orders"].start_s), "--end", _iso(ch.CASES["orders"].end_s))


def test_cli_calibrates_and_a_scenario_loads_the_model(
    prometheus: ps.Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "models" / "orders.yaml"
    code = capsim(
        monkeypatch,
        "calibrate",
        "--prometheus",
        prometheus.url,
        "--service",
        "orders",
        "--namespace",
        ch.NAMESPACE,
        *WINDOW,
        "-o",
        str(out),
    )
    assert code == 0, capsys.readouterr().err
    doc = YAML(typ="safe").load(out.read_text())
    assert doc["kind"] == "WorkloadModel" and doc["model"]["workers"] == 3
    for p in doc["parameters"].values():
        assert p["status"] in ("fitted", "not_identifiable", "not_available", "too_short")
        if p["status"] == "fitted" and "value" in p:
            assert p.get("queries") or p.get("method")
    assert (out.parent / "orders.traffic.csv").is_file()
    scn_data = ch.scenario(
        "orders",
        {},
        {"kind": "constant", "rps": 50},
        threshold=20,
        min_replicas=1,
        max_replicas=5,
        horizon="10m",
        step="5s",
    )
    del scn_data["services"][0]["model"]
    scn_data["services"][0]["model_file"] = str(out)
    scn = sim.load_scenario(ch.write_yaml(tmp_path / "uses-model.yaml", scn_data))
    model = scn.service("orders").model
    assert model.workers == 3
    assert model.service_time.mean_s == pytest.approx(ch.ORDERS.service_time.mean_s, rel=0.05)
    assert out in scn.input_files


def _fails(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    code = capsim(monkeypatch, "calibrate", "--service", "orders", "--namespace", ch.NAMESPACE, *args)
    err = capsys.readouterr().err
    assert code == 3, err
    return " ".join(err.split())


class _Proxy(ThreadingHTTPServer):
    """Bearer-token auth (and optional delay and TLS) in front of the test Prometheus."""

    def __init__(self, upstream: str, delay_s: float = 0.0, tls: bool = False, fail_first: int = 0) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.upstream, self.delay_s, self.fail_first = upstream, delay_s, fail_first
        self.requests = 0
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(TLS / "localhost-test-only.crt", TLS / "localhost-test-only.key")
            self.socket = ctx.wrap_socket(self.socket, server_side=True)
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.server_address[1]}"


class _ProxyHandler(BaseHTTPRequestHandler):
    server: _Proxy

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        auth = self.headers.get("Authorization", "")
        if auth == "Bearer read-only-elsewhere":
            self._send(403, b'{"status":"error","errorType":"forbidden","error":"not allowed"}')
            return
        if auth != f"Bearer {TOKEN}":
            # A careless proxy that echoes the credentials it got: they must still never be printed.
            body = json.dumps(
                {"status": "error", "errorType": "unauthorized", "error": f"bad credentials {auth}"}
            )
            self._send(401, body.encode())
            return
        time.sleep(self.server.delay_s)
        self.server.requests += 1
        if self.server.requests <= self.server.fail_first:
            self._send(503, b'{"status":"error","errorType":"unavailable","error":"overloaded"}')
            return
        try:
            with urllib.request.urlopen(self.server.upstream + self.path, timeout=30) as resp:
                self._send(resp.status, resp.read())
        except urllib.error.HTTPError as exc:
            self._send(exc.code, exc.read())


@pytest.fixture
def proxy(prometheus: ps.Server, request: pytest.FixtureRequest) -> Iterator[_Proxy]:
    options = getattr(request, "param", {})
    server = _Proxy(prometheus.url, **options)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_server_down(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    err = _fails(monkeypatch, capsys, "--prometheus", f"http://127.0.0.1:{port}", "--retries", "1", *WINDOW)
    assert "cannot connect" in err and "is the server up" in err


@pytest.mark.parametrize("proxy", [{"delay_s": 2.0}], indirect=True)
def test_timeout(proxy: _Proxy, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CAPSIM_PROMETHEUS_TOKEN", TOKEN)
    err = _fails(
        monkeypatch, capsys, "--prometheus", proxy.url, "--timeout", "0.3", "--retries", "0", *WINDOW
    )
    assert "did not answer within 0.3 s" in err


@pytest.mark.parametrize("proxy", [{"fail_first": 2}], indirect=True)
def test_retries_with_backoff_ride_out_a_brief_outage(
    proxy: _Proxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CAPSIM_PROMETHEUS_TOKEN", TOKEN)
    out = str(tmp_path / "m.yaml")
    code = capsim(
        monkeypatch,
        "calibrate",
        "--service",
        "orders",
        "--namespace",
        ch.NAMESPACE,
        "--prometheus",
        proxy.url,
        "--retries",
        "3",
        *WINDOW,
        "-o",
        out,
    )
    assert code == 0, capsys.readouterr().err
    assert proxy.requests > 2  # the two 503s were retried, then everything went through


def test_401_and_403(
    proxy: _Proxy, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CAPSIM_PROMETHEUS_TOKEN", "wrong-token-123")
    err = _fails(monkeypatch, capsys, "--prometheus", proxy.url, "--retries", "0", *WINDOW)
    assert "401 Unauthorized" in err and "wrong-token-123" not in err
    monkeypatch.setenv("CAPSIM_PROMETHEUS_TOKEN", "read-only-elsewhere")
    err = _fails(monkeypatch, capsys, "--prometheus", proxy.url, "--retries", "0", *WINDOW)
    assert "403 Forbidden" in err


@pytest.mark.parametrize("proxy", [{"tls": True}], indirect=True)
def test_tls_verification(
    proxy: _Proxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CAPSIM_PROMETHEUS_TOKEN", TOKEN)
    err = _fails(monkeypatch, capsys, "--prometheus", proxy.url, "--retries", "0", *WINDOW)
    assert "TLS handshake" in err and "--ca-file" in err
    ok = capsim(
        monkeypatch,
        "calibrate",
        "--service",
        "orders",
        "--namespace",
        ch.NAMESPACE,
        "--prometheus",
        proxy.url,
        "--ca-file",
        str(TLS / "localhost-test-only.crt"),
        *WINDOW,
        "-o",
        str(tmp_path / "m.yaml"),
    )
    assert ok == 0, capsys.readouterr().err


def test_empty_result_rejected_query_and_window_without_data(
    prometheus: ps.Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code = capsim(
        monkeypatch, "calibrate", "--prometheus", prometheus.url, "--service", "no-such-service", *WINDOW
    )
    err = " ".join(capsys.readouterr().err.split())
    assert code == 3 and "no request or latency series for service 'no-such-service'" in err
    err = _fails(
        monkeypatch, capsys, "--prometheus", prometheus.url, "--start", "2020-01-01", "--end", "2020-01-02"
    )
    assert "holds no data" in err and "exist at other times" in err
    # Without chunking the server refuses a range query over more than 11,000 points.
    err = _fails(
        monkeypatch,
        capsys,
        "--prometheus",
        prometheus.url,
        "--step",
        "5s",
        "--max-points",
        "30000",
        "--start",
        _iso(ch.EPOCH),
        "--end",
        _iso(ch.EPOCH + ch.DAY_S),
    )
    assert "rejected the query (400)" in err and "11,000 points" in err


def test_token_never_appears_in_output_logs_or_files(
    proxy: _Proxy, tmp_path: Path, prometheus: ps.Server
) -> None:
    env = {**os.environ, "CAPSIM_PROMETHEUS_TOKEN": TOKEN}
    good = subprocess.run(
        [
            sys.executable,
            "-c",
            "from sim.cli import main; main()",
            "calibrate",
            "--prometheus",
            proxy.url,
            "--service",
            "orders",
            "--namespace",
            ch.NAMESPACE,
            *WINDOW,
            "-o",
            str(tmp_path / "orders.yaml"),
            "--verbose",
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        cwd=tmp_path,
    )
    bad = subprocess.run(
        [
            sys.executable,
            "-c",
            "from sim.cli import main; main()",
            "calibrate",
            "--prometheus",
            proxy.url,
            "--service",
            "orders",
            *WINDOW,
            "--verbose",
            "--retries",
            "0",
            "--basic-auth-file",
            str(tmp_path / "none"),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        cwd=tmp_path,
    )
    assert good.returncode == 0, good.stderr
    assert "range query" in good.stderr  # --verbose logged the queries
    assert bad.returncode == 2
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    denied = subprocess.run(
        [
            sys.executable,
            "-c",
            "from sim.cli import main; main()",
            "calibrate",
            "--prometheus",
            proxy.url.replace("127.0.0.1", f"user:{TOKEN}@127.0.0.1"),
            "--service",
            "orders",
            *WINDOW,
            "--verbose",
            "--retries",
            "0",
        ],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "CAPSIM_PROMETHEUS_TOKEN"},
        check=False,
        cwd=tmp_path,
    )
    assert denied.returncode == 3
    for done in (good, bad, denied):
        assert TOKEN not in done.stdout and TOKEN not in done.stderr
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.name != "token":
            assert TOKEN not in path.read_text(errors="replace"), path
