"""What a tuning run leaves behind: the trade-off, the sensitivities and the recommendation.

`reports/<scenario>/tune-<id>/` gets
- `candidates.csv` (every candidate, its figures over the seeds, its verdict),
- `pareto.csv` and `pareto.png` (monthly cost against SLO attainment and
  p95/p99 latency, the shipped config and the recommendation marked),
- `sensitivity.csv` and `sensitivity.png` (how cost and SLO margin move with
  each parameter: Spearman rank correlation over the candidates),
- `recommendation.json` (machine-readable: the field changes `capsim apply`
  and `capsim pr` write, the advice they do not, before/after figures) and
  `recommendation.md` (the same for people; it is also the PR body's core).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from sim import __version__
from sim.k8s.quantity import cpu_millicores, memory_mib
from sim.search_space import (
    LABEL_FOR_FIELD,
    Dimension,
    Value,
    decode_list,
    format_number,
    threshold_key,
)
from sim.tenancy import pool_coverages
from sim.tune import BASELINE, Evaluation, TuneRun

_BEHAVIOR = "spec.advanced.horizontalPodAutoscalerConfig.behavior"
_SO_FIELDS = {
    "min_replicas": "spec.minReplicaCount",
    "max_replicas": "spec.maxReplicaCount",
    "polling_interval": "spec.pollingInterval",
    "cooldown_period": "spec.cooldownPeriod",
}


@dataclass(frozen=True)
class FieldChange:
    """One manifest field to change, in the terms of the manifest writer (sim.k8s.writer).

    The object is named as `kustomize build` shows it; `roots` are the
    kustomization directories or files it is built from, relative to the
    scenario's GitOps root (empty when the manifests are inline in the
    scenario); `field` uses the writer's path syntax (`containers[name=app]`);
    `file` is where the value is written today, for people.
    """

    dimension: str
    kind: str
    api_version: str
    name: str
    namespace: str | None
    roots: tuple[str, ...]
    field: str
    before: Any
    after: Any
    file: str


@dataclass(frozen=True)
class Advice:
    """A NodePool change the search found worthwhile but will not write, and why not."""

    change: FieldChange
    risk: str


# --- figures -------------------------------------------------------------------------------------


def figures(run: TuneRun, ev: Evaluation) -> dict[str, Any]:
    """Before/after figures of one evaluation: means and the seeds' spread."""
    judge = run.judge
    lo, hi = ev.cost_spread_usd
    out: dict[str, Any] = {
        "seeds_run": [s.seed for s in ev.seeds],
        "cost_month_usd": {"mean": ev.cost_month_usd, "min": lo, "max": hi},
        "slos": {},
        "latency_ms": {},
        "scale_events_mean": ev.scale_events,
        "failed_ratio_max": max((r for s in ev.seeds for r in s.failed_ratio.values()), default=0.0),
        "pod_hours_mean": float(np.mean([s.pod_hours for s in ev.seeds])) if ev.seeds else 0.0,
        "feasible": ev.feasible(judge),
        "violations": ev.violations(judge),
    }
    for name in judge.objectives:
        worst, mean, best = ev.attainment_spread(name) if ev.seeds else (0.0, 0.0, 0.0)
        out["slos"][name] = {
            "objective": judge.objectives[name],
            "required": judge.required[name],
            "hard": name in judge.hard_slos,
            "worst": worst,
            "mean": mean,
            "best": best,
        }
    for svc in run.scenario.services:
        out["latency_ms"][svc.name] = {
            "p95_worst": ev.worst_latency_ms(svc.name, "p95") if ev.seeds else None,
            "p99_worst": ev.worst_latency_ms(svc.name, "p99") if ev.seeds else None,
        }
    return out


# --- changes -------------------------------------------------------------------------------------


