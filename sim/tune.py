"""Search scaling settings for the cheapest config that keeps every SLO, on every seed.

A candidate is a flat dict of dimension values (sim.search_space). It is
judged on the same seeds as every other candidate (common random numbers:
same traffic, same pod start delays), one simulation per seed, and the
verdict uses the *worst* seed: a hard SLO holds only when every seed attains
its objective plus a stated share (`slo_margin`) of the error budget. Seeds
run in a fixed order inside one task, so stopping a candidate after the seed
that breaks a hard SLO (it can no longer be feasible) changes no verdict and
no result.

Search is optuna, multi-objective (monthly cost down, SLO margin up), with
hard SLOs, the failure ratio and request floors as constraints, or a full
grid for small spaces. Candidates are asked for in fixed-size generations and
told back in trial order, whatever order the executor finishes them in; with
a seeded sampler the whole run is a function of the scenario, its seeds and
the budget, on one worker or a hundred. Scale-event churn breaks ties
between configs of (nearly) equal cost.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from sim.controllers.scalers import ScaledObjectError
from sim.parallel import Executor, InlineExecutor
from sim.scenario import LoadedScenario
from sim.search_space import (
    HOURS_PER_MONTH,
    CandidateError,
    Dimension,
    Params,
    PricingModel,
    SearchSpace,
    apply_params,
    memory_floor_mib,
    search_space,
)

MONTH_S = HOURS_PER_MONTH * 3600.0
BASELINE = -1  # the number of the shipped config's evaluation


# --- judging -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Judge:
    """The rules a candidate is held to; picklable, shipped to workers with the scenario."""

    hard_slos: tuple[str, ...]
    objectives: dict[str, float]
    required: dict[str, float]  # objective + margin × error budget, per SLO
    slo_margin: float
    max_failure_ratio: float
    pricing: PricingModel

    @staticmethod
    def for_scenario(scn: LoadedScenario) -> Judge:
        tune = scn.tune
        names = tuple(tune.hard_slos) if tune.hard_slos is not None else tuple(s.name for s in scn.slos)
        objectives = {s.name: s.objective for s in scn.slos}
        required = {name: min(1.0, obj + tune.slo_margin * (1.0 - obj)) for name, obj in objectives.items()}
        return Judge(names, objectives, required, tune.slo_margin, scn.max_failure_ratio, tune.pricing)

    def budget(self, slo: str) -> float:
        return max(1.0 - self.objectives[slo], 1e-6)


@dataclass(frozen=True)
class SeedOutcome:
    """What one simulation of one candidate showed. Costs are monthly (730 h) at the run's average rate."""

    seed: int
    cost_month_usd: float
    attainment: dict[str, float]
    latency_p95_ms: dict[str, float | None]
    latency_p99_ms: dict[str, float | None]
    failed_ratio: dict[str, float]
    scale_events: int
    pod_hours: float
    cpu_usage_p95_millicores: dict[str, float]
    cost_basis: str


