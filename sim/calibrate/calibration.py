"""`capsim calibrate`: from a service's history to a workload model.

The order matters and is the same for a server and a file: find which
exporter conventions the source holds (series look-ups), learn the scrape
interval from raw samples, pick the step from the window, read every signal
on that one grid, then fit. Each fit checks it has enough history for what
it claims and otherwise says "too short", "not available" or "not
identifiable" in the model instead of producing a number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from sim.calibrate import fit, profile
from sim.calibrate.history import GaugeSignal, Issue
from sim.calibrate.model import Parameter, WorkloadModel, fmt_cpu, fmt_duration
from sim.calibrate.querysets import Catalog, Chosen, choose, probe_selectors
from sim.calibrate.signals import (
    Histogram,
    RequestCounts,
    instance_types,
    read_cpu,
    read_gauge,
    read_histogram,
    read_last_per_pod,
    read_requests,
)
from sim.calibrate.source import Selector, Source
from sim.calibrate.window import Grid, choose_step, iso
from sim.errors import ExternalError, InputError

DEFAULT_SCRAPE_S = 30.0
MIN_OBSERVATIONS = 200  # requests in a histogram before its shape is fitted
MIN_INTERVALS = 30  # intervals before a regression or a load fit is attempted
MIN_STARTS = 5
FEW_STARTS = 30
ALL_TIME_S = 4_102_444_800.0  # 2100-01-01: the end of "any time" for a series look-up


@dataclass(frozen=True)
class Target:
    """The service to calibrate and the Kubernetes names its series carry."""

    service: str
    namespace: str
    deployment: str | None = None
    container: str | None = None
    hpa: str | None = None
    pod_regex: str | None = None

    def variables(self, extra: dict[str, str]) -> dict[str, str]:
        dep = self.deployment or self.service
        values = {
            "namespace": self.namespace,
            "service": self.service,
            "deployment": dep,
            "container": self.container or dep,
            # KEDA names the HPA it creates after the ScaledObject.
            "hpa": self.hpa or f"keda-hpa-{self.service}",
            "pod_regex": self.pod_regex or f"{dep}-[a-z0-9]+-[a-z0-9]+",
        }
        return {**values, **extra}


@dataclass(frozen=True)
class Window:
    grid: Grid
    scrape_s: float
    issues: tuple[Issue, ...] = ()


def resolve_window(source: Source, start_s: float | None, end_s: float | None) -> tuple[float, float]:
    """The window asked for, or the whole recording for a file."""
    extent = source.extent()
    if start_s is None or end_s is None:
        if extent is None:
            raise InputError(
                "--start and --end are needed when reading from Prometheus", field="--start/--end"
            )
        start_s = extent[0] if start_s is None else start_s
        end_s = extent[1] if end_s is None else end_s
    if end_s <= start_s:
        raise InputError(
            f"the window is empty: end {iso(end_s)} is not after start {iso(start_s)}",
            field="--end",
            valid="an end time after the start time",
        )
    return start_s, end_s


def open_grid(
    source: Source, probe_sel: Selector, start_s: float, end_s: float, step_s: float | None
) -> Window:
    """Scrape interval from raw samples, step from the window, and the grid aligned to the step."""
    issues = []
    scrape = source.scrape_interval_s(probe_sel, start_s, end_s)
    if scrape is None or not math.isfinite(scrape) or scrape <= 0:
        issues.append(
            Issue(
                "missing",
                probe_sel.metric,
                "could not measure the scrape interval",
                f"assumed {DEFAULT_SCRAPE_S:g} s",
            )
        )
        scrape = DEFAULT_SCRAPE_S
    step = step_s or choose_step(end_s - start_s, scrape)
    start = math.ceil(start_s / step) * step
    grid = Grid.over(start, end_s, step)
    if grid.n_intervals < 2:
        raise InputError(
            f"the window {iso(start_s)} – {iso(end_s)} holds fewer than two {step:g}-s steps",
            field="--start/--end",
            valid="a longer window or a smaller --step",
        )
    return Window(grid, scrape, tuple(issues))


@dataclass
class Calibration:
    """What calibration read and fitted; `model` is what gets written."""

    model: WorkloadModel
    grid: Grid
    requests: RequestCounts
    histograms: dict[str, Histogram] = field(default_factory=dict)
    concurrency: fit.ConcurrencyEstimate | None = None
    profile: profile.TrafficProfile | None = None


def _promql_rate(sel: str, step_s: float, scrape_s: float) -> str:
    """The rate() a dashboard would use for the same numbers (a window of at least four scrapes)."""
    return f"sum(rate({sel}[{max(step_s, 4 * scrape_s):g}s]))"


@dataclass
class ServiceHistory:
    """A service's traffic, latency and replica signals on one grid, with what was wrong with them."""

    target: Target
    variables: dict[str, str]
    grid: Grid
    scrape_s: float
    chosen: Chosen
    requests: RequestCounts
    histograms: dict[str, Histogram]
    ready: GaugeSignal
    spec_replicas: GaugeSignal
    ready_queries: list[str]
    spec_queries: list[str]
    issues: list[Issue]

    @property
    def pods(self) -> tuple[np.ndarray, list[str]]:
        """Ready pods per interval (spec replicas when readiness is not recorded), and the queries."""
        if np.isfinite(self.ready.intervals).any():
            return self.ready.intervals, self.ready_queries
        return self.spec_replicas.intervals, self.spec_queries

    @property
    def response(self) -> Histogram | None:
        """The histogram closest to what users saw: the ingress's, else the app's."""
        return self.histograms.get("ingress") or self.histograms.get("app")