def changes_for(run: TuneRun, ev: Evaluation) -> tuple[list[FieldChange], list[Advice]]:
    """The manifest edits that turn the shipped config into `ev`'s.

    NodePool edits on pools the scenario does not cover are advice, not changes.
    """
    changes: list[FieldChange] = []
    advice: list[Advice] = []
    by_service: dict[str, dict[str, Value]] = {}
    for dim in run.space.dimensions:
        value = ev.params.get(dim.name)
        if value is None or _same_value(value, dim.current):
            continue
        if dim.target == "service":
            by_service.setdefault(dim.owner, {})[dim.field] = value
    for svc_name, values in by_service.items():
        changes += _service_changes(run, svc_name, values)
    coverages = pool_coverages(run.scenario)
    for dim in run.space.dimensions:
        value = ev.params.get(dim.name)
        if dim.target != "pool" or value is None or _same_value(value, dim.current):
            continue
        change = _pool_change(run, dim, value)
        cov = coverages[dim.owner]
        if cov.covered:
            changes.append(change)
        else:
            advice.append(Advice(change, cov.risk()))
    return changes, advice


def _same_value(a: Value, b: Value | None) -> bool:
    if b is None:
        return False
    if isinstance(a, str) or isinstance(b, str):
        return str(a) == str(b)
    return math.isclose(float(a), float(b), rel_tol=0, abs_tol=1e-9)


def _resource(svc: Any, kind: str, name: str) -> Any:
    found = svc.manifests.find(kind, name)
    return found[0] if found else None


def _service_changes(run: TuneRun, svc_name: str, values: dict[str, Value]) -> list[FieldChange]:
    svc = run.scenario.service(svc_name)
    so = svc.scaled_object
    res = _resource(svc, "ScaledObject", so.name)
    namespace = res.namespace if res is not None else svc.workload.namespace
    file = str(svc.scaled_object_file)
    roots = _scenario_roots(run, ("services", svc_name, "manifests"))

    def so_change(dim: str, fld: str, before: Any, after: Any) -> FieldChange:
        return FieldChange(
            f"{svc_name}.{dim}",
            "ScaledObject",
            "keda.sh/v1alpha1",
            so.name,
            namespace,
            roots,
            fld,
            before,
            after,
            file,
        )

    out: list[FieldChange] = []
    for key, value in values.items():
        trig_index, _, base = key.rpartition(".") if key.startswith("triggers[") else ("", "", key)
        index = int(trig_index[9:-1]) if trig_index else 0
        if base in ("threshold", "activation_threshold"):
            trigger = so.triggers[index]
            meta_key = threshold_key(trigger) if base == "threshold" else "activationThreshold"
            out.append(
                so_change(
                    key,
                    f"spec.triggers[{index}].metadata.{meta_key}",
                    trigger.metadata.get(meta_key),
                    format_number(float(value)),
                )
            )
        elif base in _SO_FIELDS:
            current = run.space.by_name(f"{svc_name}.{key}").current
            out.append(so_change(key, _SO_FIELDS[base], current, int(value)))
    for direction, manifest_dir in (("scale_up", "scaleUp"), ("scale_down", "scaleDown")):
        keys = {k for k in values if k.startswith(direction + ".")}
        if not keys:
            continue
        window_key = f"{direction}.stabilization_window"
        if window_key in keys:
            out.append(
                so_change(
                    window_key,
                    f"{_BEHAVIOR}.{manifest_dir}.stabilizationWindowSeconds",
                    run.space.by_name(f"{svc_name}.{window_key}").current,
                    int(values[window_key]),
                )
            )
        if keys - {window_key}:
            from sim.search_space import apply_params

            before_rules = _rules_of(so, direction)
            after_so = apply_params(run.scenario, {f"{svc_name}.{k}": values[k] for k in keys}).service(
                svc_name
            )
            after_rules = _rules_of(after_so.scaled_object, direction)
            out.append(
                so_change(
                    ",".join(sorted(keys - {window_key})),
                    f"{_BEHAVIOR}.{manifest_dir}.policies",
                    _policies(before_rules),
                    _policies(after_rules),
                )
            )
    for key, unit in (("cpu_request", "cpu"), ("memory_request", "memory")):
        if key in values:
            out.append(_request_change(run, svc, key, unit, float(values[key])))
    return out


def _rules_of(so: Any, direction: str) -> Any:
    behavior = so.behavior
    return getattr(behavior, direction) if behavior is not None else None


def _policies(rules: Any) -> list[dict[str, Any]] | None:
    if rules is None or rules.policies is None:
        return None
    return [{"type": p.type, "value": p.value, "periodSeconds": p.period_s} for p in rules.policies]