@dataclass(frozen=True)
class Evaluation:
    """One candidate over the seeds it ran (all of them unless a hard SLO broke first)."""

    number: int
    params: Params
    seeds: tuple[SeedOutcome, ...]
    planned_seeds: int
    error: str | None = None
    floors: dict[str, float] = field(
        default_factory=dict
    )  # "<svc>.cpu_request" -> request that must cover p95

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.seeds)

    @property
    def complete(self) -> bool:
        return self.ok and len(self.seeds) == self.planned_seeds

    @property
    def cost_month_usd(self) -> float:
        return float(np.mean([s.cost_month_usd for s in self.seeds])) if self.seeds else math.inf

    @property
    def cost_spread_usd(self) -> tuple[float, float]:
        costs = [s.cost_month_usd for s in self.seeds]
        return (min(costs), max(costs)) if costs else (math.inf, math.inf)

    def worst_attainment(self, slo: str) -> float:
        return min(s.attainment[slo] for s in self.seeds) if self.seeds else 0.0

    def attainment_spread(self, slo: str) -> tuple[float, float, float]:
        values = [s.attainment[slo] for s in self.seeds]
        return min(values), float(np.mean(values)), max(values)

    def worst_latency_ms(self, service: str, q: Literal["p95", "p99"]) -> float | None:
        values = [(s.latency_p95_ms if q == "p95" else s.latency_p99_ms)[service] for s in self.seeds]
        known = [v for v in values if v is not None]
        return max(known) if known else None

    @property
    def scale_events(self) -> float:
        return float(np.mean([s.scale_events for s in self.seeds])) if self.seeds else math.inf

    def margin(self, judge: Judge) -> float:
        """The tightest hard SLO's worst-seed attainment above its required level, in error budgets."""
        if not self.ok or not judge.hard_slos:
            return -math.inf if not self.ok else 0.0
        return min(
            (self.worst_attainment(name) - judge.required[name]) / judge.budget(name)
            for name in judge.hard_slos
        )

    def violations(self, judge: Judge) -> list[str]:
        """Why the candidate is not acceptable; empty when it is."""
        out = self.broken(judge)
        if not out and not self.complete:
            out.append("stopped before every seed ran")
        return out

    def broken(self, judge: Judge) -> list[str]:
        """The rules the seeds run so far already break (more seeds can only add to these)."""
        if self.error is not None:
            return [self.error]
        out = []
        for name in judge.hard_slos:
            worst = self.worst_attainment(name)
            if worst < judge.required[name]:
                out.append(
                    f"{name}: worst-seed attainment {worst:.4f} < {judge.required[name]:.4f} "
                    f"(objective {judge.objectives[name]:g} + {judge.slo_margin:.0%} of the error budget)"
                )
        for s in self.seeds:
            for svc, ratio in s.failed_ratio.items():
                if ratio > judge.max_failure_ratio:
                    out.append(
                        f"{svc}: failed ratio {ratio:.4%} > {judge.max_failure_ratio:.4%} (seed {s.seed})"
                    )
                    break
        for key, request in self.floors.items():
            svc = key.partition(".")[0]
            usage = max(s.cpu_usage_p95_millicores.get(svc, 0.0) for s in self.seeds) if self.seeds else 0.0
            if request < usage:
                out.append(f"{svc}: CPU request {request:g}m below its simulated p95 usage {usage:.0f}m")
        return out

    def feasible(self, judge: Judge) -> bool:
        return self.complete and not self.violations(judge)

    def constraints(self, judge: Judge) -> list[float]:
        """Optuna's constraint vector: every entry <= 0 means feasible."""
        if not self.ok:
            return [1.0]
        failed = max((r for s in self.seeds for r in s.failed_ratio.values()), default=0.0)
        floor = 0.0
        for key, request in self.floors.items():
            svc = key.partition(".")[0]
            usage = max(s.cpu_usage_p95_millicores.get(svc, 0.0) for s in self.seeds)
            floor = max(floor, (usage - request) / max(request, 1.0))
        return [-self.margin(judge), failed - judge.max_failure_ratio, floor]


@dataclass(frozen=True)
class TuneContext:
    """Everything a worker needs besides the candidate; sent once per worker."""

    scenario: LoadedScenario
    judge: Judge
    seeds: tuple[int, ...]


@dataclass(frozen=True)
class CandidateTask:
    number: int
    params: Params
    all_seeds: bool = False  # the baseline runs every seed, so before/after figures are whole