def read_history(
    source: Source,
    target: Target,
    catalog: Catalog,
    start_s: float | None = None,
    end_s: float | None = None,
    step_s: float | None = None,
) -> ServiceHistory:
    """Find the service's series, choose the grid, and read requests, latency and replicas."""
    start_s, end_s = resolve_window(source, start_s, end_s)
    variables = target.variables(catalog.variables)
    chosen = choose(catalog, source, variables, start_s, end_s)
    if chosen.app is None and chosen.ingress is None:
        raise ExternalError(_nothing_found(source, target, catalog, variables, start_s, end_s, chosen))
    first = chosen.app or chosen.ingress
    assert first is not None
    window = open_grid(source, probe_selectors(first, variables)[0], start_s, end_s, step_s)
    grid, scrape = window.grid, window.scrape_s
    issues: list[Issue] = list(window.issues)
    requests = None
    if chosen.app is not None:
        requests = read_requests(source, chosen.app.requests, chosen.app.latency, variables, grid, scrape)
    if (requests is None or not requests.valid.any()) and chosen.ingress is not None:
        requests = read_requests(
            source, chosen.ingress.requests, chosen.ingress.latency, variables, grid, scrape
        )
    if requests is None or not requests.valid.any():
        raise ExternalError(
            f"{source.description}: the request series of {target.service!r} hold no samples between "
            f"{iso(grid.start_s)} and {iso(grid.end_s)}; choose a window where the service ran"
        )
    issues += requests.issues
    hists: dict[str, Histogram] = {}
    for role, qs in (("app", chosen.app), ("ingress", chosen.ingress)):
        if qs is not None and qs.latency is not None:
            h = read_histogram(source, qs.latency, variables, grid, scrape)
            if h is not None:
                hists[role] = h
                issues += h.issues
    k8s = catalog.kubernetes
    ready, _, ready_q = read_gauge(source, k8s.ready, variables, grid, scrape)
    spec_replicas, _, spec_q = read_gauge(source, k8s.replicas, variables, grid, scrape)
    issues += ready.issues + spec_replicas.issues
    return ServiceHistory(
        target,
        variables,
        grid,
        scrape,
        chosen,
        requests,
        hists,
        ready,
        spec_replicas,
        ready_q,
        spec_q,
        issues,
    )


def _nothing_found(
    source: Source,
    target: Target,
    catalog: Catalog,
    variables: dict[str, str],
    start_s: float,
    end_s: float,
    chosen: Chosen,
) -> str:
    """Why the window is empty: no such series at all, or series that exist outside the window."""
    sets = (*catalog.app, *catalog.ingress)
    elsewhere = [s for qs in sets for s in source.series(probe_selectors(qs, variables), 0.0, ALL_TIME_S)]
    if elsewhere:
        found = ", ".join(sorted({s["__name__"] for s in elsewhere}))
        return (
            f"{source.description}: the window {iso(start_s)} – {iso(end_s)} holds no data for service "
            f"{target.service!r} in namespace {target.namespace!r}, though its series ({found}) exist at "
            "other times; choose a window where the service ran"
        )
    return (
        f"{source.description}: no request or latency series for service {target.service!r} in namespace "
        f"{target.namespace!r} (looked up: {', '.join(chosen.probed)}); check --service/--namespace (the "
        "label values the series carry) or describe the exporter in a query file (--queries)"
    )