def _request_change(run: TuneRun, svc: Any, key: str, unit: str, total_after: float) -> FieldChange:
    """Requests are tuned per pod; the change lands on the app's main container (or the KRO field)."""
    w = svc.workload
    total_before = (w.cpu_request_millicores if unit == "cpu" else w.memory_request_mib) or 0.0
    fmt = _cpu if unit == "cpu" else _mem
    res = _resource(svc, w.kind, w.name)
    roots = _scenario_roots(run, ("services", svc.name, "manifests"))
    if w.kind in ("Deployment", "StatefulSet") and res is not None:
        containers = res.doc.get(("spec", "template", "spec", "containers")) or []
        index = next((i for i, c in enumerate(containers) if c.get("name") == w.name), 0)
        container = containers[index].get("name", str(index))
        raw = res.doc.get(("spec", "template", "spec", "containers", index, "resources", "requests", unit))
        own = (cpu_millicores if unit == "cpu" else memory_mib)(raw) if raw is not None else 0.0
        return FieldChange(
            f"{svc.name}.{key}",
            w.kind,
            res.api_version,
            w.name,
            res.namespace,
            roots,
            f"spec.template.spec.containers[name={container}].resources.requests.{unit}",
            raw,
            fmt(own + total_after - total_before),
            str(res.file),
        )
    mapped = _scenario_value(run, ("services", svc.name, "kro", key))
    return FieldChange(
        f"{svc.name}.{key}",
        w.kind,
        res.api_version if res is not None else "",
        res.name if res is not None else w.name,
        w.namespace,
        roots if mapped else (),
        str(mapped or f"<no kro.{key} mapping in the scenario: set the request by hand>"),
        fmt(total_before),
        fmt(total_after),
        str(w.file),
    )


def _scenario_value(run: TuneRun, path: tuple[str, ...]) -> Any:
    """A value of the scenario file as written (`services` entries are addressed by name)."""
    from sim.k8s.yamlsource import load_mapping

    node: Any = load_mapping(run.scenario.file).plain()
    for part in path:
        if isinstance(node, list):
            node = next((e for e in node if isinstance(e, dict) and e.get("name") == part), None)
        elif isinstance(node, dict):
            node = node.get(part)
        else:
            return None
    return node


def _scenario_roots(run: TuneRun, path: tuple[str, ...]) -> tuple[str, ...]:
    """Kustomization dirs or files (relative to the GitOps root) named at `path` of the scenario file."""
    value = _scenario_value(run, path)
    if value is None:
        return ()
    return (str(value),) if isinstance(value, str) else tuple(str(v) for v in value)


def _cpu(millicores: float) -> str:
    return f"{round(millicores)}m"


def _mem(mib: float) -> str:
    return f"{round(mib)}Mi"


def _pool_change(run: TuneRun, dim: Dimension, value: Value) -> FieldChange:
    from dataclasses import replace

    roots = _scenario_roots(run, ("cluster", "nodepools"))
    res = _pool_resource(run, roots, dim.owner)
    spec: dict[str, Any] = (res.doc.get(("spec",)) if res is not None else None) or {}
    file = str(res.file) if res is not None else ""
    base = FieldChange(
        dim.name, "NodePool", "karpenter.sh/v1", dim.owner, None, roots, "", dim.current, value, file
    )
    disruption = spec.get("disruption") or {}
    if dim.field in LABEL_FOR_FIELD:
        label = LABEL_FOR_FIELD[dim.field]
        reqs = list(((spec.get("template") or {}).get("spec") or {}).get("requirements") or [])
        values = list(decode_list(value))
        if any(r.get("key") == label for r in reqs):
            before = next(r.get("values") for r in reqs if r.get("key") == label)
            return replace(
                base,
                field=f"spec.template.spec.requirements[key={label}].values",
                before=before,
                after=values,
            )
        # No requirement on this label yet: the list is replaced with the new one appended.
        new = {"key": label, "operator": "In", "values": values}
        return replace(base, field="spec.template.spec.requirements", before=reqs, after=[*reqs, new])
    if dim.field == "consolidation_policy":
        before = disruption.get("consolidationPolicy")
        return replace(base, field="spec.disruption.consolidationPolicy", before=before, after=str(value))
    if dim.field == "consolidate_after":
        before = disruption.get("consolidateAfter")
        return replace(base, field="spec.disruption.consolidateAfter", before=before, after=f"{int(value)}s")
    budgets = list(disruption.get("budgets") or [])
    index = next((i for i, b in enumerate(budgets) if "schedule" not in b), None)
    if index is None:
        after = [{"nodes": str(value)}, *budgets]
        return replace(base, field="spec.disruption.budgets", before=budgets or None, after=after)
    return replace(
        base,
        field=f"spec.disruption.budgets[{index}].nodes",
        before=budgets[index].get("nodes"),
        after=str(value),
    )


