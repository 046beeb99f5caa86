"""`capsim tune`, `capsim apply` and `capsim pr`: from a scenario to a reviewable change.

Kept apart from sim/cli.py (which registers these commands) so the tuning
workflow's options and messages live in one place. Heavy modules (optuna,
pandas, matplotlib, dask) are imported inside the commands: `capsim --help`
stays fast.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from sim.errors import ExitCode, InputError

if TYPE_CHECKING:
    from sim.tune import Progress as TuneProgress

out = Console()
err = Console(stderr=True)


def tune_cmd(
    scenario: Annotated[Path, typer.Argument(help="Scenario file (YAML); its tune: block sets the space.")],
    trials: Annotated[
        int | None, typer.Option(min=1, help="Candidates to evaluate (default: tune.trials).")
    ] = None,
    seeds: Annotated[
        int | None, typer.Option(min=1, help="Seeds per candidate, common to all (default: tune.seeds).")
    ] = None,
    executor: Annotated[str, typer.Option(help="local, or dask://HOST:PORT for a Dask cluster.")] = "local",
    workers: Annotated[
        int | None, typer.Option(min=1, help="Local worker processes (default: every core).")
    ] = None,
    mode: Annotated[
        str | None, typer.Option(help="auto (grid when the grid fits the budget), grid or optuna.")
    ] = None,
    write: Annotated[bool, typer.Option(help="Write the recommendation into the GitOps tree.")] = False,
    reports: Annotated[Path, typer.Option(help="Directory runs are written under.")] = Path("reports"),
    run_id: Annotated[
        str | None, typer.Option(help="Name of the tune directory (default: tune-<time>).")
    ] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Search ScaledObject (and NodePool) settings for the cheapest config that meets every SLO."""
    from sim import load_scenario
    from sim.parallel import make_executor
    from sim.tune import tune
    from sim.tune_report import write_tune

    if mode not in (None, "auto", "grid", "optuna"):
        raise InputError(f"unknown mode {mode!r}", field="--mode", valid="auto, grid, optuna")
    scn = load_scenario(scenario)
    pool = make_executor(executor, workers)
    n_trials = trials or scn.tune.trials
    n_seeds = seeds or scn.tune.seeds
    reproduce = f"capsim tune {scenario} --trials {n_trials} --seeds {n_seeds}" + (
        f" --mode {mode}" if mode else ""
    )
    out.print(f"tuning {scn.name}: {pool.describe()}, {n_seeds} seeds per candidate", highlight=False)
    if quiet or not out.is_terminal:
        run = tune(scn, executor=pool, trials=n_trials, seeds=n_seeds, mode=mode)  # type: ignore[arg-type]
    else:
        with Progress(
            TextColumn("[bold]candidates"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[best]}"),
            TimeRemainingColumn(),
            console=out,
            transient=True,
        ) as bar:
            task = bar.add_task("tune", total=None, best="best: none feasible yet")

            def update(p: TuneProgress) -> None:
                best = "none feasible yet" if p.best_cost_usd is None else f"${p.best_cost_usd:,.2f}/month"
                bar.update(task, completed=p.done, total=p.total, best=f"best: {best}")

            run = tune(scn, executor=pool, trials=n_trials, seeds=n_seeds, mode=mode, progress=update)  # type: ignore[arg-type]
    rid = run_id or f"tune-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    target = write_tune(run, reports / scn.name / rid, reproduce)
    rec = json.loads((target / "recommendation.json").read_text())
    _print_recommendation(rec, run.simulations, run.wall_time_s)
    out.print(f"report: {target / 'recommendation.md'}", highlight=False)
    if rec["status"] == "none_feasible":
        raise typer.Exit(ExitCode.GATE_FAILED)
    if write and rec["status"] == "recommended":
        _apply(target / "recommendation.json", dry_run=False)


