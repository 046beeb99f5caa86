"""The CI gate: does a change to the manifests make SLOs or cost worse than the committed baseline?

A pull request that touches a ScaledObject is judged against numbers for the
base branch: `reports/baseline.json`, written by `capsim check --update-baseline`.
Those numbers are only worth trusting while they describe what the base branch
would simulate to today, so the baseline records the capsim version (and a hash
of its code, since a development install changes the model without a new
version), a hash of the scenario file and of every manifest it read, and the seeds. When they no
longer match (capsim upgraded, the scenario or a base manifest edited since),
`base_ref` re-simulates the base branch's files from git with the current code
instead, and every verdict says which of the two it compared against.

Each scenario runs on several seeds. Seeds are the same for base and head, so
with common random numbers a change that touches nothing gives identical
numbers, and a real change is judged by its paired differences: a regression
must exceed both a small absolute tolerance and twice the standard error of
the seeds' differences. Noise alone does not fail a build.

Checks per scenario: every SLO (attainment, higher is better), the scenario's
`max_failure_ratio` per service (lower is better), and cost (USD when the run
has node costs, else pod-hours as the capacity proxy; lower is better).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import json
import math
import os
import shutil
import subprocess
import tarfile
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Literal

from sim import __version__
from sim.errors import ExternalError, InputError

BASELINE_FORMAT = 1
DEFAULT_SEEDS = 3
# Smallest change in an attainment or failure ratio worth failing a build over: 0.05 percentage points.
RATIO_TOLERANCE = 0.0005
NOISE_Z = 2.0

Direction = Literal["higher", "lower"]


class Verdict(Enum):
    """What one check concluded; `fails` says which verdicts fail the gate (and under --strict)."""

    OK = "ok"
    IMPROVED = "improved"
    FIXED = "fixed"
    WITHIN_NOISE = "within noise"
    STILL_BROKEN = "still broken"
    NEW = "no baseline"
    NEW_BROKEN = "broken, no baseline"
    BROKEN = "BROKEN"
    WORSE = "WORSE"
    COST_UP = "COST UP"
    INCOMPARABLE = "not comparable"

    def fails(self, strict: bool) -> bool:
        if self in (Verdict.BROKEN, Verdict.WORSE, Verdict.COST_UP):
            return True
        return strict and self in (Verdict.STILL_BROKEN, Verdict.NEW_BROKEN, Verdict.WITHIN_NOISE)


@dataclass(frozen=True)
class Measure:
    """One number a check compares, per seed.

    `objective` is the bound the number must respect (None for cost, which has
    no bound, only a tolerance against the base).
    """

    name: str
    kind: Literal["slo", "failures", "cost"]
    service: str | None
    direction: Direction
    unit: str
    values: tuple[float, ...]
    objective: float | None = None

    @property
    def mean(self) -> float:
        return sum(self.values) / len(self.values)

    def met(self) -> bool | None:
        if self.objective is None:
            return None
        return self.mean >= self.objective if self.direction == "higher" else self.mean <= self.objective

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "service": self.service,
            "direction": self.direction,
            "unit": self.unit,
            "objective": self.objective,
            "values": list(self.values),
        }

    @classmethod
    def from_json(cls, name: str, data: dict[str, Any]) -> Measure:
        return cls(
            name=name,
            kind=data["kind"],
            service=data.get("service"),
            direction=data["direction"],
            unit=data["unit"],
            values=tuple(float(v) for v in data["values"]),
            objective=data.get("objective"),
        )


@dataclass(frozen=True)
class Sample:
    """A scenario simulated on some seeds, with the fingerprint of what was simulated."""

    scenario: str
    file: str
    capsim_version: str
    scenario_hash: str
    manifest_hash: str
    inputs: dict[str, str]
    seeds: tuple[int, ...]
    measures: dict[str, Measure]
    code_hash: str | None = None  # None in baselines written before it was recorded

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "capsim_version": self.capsim_version,
            "code_hash": self.code_hash,
            "scenario_hash": self.scenario_hash,
            "manifest_hash": self.manifest_hash,
            "inputs": self.inputs,
            "seeds": list(self.seeds),
            "measures": {name: m.to_json() for name, m in self.measures.items()},
        }

    @classmethod
    def from_json(cls, scenario: str, data: dict[str, Any]) -> Sample:
        return cls(
            scenario=scenario,
            file=data["file"],
            capsim_version=data["capsim_version"],
            scenario_hash=data["scenario_hash"],
            manifest_hash=data["manifest_hash"],
            inputs=dict(data["inputs"]),
            seeds=tuple(int(s) for s in data["seeds"]),
            measures={n: Measure.from_json(n, m) for n, m in data["measures"].items()},
            code_hash=data.get("code_hash"),
        )


@dataclass(frozen=True)
class CheckRow:
    scenario: str
    measure: str
    kind: str
    service: str | None
    unit: str
    objective: float | None
    base: tuple[float, ...] | None
    head: tuple[float, ...]
    delta: float | None
    noise: float | None
    verdict: Verdict
    detail: str


@dataclass
class ScenarioCheck:
    scenario: str
    file: str
    baseline_source: str
    seeds: tuple[int, ...]
    rows: list[CheckRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def failures(self, strict: bool) -> list[CheckRow]:
        return [r for r in self.rows if r.verdict.fails(strict)]


@dataclass
class CheckReport:
    scenarios: list[ScenarioCheck]
    strict: bool
    cost_tolerance: float

    @property
    def passed(self) -> bool:
        return not any(s.failures(self.strict) for s in self.scenarios)


# --- simulating and fingerprinting ---------------------------------------------------------------


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def fingerprint(scenario_file: Path, input_files: Sequence[Path]) -> tuple[str, str, dict[str, str]]:
    """Hashes of the scenario file, of the other inputs together, and of each input by relative path.

    Paths are relative to the scenario file's directory, so a baseline written
    in one checkout matches another checkout (or a tree extracted from git).
    """
    base = scenario_file.parent
    inputs = {os.path.relpath(p, base): _sha(p) for p in input_files}
    scenario_rel = os.path.relpath(scenario_file, base)
    h = hashlib.sha256()
    for rel in sorted(inputs):
        if rel != scenario_rel:
            h.update(rel.encode() + b"\0" + inputs[rel].encode() + b"\n")
    return inputs[scenario_rel], h.hexdigest()[:16], inputs


@functools.cache
def code_fingerprint() -> str:
    """A hash of capsim's own source: a development install changes the model without a new version."""
    package = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        h.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def cost_of(summary: dict[str, Any]) -> tuple[float, str]:
    """The run's cost: node cost in USD when the run modelled nodes, else pod-hours.

    Pod-hours stand in for money when nodes are unlimited: more pod-hours is
    more capacity to pay for, and the gate should see it.
    """
    cost = summary.get("cost")
    if isinstance(cost, dict):
        for key in ("total_usd", "node_cost_usd", "usd"):
            if isinstance(cost.get(key), int | float):
                return float(cost[key]), "USD"
    for key in ("cost_usd", "total_cost_usd"):
        if isinstance(summary.get(key), int | float):
            return float(summary[key]), "USD"
    services = summary.get("services", {})
    return sum(float(s.get("pod_seconds", 0.0)) for s in services.values()) / 3600.0, "pod-h"