def evaluate_candidate(ctx: TuneContext, task: CandidateTask) -> Evaluation:
    """Simulate one candidate on the context's seeds, in order; a worker's whole job."""
    from sim.engine import simulate

    floors = {}
    for key, value in task.params.items():
        if key.endswith(".cpu_request"):
            floors[key] = float(value)
    try:
        scn = apply_params(ctx.scenario, task.params)
    except CandidateError as exc:
        return Evaluation(task.number, task.params, (), len(ctx.seeds), error=str(exc))
    for key, value in task.params.items():
        if key.endswith(".memory_request"):
            svc = scn.service(key.partition(".")[0])
            if float(value) < memory_floor_mib(svc.model):
                return Evaluation(
                    task.number,
                    task.params,
                    (),
                    len(ctx.seeds),
                    error=f"{svc.name}: memory request {value}Mi below the model's peak "
                    f"{memory_floor_mib(svc.model):.0f}Mi",
                )
    outcomes: list[SeedOutcome] = []
    for seed in ctx.seeds:
        try:
            result = simulate(dataclasses.replace(scn, seed=seed))
        except ScaledObjectError as exc:
            return Evaluation(
                task.number, task.params, (), len(ctx.seeds), error=f"invalid ScaledObject: {exc}"
            )
        outcome = seed_outcome(scn, result, ctx.judge.pricing)
        outcomes.append(outcome)
        partial = Evaluation(task.number, task.params, tuple(outcomes), len(ctx.seeds), floors=floors)
        if not task.all_seeds and partial.broken(ctx.judge):
            break  # the worst seed can only get worse: no later seed can make it feasible
    return Evaluation(task.number, task.params, tuple(outcomes), len(ctx.seeds), floors=floors)


def seed_outcome(scn: LoadedScenario, result: Any, pricing: PricingModel) -> SeedOutcome:
    summary = result.summary
    services = summary["services"]
    cpu_p95: dict[str, float] = {}
    for name, trace in result.traces.items():
        ready = trace.replicas_ready.astype(float)
        mask = ready > 0
        per_pod = trace.cpu_core_s[mask] / result.step_s / ready[mask] * 1000.0
        cpu_p95[name] = float(np.percentile(per_pod, 95)) if per_pod.size else 0.0
    cost, basis = monthly_cost_usd(scn, summary, pricing)
    return SeedOutcome(
        seed=result.seed,
        cost_month_usd=cost,
        attainment={s["name"]: float(s["attainment"]) for s in summary["slos"]},
        latency_p95_ms={k: v["latency_p95_ms"] for k, v in services.items()},
        latency_p99_ms={k: v["latency_p99_ms"] for k, v in services.items()},
        failed_ratio={k: float(v["failed_ratio"]) for k, v in services.items()},
        scale_events=sum(int(v["scale_events"]) for v in services.values()),
        pod_hours=sum(float(v["pod_seconds"]) for v in services.values()) / 3600.0,
        cpu_usage_p95_millicores=cpu_p95,
        cost_basis=basis,
    )


def monthly_cost_usd(
    scn: LoadedScenario, summary: dict[str, Any], pricing: PricingModel
) -> tuple[float, str]:
    """The run's cost rate as a 730-hour month, and what it is based on.

    With simulated nodes the nodes' cost is what is paid. Without, each
    pod-second is priced by its requests (CPU cores and GiB at the pricing's
    list prices): the capacity the pods reserve, which is what tuning moves.
    """
    horizon_s = float(summary["horizon_s"])
    node_cost = _node_cost_usd(summary)
    if node_cost is not None:
        return node_cost * MONTH_S / horizon_s, "node cost of the simulated Karpenter nodes (catalog prices)"
    total = 0.0
    for svc in scn.services:
        m = svc.model
        per_hour = (m.cpu_request_millicores or 0.0) / 1000.0 * pricing.cpu_core_hour_usd + (
            m.memory_request_mib or 0.0
        ) / 1024.0 * pricing.memory_gib_hour_usd
        total += float(summary["services"][svc.name]["pod_seconds"]) / 3600.0 * per_hour
    basis = (
        f"pod-seconds × requests at ${pricing.cpu_core_hour_usd:g}/core-h and "
        f"${pricing.memory_gib_hour_usd:g}/GiB-h (no node cost simulated)"
    )
    return total * MONTH_S / horizon_s, basis