def apply_cmd(
    recommendation: Annotated[Path, typer.Argument(help="recommendation.json written by capsim tune.")],
    dry_run: Annotated[bool, typer.Option(help="Show the diff, write nothing.")] = False,
    gitops_root: Annotated[
        Path | None, typer.Option(help="Write into this copy of the GitOps tree instead of the tuned one.")
    ] = None,
) -> None:
    """Write a recommendation's field changes into the GitOps tree (only those fields change)."""
    _apply(recommendation, dry_run, gitops_root)


def pr_cmd(
    recommendation: Annotated[Path, typer.Argument(help="recommendation.json written by capsim tune.")],
    branch: Annotated[
        str | None, typer.Option(help="Branch name (default: capsim/tune-<scenario>-<time>).")
    ] = None,
    push: Annotated[bool, typer.Option(help="Push the branch to the remote (never forced).")] = False,
    open_pr: Annotated[bool, typer.Option("--open", help="Open the PR with gh (needs --push).")] = False,
    remote: Annotated[str, typer.Option(help="Remote to push to.")] = "origin",
) -> None:
    """Create a branch with the recommendation committed, and the PR body beside the recommendation."""
    from sim.gitops import create_pr, gh_ready

    pr = create_pr(
        recommendation, _writer(dry_run=False), push=push, open_pr=open_pr, remote=remote, branch=branch
    )
    out.print(
        f"branch {pr.branch} at {pr.commit[:12]} in {pr.repo}: {len(pr.files)} file(s) changed",
        highlight=False,
    )
    for f in pr.files:
        out.print(f"  {f}", highlight=False)
    out.print(f"PR body: {pr.body_file}", highlight=False)
    if pr.url:
        out.print(f"opened: {pr.url}", highlight=False)
    elif not push:
        problem = gh_ready()
        how = (
            f"git push -u {remote} {pr.branch} && gh pr create --head {pr.branch} --body-file {pr.body_file}"
        )
        out.print(f"not pushed (pass --push --open, or run: {how})", highlight=False, soft_wrap=True)
        if problem:
            out.print(problem, highlight=False)


def _writer(dry_run: bool, gitops_root: Path | None = None) -> Any:
    from sim.gitops import apply_recommendation

    def show(diff: str) -> None:
        sys.stdout.write(diff)
        sys.stdout.flush()

    return lambda rec: apply_recommendation(rec, dry_run=dry_run, show=show, gitops_root=gitops_root)


def _apply(path: Path, dry_run: bool, gitops_root: Path | None = None) -> None:
    try:
        rec = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read the recommendation: {exc}", file=path) from exc
    if rec.get("status") != "recommended":
        out.print(f"nothing to write: status {rec.get('status')!r}", highlight=False)
        return
    files = _writer(dry_run, gitops_root)(rec)
    verb = "would change" if dry_run else "changed"
    out.print(f"{verb} {len(files)} file(s)", highlight=False)
    for f in files:
        out.print(f"  {f}", highlight=False)
    for a in rec.get("advice", []):
        out.print(f"[yellow]advice, not written:[/yellow] {a['kind']}/{a['name']} {a['field']}: {a['risk']}")


def _print_recommendation(rec: dict[str, Any], simulations: int, wall_s: float) -> None:
    from rich.table import Table

    before, after = rec["before"], rec["after"]
    out.print(
        f"{rec['search']['candidates']} candidates, {simulations} simulations in {wall_s:.1f} s "
        f"({rec['search']['mode']})",
        highlight=False,
    )
    table = Table(title=f"{rec['scenario']}: {rec['status'].replace('_', ' ')}")
    for col in ("", "current", "recommended"):
        table.add_column(col)

    def cost(f: dict[str, Any] | None) -> str:
        return "n/a" if f is None else f"${f['cost_month_usd']['mean']:,.2f}/month"

    table.add_row("cost", cost(before), cost(after))
    for name, b in before["slos"].items():
        a = after["slos"][name]["worst"] if after else None
        table.add_row(
            f"{name} (≥ {b['required']:.4f})",
            f"{b['worst']:.4f}",
            "n/a" if a is None else f"{a:.4f}",
        )
    out.print(table)
    for c in rec["changes"]:
        out.print(f"  {c['kind']}/{c['name']} {c['field']}: {c['before']} -> {c['after']}", highlight=False)