def _pool_resource(run: TuneRun, roots: tuple[str, ...], name: str) -> Any:
    from sim.k8s.kustomize import load_manifests

    if not roots:
        return None
    manifests = load_manifests(run.scenario.gitops_root / r for r in roots)
    found = manifests.find("NodePool", name, "karpenter.sh")
    return found[0] if found else None


# --- sensitivity ---------------------------------------------------------------------------------


def sensitivity(run: TuneRun) -> pd.DataFrame:
    """Spearman rank correlation of each parameter with cost and with SLO margin, over the candidates.

    Ranks, not slopes: the response to a threshold or a window is monotone but
    far from linear, and ranks do not care about units. Categorical values are
    ranked in the order the space lists them.
    """
    evs = [e for e in run.evaluations if e.ok]
    rows = []
    for dim in run.space.dimensions:
        xs = [_ordinal(dim, e.params.get(dim.name)) for e in evs]
        pairs = [(x, e) for x, e in zip(xs, evs, strict=True) if x is not None]
        row: dict[str, Any] = {"parameter": dim.name, "current": dim.current, "candidates": len(pairs)}
        for label, fn in (
            ("cost", lambda e: e.cost_month_usd),
            ("slo_margin", lambda e: max(e.margin(run.judge), -1e6)),
        ):
            x = np.array([p[0] for p in pairs], dtype=float)
            y = np.array([fn(p[1]) for p in pairs], dtype=float)
            if len(pairs) >= 3 and np.ptp(x) > 0 and np.ptp(y) > 0:
                rho = float(spearmanr(x, y).statistic)
            else:
                rho = float("nan")
            row[f"spearman_{label}"] = rho
        rows.append(row)
    return pd.DataFrame(
        rows, columns=["parameter", "current", "candidates", "spearman_cost", "spearman_slo_margin"]
    )


def _ordinal(dim: Dimension, value: Value | None) -> float | None:
    if value is None:
        return None
    if dim.kind == "categorical":
        return float(dim.choices.index(value)) if value in dim.choices else None
    return float(value)


# --- tables and plots ----------------------------------------------------------------------------


def candidates_frame(run: TuneRun) -> pd.DataFrame:
    front = {e.number for e in run.pareto()}
    rec = run.recommendation()
    rows = []
    for e in run.all():
        row: dict[str, Any] = {"candidate": "current" if e.number == BASELINE else e.number}
        for dim in run.space.dimensions:
            row[dim.name] = e.params.get(dim.name, dim.current) if e.number != BASELINE else dim.current
        lo, hi = e.cost_spread_usd
        row |= {
            "cost_month_usd": e.cost_month_usd,
            "cost_min_usd": lo,
            "cost_max_usd": hi,
            "slo_margin": e.margin(run.judge),
        }
        for name in run.judge.objectives:
            row[f"{name}_worst"] = e.worst_attainment(name) if e.ok else None
        for svc in run.scenario.services:
            row[f"{svc.name}_p95_ms_worst"] = e.worst_latency_ms(svc.name, "p95") if e.ok else None
            row[f"{svc.name}_p99_ms_worst"] = e.worst_latency_ms(svc.name, "p99") if e.ok else None
        row |= {
            "scale_events": e.scale_events if e.ok else None,
            "seeds_run": len(e.seeds),
            "feasible": e.feasible(run.judge),
            "pareto": e.number in front,
            "recommended": rec is not None and e.number == rec.number,
            "why_not": "; ".join(e.violations(run.judge)),
        }
        rows.append(row)
    return pd.DataFrame(rows)


