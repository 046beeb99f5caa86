"""Run artefacts: timeseries, summary, events, PNG plots, `report.md` and a self-contained `report.html`.

The report answers the two questions people open it with: did we meet the
SLOs, and when we did not, what were the autoscalers doing at the time. The
breach table therefore lists the worst windows with the decisions logged in
the minutes before each. `report.html` carries the same content with the
plots embedded, so it can be attached to a ticket or mailed to a manager as
one file.

More files let `capsim export` write the run as Prometheus series later
without re-running it: `latency_histogram.parquet` (per-step bucket counts, the
only faithful form of latency), `metrics.json` (the metric names and labels
the real service's series have) and, for runs with nodes, `nodes.parquet`
(`Result.nodes`: node counts per time_s, nodepool, instance_type, capacity_type).
"""

from __future__ import annotations

import base64
import html
import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

# Figures are built without pyplot: no global backend is chosen or changed, so a notebook that
# writes a report keeps showing its own inline plots, and nothing needs a display.
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from sim.latency import BUCKETS_S
from sim.result import Result, summary_json
from sim.slo import SLOResult

if TYPE_CHECKING:
    from sim.scenario import LoadedScenario

BREACH_ROWS = 5
DECISIONS_BEFORE_S = 300.0
BUCKET_LABELS = [repr(float(b)) for b in BUCKETS_S] + ["+Inf"]  # as prometheus_client renders `le`
BeforeAfter = Sequence[Mapping[str, Any]] | pd.DataFrame


def write_run(
    result: Result,
    out_dir: Path,
    slo_thresholds_ms: dict[str, float],
    scenario: LoadedScenario | None = None,
    before_after: BeforeAfter | None = None,
) -> Path:
    """Write every artefact into `out_dir` atomically: a temp dir renamed at the end.

    A run that fails half-way (bad input found late, a crash while plotting)
    leaves no partial report directory behind. With the scenario, plots draw
    each SLO's own threshold and maxReplicaCount, and `metrics.json` has the
    service's real metric names; `before_after` (rows of a tuning comparison,
    else `summary["tuning"]["before_after"]` when present) adds that table.
    """
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp's 0700 would hide the report from the rest of the team
    try:
        result.timeseries.to_parquet(tmp / "timeseries.parquet", index=False)
        histogram_frame(result).to_parquet(tmp / "latency_histogram.parquet", index=False)
        nodes = getattr(result, "nodes", None)  # runs with Karpenter: time_s, nodepool, instance_type, ...
        if isinstance(nodes, pd.DataFrame) and len(nodes):
            nodes.to_parquet(tmp / "nodes.parquet", index=False)
        (tmp / "metrics.json").write_text(json.dumps(metric_identity(result, scenario), indent=2) + "\n")
        result.events.to_csv(tmp / "events.csv", index=False)
        (tmp / "summary.json").write_text(summary_json(result.summary) + "\n")
        lines = _slo_lines(result, slo_thresholds_ms, scenario)
        max_replicas = _max_replicas(scenario)
        plots = _plots(result, tmp, lines, max_replicas)
        rows = _before_after_rows(result.summary, before_after)
        (tmp / "report.md").write_text(_markdown(result, plots, rows))
        (tmp / "report.html").write_text(render_html(result, plots, tmp, rows))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def histogram_frame(result: Result) -> pd.DataFrame:
    """Per-step latency bucket counts (non-cumulative, one column per `le`), one row per service and step."""
    frames = []
    for name, tr in result.traces.items():
        frame = pd.DataFrame(np.asarray(tr.hist, dtype=float), columns=BUCKET_LABELS)
        frame.insert(0, "time_s", np.arange(len(frame)) * result.step_s)
        frame.insert(0, "service", name)
        latency_sum = getattr(tr, "latency_sum_s", None)
        if latency_sum is not None:
            frame["latency_sum_s"] = np.asarray(latency_sum, dtype=float)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["service", "time_s"])


def metric_identity(result: Result, scenario: LoadedScenario | None) -> dict[str, Any]:
    """The names and labels the real service's series carry, so an export lines up with them."""
    services: dict[str, Any] = {}
    for name in result.traces:
        svc = next((s for s in scenario.services if s.name == name), None) if scenario else None
        if svc is None:
            labels = {"namespace": "default", "service": name, "job": name}
            services[name] = {
                "labels": labels,
                "requests_total": "http_requests_total",
                "duration": "http_request_duration_seconds",
                "namespace": "default",
                "deployment": name,
                "horizontalpodautoscaler": f"keda-hpa-{name}",
            }
            continue
        labels = dict(svc.metrics.labels)
        services[name] = {
            "labels": labels,
            "requests_total": svc.metrics.requests_total,
            "duration": svc.metrics.duration,
            "namespace": labels.get("namespace", "default"),
            "deployment": svc.workload.name,
            # KEDA names the HPA it generates keda-hpa-<ScaledObject name>.
            "horizontalpodautoscaler": f"keda-hpa-{svc.scaled_object.name}",
        }
    return {
        "scenario": result.scenario_name,
        "seed": result.seed,
        "step_s": result.step_s,
        "horizon_s": result.horizon_s,
        "services": services,
    }


