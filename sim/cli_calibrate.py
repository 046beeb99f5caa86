"""`capsim calibrate` and `capsim backtest`: from a history to a workload model, and back to a verdict.

Kept apart from sim/cli.py (which registers the commands) so the history
options (where to read, how to authenticate, which window) are defined once
for both. Credentials come from the environment or files and are never
echoed; `--verbose` logs every query sent, never a header.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from sim.errors import ExitCode, InputError

if TYPE_CHECKING:
    from sim.calibrate.source import Source

out = Console()
err = Console(stderr=True)

Prometheus = Annotated[
    str | None, typer.Option("--prometheus", help="Prometheus base URL (http[s]://host:9090).")
]
FromFile = Annotated[
    Path | None, typer.Option("--from-file", help="Recorded history (OpenMetrics, .om or .om.gz) instead.")
]
Start = Annotated[
    str | None, typer.Option(help="Window start: RFC 3339, unix seconds or now-7d (default: file start).")
]
End = Annotated[str | None, typer.Option(help="Window end (default: the file's end, or now).")]
Step = Annotated[str | None, typer.Option(help="Resolution, e.g. 30s (default: from the window and scrape).")]
Queries = Annotated[Path | None, typer.Option(help="YAML file with extra query sets / overrides.")]
TokenFile = Annotated[
    Path | None, typer.Option(help="File holding a bearer token (else env CAPSIM_PROMETHEUS_TOKEN).")
]
BasicAuthFile = Annotated[
    Path | None,
    typer.Option(help="File holding user:password (else env CAPSIM_PROMETHEUS_USER/_PASSWORD)."),
]
CaFile = Annotated[Path | None, typer.Option(help="CA bundle to verify the server's TLS certificate.")]
Insecure = Annotated[
    bool, typer.Option("--insecure-skip-tls-verify", help="Do not verify TLS (test servers only).")
]
Timeout = Annotated[float, typer.Option(min=0.1, help="Seconds to wait for each request.")]
Retries = Annotated[
    int, typer.Option(min=0, help="Retries (with backoff) on connection errors, 429 and 5xx.")
]
MaxPoints = Annotated[
    int, typer.Option(min=2, help="Points per series per range query (Prometheus refuses > 11000).")
]
Verbose = Annotated[bool, typer.Option(help="Log every query sent (never credentials).")]


def _source(
    prometheus: str | None,
    from_file: Path | None,
    token_file: Path | None,
    basic_auth_file: Path | None,
    ca_file: Path | None,
    insecure: bool,
    timeout: float,
    retries: int,
    max_points: int,
) -> Source:
    if (prometheus is None) == (from_file is None):
        raise InputError(
            "give exactly one history source",
            field="--prometheus/--from-file",
            valid="--prometheus URL or --from-file FILE",
        )
    if from_file is not None:
        from sim.calibrate.source import FileSource

        return FileSource(from_file)
    from sim.calibrate.client import ConnectionSettings, PrometheusSource

    assert prometheus is not None
    return PrometheusSource(
        ConnectionSettings(
            url=prometheus,
            timeout_s=timeout,
            retries=retries,
            ca_file=ca_file,
            verify_tls=not insecure,
            token_file=token_file,
            basic_auth_file=basic_auth_file,
            max_points=max_points,
        )
    )


def _window(
    start: str | None, end: str | None, step: str | None, remote: bool
) -> tuple[float | None, float | None, float | None]:
    from sim.calibrate.window import parse_time
    from sim.workload.durations import parse_duration_s

    now = datetime.now(UTC).timestamp()
    if remote:
        start = start or "now-7d"
        end = end or "now"
    t0 = parse_time(start, now, "--start") if start else None
    t1 = parse_time(end, now, "--end") if end else None
    try:
        step_s = parse_duration_s(step) if step else None
    except ValueError as exc:
        raise InputError(str(exc), field="--step") from None
    if step_s is not None and step_s <= 0:
        raise InputError(f"step must be positive, got {step}", field="--step")
    return t0, t1, step_s


def _verbose(on: bool) -> None:
    if on:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logger = logging.getLogger("sim.calibrate")
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)


def calibrate_cmd(
    service: Annotated[str, typer.Option(help="The service's name, as its series' service label has it.")],
    prometheus: Prometheus = None,
    from_file: FromFile = None,
    namespace: Annotated[str, typer.Option(help="Kubernetes namespace of the service.")] = "default",
    start: Start = None,
    end: End = None,
    step: Step = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Model file to write (default: models/SERVICE.yaml)."),
    ] = None,
    queries: Queries = None,
    deployment: Annotated[str | None, typer.Option(help="Deployment name (default: the service).")] = None,
    container: Annotated[
        str | None, typer.Option(help="Container whose CPU counts (default: deployment).")
    ] = None,
    hpa: Annotated[str | None, typer.Option(help="HPA name (default: keda-hpa-SERVICE).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap resampling.")] = 0,
    token_file: TokenFile = None,
    basic_auth_file: BasicAuthFile = None,
    ca_file: CaFile = None,
    insecure_skip_tls_verify: Insecure = False,
    timeout: Timeout = 30.0,
    retries: Retries = 3,
    max_points: MaxPoints = 11_000,
    verbose: Verbose = False,
) -> None:
    """Fit a workload model (service time, workers, CPU, start-up, traffic) from a service's history."""
    from sim.calibrate import model as model_file
    from sim.calibrate.calibration import Target, calibrate
    from sim.calibrate.querysets import load_catalog

    _verbose(verbose)
    src = _source(
        prometheus,
        from_file,
        token_file,
        basic_auth_file,
        ca_file,
        insecure_skip_tls_verify,
        timeout,
        retries,
        max_points,
    )
    t0, t1, step_s = _window(start, end, step, prometheus is not None)
    catalog = load_catalog(queries)
    target = Target(service, namespace, deployment, container, hpa)
    cal = calibrate(src, target, catalog, t0, t1, step_s, seed)
    path = output or Path("models") / f"{service}.yaml"
    written = model_file.write(cal.model, path)
    _print_parameters(cal.model.parameters)
    issues = cal.model.issues
    if issues:
        out.print(f"{len(issues)} history issue(s), listed under history: in the model file", highlight=False)
    for p in written:
        out.print(f"wrote {p}", highlight=False, soft_wrap=True)