def _pareto_plot(run: TuneRun, path: Path) -> None:
    judge = run.judge
    evs = [e for e in run.all() if e.ok]
    front = run.pareto()
    rec = run.recommendation()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5))
    slo_name = _tightest_slo(run)
    cost = np.array([e.cost_month_usd for e in evs])
    if slo_name is not None:
        att = np.array([e.worst_attainment(slo_name) for e in evs])
        feasible = np.array([e.feasible(judge) for e in evs])
        ax1.scatter(cost[~feasible], att[~feasible], s=14, c="#c44", alpha=0.5, label="breaks a rule")
        ax1.scatter(cost[feasible], att[feasible], s=14, c="#4a4", alpha=0.7, label="meets every rule")
        fc = [e.cost_month_usd for e in front]
        ax1.plot(fc, [e.worst_attainment(slo_name) for e in front], "k-", lw=1, label="Pareto front")
        ax1.axhline(judge.required[slo_name], color="k", ls="--", lw=0.8, label="objective + margin")
        ax1.axhline(judge.objectives[slo_name], color="grey", ls=":", lw=0.8, label="objective")
        ax1.set_ylabel(f"{slo_name}: worst-seed attainment")
        for ev, marker, label in ((run.baseline, "*", "current"), (rec, "o", "recommended")):
            if ev is not None and ev.ok:
                ax1.scatter(
                    [ev.cost_month_usd],
                    [ev.worst_attainment(slo_name)],
                    marker=marker,
                    s=180,
                    facecolors="none",
                    edgecolors="k",
                    linewidths=1.5,
                    label=label,
                )
        bottom = float(np.nanmin(att))
        ax1.set_ylim(bottom - 0.04 * (1.0 - bottom) - 1e-4, 1.0 + 0.02 * (1.0 - bottom) + 1e-4)
    ax1.set_xlabel("monthly cost (USD)")
    ax1.legend(fontsize=8, loc="lower right")
    ax1.set_title("cost vs SLO attainment")
    svc = run.scenario.slos[0].service if run.scenario.slos else run.scenario.services[0].name
    quantiles: tuple[tuple[Literal["p95", "p99"], str], ...] = (("p95", "#36c"), ("p99", "#c63"))
    for q, color in quantiles:
        ys = np.array([_nan(e.worst_latency_ms(svc, q)) for e in evs], dtype=float)
        ax2.scatter(cost, ys, s=12, c=color, alpha=0.6, label=f"{q} (worst seed)")
        for ev, marker in ((run.baseline, "*"), (rec, "o")):
            if ev is not None and ev.ok and ev.worst_latency_ms(svc, q) is not None:
                ax2.scatter(
                    [ev.cost_month_usd],
                    [ev.worst_latency_ms(svc, q)],
                    marker=marker,
                    s=180,
                    facecolors="none",
                    edgecolors="k",
                    linewidths=1.5,
                )
    ax2.set_yscale("log")
    ax2.set_xlabel("monthly cost (USD)")
    ax2.set_ylabel(f"{svc} latency (ms)")
    ax2.set_title("cost vs latency (★ current, ○ recommended)")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _nan(v: float | None) -> float:
    return float("nan") if v is None else v


def _tightest_slo(run: TuneRun) -> str | None:
    """The hard SLO the shipped config comes closest to breaking (or breaks worst): the one to plot."""
    names = list(run.judge.hard_slos) or list(run.judge.objectives)
    if not names:
        return None
    base = run.baseline
    if not base.ok:
        return names[0]
    return min(names, key=lambda n: (base.worst_attainment(n) - run.judge.required[n]) / run.judge.budget(n))


def _sensitivity_plot(table: pd.DataFrame, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(table) + 1.5))
    y = np.arange(len(table))
    ax.barh(y - 0.2, table["spearman_cost"].fillna(0), height=0.4, label="cost")
    ax.barh(y + 0.2, table["spearman_slo_margin"].fillna(0), height=0.4, label="SLO margin")
    ax.set_yticks(y, table["parameter"])
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlim(-1, 1)
    ax.set_xlabel("Spearman rank correlation with the parameter")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- the recommendation --------------------------------------------------------------------------


