"""`capsim backtest`: replay what the cluster saw through the simulator and compare with what it did.

The recorded request rate (every request the service got, served or failed)
becomes the scenario's traffic, replayed step for step with deterministic
arrivals, so the simulated autoscaler sees the same load the real one did;
the manifests are the scenario's (the ones that were live); the run starts
from the recorded replica count. Then simulated and recorded replicas and
latency are compared on the recorded grid:

- replicas: mean absolute error and bias (simulated − recorded) of the
  Deployment's spec replicas, skipping a warm-up in which the simulated HPA
  has no history (its stabilisation window), so start-up differences do not
  count against the model;
- scale-up lag: for each recorded scale-up, how much later (or earlier) the
  simulation first reached the new count;
- latency: p95 per interval from each side's histogram, and the p95 of the
  whole window from summed histograms;
- nodes where the history records them, against the simulated count when
  the scenario models a cluster: shown, not scored, since a real cluster's
  node set depends on its history and the simulated one starts packed.

A verdict ("good", "fair", "poor") with its reasons says whether to trust the
simulator for this service; the report has a plot of both.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from sim.calibrate.calibration import ServiceHistory, Target, read_history
from sim.calibrate.history import Issue
from sim.calibrate.querysets import Catalog
from sim.calibrate.signals import Histogram, read_gauge
from sim.calibrate.source import Source
from sim.calibrate.window import iso
from sim.errors import InputError
from sim.latency import quantile
from sim.result import Result
from sim.scenario import LoadedScenario, LoadedService
from sim.workload.traffic import DeterministicArrivals, ReplayTraffic

# How close counts and timings must be for each verdict: (good, fair).
REPLICA_MAE = (0.5, 1.0)  # replicas, or 10 % / 20 % of the mean when that is larger
REPLICA_MAE_SHARE = (0.1, 0.2)
LAG_S = (60.0, 180.0)
P95_ERROR = (0.25, 0.5)
MIN_LATENCY_REQUESTS = 20  # an interval's p95 is compared only with this many requests on both sides
LAG_SEARCH_S = 900.0


@dataclass
class ServiceBacktest:
    """Recorded and simulated series of one service on the recorded grid, and the figures."""

    service: str
    times_s: np.ndarray  # grid points
    recorded_replicas: np.ndarray
    simulated_replicas: np.ndarray
    recorded_ready: np.ndarray
    simulated_ready: np.ndarray
    offered_rps: np.ndarray  # per interval
    recorded_p95_s: np.ndarray  # per interval
    simulated_p95_s: np.ndarray
    latency_kind: str | None
    recorded_nodes: np.ndarray | None
    simulated_nodes: np.ndarray | None
    warmup_s: float
    figures: dict[str, Any] = field(default_factory=dict)
    verdict: str = ""
    reasons: list[str] = field(default_factory=list)
    issues: list[dict[str, Any]] = field(default_factory=list)


def _replay_csv(path: Path, step_s: float, rps: np.ndarray) -> None:
    rows = ["t_s,rps"] + [
        f"{i * step_s:g},{'' if not math.isfinite(r) else f'{r:.6f}'}" for i, r in enumerate(rps.tolist())
    ]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


def _target(svc: LoadedService) -> Target:
    labels = svc.metrics.labels
    return Target(
        service=labels.get("service", svc.name),
        namespace=labels.get("namespace", "default"),
        deployment=svc.workload.name,
        hpa=f"keda-hpa-{svc.scaled_object.name}",
    )


def replay_scenario(
    scn: LoadedScenario, histories: dict[str, ServiceHistory], work_dir: Path
) -> tuple[LoadedScenario, float]:
    """The scenario with each service's traffic replaced by its recorded rate, over the recorded window."""
    grids = {h.grid.step_s for h in histories.values()} | {h.grid.start_s for h in histories.values()}
    first = next(iter(histories.values()))
    if len(grids) != 2:
        raise InputError("the services' histories do not share one grid", field="--service")
    step = first.grid.step_s
    if not math.isclose(step / scn.step_s, round(step / scn.step_s)):
        raise InputError(
            f"the history's step {step:g} s is not a multiple of the scenario's step {scn.step_s:g} s",
            file=scn.file,
            field="step",
            valid="a scenario step that divides the history step (e.g. 5s or 15s for 30 s)",
        )
    services = []
    for svc in scn.services:
        hist = histories.get(svc.name)
        if hist is None:
            continue
        csv = work_dir / f"{svc.name}.replay.csv"
        rps = hist.requests.offered / step
        known = np.flatnonzero(np.isfinite(rps))
        if len(known) and known[0] > 0:
            # The replay's clock starts at its first row: hold the first recorded rate before it.
            rps[: known[0]] = rps[known[0]]
            hist.issues.append(
                Issue(
                    "missing",
                    "traffic",
                    f"no recorded requests before {iso(float(hist.grid.times[known[0]]))}",
                    "the first recorded rate is replayed before it",
                    hist.grid.start_s,
                    float(hist.grid.times[known[0]]),
                )
            )
        _replay_csv(csv, step, rps)
        traffic = ReplayTraffic(
            kind="replay",
            path=str(csv.resolve()),
            timestamp_column="t_s",
            rate_column="rps",
            interpolation="previous",
            past_end="hold",
            arrivals=DeterministicArrivals(kind="deterministic"),
        )
        start_replicas = hist.spec_replicas.points[np.isfinite(hist.spec_replicas.points)]
        initial = int(start_replicas[0]) if len(start_replicas) else svc.initial_replicas
        services.append(dataclasses.replace(svc, traffic=traffic, initial_replicas=initial))
    horizon = first.grid.n_intervals * step
    return dataclasses.replace(scn, services=tuple(services), horizon_s=horizon, slos=()), horizon