@dataclass(frozen=True)
class SLOLine:
    name: str
    threshold_ms: float
    percentile: float | None


def _slo_lines(
    result: Result, thresholds_ms: dict[str, float], scenario: LoadedScenario | None
) -> dict[str, list[SLOLine]]:
    if scenario is None:
        return {svc: [SLOLine("SLO threshold", ms, None)] for svc, ms in thresholds_ms.items()}
    lines: dict[str, list[SLOLine]] = {}
    for slo in scenario.slos:
        lines.setdefault(slo.service, []).append(SLOLine(slo.name, slo.threshold_s * 1000.0, slo.percentile))
    return lines


def _max_replicas(scenario: LoadedScenario | None) -> dict[str, int]:
    if scenario is None:
        return {}
    return {
        s.name: s.scaled_object.max_replica_count
        for s in scenario.services
        if s.scaled_object.max_replica_count is not None
    }


def _hours(ts: pd.DataFrame) -> pd.Series:
    return ts["time_s"] / 3600.0


def _shade_breaches(ax: Axes, slo_results: list[SLOResult], service: str) -> None:
    """Shade the windows where an SLO of this service was not met, once in the legend."""
    labelled = False
    for r in slo_results:
        if r.service != service or len(r.window_start_s) < 2:
            continue
        width = float(r.window_start_s[1] - r.window_start_s[0])
        bad = r.window_good < (r.objective if r.kind == "latency" else 1.0)
        for start in r.window_start_s[bad]:
            ax.axvspan(
                start / 3600.0,
                (start + width) / 3600.0,
                color="tab:red",
                alpha=0.12,
                lw=0,
                label=None if labelled else "SLO violated",
            )
            labelled = True


def _plots(
    result: Result, out: Path, slo_lines: dict[str, list[SLOLine]], max_replicas: dict[str, int]
) -> dict[str, list[str]]:
    files: dict[str, list[str]] = {}
    ts = result.timeseries
    title = result.scenario_name
    for service, trace in result.traces.items():
        s = ts[ts["service"] == service]
        h = _hours(s)
        names = []

        fig, ax = _figure()
        ax.plot(h, s["offered_rps"], label="offered", lw=1)
        ax.plot(h, s["served_rps"], label="served", lw=1)
        ax.plot(h, s["failed_rps"], label="failed", lw=1, color="tab:red")
        ax.set(title=f"{title} · {service}: traffic", xlabel="time (h)", ylabel="requests/s")
        ax.set_ylim(bottom=0)
        _shade_breaches(ax, result.slo_results, service)
        _legend(ax)
        names.append(_save(fig, out / f"{service}-traffic.png"))

        fig, ax = _figure()
        ax.step(h, s["replicas_desired"], where="post", label="desired", lw=1)
        ax.step(h, s["replicas_ready"], where="post", label="ready", lw=1)
        ax.step(h, s["replicas_starting"], where="post", label="starting", lw=1, alpha=0.7)
        if service in max_replicas:
            ax.axhline(max_replicas[service], color="black", ls=":", lw=1, label="maxReplicaCount")
        ax.set(title=f"{title} · {service}: replicas", xlabel="time (h)", ylabel="pods")
        ax.set_ylim(bottom=0)
        _shade_breaches(ax, result.slo_results, service)
        _legend(ax)
        names.append(_save(fig, out / f"{service}-replicas.png"))

        fig, ax = _figure()
        for col, label in (("latency_p50_ms", "p50"), ("latency_p95_ms", "p95"), ("latency_p99_ms", "p99")):
            ax.plot(h, s[col], label=label, lw=1)
        for i, line in enumerate(slo_lines.get(service, [])):
            what = f"p{line.percentile:g} " if line.percentile is not None else ""
            ax.axhline(
                line.threshold_ms,
                color="tab:red",
                ls=("--", "-.", ":")[i % 3],
                lw=1,
                label=f"SLO {line.name}: {what}≤ {line.threshold_ms:g} ms",
            )
        ax.set(
            title=f"{title} · {service}: latency of served requests",
            xlabel="time (h)",
            ylabel="latency (ms, log scale)",
        )
        ax.set_yscale("log")
        _shade_breaches(ax, result.slo_results, service)
        _legend(ax)
        names.append(_save(fig, out / f"{service}-latency.png"))

        fig, ax = _figure()
        ax.plot(h, s["metric_value"], label="metric seen by the HPA", lw=1)
        ax.plot(
            h,
            trace.metric_threshold * np.maximum(s["replicas_desired"], 1),
            label="threshold × desired replicas (hold line)",
            lw=1,
            ls="--",
        )
        ax.set(
            title=f"{title} · {service}: scaling metric vs target ({trace.metric_threshold:g} per pod)",
            xlabel="time (h)",
            ylabel="metric value (trigger units)",
        )
        ax.set_ylim(bottom=0)
        _shade_breaches(ax, result.slo_results, service)
        _legend(ax)
        names.append(_save(fig, out / f"{service}-metric.png"))
        files[service] = names
    if result.cluster is not None:
        files["nodes"] = _cluster_plots(result, out, title)
    return files


