"""Traffic: the scenario models, rate shapes, transforms, replay of files, arrival processes."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic import TypeAdapter, ValidationError

from sim.errors import InputError
from sim.workload.durations import Duration, SignedDuration, parse_duration_s
from sim.workload.traffic import TrafficSpec, arrival_counts, load_replay, rate_series

REPO = Path(__file__).resolve().parents[1]
SPEC = TypeAdapter(TrafficSpec)
HOUR = 3600.0
DAY = 86400.0


def spec(**fields: Any) -> Any:
    return SPEC.validate_python(fields)


def rates(traffic: dict[str, Any], horizon_s: float, step_s: float, seed: int = 0, **kw: Any) -> np.ndarray:
    return rate_series(spec(**traffic), horizon_s, step_s, np.random.default_rng(seed), **kw)


# --- durations ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [(90, 90.0), (1.5, 1.5), ("90s", 90.0), ("15m", 900.0), ("2h", 7200.0), ("7d", 604800.0),
     ("1h30m", 5400.0), ("500ms", 0.5), ("1w", 604800.0), ("2.5m", 150.0), (" 45 ", 45.0), ("-2h", -7200.0)],
)  # fmt: skip
def test_durations_parse(text: Any, seconds: float) -> None:
    assert parse_duration_s(text) == seconds


@pytest.mark.parametrize("bad", ["5x", "", "h", "1h-", "1 h 2", True, None, [1], float("nan"), "inf"])
def test_durations_reject_nonsense(bad: Any) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration_s(bad)


def test_duration_types_sign_and_schema() -> None:
    assert TypeAdapter(SignedDuration).validate_python("-90s") == -90.0
    with pytest.raises(ValidationError):
        TypeAdapter(Duration).validate_python("-90s")
    schema = TypeAdapter(Duration).json_schema()
    assert {s["type"] for s in schema["anyOf"]} == {"number", "string"}


# --- models ------------------------------------------------------------------------------------------

BAD_SPECS = [
    ({"kind": "constant", "rps": -1}, "rps"),
    ({"kind": "constant", "rps": 1, "rate": 2}, "rate"),
    ({"kind": "sine", "rps": 1}, "kind"),
    ({"kind": "diurnal", "base_rps": 10}, "either base_rps"),
    ({"kind": "diurnal", "base_rps": 10, "peak_rps": 5}, "peak_rps"),
    ({"kind": "diurnal", "mean_rps": 10, "amplitude_rps": 20}, "amplitude_rps"),
    ({"kind": "diurnal", "base_rps": 1, "peak_rps": 2, "mean_rps": 1, "amplitude_rps": 1}, "either"),
    (
        {"kind": "diurnal", "base_rps": 1, "peak_rps": 2, "weekend_factor": 0.5, "day_factors": [1] * 7},
        "not both",
    ),
    ({"kind": "diurnal", "base_rps": 1, "peak_rps": 2, "day_factors": [1] * 6}, "day_factors"),
    ({"kind": "diurnal", "base_rps": 1, "peak_rps": 2, "peak_hour": 24}, "peak_hour"),
    ({"kind": "ramp", "from_rps": 1, "to_rps": 2, "duration": "5 parsecs"}, "duration"),
    ({"kind": "step", "levels": [{"at": "1h", "rps": 3}]}, "first level"),
    ({"kind": "step", "levels": [{"at": 0, "rps": 3}, {"at": 0, "rps": 4}]}, "increasing"),
    ({"kind": "spike", "base_rps": 1, "multiplier": 2}, "start"),
    ({"kind": "replay", "path": "x.csv", "rate_column": "a", "counter_column": "b"}, "not both"),
    ({"kind": "replay", "path": "x.csv", "past_end": "wrap"}, "past_end"),
    ({"kind": "constant", "rps": 1, "transforms": [{"kind": "clip"}]}, "min_rps"),
    ({"kind": "constant", "rps": 1, "transforms": [{"kind": "clip", "min_rps": 5, "max_rps": 1}]}, "min_rps"),
    ({"kind": "constant", "rps": 1, "transforms": [{"kind": "add_spike", "start": 0}]}, "exactly one"),
    ({"kind": "constant", "rps": 1, "transforms": [{"kind": "scale", "factor": -2}]}, "factor"),
    ({"kind": "constant", "rps": 1, "arrivals": "bursty"}, "arrivals"),
    ({"kind": "constant", "rps": 1, "arrivals": {"kind": "overdispersed"}}, "dispersion"),
    ({"kind": "constant", "rps": 1, "noise": {"cv": 0.1, "correlation_time": 0}}, "correlation_time"),
]


@pytest.mark.parametrize(("fields", "named"), BAD_SPECS)
def test_bad_specs_are_rejected_naming_the_field(fields: dict[str, Any], named: str) -> None:
    with pytest.raises(ValidationError) as info:
        SPEC.validate_python(fields)
    assert named in str(info.value)


def test_arrivals_shorthand_and_defaults() -> None:
    assert spec(kind="constant", rps=1).arrivals.kind == "poisson"
    assert spec(kind="constant", rps=1, arrivals="deterministic").arrivals.kind == "deterministic"
    od = spec(kind="constant", rps=1, arrivals={"kind": "overdispersed", "dispersion": 0.1, "window": "5s"})
    assert (od.arrivals.dispersion, od.arrivals.window) == (0.1, 5.0)
    arrivals_schema = SPEC.json_schema()["$defs"]["ConstantTraffic"]["properties"]["arrivals"]
    assert {"type": "string", "enum": ["poisson", "deterministic"]} in arrivals_schema["anyOf"]
    assert SPEC.json_schema()["discriminator"]["propertyName"] == "kind"


# --- generators --------------------------------------------------------------------------------------


def test_constant() -> None:
    r = rates({"kind": "constant", "rps": 42.5}, 600, 7)
    assert len(r) == math.ceil(600 / 7)
    assert r.dtype == np.float64
    assert np.all(r == 42.5)


def test_diurnal_mean_peak_and_trough() -> None:
    r = rates({"kind": "diurnal", "base_rps": 20, "peak_rps": 100, "peak_hour": 14}, 2 * DAY, 60)
    assert r.mean() == pytest.approx(60.0, rel=1e-9)
    day = r[:1440]
    assert (np.argmax(day) + 0.5) / 60 == pytest.approx(14.0, abs=1 / 60)
    assert (np.argmin(day) + 0.5) / 60 == pytest.approx(2.0, abs=1 / 60)
    assert day.max() == pytest.approx(100.0, rel=1e-3)
    assert day.min() == pytest.approx(20.0, rel=1e-3)


def test_diurnal_mean_amplitude_equals_base_peak() -> None:
    a = rates({"kind": "diurnal", "base_rps": 20, "peak_rps": 100}, DAY, 300)
    b = rates({"kind": "diurnal", "mean_rps": 60, "amplitude_rps": 40}, DAY, 300)
    np.testing.assert_array_equal(a, b)


def test_diurnal_start_clock_moves_the_peak() -> None:
    r = rates({"kind": "diurnal", "base_rps": 0, "peak_rps": 10, "peak_hour": 9, "start_hour": 6}, DAY, 60)
    assert (np.argmax(r) + 0.5) / 60 == pytest.approx(3.0, abs=1 / 60)


def test_diurnal_weekly_shape() -> None:
    noon = lambda r, day: r[int((day * DAY + 12 * HOUR) / 60)]  # noqa: E731
    weekend = rates({"kind": "diurnal", "base_rps": 10, "peak_rps": 50, "weekend_factor": 0.6}, 7 * DAY, 60)
    assert noon(weekend, 5) / noon(weekend, 2) == pytest.approx(0.6)
    assert noon(weekend, 6) / noon(weekend, 0) == pytest.approx(0.6)
    factors = [1.0, 1.1, 1.2, 1.3, 1.4, 0.5, 0.4]
    per_day = {"kind": "diurnal", "base_rps": 10, "peak_rps": 50, "day_factors": factors, "start_day": "wed"}
    r = rates(per_day, 7 * DAY, 60)
    for day in range(7):
        assert noon(r, day) / noon(r, 0) == pytest.approx(factors[(day + 2) % 7] / factors[2])
    # The change at midnight is blended, not a cliff: no minute-to-minute jump near Friday→Saturday.
    assert np.max(np.abs(np.diff(weekend))) < 0.01 * 50


def test_diurnal_noise_is_mean_one_with_the_given_cv_and_correlation() -> None:
    cv, tau_s, step_s = 0.2, 600.0, 30.0
    flat = {
        "kind": "diurnal",
        "base_rps": 100,
        "peak_rps": 100,
        "noise": {"cv": cv, "correlation_time": tau_s},
    }
    r = rates(flat, 60 * DAY, step_s, seed=3) / 100.0
    assert r.mean() == pytest.approx(1.0, abs=0.01)
    assert r.std() == pytest.approx(cv, rel=0.05)
    logs = np.log(r)
    lag1 = np.corrcoef(logs[:-1], logs[1:])[0, 1]
    assert lag1 == pytest.approx(math.exp(-step_s / tau_s), abs=0.01)
    # Same spread at a coarser step: the process is defined in time, not per step.
    coarse = rates(flat, 60 * DAY, 300.0, seed=3) / 100.0
    assert coarse.std() == pytest.approx(cv, rel=0.07)


def test_ramp_endpoints_and_exact_averages() -> None:
    r = rates(
        {"kind": "ramp", "from_rps": 10, "to_rps": 110, "start": "10m", "duration": "100m"}, 3 * HOUR, 60
    )
    assert np.all(r[:10] == 10.0)
    assert np.all(r[110:] == 110.0)
    assert r[10] == pytest.approx(10.5)
    assert r[60] == pytest.approx(60.5)
    # A step not aligned with the ramp still carries exactly the expected requests.
    odd = rates(
        {"kind": "ramp", "from_rps": 10, "to_rps": 110, "start": "10m", "duration": "100m"}, 3 * HOUR, 7
    )
    total = 10 * 600 + 60 * 6000 + 110 * (3 * HOUR - 6600)
    assert odd[: int(3 * HOUR // 7)].sum() * 7 + odd[-1] * (3 * HOUR % 7) == pytest.approx(total)


def test_step_levels_are_time_weighted() -> None:
    levels = [{"at": 0, "rps": 10}, {"at": "90s", "rps": 20}, {"at": "3m", "rps": 5}]
    r = rates({"kind": "step", "levels": levels}, 300, 60)
    np.testing.assert_allclose(r, [10, 15, 20, 5, 5])


def test_spike_shape_and_volume_independent_of_step() -> None:
    spike = {"kind": "spike", "base_rps": 10, "multiplier": 5, "start": "10m", "rise": "2m", "hold": "5m",
             "decay": "10m"}  # fmt: skip
    r = rates(spike, 3 * HOUR, 1)
    assert np.all(r[:600] == 10.0)
    assert r[600 + 120 : 600 + 420].min() == pytest.approx(50.0)
    end = 600 + 420
    assert r[end + 600] == pytest.approx(10 + 40 * math.exp(-1), rel=1e-3)
    extra = 40 * (60 + 300 + 600 * (1 - math.exp(-(3 * HOUR - end) / 600)))
    for step in (1, 7, 60, 900):
        coarse = rates(spike, 3 * HOUR, step)
        assert (coarse * step).sum() - 10 * step * len(coarse) == pytest.approx(extra, rel=1e-9)


# --- transforms --------------------------------------------------------------------------------------

SPIKE_AT_1H = {"kind": "add_spike", "start": "1h", "rise": 0, "hold": "10m", "decay": 0, "multiplier": 3}


def test_transforms_scale_clip_in_order() -> None:
    base = {"kind": "ramp", "from_rps": 0, "to_rps": 100, "duration": 100}
    scale_then_clip = [{"kind": "scale", "factor": 2}, {"kind": "clip", "max_rps": 100}]
    a = rates({**base, "transforms": scale_then_clip}, 110, 1)
    b = rates({**base, "transforms": scale_then_clip[::-1]}, 110, 1)
    assert a.max() == pytest.approx(100.0)
    assert b.max() == pytest.approx(200.0)
    clipped = rates({**base, "transforms": [{"kind": "clip", "min_rps": 20, "max_rps": 60}]}, 100, 1)
    assert clipped.min() == 20.0
    assert clipped.max() == 60.0


def test_shift_moves_what_came_before_it_only() -> None:
    base = {"kind": "constant", "rps": 10}
    spike_then_shift = rates(
        {**base, "transforms": [SPIKE_AT_1H, {"kind": "shift", "by": "30m"}]}, 3 * HOUR, 60
    )
    shift_then_spike = rates(
        {**base, "transforms": [{"kind": "shift", "by": "30m"}, SPIKE_AT_1H]}, 3 * HOUR, 60
    )
    assert np.flatnonzero(spike_then_shift > 10)[[0, -1]].tolist() == [90, 99]
    assert np.flatnonzero(shift_then_spike > 10)[[0, -1]].tolist() == [60, 69]


def test_shift_of_a_generator_including_negative_and_fractional() -> None:
    ramp = {"kind": "ramp", "from_rps": 0, "to_rps": 600, "start": "10m", "duration": "10m"}
    plain = rates(ramp, HOUR, 60)
    later = rates({**ramp, "transforms": [{"kind": "shift", "by": "5m"}]}, HOUR, 60)
    earlier = rates({**ramp, "transforms": [{"kind": "shift", "by": "-5m"}]}, HOUR, 60)
    np.testing.assert_allclose(later[5:], plain[:-5])
    np.testing.assert_allclose(earlier[:-5], plain[5:])
    half = rates({**ramp, "transforms": [{"kind": "shift", "by": 30}]}, HOUR, 60)
    fine = rates(ramp, HOUR, 30)
    np.testing.assert_allclose(half[1:], 0.5 * (fine[1:-2:2] + fine[2:-1:2]))


def test_add_spike_multiplier_and_extra() -> None:
    base = {"kind": "ramp", "from_rps": 10, "to_rps": 20, "duration": "2h"}
    plain = rates(base, 2 * HOUR, 60)
    times = rates({**base, "transforms": [SPIKE_AT_1H]}, 2 * HOUR, 60)
    extra = {**SPIKE_AT_1H, "multiplier": None, "extra_rps": 100}
    plus = rates({**base, "transforms": [extra]}, 2 * HOUR, 60)
    np.testing.assert_allclose(times[60:70], 3 * plain[60:70])
    np.testing.assert_allclose(plus[60:70], plain[60:70] + 100)
    np.testing.assert_allclose(np.delete(times, range(60, 70)), np.delete(plain, range(60, 70)))


# --- replay ------------------------------------------------------------------------------------------


def write(tmp_path: Path, text: str, name: str = "series.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def replay(path: Path, **fields: Any) -> dict[str, Any]:
    return {"kind": "replay", "path": str(path), **fields}


def test_replay_coarser_than_step_interpolates(tmp_path: Path) -> None:
    path = write(
        tmp_path, "timestamp,rps\n2024-05-01T00:00:00Z,0\n2024-05-01T00:05:00Z,300\n2024-05-01T00:10:00Z,0\n"
    )
    linear = rates(replay(path, past_end="hold"), 600, 60)
    np.testing.assert_allclose(linear, [30, 90, 150, 210, 270, 270, 210, 150, 90, 30])
    held = rates(replay(path, interpolation="previous", past_end="hold"), 900, 60)
    np.testing.assert_allclose(held, [0] * 5 + [300] * 5 + [0] * 5)


def test_replay_finer_than_step_averages(tmp_path: Path) -> None:
    values = np.random.default_rng(5).uniform(0, 100, 600)
    lines = "".join(f"{t},{float(v)!r}\n" for t, v in enumerate(values))
    path = write(tmp_path, "t,requests\n" + lines)
    r = rates(replay(path, timestamp_column="t", rate_column="requests", interpolation="previous"), 600, 60)
    np.testing.assert_allclose(r, values.reshape(10, 60).mean(axis=1))


def test_replay_offset_loop_and_hold(tmp_path: Path) -> None:
    path = write(tmp_path, "timestamp,rps\n0,10\n60,20\n120,30\n")
    fields = {"interpolation": "previous"}
    np.testing.assert_allclose(rates(replay(path, **fields), 420, 60), [10, 20, 30, 10, 20, 30, 10])
    np.testing.assert_allclose(rates(replay(path, **fields, offset=60), 240, 60), [20, 30, 10, 20])
    np.testing.assert_allclose(rates(replay(path, **fields, past_end="hold"), 300, 60), [10, 20, 30, 30, 30])
    with pytest.raises(InputError) as info:
        rates(replay(path, **fields, past_end="error"), 300, 60)
    assert info.value.field == "past_end"
    assert info.value.file == path.resolve()
    # A looped linear series closes back to its first value: the lap total is preserved.
    looped = rates(replay(path), 1800, 60)
    assert looped.reshape(10, 3).sum(axis=1) == pytest.approx([15.0 + 25.0 + 20.0] * 10)


def test_replay_counter_column_with_reset(tmp_path: Path) -> None:
    path = write(tmp_path, "time,total\n0,1000\n60,1600\n120,2800\n180,300\n")
    r = rates(replay(path, timestamp_column="time", counter_column="total", past_end="error"), 180, 60)
    np.testing.assert_allclose(r, [10, 20, 5])


def test_replay_parquet_relative_path_and_empty_values(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "ts": pd.date_range("2024-01-01", periods=4, freq="1min", tz="Europe/Paris"),
            "rps": [1, np.nan, 3, 4],
        }
    )
    frame.to_parquet(tmp_path / "s.parquet")
    traffic = replay(Path("s.parquet"), timestamp_column="ts", interpolation="previous", past_end="hold")
    r = rates(traffic, 240, 60, base_dir=tmp_path)
    np.testing.assert_allclose(r, [1, 1, 3, 4])


def test_replay_numeric_timestamp_units(tmp_path: Path) -> None:
    path = write(tmp_path, "timestamp,rps\n1714521600000,10\n1714521660000,20\n")
    r = rates(replay(path, timestamp_unit="ms", interpolation="previous", past_end="error"), 120, 60)
    np.testing.assert_allclose(r, [10, 20])
    with pytest.raises(InputError, match="epoch milliseconds") as info:
        rates(replay(path), 120, 60)
    assert (info.value.field, info.value.line) == ("timestamp", 2)


def test_bundled_series_loads() -> None:
    traffic = spec(
        kind="replay", path="data/traffic/elb_requests_14d.csv", rate_column="rps", past_end="error"
    )
    fn = load_replay(traffic, REPO / "scenarios")
    assert fn.period_s == pytest.approx(14 * DAY + 40 * 60, abs=600)
    r = rate_series(traffic, 14 * DAY, 300, np.random.default_rng(0), REPO / "scenarios")
    assert 95 < r.mean() < 110
    assert r.max() > 5 * np.median(r)
    assert (REPO / "scenarios/data/traffic/elb_requests_14d.source.md").exists()


REPLAY_ERRORS = [
    ("timestamp,rps\n2024-05-01 00:00:00,1\n2024-05-01 00:01:00,2\nyesterday,3\n", {}, "timestamp", 4),
    ("", {}, None, None),
    ("timestamp,rps\n", {}, "rps", None),
    ("timestamp,rps\n0,1\n60,-2\n", {}, "rps", 3),
    ("time,rps\n0,1\n60,2\n", {}, "timestamp", 1),
    ("timestamp,rps\n0,1\n60,2\n", {"rate_column": "requests"}, "requests", 1),
    ("timestamp,rps\n0,1\n60,lots\n", {}, "rps", 3),
    ("timestamp,rps\n0,1\n60,2\n60,3\n", {}, "timestamp", 4),
    ("timestamp,rps\n0,1\n\n,2\n", {}, "timestamp", 4),
    ("timestamp,rps\n0,1\n\n120,inf\n", {}, "rps", 4),
    ("timestamp,rps\n0,1\n", {}, "rps", None),
    ("timestamp,total\n0,5\n60,-1\n", {"counter_column": "total"}, "total", 3),
]


@pytest.mark.parametrize(("text", "fields", "column", "line"), REPLAY_ERRORS)
def test_replay_errors_name_file_column_and_line(
    tmp_path: Path, text: str, fields: dict[str, Any], column: str | None, line: int | None
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(InputError) as info:
        rates(replay(path, **fields), 600, 60)
    error = info.value
    assert Path(str(error.file)).name == "series.csv"
    assert error.field == column
    assert error.line == line
    if line is not None:
        assert f"series.csv:{line}" in str(error)


def test_replay_missing_and_unsupported_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read") as info:
        rates(replay(tmp_path / "absent.csv"), 60, 60)
    assert info.value.field == "path"
    write(tmp_path, "x", "series.xlsx")
    with pytest.raises(InputError, match="unsupported") as info:
        rates(replay(tmp_path / "series.xlsx"), 60, 60)
    assert "Parquet" in str(info.value.valid)


# --- randomness and arrivals -------------------------------------------------------------------------

NOISY = {
    "kind": "diurnal",
    "base_rps": 20,
    "peak_rps": 80,
    "noise": {"cv": 0.3, "correlation_time": "5m"},
    "transforms": [{"kind": "noise", "cv": 0.1, "correlation_time": "1m"}],
}


@pytest.mark.parametrize("arrivals", ["poisson", {"kind": "overdispersed", "dispersion": 0.2}])
def test_same_seed_same_series_and_counts(arrivals: Any) -> None:
    traffic = spec(**NOISY, arrivals=arrivals)

    def run(seed: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        r = rate_series(traffic, DAY, 10, rng)
        return r, arrival_counts(r, 10, traffic.arrivals, rng)

    r1, c1 = run(7)
    r2, c2 = run(7)
    r3, c3 = run(8)
    np.testing.assert_array_equal(r1, r2)
    np.testing.assert_array_equal(c1, c2)
    assert not np.array_equal(r1, r3)
    assert not np.array_equal(c1, c3)
    assert c1.dtype == np.int64


def test_poisson_counts_mean_and_variance() -> None:
    traffic = spec(kind="constant", rps=50)
    rng = np.random.default_rng(11)
    r = rate_series(traffic, 40000, 1, rng)
    counts = arrival_counts(r, 1, traffic.arrivals, rng)
    assert counts.mean() == pytest.approx(50, abs=4 * math.sqrt(50 / 40000))
    assert counts.var() / counts.mean() == pytest.approx(1.0, abs=0.04)


def test_deterministic_counts_round_with_carry() -> None:
    traffic = spec(kind="ramp", from_rps=0.3, to_rps=7.7, duration=1000, arrivals="deterministic")
    rng = np.random.default_rng(0)
    r = rate_series(traffic, 1000, 1, rng)
    state = rng.bit_generator.state
    counts = arrival_counts(r, 1, traffic.arrivals, rng)
    assert rng.bit_generator.state == state
    assert np.all(np.abs(np.cumsum(counts) - np.cumsum(r)) <= 0.5 + 1e-9)
    assert np.all((counts >= np.floor(r)) & (counts <= np.ceil(r) + 1))


@pytest.mark.parametrize(("step_s", "window_s"), [(1.0, 1.0), (10.0, 1.0), (1.0, 10.0)])
def test_overdispersed_counts_follow_nb2_per_window(step_s: float, window_s: float) -> None:
    rate, dispersion, n = 40.0, 0.1, 60000
    traffic = spec(
        kind="constant",
        rps=rate,
        arrivals={"kind": "overdispersed", "dispersion": dispersion, "window": window_s},
    )
    rng = np.random.default_rng(21)
    counts = arrival_counts(rate_series(traffic, n * step_s, step_s, rng), step_s, traffic.arrivals, rng)
    assert counts.mean() == pytest.approx(rate * step_s, rel=0.01)
    assert counts.var() > 2 * counts.mean()
    # Variance over a window is mu + dispersion*mu^2 whatever the simulation step.
    per_window = counts.reshape(-1, int(window_s // step_s)).sum(axis=1) if window_s > step_s else counts
    mu = rate * max(window_s, step_s)
    windows_per_sample = max(step_s / window_s, 1.0)
    expected = mu + dispersion / windows_per_sample * mu * mu
    assert per_window.var() == pytest.approx(expected, rel=0.08)