def calibrate(
    source: Source,
    target: Target,
    catalog: Catalog,
    start_s: float | None = None,
    end_s: float | None = None,
    step_s: float | None = None,
    seed: int = 0,
) -> Calibration:
    """Read the service's history from `source` and fit its workload model."""
    hist = read_history(source, target, catalog, start_s, end_s, step_s)
    grid, scrape, variables = hist.grid, hist.scrape_s, hist.variables
    requests, hists, chosen, issues = hist.requests, hist.histograms, hist.chosen, hist.issues
    ready, spec_replicas = hist.ready, hist.spec_replicas
    pods, pods_query = hist.pods
    k8s = catalog.kubernetes
    rng = np.random.default_rng(seed)

    params: dict[str, Parameter] = {}
    model_block: dict[str, object] = {}
    notes: dict[str, str] = {}
    step = grid.step_s
    served_rps = requests.served / step

    # --- service time and concurrency ----------------------------------------------------
    app = hists.get("app")
    ingress = hists.get("ingress")
    handler_fit: fit.DistEstimate | None = None
    if app is not None and app.spec.measures == "handler" and np.nansum(app.observations) >= MIN_OBSERVATIONS:
        ok = app.valid
        handler_fit = fit.fit_histogram(app.counts[ok], app.sums_s[ok], app.bounds_s, rng)
    response = ingress or app
    conc: fit.ConcurrencyEstimate | None = None
    service_fit = handler_fit
    service_method = "histogram fit: mean = _sum/_count, shape (lognormal or gamma) by bucket likelihood"
    service_hist = app
    service_note: str | None = None
    if response is not None and np.isfinite(pods).any():
        rate_per_pod = response.observations / step / pods
        rate_per_pod = np.where(response.valid, rate_per_pod, np.nan)
        if np.isfinite(rate_per_pod).sum() >= MIN_INTERVALS:
            paired = ingress is not None and handler_fit is not None
            conc = fit.fit_concurrency(
                rate_per_pod,
                response.counts,
                response.sums_s,
                response.bounds_s,
                step,
                handler_fit if paired else None,
                paired,
                handler_fit,
                rng,
            )
            if not paired and conc.service is not None and conc.queueing_visible:
                service_fit = conc.service
                service_hist = response
                service_method = (
                    "fitted jointly with concurrency (M/G/k): with one latency histogram, "
                    "the service time is what its latency tends to at zero load"
                )
            elif not paired:
                service_note = (
                    "latency did not vary with load in this history: if the histogram includes the wait "
                    "for a worker, this mean is an upper bound on the service time"
                )
                if service_fit is None and np.nansum(response.observations) >= MIN_OBSERVATIONS:
                    ok = response.valid
                    service_fit = fit.fit_histogram(
                        response.counts[ok], response.sums_s[ok], response.bounds_s, rng
                    )
                    service_hist = response
    if service_fit is None and response is not None and np.nansum(response.observations) >= MIN_OBSERVATIONS:
        ok = response.valid
        service_fit = fit.fit_histogram(response.counts[ok], response.sums_s[ok], response.bounds_s, rng)
        service_hist = response
        if response is ingress:
            service_note = "from the ingress's response time (no replica counts to separate the wait)"
    _service_params(params, model_block, service_fit, service_hist, service_method, service_note, hists)
    _workers_param(params, model_block, notes, conc, response, pods_query, step)

    # --- CPU --------------------------------------------------------------------------------
    cpu_sig, cpu_sel, cpu_q = read_cpu(source, k8s.cpu, variables, grid, scrape)
    issues += cpu_sig.issues
    cores = cpu_sig.total() / step
    usable_cpu = np.isfinite(cores) & np.isfinite(served_rps) & np.isfinite(pods)
    cpu_source = [*cpu_q, *requests.queries, *pods_query]
    est = fit.fit_cpu(cores, served_rps, pods) if usable_cpu.sum() >= MIN_INTERVALS else None
    if est is not None and est.separable:
        params["cpu_per_request"] = Parameter(
            "fitted",
            est.cpu_per_request_s,
            "core-s",
            {"stderr": est.cpu_per_request_se_s, "intervals": est.n, "r2": est.r2},
            cpu_source,
            f"{_promql_rate(cpu_sel.promql(), step, scrape)} ~ idle·ready_pods + "
            f"cpu_per_request·{_promql_rate(requests.selector.promql(), step, scrape)}",
            "robust (soft-L1) regression without intercept, both terms ≥ 0",
        )
        params["idle_cpu"] = Parameter(
            "fitted",
            est.idle_cores_per_pod,
            "cores per pod",
            {"stderr": est.idle_se_cores, "intervals": est.n},
            cpu_source,
            method="the same regression's per-pod term",
        )
        model_block["cpu_per_request"] = fmt_duration(est.cpu_per_request_s)
        model_block["idle_cpu"] = fmt_cpu(est.idle_cores_per_pod)
    elif est is not None:
        note = (
            f"requests per pod hardly varied (mean {est.mean_rps_per_pod:.3g} req/s per pod using "
            f"{est.mean_cores_per_pod:.3g} cores): CPU per request and idle CPU cannot be told apart; "
            f"at most {est.mean_cores_per_pod / max(est.mean_rps_per_pod, 1e-9):.3g} core-s per request"
        )
        for name in ("cpu_per_request", "idle_cpu"):
            params[name] = Parameter("not_identifiable", queries=cpu_source, note=note)
    else:
        why = "no CPU series" if not cpu_sig.valid.any() else f"only {int(usable_cpu.sum())} usable intervals"
        for name in ("cpu_per_request", "idle_cpu"):
            params[name] = Parameter(
                "not_available" if not cpu_sig.valid.any() else "too_short", queries=cpu_q, note=why
            )

    # --- pod start-up ----------------------------------------------------------------------
    created, created_sel, created_q = read_last_per_pod(source, k8s.pod_created, variables, grid)
    ready_at, ready_sel2, ready_t_q = read_last_per_pod(source, k8s.pod_ready, variables, grid)
    new_pods = {p: v for p, v in created.items() if grid.start_s <= v[0] <= grid.end_s}
    delays = np.array([ready_at[p][0] - c for p, (c, _) in new_pods.items() if p in ready_at])
    delays = delays[delays >= 0]
    # Pods never seen ready: gone (or the window ended) first; their start-up took longer than that.
    censored = np.array([seen - c for p, (c, seen) in new_pods.items() if p not in ready_at])
    if len(censored):
        issues.append(
            Issue(
                "censored",
                k8s.pod_ready.metric,
                f"{len(censored)} pod(s) created in the window never reported ready",
                "counted in the start-up fit as taking longer than they were watched (right-censored)",
                count=len(censored),
            )
        )
    startup_source = [created_q, ready_t_q]
    startup_promql = f"{ready_sel2.promql()} - on(pod) {created_sel.promql()}"
    if len(delays) >= MIN_STARTS:
        est_s = fit.fit_samples(delays, rng, censored)
        few = f"only {len(delays)} starts: wide uncertainty" if len(delays) < FEW_STARTS else None
        params["startup"] = Parameter(
            "fitted",
            {"distribution": est_s.kind, "mean": est_s.mean_s, "cv": est_s.cv, "median": est_s.median_s},
            "s",
            {
                "mean_stderr": est_s.mean_se_s,
                "cv_stderr": est_s.cv_se,
                "median_stderr": est_s.median_se_s,
                "starts": est_s.n,
                "censored": len(censored),
            },
            startup_source,
            startup_promql,
            "maximum likelihood (lognormal vs gamma) over per-pod ready − created, "
            "pods never seen ready as right-censored",
            few,
        )
        model_block["startup"] = {
            "distribution": est_s.kind,
            "mean": fmt_duration(est_s.mean_s),
            "cv": round(est_s.cv, 3),
        }
    else:
        params["startup"] = Parameter(
            "not_available" if not created else "too_short",
            queries=startup_source,
            note=f"{len(delays)} pod start(s) with both created and ready times (need {MIN_STARTS})",
        )

    # --- nodes (Karpenter) -----------------------------------------------------------------
    launch = read_histogram(source, k8s.node_launch, variables, grid, scrape)
    if launch is not None and np.nansum(launch.observations) >= MIN_STARTS:
        est_n = fit.fit_histogram(
            launch.counts[launch.valid], launch.sums_s[launch.valid], launch.bounds_s, rng
        )
        params["node_launch"] = Parameter(
            "fitted",
            {"distribution": est_n.kind, "mean": est_n.mean_s, "cv": est_n.cv},
            "s",
            {"mean_stderr": est_n.mean_se_s, "cv_stderr": est_n.cv_se, "launches": est_n.n},
            launch.queries,
            method="histogram fit of NodeClaim Unknown→Initialized time (for the Karpenter model)",
        )
    else:
        params["node_launch"] = Parameter(
            "not_available",
            queries=[f"{k8s.node_launch.metric}_bucket"],
            note="no NodeClaim timing histogram",
        )

    # --- traffic -----------------------------------------------------------------------------
    offered_rps = requests.offered / step
    starts_t = grid.times[:-1]
    traffic: dict[str, object] = {
        "replay": {
            "kind": "replay",
            "path": f"{target.service}.traffic.csv",
            "rate_column": "rps",
            "interpolation": "previous",
        },
    }
    prof = None
    traffic_q = _promql_rate(requests.selector.promql(), step, scrape)
    params["traffic.mean_rps"] = Parameter(
        "fitted",
        float(np.nanmean(offered_rps)),
        "req/s",
        {"intervals": int(np.isfinite(offered_rps).sum())},
        requests.queries,
        traffic_q,
    )
    try:
        prof = profile.fit_profile(starts_t + step / 2, offered_rps, step)
    except ValueError as exc:
        params["traffic.profile"] = Parameter(
            "too_short", queries=requests.queries, promql=traffic_q, note=str(exc)
        )
        issues.append(
            Issue("too_short", "traffic", str(exc), "no daily profile; the replay series is still written")
        )
    if prof is not None:
        synthetic: dict[str, object] = {
            "kind": "diurnal",
            "base_rps": round(prof.base_rps, 3),
            "peak_rps": round(prof.peak_rps, 3),
            "peak_hour": round(prof.peak_hour, 2),
            "start_day": "mon",
            "start_hour": 0,
        }
        if prof.day_factors is not None:
            synthetic["day_factors"] = [round(f, 3) for f in prof.day_factors]
        if prof.noise_cv > 0:
            synthetic["noise"] = {
                "cv": round(prof.noise_cv, 3),
                "correlation_time": fmt_duration(prof.noise_correlation_s),
            }
        traffic["synthetic"] = synthetic
        traffic["daily_profile"] = {
            "timezone": "UTC",
            "hourly_factors": [round(float(v), 4) for v in prof.hourly],
        }
        params["traffic.profile"] = Parameter(
            "fitted",
            {"base_rps": prof.base_rps, "peak_rps": prof.peak_rps, "peak_hour": prof.peak_hour},
            "req/s",
            {"r2_log_rate": prof.r2, "days": prof.days},
            requests.queries,
            traffic_q,
            f"log-rate regression on {profile.HARMONICS} daily harmonics and an offset per weekday",
        )
        params["traffic.weekdays"] = Parameter(
            "fitted" if prof.day_factors else "too_short",
            {k: round(v, 3) for k, v in prof.weekday_factors.items()},
            method="weekday offsets of the same regression, mean 1 over the weekdays seen",
            note=None
            if prof.day_factors
            else "not every weekday was seen: day_factors left out of `synthetic`",
        )
        params["traffic.noise"] = Parameter(
            "fitted",
            {"cv": prof.noise_cv, "correlation_time_s": prof.noise_correlation_s},
            method="residual of the profile minus Poisson counting noise; AR(1) correlation time",
        )

    observed: dict[str, object] = {
        "ready_replicas": _range(ready.points),
        "spec_replicas": _range(spec_replicas.points),
    }
    hpa_sig, _, _ = read_gauge(source, k8s.hpa_desired, variables, grid, scrape)
    if np.isfinite(hpa_sig.points).any():
        observed["hpa_desired_replicas"] = _range(hpa_sig.points)
    nodes_sig, _, _ = read_gauge(source, k8s.nodes, variables, grid, scrape)
    if np.isfinite(nodes_sig.points).any():
        observed["nodes"] = _range(nodes_sig.points)
    types = instance_types(source, k8s.node_labels, variables, grid)
    if types:
        observed["node_instance_types"] = types

    wm = WorkloadModel(
        service=target.service,
        namespace=target.namespace,
        source=source.description,
        window={
            "start": iso(grid.start_s),
            "end": iso(grid.end_s),
            "step": fmt_duration(step),
            "scrape_interval": fmt_duration(scrape),
            "observed": observed,
        },
        query_sets={
            "app": chosen.app.name if chosen.app else None,
            "ingress": chosen.ingress.name if chosen.ingress else None,
            "probed": list(chosen.probed),
        },
        model=model_block,
        parameters=params,
        traffic=traffic,
        issues=[i.as_dict() for i in issues],
        notes=notes,
        replay=(starts_t, offered_rps),
    )
    return Calibration(wm, grid, requests, hists, conc, prof)


