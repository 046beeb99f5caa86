"""Traffic: the `traffic:` block of a scenario, and the rate and arrival series it produces.

A traffic spec is a base shape (a generator or a replayed series), a list of
transforms applied in order, and an arrival process that turns the expected
rate into request counts per step. Rates are step averages (the expected count
over a step divided by its length), not point samples, so a 30 s spike inside a
60 s step still carries its requests.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, GetJsonSchemaHandler, field_validator, model_validator
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

from sim.workload import arrivals, replay, shapes
from sim.workload.durations import Duration, PositiveDuration, SignedDuration
from sim.workload.shapes import FloatArray, step_count

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Rps = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- noise -----------------------------------------------------------------------------------------


class Noise(_Model):
    """Multiplicative lognormal noise whose log follows an AR(1) (Ornstein–Uhlenbeck) process.

    Real traffic wanders above and below its trend for minutes at a time; white
    noise per step would average out inside one HPA window and make the
    autoscaler look better than it is. The multiplier has mean 1, so noise does
    not change the expected volume.
    """

    cv: float = Field(ge=0.0, le=3.0, description="coefficient of variation of the multiplier")
    correlation_time: PositiveDuration = Field(
        default=600.0, description="e-folding time of the log-multiplier's autocorrelation"
    )


class _SpikeShape(_Model):
    """Linear rise from `start` over `rise`, flat for `hold`, then exponential decay.

    `decay` is the decay's time constant: 37 % of the surplus is left after
    one `decay`, 5 % after three. Flash crowds fade roughly exponentially rather
    than stopping at a set time.
    """

    start: Duration
    rise: Duration = 60.0
    hold: Duration = 900.0
    decay: Duration = 900.0


# --- transforms --------------------------------------------------------------------------------------


class ScaleTransform(_Model):
    kind: Literal["scale"]
    factor: float = Field(ge=0.0, allow_inf_nan=False)


class ShiftTransform(_Model):
    """Moves the series later by `by` (earlier when negative): rate'(t) = rate(t − by)."""

    kind: Literal["shift"]
    by: SignedDuration


class AddSpikeTransform(_SpikeShape):
    """A flash crowd on top of the series: × `multiplier` at its peak, or + `extra_rps`."""

    kind: Literal["add_spike"]
    multiplier: float | None = Field(default=None, ge=0.0, allow_inf_nan=False)
    extra_rps: Rps | None = None

    @model_validator(mode="after")
    def _one_size(self) -> AddSpikeTransform:
        if (self.multiplier is None) == (self.extra_rps is None):
            raise ValueError("give exactly one of multiplier (× the series at the peak) or extra_rps")
        return self


class ClipTransform(_Model):
    kind: Literal["clip"]
    min_rps: Rps | None = None
    max_rps: Rps | None = None

    @model_validator(mode="after")
    def _bounds(self) -> ClipTransform:
        if self.min_rps is None and self.max_rps is None:
            raise ValueError("give min_rps, max_rps or both")
        if self.min_rps is not None and self.max_rps is not None and self.min_rps > self.max_rps:
            raise ValueError(f"min_rps ({self.min_rps}) must be <= max_rps ({self.max_rps})")
        return self


class NoiseTransform(Noise):
    """Correlated multiplicative noise on any series (see `Noise`)."""

    kind: Literal["noise"]


Transform = Annotated[
    ScaleTransform | ShiftTransform | AddSpikeTransform | ClipTransform | NoiseTransform,
    Field(discriminator="kind"),
]


# --- arrivals ----------------------------------------------------------------------------------------


class PoissonArrivals(_Model):
    """Independent arrivals: counts per step are Poisson around rate × step."""

    kind: Literal["poisson"] = "poisson"


class DeterministicArrivals(_Model):
    """Counts are rate × step rounded, carrying the remainder so totals match the rate exactly."""

    kind: Literal["deterministic"]


class OverdispersedArrivals(_Model):
    """Burstier than Poisson: the rate is multiplied by a gamma factor drawn once per `window`.

    Counts over one window are negative binomial with variance μ + dispersion·μ²
    (the usual NB2 form, so `dispersion` can be fitted from per-window counts).
    Tying the factor to a window rather than to the simulation step keeps the
    burstiness the same whatever step the engine uses.
    """

    kind: Literal["overdispersed"]
    dispersion: float = Field(gt=0.0, allow_inf_nan=False)
    window: PositiveDuration = 1.0


