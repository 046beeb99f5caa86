"""Run artefacts: `timeseries.parquet`, `summary.json`, `events.csv`, PNG plots and `report.md`.

The report answers the two questions people open it with: did we meet the
SLOs, and when we did not, what were the autoscalers doing at the time. The
breach table therefore lists the worst windows with the decisions logged in
the minutes before each.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from sim.result import Result, summary_json
from sim.slo import SLOResult

BREACH_ROWS = 5
DECISIONS_BEFORE_S = 300.0


def write_run(result: Result, out_dir: Path, slo_thresholds_ms: dict[str, float]) -> Path:
    """Write every artefact into `out_dir` atomically: a temp dir renamed at the end.

    A run that fails half-way (bad input found late, a crash while plotting)
    leaves no partial report directory behind.
    """
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        result.timeseries.to_parquet(tmp / "timeseries.parquet", index=False)
        result.events.to_csv(tmp / "events.csv", index=False)
        (tmp / "summary.json").write_text(summary_json(result.summary) + "\n")
        plots = _plots(result, tmp, slo_thresholds_ms)
        (tmp / "report.md").write_text(_markdown(result, plots))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _hours(ts: pd.DataFrame) -> pd.Series:
    return ts["time_s"] / 3600.0


def _shade_breaches(ax: plt.Axes, slo_results: list[SLOResult], service: str) -> None:
    for r in slo_results:
        if r.service != service or len(r.window_start_s) < 2:
            continue
        width = float(r.window_start_s[1] - r.window_start_s[0])
        bad = r.window_good < (r.objective if r.kind == "latency" else 1.0)
        for start in r.window_start_s[bad]:
            ax.axvspan(start / 3600.0, (start + width) / 3600.0, color="tab:red", alpha=0.12, lw=0)


def _plots(result: Result, out: Path, slo_thresholds_ms: dict[str, float]) -> dict[str, list[str]]:
    files: dict[str, list[str]] = {}
    ts = result.timeseries
    for service, trace in result.traces.items():
        s = ts[ts["service"] == service]
        h = _hours(s)
        names = []

        fig, ax = plt.subplots(figsize=(10, 3.5))
        ax.plot(h, s["offered_rps"], label="offered", lw=1)
        ax.plot(h, s["served_rps"], label="served", lw=1)
        ax.plot(h, s["failed_rps"], label="failed", lw=1, color="tab:red")
        ax.set(title=f"{service}: traffic", xlabel="time (h)", ylabel="requests/s")
        _shade_breaches(ax, result.slo_results, service)
        ax.legend(loc="upper left")
        names.append(_save(fig, out / f"{service}-traffic.png"))

        fig, ax = plt.subplots(figsize=(10, 3.5))
        ax.step(h, s["replicas_desired"], where="post", label="desired", lw=1)
        ax.step(h, s["replicas_ready"], where="post", label="ready", lw=1)
        ax.step(h, s["replicas_starting"], where="post", label="starting", lw=1, alpha=0.7)
        ax.set(title=f"{service}: replicas", xlabel="time (h)", ylabel="pods")
        _shade_breaches(ax, result.slo_results, service)
        ax.legend(loc="upper left")
        names.append(_save(fig, out / f"{service}-replicas.png"))

        fig, ax = plt.subplots(figsize=(10, 3.5))
        for col, label in (("latency_p50_ms", "p50"), ("latency_p95_ms", "p95"), ("latency_p99_ms", "p99")):
            ax.plot(h, s[col], label=label, lw=1)
        if service in slo_thresholds_ms:
            ax.axhline(slo_thresholds_ms[service], color="tab:red", ls="--", label="SLO threshold")
        ax.set(title=f"{service}: latency of served requests", xlabel="time (h)", ylabel="ms")
        ax.set_yscale("log")
        _shade_breaches(ax, result.slo_results, service)
        ax.legend(loc="upper left")
        names.append(_save(fig, out / f"{service}-latency.png"))

        fig, ax = plt.subplots(figsize=(10, 3.5))
        ax.plot(h, s["metric_value"], label="metric seen by the HPA", lw=1)
        ax.plot(
            h,
            trace.metric_threshold * np.maximum(s["replicas_desired"], 1),
            label="threshold × replicas (hold line)",
            lw=1,
            ls="--",
        )
        ax.set(title=f"{service}: scaling metric vs target", xlabel="time (h)", ylabel="metric")
        ax.legend(loc="upper left")
        names.append(_save(fig, out / f"{service}-metric.png"))
        files[service] = names
    return files


def _save(fig: plt.Figure, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path.name


def breach_table(result: Result) -> pd.DataFrame:
    """The worst SLO windows, each with the scaling decisions logged shortly before it."""
    rows = []
    for r in result.slo_results:
        bad = np.flatnonzero(r.window_bad_requests > 0)
        worst = bad[np.argsort(-r.window_bad_requests[bad], kind="stable")][:BREACH_ROWS]
        for i in sorted(worst):
            start = float(r.window_start_s[i])
            ev = result.events
            near = ev[
                (ev["service"] == r.service)
                & (ev["time_s"] >= start - DECISIONS_BEFORE_S)
                & (ev["time_s"] < start + 60.0)
            ]
            rows.append(
                {
                    "slo": r.name,
                    "window_start": _clock(start),
                    "bad_requests": round(float(r.window_bad_requests[i]), 1),
                    "decisions before": "; ".join(
                        f"{_clock(t)} {c}: {reason}"
                        for t, c, reason in near[["time_s", "controller", "reason"]].itertuples(index=False)
                    )[:600]
                    or "none logged (no change and nothing limited)",
                }
            )
    return pd.DataFrame(rows)


def _clock(t_s: float) -> str:
    t = int(t_s)
    return f"{t // 86400}d {t % 86400 // 3600:02d}:{t % 3600 // 60:02d}:{t % 60:02d}"


def _markdown(result: Result, plots: dict[str, list[str]]) -> str:
    s = result.summary
    lines = [
        f"# capsim run: {result.scenario_name}",
        "",
        f"seed {result.seed}, horizon {result.horizon_s / 3600:.1f} h, step {result.step_s:g} s, "
        f"capsim {s['capsim_version']}",
        "",
        "## SLOs",
        "",
        "| SLO | service | kind | objective | attainment | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for r in s["slos"]:
        verdict = "met" if r["met"] else "**BREACHED**"
        lines.append(
            f"| {r['name']} | {r['service']} | {r['kind']} | {r['objective']:.4f} | "
            f"{r['attainment']:.4f} | {verdict} |"
        )
    lines += [
        "",
        "## Services",
        "",
        "| service | offered | failed % | p50 ms | p95 ms | p99 ms | pod-h | max pods | scale events |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, v in s["services"].items():
        lines.append(
            f"| {name} | {v['offered_requests']:.0f} | {100 * v['failed_ratio']:.3f} | "
            f"{_fmt(v['latency_p50_ms'])} | {_fmt(v['latency_p95_ms'])} | {_fmt(v['latency_p99_ms'])} | "
            f"{v['pod_seconds'] / 3600:.1f} | {v['replicas_max']} | {v['scale_events']} |"
        )
    breaches = breach_table(result)
    lines += ["", "## Largest SLO breaches and the decisions before them", ""]
    if len(breaches):
        lines.append("| SLO | window start | bad requests | decisions in the 5 min before |")
        lines.append("|---|---|---|---|")
        for row in breaches.itertuples(index=False):
            lines.append(f"| {row[0]} | {row[1]} | {row[2]} | {row[3]} |")
    else:
        lines.append("No SLO window had bad requests.")
    for service, names in plots.items():
        lines += ["", f"## {service}", ""]
        lines += [f"![{n}]({n})" for n in names]
    lines += ["", "Every scaling decision and its reason is in `events.csv`.", ""]
    return "\n".join(lines)


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.0f}"