def measures_of(summaries: Sequence[dict[str, Any]], max_failure_ratio: float) -> dict[str, Measure]:
    """Turn one summary per seed into the measures the gate compares."""
    first = summaries[0]
    out: dict[str, Measure] = {}
    for i, slo in enumerate(first["slos"]):
        out[slo["name"]] = Measure(
            name=slo["name"],
            kind="slo",
            service=slo["service"],
            direction="higher",
            unit="attainment",
            values=tuple(float(s["slos"][i]["attainment"]) for s in summaries),
            objective=float(slo["objective"]),
        )
    for service in first["services"]:
        name = f"{service}:failed-ratio"
        out[name] = Measure(
            name=name,
            kind="failures",
            service=service,
            direction="lower",
            unit="ratio",
            values=tuple(float(s["services"][service]["failed_ratio"]) for s in summaries),
            objective=max_failure_ratio,
        )
    costs = [cost_of(s) for s in summaries]
    out["cost"] = Measure(
        name="cost",
        kind="cost",
        service=None,
        direction="lower",
        unit=costs[0][1],
        values=tuple(c for c, _ in costs),
    )
    return out


SimulateFn = Callable[[Any], Any]


def sample_scenario(
    path: Path,
    seeds: Sequence[int] | None,
    n_seeds: int,
    display_file: str | None = None,
) -> Sample:
    """Load a scenario and simulate it on each seed (given, or the scenario's seed and the next ones)."""
    from sim.engine import simulate
    from sim.scenario import load_scenario

    scn = load_scenario(path)
    run_seeds = tuple(seeds) if seeds else tuple(scn.seed + i for i in range(n_seeds))
    summaries = [simulate(dataclasses.replace(scn, seed=s)).summary for s in run_seeds]
    scenario_hash, manifest_hash, inputs = fingerprint(path, scn.input_files)
    return Sample(
        scenario=scn.name,
        file=display_file or str(path),
        capsim_version=__version__,
        scenario_hash=scenario_hash,
        manifest_hash=manifest_hash,
        inputs=inputs,
        seeds=run_seeds,
        measures=measures_of(summaries, scn.max_failure_ratio),
        code_hash=code_fingerprint(),
    )