def _range(points: np.ndarray) -> dict[str, float] | None:
    finite = points[np.isfinite(points)]
    if not len(finite):
        return None
    return {"min": float(finite.min()), "mean": round(float(finite.mean()), 2), "max": float(finite.max())}


def _service_params(
    params: dict[str, Parameter],
    model_block: dict[str, object],
    est: fit.DistEstimate | None,
    hist: Histogram | None,
    method: str,
    note: str | None,
    hists: dict[str, Histogram],
) -> None:
    if est is None:
        why = "no latency histogram" if not hists else f"fewer than {MIN_OBSERVATIONS} observations"
        for name in ("service_time.mean", "service_time.cv"):
            params[name] = Parameter("not_available" if not hists else "too_short", note=why)
        return
    assert hist is not None
    sel = hist.selector
    mean_q = (
        f"sum(increase({sel.with_metric(hist.name + '_sum').promql()}[$window])) / "
        f"sum(increase({sel.with_metric(hist.name + '_count').promql()}[$window]))"
    )
    params["service_time.mean"] = Parameter(
        "fitted",
        est.mean_s,
        "s",
        {"stderr": est.mean_se_s, "observations": est.n, "method": "block bootstrap over time"},
        hist.queries,
        mean_q,
        method,
        note,
    )
    params["service_time.cv"] = Parameter(
        "fitted",
        est.cv,
        None,
        {"stderr": est.cv_se, "log_likelihood": est.log_likelihood},
        hist.queries,
        f"sum by (le) (increase({sel.with_metric(hist.name + '_bucket').promql()}[$window]))",
        f"{est.kind} chosen by likelihood over the bucket counts",
    )
    model_block["service_time"] = {
        "distribution": est.kind,
        "mean": fmt_duration(est.mean_s),
        "cv": round(est.cv, 3),
    }


