"""The `capsim` command: a thin layer over `sim.load_scenario` and `sim.simulate`.

Exit codes are the contract CI relies on: 0 ok, 1 a gate or check failed,
2 bad input, 3 an external system failed. Every error is one message on
stderr naming the file, field and line; no traceback for user mistakes.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from sim.cli_calibrate import backtest_cmd, calibrate_cmd
from sim.cli_tune import apply_cmd, pr_cmd, tune_cmd
from sim.errors import ExitCode, ExternalError, InputError

if TYPE_CHECKING:
    from sim import check as gate_types

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Simulate KEDA/HPA autoscaling and its latency before the config reaches the cluster.",
)
out = Console()
err = Console(stderr=True)


@app.command()
def run(
    scenario: Annotated[Path, typer.Argument(help="Scenario file (YAML).")],
    seed: Annotated[int | None, typer.Option(help="Override the scenario's seed.")] = None,
    reports: Annotated[Path, typer.Option(help="Directory runs are written under.")] = Path("reports"),
    run_id: Annotated[
        str | None, typer.Option(help="Name of the run directory (default: time + seed).")
    ] = None,
    fail_on_slo: Annotated[bool, typer.Option(help="Exit 1 when an SLO is breached.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Run a scenario and write reports/<scenario>/<run-id>/ (timeseries, events, summary, plots, report)."""
    from sim import load_scenario, simulate
    from sim.report import write_run

    scn = load_scenario(scenario)
    if seed is not None:
        scn = dataclasses.replace(scn, seed=seed)
    if quiet or not out.is_terminal:
        result = simulate(scn)
    else:
        with Progress(
            TextColumn(f"[bold]{scn.name}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}% simulated"),
            TimeRemainingColumn(),
            console=out,
            transient=True,
        ) as bar:
            task = bar.add_task("run", total=1.0)
            result = simulate(scn, progress=lambda f: bar.update(task, completed=f))
    rid = run_id or _fresh_run_id(reports / scn.name, f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-s{scn.seed}")
    thresholds = {slo.service: slo.threshold_s * 1000.0 for slo in reversed(scn.slos)}
    target = write_run(result, reports / scn.name / rid, thresholds, scenario=scn)
    _print_summary(result.summary)
    out.print(f"report: {target / 'report.md'} (and report.html)")
    if fail_on_slo and not result.summary["slos_met"]:
        raise typer.Exit(ExitCode.GATE_FAILED)


@app.command()
def schema(
    markdown: Annotated[
        bool,
        typer.Option("--markdown", help="Print the reference page (docs/scenario-reference.md) instead."),
    ] = False,
) -> None:
    """Print the JSON Schema of scenario files."""
    from sim.scenario import scenario_json_schema

    if markdown:
        from sim.schema_doc import markdown as render

        sys.stdout.write(render(scenario_json_schema()))
        return
    sys.stdout.write(json.dumps(scenario_json_schema(), indent=2) + "\n")


@app.command()
def check(
    scenarios: Annotated[list[Path], typer.Argument(help="Scenario files to gate.")],
    baseline: Annotated[Path, typer.Option(help="Committed baseline.")] = Path("reports/baseline.json"),
    update_baseline: Annotated[
        bool, typer.Option("--update-baseline", help="Simulate and (re)write the baseline; no gate.")
    ] = False,
    strict: Annotated[bool, typer.Option(help="Also fail on SLOs already broken in the baseline.")] = False,
    seeds: Annotated[
        int | None, typer.Option(min=1, help="Seeds per scenario (default: the baseline's, else 3).")
    ] = None,
    cost_tolerance: Annotated[float, typer.Option(min=0.0, help="Allowed relative cost increase.")] = 0.05,
    base_ref: Annotated[
        str | None,
        typer.Option(help="Git ref of the base branch: re-simulate it when the baseline is stale."),
    ] = None,
    junit: Annotated[Path | None, typer.Option(help="Write JUnit XML here.")] = None,
    markdown: Annotated[
        Path | None,
        typer.Option(help="Write a markdown summary here (also appended to $GITHUB_STEP_SUMMARY)."),
    ] = None,
) -> None:
    """Gate a change: fail (exit 1) when SLOs or cost regress against the committed baseline."""
    import os

    from sim import check as gate

    def say(msg: str) -> None:
        err.print(f"[dim]{msg}[/dim]", highlight=False)

    if update_baseline:
        samples = gate.update_baseline(scenarios, baseline, seeds, say)
        for s in samples:
            out.print(f"baseline {s.scenario}: seeds {', '.join(map(str, s.seeds))}")
        out.print(f"wrote {baseline}", highlight=False, soft_wrap=True)
        return
    report = gate.check(
        scenarios,
        baseline,
        n_seeds=seeds,
        strict=strict,
        cost_tolerance=cost_tolerance,
        base_ref=base_ref,
        progress=say,
    )
    _print_check(report)
    text = gate.markdown(report)
    if markdown is not None:
        _write_text(markdown, text)
    if os.environ.get("GITHUB_STEP_SUMMARY"):
        with open(os.environ["GITHUB_STEP_SUMMARY"], "a") as f:
            f.write(text + "\n")
    if junit is not None:
        _write_text(junit, gate.junit_xml(report))
    if not report.passed:
        raise typer.Exit(ExitCode.GATE_FAILED)


@app.command()
def export(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by `capsim run`.")],
    openmetrics: Annotated[Path, typer.Option("--openmetrics", help="Write OpenMetrics text here.")],
    start: Annotated[
        str | None, typer.Option(help="Time of the run's t=0 (ISO 8601 or Unix s; default: now - horizon).")
    ] = None,
    run: Annotated[
        str | None, typer.Option(help="Value of the `run` label (default: <scenario>/<run-id>).")
    ] = None,
    interval: Annotated[
        float | None, typer.Option(min=0.0, help="Seconds between samples (default 30 s or the step).")
    ] = None,
) -> None:
    """Write a run as Prometheus series (real names and labels, plus source="capsim" and run) to backfill."""
    from sim.export import export_openmetrics, parse_start

    stats = export_openmetrics(
        run_dir, openmetrics, start=parse_start(start) if start else None, run=run, interval_s=interval
    )
    out.print(
        f"wrote {stats.path}: {stats.series} series, {stats.samples} samples "
        f'from {stats.start:%Y-%m-%dT%H:%M:%SZ}, run="{stats.run}"',
        highlight=False,
        soft_wrap=True,
    )
    out.print(
        f"backfill: promtool tsdb create-blocks-from openmetrics {stats.path} <prometheus data dir>",
        soft_wrap=True,
    )


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _print_check(report: gate_types.CheckReport) -> None:
    from sim.check import Verdict, spread

    for sc in report.scenarios:
        out.print(
            f"[bold]{sc.scenario}[/bold] — baseline: {sc.baseline_source}", highlight=False, soft_wrap=True
        )
        table = Table()
        for col in ("check", "objective", "baseline", "this change", "Δ", "verdict"):
            table.add_column(
                col, no_wrap=col in ("check", "verdict"), justify="right" if col == "Δ" else "left"
            )
        details = []
        for r in sc.rows:
            fails = r.verdict.fails(report.strict)
            colour = (
                "red" if fails else "yellow" if r.verdict.value.endswith(("broken", "noise")) else "green"
            )
            objective = "–" if r.objective is None else f"{'≥' if r.kind == 'slo' else '≤'} {r.objective:g}"
            table.add_row(
                f"{r.measure} ({r.unit})" if r.kind == "cost" else r.measure,
                objective,
                spread(r.base),
                spread(r.head),
                "–" if r.delta is None else f"{r.delta:+.3g}",
                f"[{colour}]{r.verdict.value}[/{colour}]",
            )
            if r.verdict not in (Verdict.OK, Verdict.IMPROVED) or r.kind == "cost":
                details.append(f"  {r.measure}: {r.detail}")
        # CI logs are not terminals, and rich's 80-column default would truncate the numbers there.
        (out if out.is_terminal else Console(width=120)).print(table)
        for line in [*details, *(f"  note: {n}" for n in sc.notes)]:
            out.print(line, highlight=False, soft_wrap=True)
    failing = sum(len(sc.failures(report.strict)) for sc in report.scenarios)
    if report.passed:
        out.print(f"[green]capsim check passed[/green] ({len(report.scenarios)} scenario(s))")
    else:
        out.print(f"[red]capsim check FAILED[/red]: {failing} check(s) regressed")


def _print_summary(summary: dict) -> None:
    table = Table(title=f"{summary['scenario']} (seed {summary['seed']})")
    for col in (
        "service",
        "offered",
        "failed %",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "pod-h",
        "max pods",
        "events",
    ):
        table.add_column(col, justify="right" if col != "service" else "left")
    for name, v in summary["services"].items():
        table.add_row(
            name,
            f"{v['offered_requests']:.0f}",
            f"{100 * v['failed_ratio']:.3f}",
            *(
                f"{v[k]:.0f}" if v[k] is not None else "n/a"
                for k in ("latency_p50_ms", "latency_p95_ms", "latency_p99_ms")
            ),
            f"{v['pod_seconds'] / 3600:.1f}",
            str(v["replicas_max"]),
            str(v["scale_events"]),
        )
    out.print(table)
    slos = Table(title="SLOs")
    for col in ("SLO", "service", "objective", "attainment", "verdict"):
        slos.add_column(col)
    for r in summary["slos"]:
        slos.add_row(
            r["name"],
            r["service"],
            f"{r['objective']:.4f}",
            f"{r['attainment']:.4f}",
            "[green]met" if r["met"] else "[red]BREACHED",
        )
    out.print(slos)


def _fresh_run_id(parent: Path, base: str) -> str:
    """A run id no earlier run used: two runs in the same second must not overwrite each other."""
    rid, n = base, 1
    while (parent / rid).exists():
        n += 1
        rid = f"{base}-{n}"
    return rid


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"


app.command("tune")(tune_cmd)
app.command("apply")(apply_cmd)
app.command("pr")(pr_cmd)
app.command("calibrate")(calibrate_cmd)
app.command("backtest")(backtest_cmd)


def main() -> None:
    """Console-script entry point: maps capsim's errors to exit codes."""
    try:
        # Without standalone mode click returns a command's exit code instead of exiting.
        code = app(standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except InputError as e:
        err.print(f"[red]error:[/red] {e}", highlight=False, soft_wrap=True)
        sys.exit(ExitCode.BAD_INPUT)
    except ExternalError as e:
        err.print(f"[red]external system failed:[/red] {e}", highlight=False, soft_wrap=True)
        sys.exit(ExitCode.EXTERNAL)
    except (typer.Abort, KeyboardInterrupt):
        sys.exit(130)
    except Exception as e:  # click usage errors carry their own exit code 2
        import click

        if isinstance(e, click.ClickException):
            e.show()
            sys.exit(ExitCode.BAD_INPUT)
        raise