def p95_from_buckets(counts: np.ndarray, bounds_s: np.ndarray) -> np.ndarray:
    """Per-row p95 from non-cumulative bucket counts (+Inf last), interpolated like histogram_quantile."""
    counts = np.nan_to_num(np.asarray(counts, dtype=float))
    cum = np.cumsum(counts, axis=1)
    total = cum[:, -1]
    rank = 0.95 * total
    idx = np.minimum(np.sum(cum < rank[:, None], axis=1), counts.shape[1] - 1)
    lower = np.concatenate(([0.0], bounds_s))[idx]
    upper = np.append(bounds_s, bounds_s[-1])[idx]
    prev = np.where(idx > 0, np.take_along_axis(cum, np.maximum(idx - 1, 0)[:, None], 1)[:, 0], 0.0)
    inb = np.take_along_axis(counts, idx[:, None], 1)[:, 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(inb > 0, (rank - prev) / inb, 0.0)
    value = lower + (upper - lower) * np.clip(frac, 0.0, 1.0)
    return np.where(total > 0, value, np.nan)


def _scale_up_lags(times: np.ndarray, rec: np.ndarray, sim: np.ndarray) -> list[float]:
    """For each recorded increase, when the simulation first reached the new count (relative seconds)."""
    lags = []
    step = float(times[1] - times[0]) if len(times) > 1 else 1.0
    window = int(LAG_SEARCH_S / step)
    for i in (np.flatnonzero(np.diff(rec) > 0) + 1).tolist():
        level = rec[i]
        lo, hi = max(0, i - window), min(len(sim), i + window + 1)
        reached = np.flatnonzero(sim[lo:hi] >= level)
        if len(reached):
            j = lo + int(reached[0])
            lags.append(float(times[j] - times[i]))
    return lags


def compare(
    svc_name: str,
    hist: ServiceHistory,
    result: Result,
    scn_step_s: float,
    warmup_s: float,
    nodes: np.ndarray | None,
) -> ServiceBacktest:
    """Simulated against recorded, on the recorded grid (`nodes`: the recorded node count, if any)."""
    grid = hist.grid
    tr = result.traces[svc_name]
    per = round(grid.step_s / scn_step_s)
    idx = np.minimum(np.arange(grid.n_points) * per, len(tr.replicas_desired) - 1)
    sim_rep = tr.replicas_desired[idx].astype(float)
    sim_ready = tr.replicas_ready[idx].astype(float)
    rec_rep = hist.spec_replicas.points
    rec_ready = hist.ready.points
    # Latency per recorded interval: sum the simulated steps of each interval.
    n_int = grid.n_intervals
    sim_hist = np.asarray(tr.hist[: n_int * per]).reshape(n_int, per, -1).sum(axis=1)
    sim_p95 = quantile(0.95, sim_hist)
    response: Histogram | None = hist.response
    rec_p95 = np.full(n_int, np.nan)
    kind = None
    if response is not None:
        rec_p95 = p95_from_buckets(response.counts, response.bounds_s)
        kind = "response time (ingress)" if response is hist.histograms.get("ingress") else "app histogram"
    bt = ServiceBacktest(
        svc_name,
        grid.times,
        rec_rep,
        sim_rep,
        rec_ready,
        sim_ready,
        hist.requests.offered / grid.step_s,
        rec_p95,
        sim_p95,
        kind,
        nodes,
        _simulated_nodes(result, idx) if nodes is not None else None,
        warmup_s,
        issues=[i.as_dict() for i in hist.issues],
    )
    _figures(bt, response, sim_hist)
    return bt


def _simulated_nodes(result: Result, idx: np.ndarray) -> np.ndarray | None:
    """The simulated node count at the recorded grid points (None when the scenario has no cluster)."""
    frame = result.nodes
    if frame is None or not len(frame):
        return None
    totals = frame.groupby("time_s")["nodes"].sum()
    steps = np.rint(totals.index.to_numpy(dtype=float) / result.step_s).astype(np.int64)
    per_step = np.zeros(int(steps.max()) + 1)
    per_step[steps] = totals.to_numpy(dtype=float)
    return per_step[np.minimum(idx, len(per_step) - 1)]


def _figures(bt: ServiceBacktest, response: Histogram | None, sim_hist: np.ndarray) -> None:
    t = bt.times_s - bt.times_s[0]
    use = (t >= bt.warmup_s) & np.isfinite(bt.recorded_replicas)
    err = bt.simulated_replicas[use] - bt.recorded_replicas[use]
    f: dict[str, Any] = {"points": int(use.sum())}
    mean_rec = float(np.mean(bt.recorded_replicas[use])) if use.any() else math.nan
    f["replicas_recorded_mean"] = mean_rec
    f["replicas_mae"] = float(np.mean(np.abs(err))) if len(err) else math.nan
    f["replicas_bias"] = float(np.mean(err)) if len(err) else math.nan
    f["replicas_exact_share"] = float(np.mean(err == 0)) if len(err) else math.nan
    lags = _scale_up_lags(bt.times_s[use], bt.recorded_replicas[use], bt.simulated_replicas[use])
    events = int(np.sum(np.diff(bt.recorded_replicas[use]) > 0)) if use.any() else 0
    f["scale_up_events"] = events
    f["scale_up_matched"] = len(lags)
    f["scale_up_lag_median_s"] = float(np.median(lags)) if lags else math.nan
    f["scale_up_lag_mean_abs_s"] = float(np.mean(np.abs(lags))) if lags else math.nan
    if response is not None:
        t_int = t[1:]
        n_rec = np.nan_to_num(response.counts).sum(axis=1)
        ok = (
            (t_int >= bt.warmup_s)
            & (n_rec >= MIN_LATENCY_REQUESTS)
            & (sim_hist.sum(axis=1) >= MIN_LATENCY_REQUESTS)
        )
        ok &= np.isfinite(bt.recorded_p95_s) & np.isfinite(bt.simulated_p95_s)
        if ok.any():
            d = (bt.simulated_p95_s[ok] - bt.recorded_p95_s[ok]) * 1000.0
            f["latency_intervals"] = int(ok.sum())
            f["p95_mae_ms"] = float(np.mean(np.abs(d)))
            f["p95_bias_ms"] = float(np.mean(d))
            rec_all = p95_from_buckets(np.nansum(response.counts[ok], axis=0)[None, :], response.bounds_s)[0]
            sim_all = float(quantile(0.95, sim_hist[ok].sum(axis=0)))
            f["p95_window_recorded_ms"] = float(rec_all) * 1000.0
            f["p95_window_simulated_ms"] = sim_all * 1000.0
            f["p95_window_rel_error"] = (sim_all - rec_all) / rec_all if rec_all > 0 else math.nan
    if bt.recorded_nodes is not None:
        rec_n = bt.recorded_nodes[use]
        finite = np.isfinite(rec_n)
        f["nodes_recorded_mean"] = float(rec_n[finite].mean()) if finite.any() else math.nan
        if bt.simulated_nodes is not None and finite.any():
            d = bt.simulated_nodes[use][finite] - rec_n[finite]
            f["nodes_mae"] = float(np.mean(np.abs(d)))
            f["nodes_bias"] = float(np.mean(d))
    bt.figures = f
    bt.verdict, bt.reasons = verdict(f)


def verdict(f: dict[str, Any]) -> tuple[str, list[str]]:
    """Grade "good" when every figure is within its first bound, "fair" within its second, else "poor"."""
    grades: list[int] = []
    reasons = []
    mean = f.get("replicas_recorded_mean", math.nan)
    mae = f.get("replicas_mae", math.nan)
    if math.isfinite(mae):
        bounds = [max(b, s * mean) for b, s in zip(REPLICA_MAE, REPLICA_MAE_SHARE, strict=True)]
        g = _grade(mae, bounds)
        grades.append(g)
        reasons.append(f"replicas MAE {mae:.2f} (good ≤ {bounds[0]:.2f}, fair ≤ {bounds[1]:.2f})")
    else:
        reasons.append("no recorded replicas to compare")
        grades.append(2)
    lag = f.get("scale_up_lag_median_s", math.nan)
    if math.isfinite(lag):
        grades.append(_grade(abs(lag), LAG_S))
        reasons.append(f"median scale-up lag {lag:+.0f} s (good ≤ {LAG_S[0]:g} s, fair ≤ {LAG_S[1]:g} s)")
    if f.get("scale_up_events", 0) and f.get("scale_up_matched", 0) < f["scale_up_events"]:
        missed = f["scale_up_events"] - f["scale_up_matched"]
        grades.append(1 if missed <= 0.2 * f["scale_up_events"] else 2)
        reasons.append(
            f"{missed} recorded scale-up(s) never reached in the simulation within {LAG_SEARCH_S:g} s"
        )
    rel = f.get("p95_window_rel_error", math.nan)
    if math.isfinite(rel):
        grades.append(_grade(abs(rel), P95_ERROR))
        reasons.append(
            f"window p95 {f['p95_window_simulated_ms']:.0f} ms simulated vs "
            f"{f['p95_window_recorded_ms']:.0f} ms recorded ({rel:+.0%}; "
            f"good ≤ {P95_ERROR[0]:.0%}, fair ≤ {P95_ERROR[1]:.0%})"
        )
    nodes_mae = f.get("nodes_mae", math.nan)
    if math.isfinite(nodes_mae):
        reasons.append(
            f"nodes MAE {nodes_mae:.2f}, bias {f['nodes_bias']:+.2f} (shown, not scored: the simulated "
            "cluster starts from the nodes the first pods need, a real one from its history)"
        )
    worst = max(grades) if grades else 2
    return ("good", "fair", "poor")[worst], reasons


def _grade(value: float, bounds: tuple[float, float] | list[float]) -> int:
    return 0 if value <= bounds[0] else 1 if value <= bounds[1] else 2


def backtest(
    scn: LoadedScenario,
    source: Source,
    catalog: Catalog,
    start_s: float | None = None,
    end_s: float | None = None,
    step_s: float | None = None,
    services: list[str] | None = None,
    warmup_s: float | None = None,
) -> list[ServiceBacktest]:
    """Backtest the scenario's services (or the named ones) against the history in `source`."""
    from sim.engine import simulate

    chosen = [s for s in scn.services if services is None or s.name in services]
    unknown = set(services or ()) - {s.name for s in scn.services}
    if unknown:
        raise InputError(
            f"no service {sorted(unknown)[0]!r} in the scenario",
            file=scn.file,
            field="--service",
            valid=", ".join(s.name for s in scn.services),
        )
    histories: dict[str, ServiceHistory] = {}
    for svc in chosen:
        histories[svc.name] = read_history(source, _target(svc), catalog, start_s, end_s, step_s)
        start_s, end_s = histories[svc.name].grid.start_s, histories[svc.name].grid.end_s
        step_s = histories[svc.name].grid.step_s
    work = Path(tempfile.mkdtemp(prefix="capsim-backtest-"))
    try:
        replay, _ = replay_scenario(scn, histories, work)
        result = simulate(replay)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    warm = scn.controllers.hpa.downscale_stabilization_s if warmup_s is None else warmup_s
    out = []
    for name, hist in histories.items():
        nodes_sig, _, _ = read_gauge(
            source, catalog.kubernetes.nodes, hist.variables, hist.grid, hist.scrape_s
        )
        nodes = nodes_sig.points if np.isfinite(nodes_sig.points).any() else None
        out.append(compare(name, hist, result, scn.step_s, warm, nodes))
    return out


# --- report -----------------------------------------------------------------------------------


def _plot(bt: ServiceBacktest, path: Path) -> None:
    hours = (bt.times_s - bt.times_s[0]) / 3600.0
    fig, axes = plt.subplots(3, 1, figsize=(11, 8.5), sharex=True)
    axes[0].plot(hours[1:], bt.offered_rps, color="0.3", lw=0.8)
    axes[0].set_ylabel("recorded req/s")
    axes[1].step(hours, bt.recorded_replicas, where="post", label="recorded", color="tab:blue", lw=1.2)
    axes[1].step(
        hours, bt.simulated_replicas, where="post", label="simulated", color="tab:orange", lw=1.0, ls="--"
    )
    if bt.simulated_nodes is not None:
        axes[1].step(
            hours, bt.simulated_nodes, where="post", label="simulated nodes", color="tab:red", lw=0.8, ls="--"
        )
    if bt.recorded_nodes is not None:
        axes[1].step(
            hours, bt.recorded_nodes, where="post", label="recorded nodes", color="tab:green", lw=0.8
        )
    axes[1].axvspan(0, bt.warmup_s / 3600.0, color="0.9", label="warm-up (not scored)")
    axes[1].set_ylabel("replicas")
    axes[1].legend(loc="upper left", fontsize=8)
    axes[2].plot(hours[1:], bt.recorded_p95_s * 1000.0, label=f"recorded ({bt.latency_kind})", lw=0.9)
    axes[2].plot(hours[1:], bt.simulated_p95_s * 1000.0, label="simulated", lw=0.9, ls="--")
    axes[2].set_ylabel("p95 latency (ms)")
    axes[2].set_xlabel(f"hours since {iso(float(bt.times_s[0]))}")
    axes[2].legend(loc="upper left", fontsize=8)
    fig.suptitle(f"backtest: {bt.service} — verdict {bt.verdict}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "n/a" if not math.isfinite(v) else f"{v:.3g}"
    return str(v)


def write_report(results: list[ServiceBacktest], scn: LoadedScenario, source: str, out_dir: Path) -> Path:
    """backtest.md, backtest.json and one PNG per service in `out_dir`, written atomically."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}."))
    try:
        lines = [
            f"# Backtest of {scn.name}",
            "",
            f"History: {source}. The recorded request rate was replayed through the scenario's manifests "
            "(deterministic arrivals), starting from the recorded replica count; recorded and simulated "
            "spec replicas and latency are compared on the recorded grid.",
            "",
        ]
        doc: dict[str, Any] = {"scenario": scn.name, "source": source, "services": {}}
        for bt in results:
            png = f"{bt.service}.png"
            _plot(bt, tmp / png)
            lines += [
                f"## {bt.service}: **{bt.verdict.upper()}**",
                "",
                f"Window {iso(float(bt.times_s[0]))} – {iso(float(bt.times_s[-1]))}; the first "
                f"{bt.warmup_s:g} s are warm-up (the simulated HPA starts without history) and not scored.",
                "",
                *[f"- {r}" for r in bt.reasons],
                "",
                "| figure | value |",
                "|---|---|",
                *[f"| {k} | {_fmt(v)} |" for k, v in bt.figures.items()],
                "",
                f"![{bt.service}]({png})",
                "",
            ]
            if bt.latency_kind == "app histogram":
                lines += [
                    "Recorded latency is the app's own histogram; if it times the handler only, it leaves "
                    "out the wait for a worker that the simulated latency includes.",
                    "",
                ]
            if bt.recorded_nodes is not None and bt.simulated_nodes is None:
                lines += [
                    "Nodes are recorded; this scenario does not model the cluster, so they are not scored.",
                    "",
                ]
            if bt.issues:
                lines += [
                    "History issues:",
                    "",
                    *[f"- {i['kind']}: {i['signal']}: {i['detail']}" for i in bt.issues],
                    "",
                ]
            doc["services"][bt.service] = {
                "verdict": bt.verdict,
                "reasons": bt.reasons,
                "figures": {
                    k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                    for k, v in bt.figures.items()
                },
                "issues": bt.issues,
            }
        (tmp / "backtest.md").write_text("\n".join(lines), encoding="utf-8")
        (tmp / "backtest.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir / "backtest.md"