class _KindShorthand:
    """Lets `arrivals: poisson` stand for `arrivals: {kind: poisson}`, in validation and in the schema."""

    names = ("poisson", "deterministic")

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> core_schema.CoreSchema:
        def expand(value: Any) -> Any:
            return {"kind": value} if isinstance(value, str) else value

        return core_schema.no_info_before_validator_function(expand, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"anyOf": [{"type": "string", "enum": list(self.names)}, handler(schema)]}


Arrivals = Annotated[
    PoissonArrivals | DeterministicArrivals | OverdispersedArrivals, Field(discriminator="kind")
]
ArrivalsField = Annotated[Arrivals, _KindShorthand()]


# --- base shapes -------------------------------------------------------------------------------------


class _TrafficBase(_Model):
    transforms: list[Transform] = Field(default_factory=list, description="applied in order")
    arrivals: ArrivalsField = Field(default_factory=PoissonArrivals)


class ConstantTraffic(_TrafficBase):
    kind: Literal["constant"]
    rps: Rps
    noise: Noise | None = None


class DiurnalTraffic(_TrafficBase):
    """A daily cosine cycle times a weekly shape, optionally with correlated noise.

    Give either `base_rps` (the trough) and `peak_rps`, or `mean_rps` and
    `amplitude_rps` (peak = mean + amplitude). The weekly factor multiplies
    the whole day, so `base_rps`/`peak_rps` describe a day with factor 1;
    factors blend linearly over the two hours around midnight so a weekend
    does not start with a cliff.
    """

    kind: Literal["diurnal"]
    base_rps: Rps | None = None
    peak_rps: Rps | None = None
    mean_rps: Rps | None = None
    amplitude_rps: Rps | None = None
    peak_hour: float = Field(default=14.0, ge=0.0, lt=24.0, description="hour of day of the daily peak")
    start_day: Weekday = Field(default="mon", description="weekday at simulated time 0")
    start_hour: float = Field(default=0.0, ge=0.0, lt=24.0, description="hour of day at simulated time 0")
    weekend_factor: float | None = Field(default=None, ge=0.0)
    day_factors: list[Annotated[float, Field(ge=0.0)]] | None = Field(
        default=None, min_length=7, max_length=7, description="one factor per weekday, Monday first"
    )
    noise: Noise | None = None

    @model_validator(mode="after")
    def _one_parametrisation(self) -> DiurnalTraffic:
        pair_a = (self.base_rps, self.peak_rps)
        pair_b = (self.mean_rps, self.amplitude_rps)
        has_a = any(v is not None for v in pair_a)
        has_b = any(v is not None for v in pair_b)
        if has_a == has_b or None in (pair_a if has_a else pair_b):
            raise ValueError("give either base_rps and peak_rps, or mean_rps and amplitude_rps")
        if has_a and self.peak_rps < self.base_rps:  # type: ignore[operator]
            raise ValueError(f"peak_rps ({self.peak_rps}) must be >= base_rps ({self.base_rps})")
        if has_b and self.amplitude_rps > self.mean_rps:  # type: ignore[operator]
            raise ValueError(
                f"amplitude_rps ({self.amplitude_rps}) must be <= mean_rps ({self.mean_rps}): "
                "the trough would be negative"
            )
        if self.weekend_factor is not None and self.day_factors is not None:
            raise ValueError("give weekend_factor or day_factors, not both")
        return self

    @property
    def trough_peak_rps(self) -> tuple[float, float]:
        if self.base_rps is not None and self.peak_rps is not None:
            return self.base_rps, self.peak_rps
        assert self.mean_rps is not None and self.amplitude_rps is not None
        return self.mean_rps - self.amplitude_rps, self.mean_rps + self.amplitude_rps

    @property
    def weekly_factors(self) -> tuple[float, ...]:
        if self.day_factors is not None:
            return tuple(self.day_factors)
        weekend = 1.0 if self.weekend_factor is None else self.weekend_factor
        return (1.0,) * 5 + (weekend,) * 2