def recommendation_dict(run: TuneRun, reproduce: str) -> dict[str, Any]:
    rec = run.recommendation()
    base = run.baseline
    changes, advice = changes_for(run, rec) if rec is not None else ([], [])
    if rec is None:
        status = "none_feasible"
    elif rec.number == BASELINE or not (changes or advice):
        status = "keep_current"
    else:
        status = "recommended"
    scn = run.scenario
    return {
        "capsim_version": __version__,
        "created": f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}",
        "scenario": scn.name,
        "scenario_file": str(scn.file),
        "gitops_root": str(scn.gitops_root),
        "status": status,
        "reproduce": reproduce,
        "search": {
            "mode": run.mode,
            "candidates": len(run.evaluations),
            "seeds": list(run.seeds),
            "simulations": run.simulations,
            "executor": run.executor,
            "wall_time_s": round(run.wall_time_s, 2),
            "dimensions": [d.name for d in run.space.dimensions],
        },
        "rules": {
            "hard_slos": list(run.judge.hard_slos),
            "slo_margin": run.judge.slo_margin,
            "slo_margin_meaning": "share of each SLO's error budget left unused on the worst seed",
            "max_failure_ratio": run.judge.max_failure_ratio,
            "cost_basis": base.seeds[0].cost_basis if base.seeds else "",
            "month_hours": 730,
        },
        "candidate": None if rec is None else ("current" if rec.number == BASELINE else rec.number),
        "params": {} if rec is None else rec.params,
        "before": figures(run, base),
        "after": None if rec is None else figures(run, rec),
        "changes": [asdict(c) for c in changes],
        "advice": [asdict(a.change) | {"risk": a.risk} for a in advice],
        "pareto_plot": "pareto.png",
    }


def _pct(x: float) -> str:
    return f"{100 * x:.3f}%"


def _usd(x: float) -> str:
    return f"${x:,.2f}"


def recommendation_markdown(rec: Mapping[str, Any], plot_link: str = "pareto.png") -> str:
    """The recommendation for people; `capsim pr` uses it as the PR body's core."""
    before, after = rec["before"], rec["after"]
    lines = [f"# Tuning {rec['scenario']}: {_status_line(rec)}", ""]
    rules = rec["rules"]
    lines += [
        f"Judged on {len(rec['search']['seeds'])} seeds ({', '.join(map(str, rec['search']['seeds']))}), "
        f"worst seed counts; hard SLOs need their objective plus {rules['slo_margin']:.0%} of the error "
        f"budget. Cost: {rules['cost_basis']}, as a 730-hour month.",
        "",
        "## Before / after",
        "",
        "| | current | recommended |",
        "|---|---|---|",
    ]

    def cost(f: Mapping[str, Any] | None) -> str:
        if f is None:
            return "n/a"
        c = f["cost_month_usd"]
        return f"{_usd(c['mean'])} ({_usd(c['min'])}–{_usd(c['max'])})"

    lines.append(f"| monthly cost, mean (seed range) | {cost(before)} | {cost(after)} |")
    for name, b in before["slos"].items():
        a = after["slos"][name] if after else None
        req = f"≥ {_pct(b['required'])}" if b["hard"] else "soft"
        cell_b = f"{_pct(b['worst'])} worst, {_pct(b['mean'])} mean"
        cell_a = f"{_pct(a['worst'])} worst, {_pct(a['mean'])} mean" if a else "n/a"
        lines.append(f"| {name} ({req}) | {cell_b} | {cell_a} |")
    for svc, b in before["latency_ms"].items():
        a = after["latency_ms"][svc] if after else {"p95_worst": None, "p99_worst": None}
        for q in ("p95", "p99"):
            lines.append(f"| {svc} {q}, worst seed | {_ms(b[f'{q}_worst'])} | {_ms(a[f'{q}_worst'])} |")
    events_after = f"{after['scale_events_mean']:.1f}" if after else "n/a"
    lines.append(f"| scale events per run | {before['scale_events_mean']:.1f} | {events_after} |")
    lines.append(
        f"| worst failed ratio | {_pct(before['failed_ratio_max'])} | "
        + (_pct(after["failed_ratio_max"]) if after else "n/a")
        + " |"
    )
    lines += ["", "## What changes", ""]
    if rec["changes"]:
        lines += ["| object | field | from | to |", "|---|---|---|---|"]
        for c in rec["changes"]:
            obj = f"{c['kind']}/{c['name']} (`{c['file']}`)"
            lines.append(f"| {obj} | `{c['field']}` | {_val(c['before'])} | {_val(c['after'])} |")
    else:
        lines.append("No manifest change." if rec["status"] != "none_feasible" else "Nothing to write.")
    if rec["advice"]:
        lines += ["", "## Advice (not written)", ""]
        for a in rec["advice"]:
            what = f"{a['kind']}/{a['name']} `{a['field']}`"
            lines.append(f"- {what}: {_val(a['before'])} → {_val(a['after'])}. {a['risk']}")
    if before["violations"]:
        lines += ["", "## Why the current config fails", ""] + [f"- {v}" for v in before["violations"]]
    lines += [
        "",
        "## Trade-off",
        "",
        f"![cost vs SLO attainment and latency]({plot_link})",
        "",
        f"Search: {rec['search']['mode']}, {rec['search']['candidates']} candidates, "
        f"{rec['search']['simulations']} simulations on {rec['search']['executor']} "
        f"in {rec['search']['wall_time_s']:.0f} s.",
        "",
        "## Reproduce",
        "",
        "```sh",
        rec["reproduce"],
        "```",
        "",
    ]
    return "\n".join(lines)