# --- the baseline file ---------------------------------------------------------------------------


def read_baseline(path: Path) -> dict[str, Sample]:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
        if data.get("format") != BASELINE_FORMAT:
            raise InputError(
                f"baseline format {data.get('format')!r} is not understood",
                file=path,
                field="format",
                valid=str(BASELINE_FORMAT),
            )
        return {name: Sample.from_json(name, entry) for name, entry in data["scenarios"].items()}
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise InputError(
            f"not a capsim baseline ({exc.__class__.__name__}: {exc})",
            file=path,
            valid="a file written by `capsim check --update-baseline`",
        ) from exc


def write_baseline(path: Path, samples: Sequence[Sample]) -> None:
    """Replace the named scenarios' entries and keep the others; written atomically."""
    entries = {name: s.to_json() for name, s in read_baseline(path).items()}
    entries.update({s.scenario: s.to_json() for s in samples})
    data = {
        "format": BASELINE_FORMAT,
        "capsim_version": __version__,
        "scenarios": dict(sorted(entries.items())),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --- the base branch from git ---------------------------------------------------------------------


def _git(args: Sequence[str], cwd: Path) -> bytes:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, check=False)
    except FileNotFoundError as exc:
        raise ExternalError("git is not installed; --base-ref needs it") from exc
    if done.returncode != 0:
        raise ExternalError(f"git {' '.join(args)} failed: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout


class BaseTree:
    """The base branch's files, extracted from git once per gate run into a temporary directory."""

    def __init__(self, ref: str, root: Path, tree: Path) -> None:
        self.ref = ref
        self.root = root
        self.tree = tree

    def locate(self, scenario: Path) -> Path | None:
        """Where the base branch has this scenario file, or None when it does not have it."""
        rel = scenario.resolve().relative_to(self.root)
        there = self.tree / rel
        return there if there.is_file() else None


@contextmanager
def base_tree(ref: str, inside: Path) -> Iterator[BaseTree]:
    """Extract `ref` of the repository holding `inside` (git archive: leaves no worktree behind)."""
    root = Path(_git(["rev-parse", "--show-toplevel"], inside).decode().strip()).resolve()
    _git(["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], root)
    archive = _git(["archive", "--format=tar", ref], root)
    tmp = Path(tempfile.mkdtemp(prefix="capsim-base-"))
    try:
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(tmp, filter="data")
        yield BaseTree(ref, root, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --- comparing ------------------------------------------------------------------------------------


def _sd(xs: Sequence[float]) -> float:
    if len(xs) < 2:
        return 0.0
    m = sum(xs) / len(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def _delta_and_noise(base: Measure, head: Measure, paired: bool) -> tuple[float, float]:
    """Mean change (head - base) and the noise band it must exceed to count as measurable."""
    if paired:
        diffs = [h - b for h, b in zip(head.values, base.values, strict=True)]
        se = _sd(diffs) / math.sqrt(len(diffs))
    else:
        se = math.sqrt(_sd(base.values) ** 2 / len(base.values) + _sd(head.values) ** 2 / len(head.values))
    floor = RATIO_TOLERANCE if head.kind != "cost" else 0.0
    return head.mean - base.mean, max(floor, NOISE_Z * se)


def compare_measure(base: Measure | None, head: Measure, paired: bool, cost_tolerance: float) -> CheckRow:
    """The verdict for one measure; see the module docstring for the rules."""

    def row(
        verdict: Verdict, detail: str, delta: float | None = None, noise: float | None = None
    ) -> CheckRow:
        return CheckRow(
            scenario="",
            measure=head.name,
            kind=head.kind,
            service=head.service,
            unit=head.unit,
            objective=head.objective,
            base=base.values if base else None,
            head=head.values,
            delta=delta,
            noise=noise,
            verdict=verdict,
            detail=detail,
        )

    if base is None:
        if head.met() is False:
            return row(Verdict.NEW_BROKEN, "not in the baseline, and not met")
        return row(Verdict.NEW, "not in the baseline")
    if base.unit != head.unit:
        return row(Verdict.INCOMPARABLE, f"unit changed from {base.unit} to {head.unit}")
    delta, noise = _delta_and_noise(base, head, paired)
    worse = -delta if head.direction == "higher" else delta
    if head.kind == "cost":
        rel = delta / base.mean if base.mean > 0 else (math.inf if delta > 0 else 0.0)
        if rel > cost_tolerance and delta > noise:
            return row(
                Verdict.COST_UP,
                f"cost +{100 * rel:.1f}% ({base.mean:.4g} → {head.mean:.4g} {head.unit}), "
                f"tolerance {100 * cost_tolerance:.1f}%",
                delta,
                noise,
            )
        if worse < -noise:
            return row(Verdict.IMPROVED, f"cost {100 * rel:+.1f}%", delta, noise)
        return row(
            Verdict.OK, f"cost {100 * rel:+.1f}% (tolerance {100 * cost_tolerance:.1f}%)", delta, noise
        )
    base_met, head_met = base.met(), head.met()
    measurable = worse > noise
    if base_met and not head_met:
        if measurable:
            return row(
                Verdict.BROKEN,
                f"met in the baseline, broken now ({_fmt(base.mean)} → {_fmt(head.mean)})",
                delta,
                noise,
            )
        return row(
            Verdict.WITHIN_NOISE,
            f"below objective, but within the seeds' noise (±{_fmt(noise)})",
            delta,
            noise,
        )
    if not base_met and not head_met:
        if measurable:
            return row(
                Verdict.WORSE,
                f"already broken, measurably worse ({_fmt(base.mean)} → {_fmt(head.mean)})",
                delta,
                noise,
            )
        return row(Verdict.STILL_BROKEN, "broken in the baseline too", delta, noise)
    if not base_met and head_met:
        return row(Verdict.FIXED, "broken in the baseline, met now", delta, noise)
    if worse < -noise:
        return row(Verdict.IMPROVED, "met, and better", delta, noise)
    return row(Verdict.OK, "met", delta, noise)


def compare(base: Sample | None, head: Sample, cost_tolerance: float) -> list[CheckRow]:
    paired = base is not None and base.seeds == head.seeds
    rows = []
    for name, measure in head.measures.items():
        r = compare_measure(base.measures.get(name) if base else None, measure, paired, cost_tolerance)
        rows.append(dataclasses.replace(r, scenario=head.scenario))
    return rows


def staleness(recorded: Sample, current: Sample) -> tuple[list[str], list[str]]:
    """Why recorded numbers may not describe `current`: (model or scenario changes, other changed inputs).

    The first kind makes a comparison unfair (other traffic, other SLOs, another
    model); the second is what a pull request under review is expected to change.
    """
    why = []
    if recorded.capsim_version != current.capsim_version:
        why.append(f"capsim {recorded.capsim_version} → {current.capsim_version}")
    elif recorded.code_hash and current.code_hash and recorded.code_hash != current.code_hash:
        why.append(f"capsim's code changed ({recorded.code_hash} → {current.code_hash})")
    if recorded.scenario_hash != current.scenario_hash:
        why.append("scenario file edited")
    own = Path(current.file).name
    changed = sorted(
        rel
        for rel in set(recorded.inputs) | set(current.inputs)
        if rel != own and recorded.inputs.get(rel) != current.inputs.get(rel)
    )
    return why, changed


def _fingerprint_only(path: Path) -> Sample:
    """A Sample with the fingerprint of `path`'s inputs and no numbers (loading, not simulating)."""
    from sim.scenario import load_scenario

    scn = load_scenario(path)
    scenario_hash, manifest_hash, inputs = fingerprint(path, scn.input_files)
    return Sample(
        scn.name, str(path), __version__, scenario_hash, manifest_hash, inputs, (), {}, code_fingerprint()
    )


# --- the gate -------------------------------------------------------------------------------------


def check(
    scenarios: Sequence[Path],
    baseline_path: Path,
    *,
    n_seeds: int | None = None,
    strict: bool = False,
    cost_tolerance: float = 0.05,
    base_ref: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> CheckReport:
    """Simulate each scenario on the baseline's seeds and compare; see the module docstring."""
    recorded = read_baseline(baseline_path)
    if not recorded and base_ref is None:
        raise InputError(
            "no baseline to compare against",
            file=baseline_path,
            valid="run `capsim check --update-baseline` and commit the file, or pass --base-ref REF",
        )
    say = progress or (lambda _msg: None)
    results: list[ScenarioCheck] = []
    with _maybe_base_tree(base_ref, scenarios) as tree:
        for path in scenarios:
            head_fp = _fingerprint_only(path)
            old = recorded.get(head_fp.scenario)
            seeds = old.seeds if old and n_seeds in (None, len(old.seeds)) else None
            n = n_seeds or (len(old.seeds) if old else DEFAULT_SEEDS)
            base, source, notes = _base_for(path, head_fp, old, tree, seeds, n, baseline_path, say)
            say(f"{head_fp.scenario}: simulating this tree")
            head = sample_scenario(path, base.seeds if base else seeds, n)
            if base is not None and base.seeds != head.seeds:
                notes.append("seeds differ from the baseline's: compared unpaired")
            results.append(
                ScenarioCheck(
                    scenario=head.scenario,
                    file=str(path),
                    baseline_source=source,
                    seeds=head.seeds,
                    rows=compare(base, head, cost_tolerance),
                    notes=notes,
                )
            )
    return CheckReport(results, strict, cost_tolerance)


@contextmanager
def _maybe_base_tree(ref: str | None, scenarios: Sequence[Path]) -> Iterator[BaseTree | None]:
    if ref is None or not scenarios:
        yield None
        return
    with base_tree(ref, scenarios[0].resolve().parent) as tree:
        yield tree


def _base_for(
    path: Path,
    head_fp: Sample,
    old: Sample | None,
    tree: BaseTree | None,
    seeds: tuple[int, ...] | None,
    n: int,
    baseline_path: Path,
    say: Callable[[str], None],
) -> tuple[Sample | None, str, list[str]]:
    """The numbers to compare against, where they came from, and notes for the reader."""
    notes: list[str] = []
    if tree is None:
        if old is None:
            return None, f"none: {head_fp.scenario} is not in {baseline_path}", notes
        stale, changed = staleness(old, head_fp)
        if changed:
            notes.append("inputs changed since the baseline: " + ", ".join(changed))
        if stale:
            return (
                old,
                f"recorded in {baseline_path}, STALE ({'; '.join(stale)}): pass --base-ref to re-simulate",
                notes,
            )
        return old, f"recorded in {baseline_path} (capsim {old.capsim_version})", notes
    at_ref = tree.locate(path)
    if at_ref is None:
        return None, f"none: {path} does not exist at {tree.ref}", notes
    base_fp = _fingerprint_only(at_ref)
    why_head, changed_head = staleness(base_fp, head_fp)
    if why_head or changed_head:
        parts = [*why_head, *(["changed: " + ", ".join(changed_head)] if changed_head else [])]
        notes.append(f"this tree vs {tree.ref}: " + "; ".join(parts))
    if old is not None:
        why, changed = staleness(old, base_fp)
        if not why and not changed:
            return old, f"recorded in {baseline_path}, matches {tree.ref}", notes
        reason = "; ".join([*why, *(["inputs changed: " + ", ".join(changed)] if changed else [])])
    else:
        reason = f"{head_fp.scenario} not in {baseline_path}"
    say(f"{head_fp.scenario}: re-simulating {tree.ref}")
    display = str(Path(tree.ref) / os.path.relpath(at_ref, tree.tree))
    base = sample_scenario(at_ref, seeds, n, display_file=display)
    return base, f"re-simulated from {tree.ref} ({reason})", notes


def update_baseline(
    scenarios: Sequence[Path],
    baseline_path: Path,
    n_seeds: int | None,
    progress: Callable[[str], None] | None = None,
) -> list[Sample]:
    samples = []
    for path in scenarios:
        if progress:
            progress(f"{path}: simulating")
        samples.append(sample_scenario(path, None, n_seeds or DEFAULT_SEEDS, display_file=str(path)))
    write_baseline(baseline_path, samples)
    return samples


# --- outputs --------------------------------------------------------------------------------------


def _fmt(x: float) -> str:
    return f"{x:.4f}" if abs(x) < 10 else f"{x:.1f}"


def spread(values: Sequence[float] | None) -> str:
    """Mean and the seeds' range, as a reader wants to see it in a table."""
    if not values:
        return "–"
    m = sum(values) / len(values)
    if len(values) == 1 or max(values) == min(values):
        return _fmt(m)
    return f"{_fmt(m)} [{_fmt(min(values))}–{_fmt(max(values))}]"


def markdown(report: CheckReport) -> str:
    status = "passed" if report.passed else "FAILED"
    lines = [f"## capsim check {status}", ""]
    for sc in report.scenarios:
        failing = sc.failures(report.strict)
        icon = "❌" if failing else "✅"
        lines += [
            f"### {icon} {sc.scenario}",
            "",
            f"Baseline: {sc.baseline_source}. Seeds: {', '.join(map(str, sc.seeds))}.",
            "",
        ]
        lines += [f"- {n}" for n in sc.notes]
        if sc.notes:
            lines.append("")
        lines += [
            "| check | objective | baseline | this change | Δ | verdict |",
            "|---|---|---|---|---|---|",
        ]
        for r in sc.rows:
            verdict = f"**{r.verdict.value}**" if r.verdict.fails(report.strict) else r.verdict.value
            objective = "–" if r.objective is None else f"{'≥' if r.kind == 'slo' else '≤'} {r.objective:g}"
            delta = "–" if r.delta is None else f"{r.delta:+.4g}"
            lines.append(
                f"| {r.measure} ({r.unit}) | {objective} | {spread(r.base)} | {spread(r.head)} | {delta} | "
                f"{verdict}: {r.detail} |"
            )
        lines.append("")
    return "\n".join(lines)


def junit_xml(report: CheckReport) -> str:
    """JUnit XML: one test suite per scenario, one test case per SLO, failure ratio and cost."""
    root = ET.Element("testsuites", name="capsim check")
    total = failures = 0
    for sc in report.scenarios:
        suite = ET.SubElement(root, "testsuite", name=sc.scenario)
        props = ET.SubElement(suite, "properties")
        ET.SubElement(props, "property", name="baseline", value=sc.baseline_source)
        ET.SubElement(props, "property", name="seeds", value=",".join(map(str, sc.seeds)))
        n_fail = 0
        for r in sc.rows:
            case = ET.SubElement(suite, "testcase", classname=f"capsim.{sc.scenario}", name=r.measure)
            if r.verdict.fails(report.strict):
                n_fail += 1
                failure = ET.SubElement(
                    case,
                    "failure",
                    message=f"{sc.scenario}: {r.measure}: {r.verdict.value}: {r.detail}",
                    type=r.verdict.name,
                )
                failure.text = (
                    f"scenario {sc.scenario} ({sc.file}), {r.kind} {r.measure}\n"
                    f"baseline ({sc.baseline_source}): {spread(r.base)}\n"
                    f"this change: {spread(r.head)}\n"
                )
            elif r.verdict in (Verdict.STILL_BROKEN, Verdict.NEW_BROKEN, Verdict.WITHIN_NOISE):
                ET.SubElement(case, "system-out").text = f"{r.verdict.value}: {r.detail}"
        suite.set("tests", str(len(sc.rows)))
        suite.set("failures", str(n_fail))
        suite.set("errors", "0")
        total += len(sc.rows)
        failures += n_fail
    root.set("tests", str(total))
    root.set("failures", str(failures))
    root.set("errors", "0")
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"