def _node_cost_usd(summary: dict[str, Any]) -> float | None:
    """The run's node cost, under the keys the CI gate also reads."""
    cost = summary.get("cost")
    if isinstance(cost, dict):
        for key in ("total_usd", "usd"):
            if isinstance(cost.get(key), int | float):
                return float(cost[key])
    for key in ("cost_usd", "total_cost_usd"):
        if isinstance(summary.get(key), int | float):
            return float(summary[key])
    return None


# --- the search ----------------------------------------------------------------------------------


@dataclass
class TuneRun:
    scenario: LoadedScenario
    space: SearchSpace
    judge: Judge
    seeds: tuple[int, ...]
    mode: Literal["grid", "optuna"]
    baseline: Evaluation
    evaluations: list[Evaluation]  # in trial order
    executor: str
    wall_time_s: float = 0.0

    @property
    def simulations(self) -> int:
        return len(self.baseline.seeds) + sum(len(e.seeds) for e in self.evaluations)

    def all(self) -> list[Evaluation]:
        return [self.baseline, *self.evaluations]

    def recommendation(self) -> Evaluation | None:
        return recommend(self.all(), self.judge, self.scenario.tune.tie_tolerance, self.space)

    def pareto(self) -> list[Evaluation]:
        return pareto_front(self.all(), self.judge)


@dataclass(frozen=True)
class Progress:
    done: int
    total: int
    best_cost_usd: float | None  # the cheapest feasible so far


ProgressFn = Callable[[Progress], None]


def tune(
    scn: LoadedScenario,
    *,
    executor: Executor | None = None,
    trials: int | None = None,
    seeds: int | None = None,
    mode: Literal["auto", "grid", "optuna"] | None = None,
    progress: ProgressFn | None = None,
) -> TuneRun:
    """Evaluate the shipped config and `trials` candidates; deterministic for any executor."""
    started = time.perf_counter()
    cfg = scn.tune
    executor = executor or InlineExecutor()
    n_trials = trials if trials is not None else cfg.trials
    n_seeds = seeds if seeds is not None else cfg.seeds
    space = search_space(scn, cfg)
    judge = Judge.for_scenario(scn)
    seed_list = tuple(scn.seed + i for i in range(n_seeds))
    ctx = TuneContext(scn, judge, seed_list)
    chosen = mode or cfg.mode
    use_grid = chosen == "grid" or (chosen == "auto" and space.grid_size() <= n_trials)
    total = (space.grid_size() if use_grid else n_trials) + 1
    state = _State(ctx, executor, progress, total)
    try:
        if use_grid:
            evaluations = _grid(space, state)
        else:
            evaluations = _optuna(space, state, n_trials, cfg.generation, cfg.sampler, cfg.sampler_seed)
        assert state.baseline is not None
        evaluations += _simplify([state.baseline, *evaluations], space, state, cfg.tie_tolerance)
    finally:
        executor.close()
    assert state.baseline is not None
    return TuneRun(
        scenario=scn,
        space=space,
        judge=judge,
        seeds=seed_list,
        mode="grid" if use_grid else "optuna",
        baseline=state.baseline,
        evaluations=evaluations,
        executor=executor.describe(),
        wall_time_s=time.perf_counter() - started,
    )