def _cluster_plots(result: Result, out: Path, title: str) -> list[str]:
    """Nodes stacked by instance type, the cost rate, and pods waiting for a node."""
    assert result.cluster is not None
    c = result.cluster
    wide = c.nodes.pivot_table(index="time_s", columns="instance_type", values="nodes", aggfunc="sum")
    hours = wide.index.to_numpy() / 3600.0
    names = []
    fig, ax = _figure()
    if wide.shape[1]:
        order = wide.max().sort_values(ascending=False).index
        ax.stackplot(hours, *(wide[col].to_numpy() for col in order), labels=list(order), step="post")
    ax.set(title=f"{title} · nodes by instance type", xlabel="time (h)", ylabel="nodes")
    _shade_all_breaches(ax, result)
    _legend(ax)
    names.append(_save(fig, out / "nodes-by-type.png"))

    fig, ax = _figure()
    t = np.arange(len(c.cost_usd_per_h)) * result.step_s / 3600.0
    ax.step(t, c.cost_usd_per_h, where="post", lw=1, label="node cost rate")
    ax.set(title=f"{title} · cost rate", xlabel="time (h)", ylabel="USD per hour")
    ax.set_ylim(bottom=0)
    _legend(ax)
    names.append(_save(fig, out / "cost-rate.png"))

    fig, ax = _figure()
    ax.step(t, c.pods_pending, where="post", lw=1, color="tab:orange", label="pods waiting for a node")
    ax.set(title=f"{title} · pending pods", xlabel="time (h)", ylabel="pods")
    ax.set_ylim(bottom=0)
    _shade_all_breaches(ax, result)
    _legend(ax)
    names.append(_save(fig, out / "pending-pods.png"))
    return names


def _shade_all_breaches(ax: Axes, result: Result) -> None:
    for service in result.traces:
        _shade_breaches(ax, result.slo_results, service)


def _legend(ax: Axes) -> None:
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", fontsize="small", framealpha=0.85)


def _figure() -> tuple[Figure, Axes]:
    fig = Figure(figsize=(10, 3.5))
    return fig, fig.subplots()