class RampTraffic(_TrafficBase):
    """`from_rps` until `start`, then linear to `to_rps` over `duration`, then `to_rps`."""

    kind: Literal["ramp"]
    from_rps: Rps
    to_rps: Rps
    start: Duration = 0.0
    duration: Duration


class StepLevel(_Model):
    at: Duration
    rps: Rps


class StepTraffic(_TrafficBase):
    """Piecewise-constant levels; each holds from its `at` until the next one's."""

    kind: Literal["step"]
    levels: list[StepLevel] = Field(min_length=1)

    @field_validator("levels")
    @classmethod
    def _ordered(cls, levels: list[StepLevel]) -> list[StepLevel]:
        if levels[0].at != 0.0:
            raise ValueError(
                f"the first level must be at 0 (got {levels[0].at} s); the rate before it is undefined"
            )
        for prev, cur in itertools.pairwise(levels):
            if cur.at <= prev.at:
                raise ValueError(f"levels must have increasing `at`: {cur.at} s follows {prev.at} s")
        return levels


class SpikeTraffic(_TrafficBase, _SpikeShape):
    """A flash crowd: `base_rps`, rising to `base_rps × multiplier`, and back."""

    kind: Literal["spike"]
    base_rps: Rps
    multiplier: float = Field(ge=0.0, allow_inf_nan=False)


class ReplayTraffic(_TrafficBase):
    """A recorded series from CSV or Parquet, resampled to the simulation step.

    Values are read as rates at their timestamps and joined linearly
    (`interpolation: linear`) or held until the next sample
    (`previous`), then averaged over each step, which handles series both
    coarser and finer than the step. A `counter_column` (a monotonic total
    such as `http_requests_total`) becomes the average rate between samples,
    with a decrease read as a counter reset, as Prometheus' rate() does.
    Timestamps are date-times or numbers of seconds. Rows whose value is empty
    or NaN are dropped (the gap is interpolated across).
    """

    kind: Literal["replay"]
    path: str = Field(
        min_length=1, description="CSV (.csv, .csv.gz) or Parquet file; relative to the scenario"
    )
    timestamp_column: str = "timestamp"
    timestamp_unit: Literal["s", "ms", "us", "ns"] = Field(
        default="s", description="unit of numeric timestamps (date-time strings need none)"
    )
    rate_column: str | None = Field(default=None, description='requests per second (default "rps")')
    counter_column: str | None = None
    interpolation: Literal["linear", "previous"] = "linear"
    offset: Duration = Field(default=0.0, description="simulated time 0 is this far after the first sample")
    past_end: Literal["loop", "hold", "error"] = Field(
        default="loop", description="when the series is shorter than offset + horizon"
    )

    @model_validator(mode="after")
    def _one_value_column(self) -> ReplayTraffic:
        if self.rate_column is not None and self.counter_column is not None:
            raise ValueError("give rate_column or counter_column, not both")
        return self

    @property
    def value_column(self) -> str:
        if self.counter_column is not None:
            return self.counter_column
        return self.rate_column if self.rate_column is not None else "rps"


# --- the traffic block -------------------------------------------------------------------------------

TrafficSpec = Annotated[
    ConstantTraffic | DiurnalTraffic | RampTraffic | StepTraffic | SpikeTraffic | ReplayTraffic,
    Field(discriminator="kind"),
]
"""The scenario file's `traffic:` block, one of the kinds above, chosen by `kind`."""


# --- series ------------------------------------------------------------------------------------------