class _State:
    """Runs generations through the executor; remembers candidates already seen (same params, same result)."""

    def __init__(self, ctx: TuneContext, executor: Executor, progress: ProgressFn | None, total: int) -> None:
        self.ctx = ctx
        self.executor = executor
        self.progress = progress
        self.total = total
        self.done = 0
        self.best: float | None = None
        self.baseline: Evaluation | None = None
        self.seen: dict[tuple[tuple[str, Any], ...], Evaluation] = {}

    def run_generation(self, params: Sequence[Params], first_number: int) -> list[Evaluation]:
        tasks: list[CandidateTask] = []
        if self.baseline is None:
            tasks.append(CandidateTask(BASELINE, {}, all_seeds=True))
        fresh: dict[tuple[tuple[str, Any], ...], int] = {}
        for i, p in enumerate(params):
            key = _key(p)
            if key not in self.seen and key not in fresh:
                fresh[key] = len(tasks)
                tasks.append(CandidateTask(first_number + i, p))
        results: dict[int, Evaluation] = {}
        for index, evaluation in self.executor.run(evaluate_candidate, self.ctx, tasks):
            results[index] = evaluation
            self._tick(evaluation)
        if self.baseline is None:
            self.baseline = results[0]
        for key, index in fresh.items():
            self.seen[key] = results[index]
        out = []
        for i, p in enumerate(params):
            ev = self.seen[_key(p)]
            if ev.number != first_number + i:
                ev = dataclasses.replace(ev, number=first_number + i)
                self._tick(ev)  # a repeat: counted, not simulated again
            out.append(ev)
        return out

    def _tick(self, ev: Evaluation) -> None:
        self.done += 1
        if ev.feasible(self.ctx.judge) and (self.best is None or ev.cost_month_usd < self.best):
            self.best = ev.cost_month_usd
        if self.progress is not None:
            self.progress(Progress(self.done, self.total, self.best))


def _key(params: Params) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((k, float(v) if isinstance(v, int | float) else v) for k, v in params.items()))


def _grid(space: SearchSpace, state: _State) -> list[Evaluation]:
    names = [d.name for d in space.dimensions]
    combos = [
        dict(zip(names, values, strict=True))
        for values in itertools.product(*(d.grid() for d in space.dimensions))
    ]
    generation = max(1, state.executor.workers * 4)
    out: list[Evaluation] = []
    for start in range(0, len(combos), generation):
        out += state.run_generation(combos[start : start + generation], start)
    if not combos:
        state.run_generation([], 0)
    return out


def _distribution(d: Dimension) -> Any:
    import optuna

    if d.kind == "categorical":
        return optuna.distributions.CategoricalDistribution(list(d.choices))
    if d.kind == "int":
        step = int(d.step or 1)
        top = int(d.low + math.floor((d.high - d.low) / step) * step)
        return optuna.distributions.IntDistribution(int(d.low), top, step=step, log=d.log)
    if d.step is not None:
        last = d.low + math.floor((d.high - d.low) / d.step + 1e-9) * d.step
        return optuna.distributions.FloatDistribution(d.low, round(last, 9), step=d.step)
    return optuna.distributions.FloatDistribution(d.low, d.high, log=d.log)


def _optuna(
    space: SearchSpace, state: _State, n_trials: int, generation: int, sampler_name: str, sampler_seed: int
) -> list[Evaluation]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler: optuna.samplers.BaseSampler
    if sampler_name == "nsga2":
        sampler = optuna.samplers.NSGAIISampler(population_size=max(generation, 2), seed=sampler_seed)
    else:
        sampler = optuna.samplers.TPESampler(
            seed=sampler_seed,
            n_startup_trials=max(generation, 10),
            multivariate=True,
        )
    study = optuna.create_study(directions=["minimize", "maximize"], sampler=sampler)
    dists = {d.name: _distribution(d) for d in space.dimensions}
    current = space.current()
    if all(d.contains(current.get(d.name)) for d in space.dimensions):
        study.enqueue_trial(current)  # the shipped config is the first candidate the sampler learns from
    judge = state.ctx.judge
    out: list[Evaluation] = []
    while len(out) < n_trials:
        size = min(generation, n_trials - len(out))
        asked = [study.ask(dists) for _ in range(size)]
        evaluations = state.run_generation([dict(t.params) for t in asked], len(out))
        for trial, ev in zip(asked, evaluations, strict=True):
            if not ev.ok:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                continue
            for i, value in enumerate(ev.constraints(judge)):
                trial.set_constraint(f"c{i}", value)
            study.tell(trial, [ev.cost_month_usd, max(ev.margin(judge), -1e6)])
        out += evaluations
    return out