def _save(fig: Figure, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
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


def _markdown(result: Result, plots: dict[str, list[str]], before_after: list[dict[str, Any]]) -> str:
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
    cost = cost_rows(s)
    if cost:
        lines += ["", "## Cost", "", "| item | value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in cost]
    if before_after:
        cols = list(before_after[0])
        lines += ["", "## Tuning: before and after", "", "| " + " | ".join(cols) + " |"]
        lines.append("|" + "---|" * len(cols))
        lines += ["| " + " | ".join(_cell(row.get(c)) for c in cols) + " |" for row in before_after]
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


def verdict(summary: Mapping[str, Any]) -> tuple[bool, str]:
    """The one line a reader wants first: were the SLOs met, and if not, which broke."""
    broken = [r["name"] for r in summary.get("slos", []) if not r["met"]]
    if not summary.get("slos"):
        return True, "No SLOs declared"
    if broken:
        return False, f"SLO breached: {', '.join(broken)}"
    return True, f"All {len(summary['slos'])} SLOs met"


def cost_rows(summary: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Cost and node figures from the summary when the run modelled nodes; breakdowns one row per item."""
    rows: list[tuple[str, str]] = []
    for block in ("cost", "nodes"):
        figures = summary.get(block)
        if not isinstance(figures, Mapping):
            continue
        for key, value in figures.items():
            label = f"{block}: {key.replace('_', ' ')}" if block == "nodes" else key.replace("_", " ")
            if isinstance(value, int | float) and not isinstance(value, bool):
                rows.append((label, _cell(value)))
            elif isinstance(value, Mapping):
                rows.extend((f"{label}: {k}", _cell(v)) for k, v in value.items())
    for stuck in summary.get("unschedulable", []) or []:
        rows.append((f"unschedulable pod {stuck['pod']}", str(stuck["reason"])))
    return rows


def _before_after_rows(summary: Mapping[str, Any], given: BeforeAfter | None) -> list[dict[str, Any]]:
    if given is None:
        tuning = summary.get("tuning")
        given = tuning.get("before_after") if isinstance(tuning, Mapping) else None
    if given is None:
        return []
    if isinstance(given, pd.DataFrame):
        return [{str(k): v for k, v in row.items()} for row in given.to_dict(orient="records")]
    return [dict(row) for row in given]


def _cell(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e5 else f"{value:,.0f}"
    return str(value)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:.5rem 0 1.5rem}
th,td{border:1px solid #ccc;padding:.25rem .6rem;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
.verdict{font-size:1.3rem;font-weight:600;padding:.6rem 1rem;border-radius:.4rem;display:inline-block}
.verdict.met{background:#e3f5e1;color:#1d5e1a}.verdict.breached{background:#fbe3e1;color:#8a1c12}
.breached-cell{color:#8a1c12;font-weight:600}img{max-width:100%;display:block;margin:.5rem 0 1rem}
.meta{color:#666}
"""


def render_html(
    result: Result, plots: dict[str, list[str]], plot_dir: Path, before_after: list[dict[str, Any]]
) -> str:
    """One self-contained page: the verdict, tables, and every plot embedded as a data URI."""
    s = result.summary
    ok, text = verdict(s)
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>capsim run: {e(result.scenario_name)}</title><style>{_CSS}</style></head><body>",
        f"<h1>capsim run: {e(result.scenario_name)}</h1>",
        f'<p class="meta">seed {result.seed}, horizon {result.horizon_s / 3600:.1f} h, '
        f"step {result.step_s:g} s, capsim {e(str(s['capsim_version']))}</p>",
        f'<p id="verdict" class="verdict {"met" if ok else "breached"}">{e(text)}</p>',
        "<h2>SLOs</h2>",
        _html_table(
            ["SLO", "service", "kind", "objective", "attainment", "verdict"],
            [
                [
                    r["name"],
                    r["service"],
                    r["kind"],
                    f"{r['objective']:.4f}",
                    f"{r['attainment']:.4f}",
                    "met" if r["met"] else "BREACHED",
                ]
                for r in s["slos"]
            ],
        ),
        "<h2>Services</h2>",
        _html_table(
            [
                "service",
                "offered",
                "failed %",
                "p50 ms",
                "p95 ms",
                "p99 ms",
                "pod-h",
                "max pods",
                "scale events",
            ],
            [
                [
                    name,
                    f"{v['offered_requests']:.0f}",
                    f"{100 * v['failed_ratio']:.3f}",
                    _fmt(v["latency_p50_ms"]),
                    _fmt(v["latency_p95_ms"]),
                    _fmt(v["latency_p99_ms"]),
                    f"{v['pod_seconds'] / 3600:.1f}",
                    str(v["replicas_max"]),
                    str(v["scale_events"]),
                ]
                for name, v in s["services"].items()
            ],
        ),
    ]
    cost = cost_rows(s)
    if cost:
        parts += ["<h2>Cost</h2>", _html_table(["item", "value"], [list(r) for r in cost])]
    if before_after:
        cols = list(before_after[0])
        parts += [
            '<h2 id="before-after">Tuning: before and after</h2>',
            _html_table(cols, [[_cell(row.get(c)) for c in cols] for row in before_after]),
        ]
    breaches = breach_table(result)
    parts.append("<h2>Largest SLO breaches and the decisions before them</h2>")
    if len(breaches):
        parts.append(
            _html_table(
                ["SLO", "window start", "bad requests", "decisions in the 5 min before"],
                [[str(x) for x in row] for row in breaches.itertuples(index=False)],
            )
        )
    else:
        parts.append("<p>No SLO window had bad requests.</p>")
    for service, names in plots.items():
        parts.append(f"<h2>{e(service)}</h2>")
        for n in names:
            data = base64.b64encode((plot_dir / n).read_bytes()).decode("ascii")
            parts.append(f'<img alt="{e(n)}" src="data:image/png;base64,{data}">')
    parts += [
        '<p class="meta">Every scaling decision and its reason is in events.csv.</p>',
        "</body></html>",
        "",
    ]
    return "\n".join(parts)


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="breached-cell">{e(c)}</td>' if c == "BREACHED" else f"<td>{e(c)}</td>" for c in row
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.0f}"