def rate_series(
    spec: TrafficSpec,
    horizon_s: float,
    step_s: float,
    rng: np.random.Generator,
    base_dir: Path | str | None = None,
) -> FloatArray:
    """Expected requests per second in each step of [0, horizon), float64, >= 0.

    Returns `step_count(horizon_s, step_s)` values (a last partial step is
    whole). Transforms work on the step grid: a time shift only moves the
    grid's time origin, so the base shape is evaluated once over the window
    that all shifts together need and nothing is interpolated. Noise draws
    come from `rng` in spec order, a fixed number per noise source.
    `replay` paths are relative to `base_dir` (the scenario file's directory).
    """
    n = step_count(horizon_s, step_s)
    origin_s = -sum(t.by for t in spec.transforms if isinstance(t, ShiftTransform))
    rates = _base_rates(spec, shapes.edges(origin_s, n, step_s), step_s, rng, base_dir)
    for transform in spec.transforms:
        step_edges = shapes.edges(origin_s, n, step_s)
        match transform:
            case ScaleTransform(factor=factor):
                rates = rates * factor
            case ShiftTransform(by=by):
                origin_s += by
            case AddSpikeTransform():
                profile = shapes.spike_profile(
                    step_edges, transform.start, transform.rise, transform.hold, transform.decay
                )
                if transform.multiplier is not None:
                    rates = rates * (1.0 + (transform.multiplier - 1.0) * profile)
                else:
                    assert transform.extra_rps is not None
                    rates = rates + transform.extra_rps * profile
            case ClipTransform(min_rps=lo, max_rps=hi):
                rates = np.clip(rates, lo, hi)
            case NoiseTransform():
                rates = rates * shapes.correlated_noise(
                    n, step_s, transform.cv, transform.correlation_time, rng
                )
    return np.maximum(rates, 0.0)


def _base_rates(
    spec: TrafficSpec,
    step_edges: FloatArray,
    step_s: float,
    rng: np.random.Generator,
    base_dir: Path | str | None,
) -> FloatArray:
    n = len(step_edges) - 1
    match spec:
        case ConstantTraffic():
            rates = np.full(n, spec.rps)
        case DiurnalTraffic():
            trough, peak = spec.trough_peak_rps
            week_clock_s = WEEKDAYS.index(spec.start_day) * shapes.DAY_S + spec.start_hour * 3600.0
            daily = shapes.daily_cosine(step_edges, week_clock_s % shapes.DAY_S, spec.peak_hour)
            weekly = shapes.weekly_factor(step_edges, week_clock_s, spec.weekly_factors)
            rates = (trough + (peak - trough) * daily) * weekly
        case RampTraffic():
            knot_t = np.array([spec.start, spec.start + spec.duration])
            rates = shapes.pwl_average(knot_t, np.array([spec.from_rps, spec.to_rps]), step_edges)
        case StepTraffic():
            knot_t = np.repeat([level.at for level in spec.levels], 2)[1:]
            knot_v = np.repeat([level.rps for level in spec.levels], 2)[:-1]
            rates = shapes.pwl_average(knot_t, knot_v, step_edges)
        case SpikeTraffic():
            profile = shapes.spike_profile(step_edges, spec.start, spec.rise, spec.hold, spec.decay)
            rates = spec.base_rps * (1.0 + (spec.multiplier - 1.0) * profile)
        case ReplayTraffic():
            fn = load_replay(spec, base_dir)
            integral = fn.integral(step_edges + spec.offset, spec.past_end)
            rates = np.diff(integral) / np.diff(step_edges)
    if isinstance(spec, ConstantTraffic | DiurnalTraffic) and spec.noise is not None:
        rates = rates * shapes.correlated_noise(n, step_s, spec.noise.cv, spec.noise.correlation_time, rng)
    return rates


def load_replay(spec: ReplayTraffic, base_dir: Path | str | None = None) -> replay.RateFunction:
    """The replayed series as a rate function; raises InputError for a missing or malformed file.

    Scenario loading can call this to reject a bad file before a run starts.
    Results are cached per file version, so calling it again is cheap.
    """
    path = Path(spec.path).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    fmt = replay.SeriesFormat(
        timestamp_column=spec.timestamp_column,
        value_column=spec.value_column,
        counter=spec.counter_column is not None,
        interpolation=spec.interpolation,
        timestamp_unit=spec.timestamp_unit,
    )
    return replay.load_rate_function(path, fmt)


def arrival_counts(
    rates: FloatArray, step_s: float, spec: Arrivals, rng: np.random.Generator
) -> arrivals.IntArray:
    """Requests arriving in each step, int64, drawn around rate × step as `spec` says.

    Call it once over the whole horizon: the draws for step i depend on the
    whole series before it, so chunked calls would give other counts.
    """
    match spec:
        case PoissonArrivals():
            return arrivals.poisson_counts(rates, step_s, rng)
        case DeterministicArrivals():
            return arrivals.deterministic_counts(rates, step_s)
        case OverdispersedArrivals():
            return arrivals.overdispersed_counts(rates, step_s, spec.dispersion, spec.window, rng)