# --- choosing ------------------------------------------------------------------------------------


def pareto_front(evaluations: Sequence[Evaluation], judge: Judge) -> list[Evaluation]:
    """Candidates no other beats on both cost (lower) and SLO margin (higher), cheapest first.

    Equal points keep the first evaluated, so the front has no duplicates.
    """
    points = [e for e in evaluations if e.ok]
    front: list[Evaluation] = []
    for e in points:
        c, m = e.cost_month_usd, e.margin(judge)
        dominated = False
        for o in points:
            if o is e:
                continue
            oc, om = o.cost_month_usd, o.margin(judge)
            better_or_equal = oc <= c and om >= m
            if better_or_equal and (oc < c or om > m or (o.number < e.number and _same(o, e, judge))):
                dominated = True
                break
        if not dominated:
            front.append(e)
    return sorted(front, key=lambda e: (e.cost_month_usd, -e.margin(judge), e.number))


def _same(a: Evaluation, b: Evaluation, judge: Judge) -> bool:
    return a.cost_month_usd == b.cost_month_usd and a.margin(judge) == b.margin(judge)


def changed(ev: Evaluation, space: SearchSpace) -> list[str]:
    """The dimensions whose value differs from the shipped config (the fields a PR would touch)."""
    if ev.number == BASELINE:
        return []
    out = []
    for d in space.dimensions:
        value = ev.params.get(d.name)
        if value is None or d.current is None:
            continue
        same = (
            str(value) == str(d.current)
            if isinstance(value, str) or isinstance(d.current, str)
            else math.isclose(float(value), float(d.current), abs_tol=1e-9)
        )
        if not same:
            out.append(d.name)
    return out


def recommend(
    evaluations: Sequence[Evaluation], judge: Judge, tie_tolerance: float, space: SearchSpace
) -> Evaluation | None:
    """The cheapest feasible config.

    Costs within `tie_tolerance` of the cheapest count as equal; among those the
    one changing fewest manifest fields wins (a smaller PR to review), then the
    one with least scale-event churn, then the earliest evaluated.
    """
    feasible = [e for e in evaluations if e.feasible(judge)]
    if not feasible:
        return None
    cheapest = min(e.cost_month_usd for e in feasible)
    close = [e for e in feasible if e.cost_month_usd <= cheapest * (1.0 + tie_tolerance)]
    return min(close, key=lambda e: (len(changed(e, space)), e.scale_events, e.cost_month_usd, e.number))


def _simplify(
    evaluations: list[Evaluation], space: SearchSpace, state: _State, tie_tolerance: float
) -> list[Evaluation]:
    """Try the recommendation with each changed field put back, then with every harmless revert at once.

    A search leaves incidental changes (a maxReplicaCount raised where it never
    binds); reverting them keeps the PR to the fields that matter. Two fixed
    generations, so the outcome is as deterministic as the search.
    """
    judge = state.ctx.judge
    best = recommend(evaluations, judge, tie_tolerance, space)
    if best is None:
        return []
    names = changed(best, space)
    if not names:
        return []
    current = space.current()
    reverts = {name: {**best.params, name: current[name]} for name in names}
    singles = [p for p in reverts.values() if _key(p) not in state.seen]
    state.total += len(singles)
    number = max(e.number for e in evaluations) + 1
    out = state.run_generation(singles, number)
    limit = best.cost_month_usd * (1.0 + tie_tolerance)
    harmless = [
        n
        for n, p in reverts.items()
        if state.seen[_key(p)].feasible(judge) and state.seen[_key(p)].cost_month_usd <= limit
    ]
    combined = {**best.params, **{n: current[n] for n in harmless}}
    if len(harmless) >= 2 and _key(combined) not in state.seen:
        state.total += 1
        out += state.run_generation([combined], number + len(singles))
    return out
