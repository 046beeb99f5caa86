"""Calibration's building blocks without a server: files, windows, history, query sets, fits, model files."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
from ruamel.yaml import YAML

import sim
from sim.calibrate import fit, profile
from sim.calibrate.client import ConnectionSettings, PrometheusSource
from sim.calibrate.history import counter_signal, gauge_signal
from sim.calibrate.model import Parameter, WorkloadModel, fmt_cpu, fmt_duration, render, write
from sim.calibrate.openmetrics import Family, RawSeries, read_openmetrics, write_openmetrics
from sim.calibrate.querysets import load_catalog, selector
from sim.calibrate.source import FileSource, GridSeries, RangeQuery, Selector
from sim.calibrate.window import Grid, choose_step, parse_time
from sim.dataplane import distributions
from sim.errors import InputError
from sim.workload.service import Dist
from tests import calibrate_histories as ch

T0 = 1_709_510_400.0


# --- OpenMetrics files ------------------------------------------------------------------------


def _series(name: str, labels: dict[str, str], values: list[float], step: float = 30.0) -> RawSeries:
    return RawSeries(name, labels, T0 + step * np.arange(len(values)), np.array(values, dtype=float))


@pytest.mark.parametrize("suffix", [".om", ".om.gz"])
def test_openmetrics_round_trip(tmp_path: Path, suffix: str) -> None:
    tricky = {"path": 'a "quoted" \\ path', "code": "200"}
    families = [
        Family("http_requests", "counter", [_series("http_requests_total", tricky, [0, 5, 12.5])]),
        Family("queue_depth", "gauge", [_series("queue_depth", {}, [1, math.nan, 3])]),
        Family(
            "lat_seconds",
            "histogram",
            [
                _series("lat_seconds_bucket", {"le": "0.1"}, [0, 4]),
                _series("lat_seconds_bucket", {"le": "+Inf"}, [0, 6]),
                _series("lat_seconds_sum", {}, [0, 0.75]),
                _series("lat_seconds_count", {}, [0, 6]),
            ],
        ),
    ]
    path = tmp_path / f"h{suffix}"
    write_openmetrics(path, families)
    back = {(s.name, tuple(sorted(s.labels.items()))): s for s in read_openmetrics(path).series}
    assert len(back) == 6
    req = back[("http_requests_total", tuple(sorted(tricky.items())))]
    assert req.values.tolist() == [0, 5, 12.5] and req.t_s[0] == T0
    assert np.isnan(back[("queue_depth", ())].values[1])
    assert back[("lat_seconds_sum", ())].values.tolist() == [0, 0.75]
    assert oct(path.stat().st_mode & 0o777) != oct(0o600)


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ('# TYPE x gauge\nx{a="1"} 3\n# EOF\n', 2, "value and a timestamp"),
        ("# TYPE x gauge\nx 3 1700000000\n", 2, "without '# EOF'"),
        ("x{a=1} 3 1700000000\n# EOF\n", 1, "cannot parse labels"),
        ("x 3 1700000000\n# EOF\nx 4 1700000030\n", 3, "after # EOF"),
    ],
)
def test_malformed_history_names_the_line(tmp_path: Path, text: str, line: int, message: str) -> None:
    path = tmp_path / "bad.om"
    path.write_text(text)
    with pytest.raises(InputError) as err:
        read_openmetrics(path)
    assert err.value.line == line and message in str(err.value)


# --- windows ------------------------------------------------------------------------------------


def test_times_steps_and_chunks() -> None:
    now = T0 + 7 * 86_400
    assert parse_time("2024-03-04T00:00:00Z") == T0
    assert parse_time("2024-03-04") == T0
    assert parse_time(str(T0)) == T0
    assert parse_time("now-7d", now) == T0 and parse_time("now", now) == now
    with pytest.raises(InputError):
        parse_time("yesterday-ish")
    assert choose_step(3600, 30) == 30
    assert choose_step(30 * 86_400, 30) == 300  # a month at 30 s would be 86,400 points per series
    grid = Grid.over(T0, T0 + 86_400, 30)
    chunks = grid.chunks(1000)
    assert chunks[0][0] == grid.start_s and chunks[-1][1] == grid.end_s
    assert all((b - a) / 30 + 1 <= 1000 for a, b in chunks)
    assert all(math.isclose(b + 30, c) for (_, b), (c, _) in itertools.pairwise(chunks))
    with pytest.raises(InputError):
        Grid.over(T0, T0 - 1, 30)


# --- the file source: Prometheus' instant-vector rules -------------------------------------------


def test_file_source_reads_like_prometheus(tmp_path: Path) -> None:
    a = RawSeries("up", {"pod": "a", "job": "x"}, T0 + np.array([0.0, 30.0, 60.0]), np.array([1.0, 2.0, 3.0]))
    b = RawSeries("up", {"pod": "b", "job": "x"}, T0 + np.array([0.0, 400.0]), np.array([10.0, math.nan]))
    path = tmp_path / "h.om"
    write_openmetrics(path, [Family("up", "gauge", [a, b])])
    src = FileSource(path)
    grid = Grid.over(T0, T0 + 420, 30)
    sel = Selector("up", (("job", "=", "x"),))
    [total] = src.range(RangeQuery(sel, "sum"), grid)
    # pod b's first sample is fresh for five minutes (lookback), then absent until its NaN sample.
    assert total.values[0] == 11 and total.values[9] == 13 and total.values[10] == 3
    assert np.isnan(total.values[14])  # NaN is a value and propagates through sum, as in PromQL
    per_pod = {s.labels["pod"]: s for s in src.range(RangeQuery(sel, "max", ("pod",), timestamps=True), grid)}
    assert per_pod["a"].values[3] == T0 + 60  # the sample each point reads, not the point's time
    [count] = src.range(RangeQuery(sel, "count"), grid)
    assert count.values[0] == 2 and count.values[11] == 1 and np.isnan(count.values[12])
    assert src.scrape_interval_s(Selector("up", (("pod", "=", "a"),)), T0, T0 + 100) == 30
    assert {s["pod"] for s in src.series([sel], T0, T0 + 10)} == {"a", "b"}


# --- history: resets, gaps, NaN, staleness -------------------------------------------------------


def _grid_series(
    values: list[float], stamps: list[float] | None = None, labels: dict[str, str] | None = None
):
    v = np.array(values, dtype=float)
    present = ~np.isnan(v) if stamps is None else ~np.isnan(np.array(stamps, dtype=float))
    t = np.array(stamps if stamps is not None else [T0 + 30 * i for i in range(len(v))], dtype=float)
    return GridSeries(labels or {}, v, present), GridSeries(labels or {}, t, present)


def test_counter_reset_is_counted_like_rate() -> None:
    grid = Grid.over(T0, T0 + 150, 30)
    values, stamps = _grid_series([100, 110, 120, 5, 15, 25])
    sig = counter_signal([values], [stamps], grid, "c", None, 30.0)
    assert sig.total().tolist() == [10, 10, 5, 10, 10]
    [reset] = [i for i in sig.issues if i.kind == "counter_reset"]
    assert reset.start_s == T0 + 90


def test_missed_scrape_is_spread_and_a_long_hole_is_a_gap() -> None:
    grid = Grid.over(T0, T0 + 300, 30)
    t = [T0 + 30 * i for i in range(11)]
    # One scrape missed at point 2 (the point repeats point 1's sample); points 5-8 miss four.
    stamps = [t[0], t[1], t[1], t[3], t[4], t[4], t[4], t[4], t[4], t[9], t[10]]
    values = [0, 10, 10, 30, 40, 40, 40, 40, 40, 90, 100]
    v, s = _grid_series(values, stamps)
    sig = counter_signal([v], [s], grid, "c", None, 30.0)
    total = sig.total()
    assert total[:4].tolist() == [10, 10, 10, 10]
    assert np.isnan(total[4:9]).all() and total[9] == 10
    [gap] = [i for i in sig.issues if i.kind == "gap"]
    assert gap.start_s == T0 + 120 and gap.end_s == T0 + 270


def test_pods_going_away_are_not_resets_and_nan_samples_are_reported() -> None:
    grid = Grid.over(T0, T0 + 150, 30)
    nan = math.nan
    a = _grid_series([0, 10, 20, nan, nan, nan], [T0, T0 + 30, T0 + 60, nan, nan, nan], {"pod": "a"})
    b = _grid_series(
        [nan, nan, 0, 5, nan, 15], [nan, nan, T0 + 60, T0 + 90, T0 + 120, T0 + 150], {"pod": "b"}
    )
    sig = counter_signal([a[0], b[0]], [a[1], b[1]], grid, "c", None, 30.0)
    assert sig.total().tolist() == [10, 10, 5, 5, 5]
    kinds = [i.kind for i in sig.issues]
    assert "counter_reset" not in kinds and kinds.count("nan") == 1


def test_stale_gauge_is_unknown_not_its_last_value() -> None:
    grid = Grid.over(T0, T0 + 600, 30)
    n = grid.n_points
    last = 8
    v = GridSeries({}, np.array([3.0] * n), np.ones(n, dtype=bool))
    stamps = np.array([T0 + 30 * min(i, last) for i in range(n)])
    sig = gauge_signal(v, GridSeries({}, stamps, np.ones(n, dtype=bool)), grid, "g", 30.0)
    assert np.isfinite(sig.points[: last + 3]).all() and np.isnan(sig.points[last + 3 :]).all()
    assert any(i.kind == "stale" for i in sig.issues)


# --- query sets -----------------------------------------------------------------------------------


def test_query_file_adds_sets_first_and_overrides_kubernetes(tmp_path: Path) -> None:
    path = tmp_path / "queries.yaml"
    path.write_text(
        "app:\n"
        "  - name: mine\n"
        "    requests: {metric: app_hits_total, matchers: ['app=\"${service}\"'], status_label: code}\n"
        "    latency: {metric: app_latency, unit: ms, matchers: ['app=\"${service}\"']}\n"
        "kubernetes:\n"
        "  cpu: {metric: pod_cpu_seconds_total, matchers: ['team=\"${team}\"']}\n"
        "variables: {team: shop}\n"
    )
    catalog = load_catalog(path)
    assert catalog.app[0].name == "mine" and catalog.app[1].name == "prometheus_client"
    assert catalog.app[0].latency is not None and catalog.app[0].latency.unit_s == 0.001
    assert catalog.kubernetes.cpu.metric == "pod_cpu_seconds_total"
    sel = selector(catalog.kubernetes.cpu.metric, catalog.kubernetes.cpu.matchers, catalog.variables)
    assert sel.promql() == 'pod_cpu_seconds_total{team="shop"}'
    with pytest.raises(InputError, match="has no value"):
        selector("x", ('a="${nope}"',), {})
    with pytest.raises(InputError, match="cannot read matcher"):
        selector("x", ("a=unquoted",), {})
    path.write_text("app:\n  - name: x\n    latency: {metric: y, unit: minutes}\n")
    with pytest.raises(InputError) as err:
        load_catalog(path)
    assert err.value.line == 3 and "unit" in str(err.value)


# --- fits ---------------------------------------------------------------------------------------------

BOUNDS = np.array([0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0])


@pytest.mark.parametrize("dist", [Dist("lognormal", 0.08, 0.6), Dist("gamma", 0.3, 1.4)])
def test_histogram_fit_recovers_family_mean_and_cv(dist: Dist) -> None:
    rng = np.random.default_rng(3)
    draws = distributions.sample(dist, rng, 200_000).reshape(100, 2000)
    counts = np.stack([np.bincount(np.searchsorted(BOUNDS, row), minlength=15) for row in draws])
    est = fit.fit_histogram(counts, draws.sum(axis=1), BOUNDS, rng)
    assert est.kind == dist.kind
    assert est.mean_s == pytest.approx(dist.mean_s, rel=0.01)
    assert est.cv == pytest.approx(dist.cv, rel=0.05)
    assert 0 < est.mean_se_s < 0.01 * dist.mean_s


def test_startup_samples_fit() -> None:
    rng = np.random.default_rng(4)
    est = fit.fit_samples(distributions.sample(Dist("lognormal", 25.0, 0.3), rng, 400), rng)
    assert est.kind == "lognormal" and est.mean_s == pytest.approx(25.0, rel=0.05)
    assert est.median_s == pytest.approx(25.0 / math.sqrt(1.09), rel=0.05) and est.n == 400


def test_startup_fit_counts_pods_never_seen_ready_as_censored() -> None:
    rng = np.random.default_rng(8)
    delays = distributions.sample(Dist("lognormal", 25.0, 0.3), rng, 3000)
    watched = rng.uniform(15.0, 45.0, 3000)  # deleted (or the window ended) this long after creation
    seen = delays <= watched
    naive = fit.fit_samples(delays[seen], rng)
    fair = fit.fit_samples(delays[seen], rng, watched[~seen])
    assert naive.mean_s < 0.93 * 25.0  # dropping the slow starts biases toward fast ones
    assert fair.mean_s == pytest.approx(25.0, rel=0.03) and fair.cv == pytest.approx(0.3, rel=0.1)


def test_cpu_regression_shrugs_off_outliers() -> None:
    rng = np.random.default_rng(5)
    pods = rng.integers(2, 20, 500).astype(float)
    rps = pods * rng.uniform(10, 40, 500)
    cores = 0.02 * pods + 0.01 * rps + rng.normal(0, 0.01, 500)
    cores[::50] *= 5  # a GC storm now and then
    est = fit.fit_cpu(cores, rps, pods)
    assert est.separable
    assert est.cpu_per_request_s == pytest.approx(0.01, rel=0.03)
    assert est.idle_cores_per_pod == pytest.approx(0.02, rel=0.2)


def test_daily_profile_and_weekly_factors() -> None:
    rng = np.random.default_rng(6)
    step = 60.0
    t = T0 + step * (np.arange(int(8 * 86_400 / step)) + 0.5)
    hours = np.mod(t, 86_400) / 3600
    weekend = np.where(profile.weekday(t) >= 5, 0.5, 1.0)
    rate = (
        50 + 150 * np.exp(-(((hours - 10) / 3) ** 2)) + 100 * np.exp(-(((hours - 19) / 2) ** 2))
    ) * weekend
    p = profile.fit_profile(t, rng.poisson(rate * step) / step, step)
    truth = (50 + 150 * np.exp(-((((np.arange(24) + 0.5) - 10) / 3) ** 2))) + 100 * np.exp(
        -((((np.arange(24) + 0.5) - 19) / 2) ** 2)
    )
    assert np.corrcoef(truth, p.hourly)[0, 1] > 0.97  # two peaks: more than one harmonic
    assert p.day_factors is not None and p.day_factors[5] / p.day_factors[0] == pytest.approx(0.5, rel=0.05)
    assert p.noise_cv < 0.05  # Poisson counting is not mistaken for traffic noise
    with pytest.raises(ValueError, match="at least 3"):
        profile.fit_profile(t[:2000], rate[:2000], step)


def test_concurrency_profile_likelihood_on_exact_histograms() -> None:
    service = Dist("lognormal", 0.1, 0.8)
    rng = np.random.default_rng(7)
    rate = np.repeat(np.linspace(5, 26, 8), 40)  # per pod, up to utilisation 0.87 at k=3
    probs, mean = fit._response_probs(service, 3, rate * 0.1 / 3, BOUNDS)
    counts = np.vstack([rng.multinomial(int(r * 30), p) for r, p in zip(rate, probs, strict=True)])
    sums = counts.sum(axis=1) * mean
    est = fit.DistEstimate("lognormal", 0.1, 0.8, 0, 0, int(counts.sum()), 0.08, 0)
    paired = fit.fit_concurrency(rate, counts, sums, BOUNDS, 30.0, est, True, est, rng)
    assert paired.workers == 3 and paired.queueing_visible
    # The same service time alone (no queueing in it) pins nothing.
    handler = fit._bucket_probs(distributions.cdf(service, BOUNDS))
    flat = np.vstack([rng.multinomial(int(r * 30), handler) for r in rate])
    none = fit.fit_concurrency(rate, flat, flat.sum(axis=1) * 0.1, BOUNDS, 30.0, est, True, est, rng)
    assert none.workers is None and not none.queueing_visible and none.lower_bound >= 3


# --- the model file and scenarios that load it -----------------------------------------------------


def _model(workers: int | None) -> WorkloadModel:
    return WorkloadModel(
        service="api",
        namespace="dev",
        source="file h.om",
        window={"start": "2024-03-04T00:00:00Z", "end": "2024-03-05T00:00:00Z", "step": "30s"},
        query_sets={"app": "prometheus_client", "ingress": None},
        model={
            "workers": workers,
            "service_time": {"distribution": "lognormal", "mean": fmt_duration(0.06), "cv": 1.0},
            "cpu_per_request": fmt_duration(0.01),
            "idle_cpu": fmt_cpu(0.02),
        },
        parameters={"workers": Parameter("fitted" if workers else "not_identifiable", workers, note="why")},
        traffic={"replay": {"kind": "replay", "path": "api.traffic.csv", "rate_column": "rps"}},
        issues=[],
        notes={} if workers else {"workers": "NOT IDENTIFIABLE: set by hand"},
        replay=(T0 + 30 * np.arange(3), np.array([1.0, math.nan, 3.0])),
    )


def test_model_file_loads_into_a_scenario_and_refuses_a_missing_worker_count(tmp_path: Path) -> None:
    written = write(_model(4), tmp_path / "models" / "api.yaml")
    assert written[1].read_text().splitlines()[2].endswith(",")  # the gap stays empty, not zero
    doc = YAML(typ="safe").load(written[0].read_text())
    assert doc["model"]["cpu_per_request"] == "10ms" and doc["model"]["idle_cpu"] == "20m"
    traffic = {"kind": "constant", "rps": 10}
    data = ch.scenario(
        "api", {}, traffic, threshold=5, min_replicas=1, max_replicas=3, horizon="5m", step="5s"
    )
    del data["services"][0]["model"]
    data["services"][0]["model_file"] = "models/api.yaml"
    scn = sim.load_scenario(ch.write_yaml(tmp_path / "s.yaml", data))
    m = scn.service("api").model
    assert (m.workers, m.service_time.mean_s, m.cpu_per_request_s, m.idle_cpu_millicores) == (
        4,
        0.06,
        0.01,
        20.0,
    )
    write(_model(None), tmp_path / "models" / "api.yaml")
    assert "NOT IDENTIFIABLE" in render(_model(None))
    with pytest.raises(InputError) as err:
        sim.load_scenario(tmp_path / "s.yaml")
    assert err.value.field == "model.workers" and str(err.value.file).endswith("api.yaml") and err.value.line
    data["services"][0]["model_file"] = "models/missing.yaml"
    with pytest.raises(InputError) as err:
        sim.load_scenario(ch.write_yaml(tmp_path / "s.yaml", data))
    assert err.value.field is not None and "model_file" in err.value.field
    data["services"][0]["model"] = {
        "workers": 1,
        "service_time": {"distribution": "exponential", "mean": 0.1},
    }
    with pytest.raises(InputError, match="either model"):
        sim.load_scenario(ch.write_yaml(tmp_path / "s.yaml", data))


# --- connection settings -------------------------------------------------------------------------


def test_credentials_come_from_env_or_files_and_never_show(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = PrometheusSource(ConnectionSettings(url="https://user:pw-in-url@prom.example:9090/"))
    assert src.description == "Prometheus https://prom.example:9090"
    assert src._prom.auth == ("user", "pw-in-url") and src._redact("pw-in-url") == "***"
    monkeypatch.setenv("CAPSIM_PROMETHEUS_TOKEN", "env-token")
    assert PrometheusSource(ConnectionSettings(url="http://p:9090"))._prom.headers == {
        "Authorization": "Bearer env-token"
    }
    with pytest.raises(InputError, match="both a bearer token"):
        PrometheusSource(ConnectionSettings(url="https://user:pw@prom.example:9090/"))
    monkeypatch.delenv("CAPSIM_PROMETHEUS_TOKEN")
    token = tmp_path / "token"
    token.write_text("file-token\n")
    src = PrometheusSource(ConnectionSettings(url="http://prom:9090", token_file=token))
    assert src._prom.headers == {"Authorization": "Bearer file-token"}
    assert src._redact("echo: Bearer file-token") == "echo: Bearer ***"
    basic = tmp_path / "basic"
    basic.write_text("alice:s3cret")
    src = PrometheusSource(ConnectionSettings(url="http://prom:9090", basic_auth_file=basic))
    assert src._prom.auth == ("alice", "s3cret") and "s3cret" not in src._redact("pw s3cret")
    with pytest.raises(InputError, match="both a bearer token"):
        PrometheusSource(ConnectionSettings(url="http://prom:9090", token_file=token, basic_auth_file=basic))
    with pytest.raises(InputError, match="http"):
        PrometheusSource(ConnectionSettings(url="prom:9090"))
    with pytest.raises(InputError, match="CA file"):
        PrometheusSource(ConnectionSettings(url="https://prom", ca_file=tmp_path / "none.pem"))
    src = PrometheusSource(ConnectionSettings(url="https://prom", ca_file=token))
    assert src._prom._session.verify == str(token)