def _workers_param(
    params: dict[str, Parameter],
    model_block: dict[str, object],
    notes: dict[str, str],
    conc: fit.ConcurrencyEstimate | None,
    response: Histogram | None,
    pods_query: list[str],
    step: float,
) -> None:
    if conc is None:
        why = (
            "no latency histogram"
            if response is None
            else "too few intervals with latency and replica counts"
        )
        params["workers"] = Parameter("not_available" if response is None else "too_short", note=why)
        model_block["workers"] = None
        notes["workers"] = f"NOT FITTED ({why}): set the workers per pod by hand"
        return
    queries = [*(response.queries if response else []), *pods_query]
    unc = {
        "profile_loglik": {str(k): v for k, v in sorted(conc.profile.items()) if v > -1e6},
        "minutes_at_utilisation_0.7": round(conc.high_utilisation_s / 60.0, 1),
    }
    assumption = "per-pod M/G/k with Poisson arrivals (random load balancing), Allen–Cunneen wait"
    if conc.workers is not None:
        params["workers"] = Parameter(
            "fitted", conc.workers, "requests per pod", unc, queries, method=assumption, note=conc.reason
        )
        model_block["workers"] = conc.workers
        return
    params["workers"] = Parameter(
        "not_identifiable",
        None,
        None,
        {**unc, "lower_bound": conc.lower_bound},
        queries,
        method=assumption,
        note=conc.reason,
    )
    model_block["workers"] = None
    notes["workers"] = (
        f"NOT IDENTIFIABLE from this history (≥ {conc.lower_bound}): set the workers per pod by hand"
    )