def _value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict):
        return ", ".join(f"{k} {_value(x)}" for k, x in v.items())
    return "—" if v is None else str(v)


def _print_parameters(params: dict[str, Any]) -> None:
    table = Table(title="calibrated parameters")
    for col in ("parameter", "status", "value", "uncertainty", "note"):
        table.add_column(col, overflow="fold")
    for name, p in params.items():
        unc = p.uncertainty or {}
        short = {k: v for k, v in unc.items() if isinstance(v, int | float) and not isinstance(v, bool)}
        table.add_row(name, p.status, _value(p.value), _value(short) if short else "", p.note or "")
    out.print(table)


def backtest_cmd(
    scenario: Annotated[Path, typer.Argument(help="Scenario with the manifests that were live (YAML).")],
    prometheus: Prometheus = None,
    from_file: FromFile = None,
    service: Annotated[
        list[str] | None, typer.Option(help="Backtest only this service (repeatable; default: all).")
    ] = None,
    start: Start = None,
    end: End = None,
    step: Step = None,
    warmup: Annotated[
        str | None, typer.Option(help="Unscored start (default: the HPA's downscale stabilization).")
    ] = None,
    queries: Queries = None,
    reports: Annotated[Path, typer.Option(help="Directory reports are written under.")] = Path("reports"),
    run_id: Annotated[
        str | None, typer.Option(help="Report directory name (default: backtest-<time>).")
    ] = None,
    fail_on_poor: Annotated[bool, typer.Option(help="Exit 1 when a service's verdict is poor.")] = False,
    token_file: TokenFile = None,
    basic_auth_file: BasicAuthFile = None,
    ca_file: CaFile = None,
    insecure_skip_tls_verify: Insecure = False,
    timeout: Timeout = 30.0,
    retries: Retries = 3,
    max_points: MaxPoints = 11_000,
    verbose: Verbose = False,
) -> None:
    """Replay the recorded traffic through the scenario and compare replicas and latency with the record."""
    from sim import load_scenario
    from sim.calibrate.backtest import backtest, write_report
    from sim.calibrate.querysets import load_catalog
    from sim.workload.durations import parse_duration_s

    _verbose(verbose)
    scn = load_scenario(scenario)
    src = _source(
        prometheus,
        from_file,
        token_file,
        basic_auth_file,
        ca_file,
        insecure_skip_tls_verify,
        timeout,
        retries,
        max_points,
    )
    t0, t1, step_s = _window(start, end, step, prometheus is not None)
    try:
        warm = parse_duration_s(warmup) if warmup else None
    except ValueError as exc:
        raise InputError(str(exc), field="--warmup") from None
    results = backtest(scn, src, load_catalog(queries), t0, t1, step_s, service, warm)
    rid = run_id or f"backtest-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    report = write_report(results, scn, src.description, reports / scn.name / rid)
    table = Table(title=f"backtest of {scn.name}")
    for col in ("service", "verdict", "replicas MAE", "bias", "scale-up lag", "p95 sim/rec"):
        table.add_column(col)
    for bt in results:
        f = bt.figures
        p95 = (
            f"{f['p95_window_simulated_ms']:.0f}/{f['p95_window_recorded_ms']:.0f} ms"
            if "p95_window_simulated_ms" in f
            else "n/a"
        )
        table.add_row(
            bt.service,
            bt.verdict,
            _value(f.get("replicas_mae")),
            _value(f.get("replicas_bias")),
            f"{_value(f.get('scale_up_lag_median_s'))} s",
            p95,
        )
    out.print(table)
    out.print(f"report: {report}", highlight=False, soft_wrap=True)
    if fail_on_poor and any(bt.verdict == "poor" for bt in results):
        raise typer.Exit(ExitCode.GATE_FAILED)