def _status_line(rec: Mapping[str, Any]) -> str:
    if rec["status"] == "none_feasible":
        return "no candidate meets every SLO with the margin"
    if rec["status"] == "keep_current":
        return "the current config is already the cheapest that meets every SLO"
    b, a = rec["before"]["cost_month_usd"]["mean"], rec["after"]["cost_month_usd"]["mean"]
    verb = "saves" if a < b else "costs"
    fixes = "" if rec["before"]["feasible"] else "meets the SLOs the current config breaks and "
    return f"{fixes}{verb} {_usd(abs(b - a))} a month ({(a - b) / b:+.1%})" if b else fixes


def _ms(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.0f} ms"


def _val(v: Any) -> str:
    if v is None:
        return "(unset)"
    if isinstance(v, list | dict):
        return "`" + json.dumps(v) + "`"
    return f"`{v}`"


def write_tune(run: TuneRun, out_dir: Path, reproduce: str) -> Path:
    """Write every artefact into `out_dir` atomically (a temp dir renamed at the end)."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        table = candidates_frame(run)
        table.to_csv(tmp / "candidates.csv", index=False)
        table[table["pareto"]].sort_values("cost_month_usd").to_csv(tmp / "pareto.csv", index=False)
        _pareto_plot(run, tmp / "pareto.png")
        sens = sensitivity(run)
        sens.to_csv(tmp / "sensitivity.csv", index=False)
        _sensitivity_plot(sens, tmp / "sensitivity.png")
        rec = recommendation_dict(run, reproduce)
        (tmp / "recommendation.json").write_text(json.dumps(rec, indent=2, default=_json_default) + "\n")
        md = recommendation_markdown(rec)
        md += "\n## Sensitivity (Spearman rank correlation over the candidates)\n\n"
        md += "| parameter | current | cost | SLO margin |\n|---|---|---|---|\n"
        for row in sens.to_dict(orient="records"):
            rho_cost, rho_slo = _rho(row["spearman_cost"]), _rho(row["spearman_slo_margin"])
            md += f"| {row['parameter']} | {row['current']} | {rho_cost} | {rho_slo} |\n"
        md += "\n![sensitivity](sensitivity.png)\n"
        (tmp / "recommendation.md").write_text(md)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _rho(v: Any) -> str:
    return "n/a" if v is None or math.isnan(float(v)) else f"{float(v):+.2f}"


def _json_default(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, Path):
        return str(v)
    if isinstance(v, float) and math.isinf(v):
        return None
    raise TypeError(f"not JSON serialisable: {type(v).__name__}")
