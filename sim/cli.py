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
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from sim.errors import ExitCode, ExternalError, InputError

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
    target = write_run(result, reports / scn.name / rid, thresholds)
    _print_summary(result.summary)
    out.print(f"report: {target / 'report.md'}")
    if fail_on_slo and not result.summary["slos_met"]:
        raise typer.Exit(ExitCode.GATE_FAILED)


@app.command()
def schema() -> None:
    """Print the JSON Schema of scenario files."""
    from sim.scenario import scenario_json_schema

    sys.stdout.write(json.dumps(scenario_json_schema(), indent=2) + "\n")


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
