"""The workload model file (`models/<service>.yaml`) that calibration writes and scenarios load.

Two audiences read it. A scenario loads its `model:` block with
`model_file:` (the same fields as a scenario's inline `model:`), so the
block holds only numbers the history supports: a parameter that could not be
fitted is left out (the scenario default applies, and the header says so) or,
for `workers`, written as null with the reason, so the scenario stops with
an error on that line instead of silently simulating a guess. People read
`parameters:`: for every number its status, value, uncertainty and the
queries it came from, so a reviewer can re-run the query in Grafana. The
recorded traffic is written beside it as CSV for replay, and `history:`
lists what was wrong with the data and what was done about it.
"""

from __future__ import annotations

import io
import math
import os
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import TypeAdapter
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from sim.scenario import ServiceModelSpec
from sim.workload.traffic import TrafficSpec

API_VERSION = "capsim/v1alpha1"
KIND = "WorkloadModel"
Status = Literal["fitted", "not_identifiable", "not_available", "too_short"]


@dataclass
class Parameter:
    """One calibrated number: status, value, uncertainty, and where it came from."""

    status: Status
    value: Any = None
    unit: str | None = None
    uncertainty: dict[str, Any] | None = None
    queries: list[str] = field(default_factory=list)
    promql: str | None = None
    method: str | None = None
    note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status}
        if self.value is not None:
            out["value"] = _plain(self.value)
        for key in ("unit", "uncertainty", "method", "note", "promql"):
            v = getattr(self, key)
            if v is not None:
                out[key] = _plain(v)
        if self.queries:
            out["queries"] = list(self.queries)
        return out


@dataclass
class WorkloadModel:
    service: str
    namespace: str
    source: str
    window: dict[str, Any]
    query_sets: dict[str, Any]
    model: dict[str, Any]
    parameters: dict[str, Parameter]
    traffic: dict[str, Any]
    issues: list[dict[str, Any]]
    notes: dict[str, str] = field(default_factory=dict)  # end-of-line comments on `model:` keys
    replay: tuple[np.ndarray, np.ndarray] | None = None  # interval start times and offered rps


def fmt_duration(seconds: float) -> str:
    """Readable duration string the scenario loader parses back: 60.12ms, 24.9s."""
    if seconds < 1.0:
        return f"{_sig(seconds * 1000.0)}ms"
    return f"{_sig(seconds)}s"


def fmt_cpu(cores: float) -> str:
    """A CPU quantity in millicores, the way requests are written: 19.8m."""
    return f"{_sig(max(cores, 0.0) * 1000.0)}m"


def _sig(x: float, digits: int = 4) -> str:
    if x == 0 or not math.isfinite(x):
        return "0"
    text = f"{x:.{max(digits - 1 - math.floor(math.log10(abs(x))), 0)}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return float(f"{value:.6g}")
    return value


def _commented(value: Any, flow: bool = False) -> Any:
    if isinstance(value, dict):
        m = CommentedMap((k, _commented(v, flow)) for k, v in value.items())
        if flow:
            m.fa.set_flow_style()
        return m
    if isinstance(value, list):
        seq = CommentedSeq(_commented(v, flow) for v in value)
        if value and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
            seq.fa.set_flow_style()
        return seq
    return value


def check(model: WorkloadModel) -> None:
    """Fail loudly if the file would not load: the model block (when complete) and each traffic block."""
    if model.model.get("workers") is not None:
        ServiceModelSpec.model_validate(model.model)
    adapter: TypeAdapter[Any] = TypeAdapter(TrafficSpec)
    for key in ("replay", "synthetic"):
        if key in model.traffic:
            adapter.validate_python(model.traffic[key])


def render(model: WorkloadModel, written_at: datetime | None = None) -> str:
    check(model)
    doc = CommentedMap()
    doc["apiVersion"] = API_VERSION
    doc["kind"] = KIND
    doc["service"] = model.service
    doc["namespace"] = model.namespace
    doc["calibrated"] = _commented({"source": model.source, **model.window, "query_sets": model.query_sets})
    order = ("workers", "service_time", "cpu_per_request", "idle_cpu", "startup")
    block = _commented(
        dict(sorted(model.model.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 99))
    )
    for key in ("service_time", "startup"):
        if key in block:
            block[key].fa.set_flow_style()
    for key, note in model.notes.items():
        block.yaml_add_eol_comment(note, key)
    doc["model"] = block
    params = CommentedMap()
    for name, p in model.parameters.items():
        entry = _commented(p.as_dict())
        if "uncertainty" in entry:
            entry["uncertainty"].fa.set_flow_style()
        params[name] = entry
    doc["parameters"] = params
    traffic = _commented(model.traffic)
    if "replay" in traffic:
        traffic["replay"].fa.set_flow_style()
    if "noise" in traffic.get("synthetic", {}):
        traffic["synthetic"]["noise"].fa.set_flow_style()
    doc["traffic"] = traffic
    doc["history"] = _commented({"issues": [_commented(i, flow=True) for i in model.issues]})
    missing = [n for n, p in model.parameters.items() if p.status != "fitted" and not n.startswith("traffic")]
    when = (written_at or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    header = [
        f"Workload model for {model.service} ({model.namespace}), written by `capsim calibrate` at {when}",
        f"from {model.source}.",
        "`model:` is what a scenario loads with `model_file:`; `parameters:` gives each number's",
        "uncertainty and the queries behind it; `history:` lists what was wrong with the data.",
    ]
    if missing:
        header.append("Not fitted (scenario defaults apply unless set by hand): " + ", ".join(missing) + ".")
    doc.yaml_set_start_comment("\n".join(header))
    yaml = YAML()
    yaml.width = 110
    yaml.indent(mapping=2, sequence=4, offset=2)
    buf = io.StringIO()
    yaml.dump(doc, buf)
    return buf.getvalue()


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def replay_csv(times_s: np.ndarray, rps: np.ndarray) -> str:
    """`timestamp,rps` rows; gaps stay empty, which the replay loader skips (and interpolates across)."""
    lines = ["timestamp,rps"]
    for t, r in zip(times_s.tolist(), rps.tolist(), strict=True):
        stamp = datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        lines.append(f"{stamp},{'' if not math.isfinite(r) else f'{r:.4f}'}")
    return "\n".join(lines) + "\n"


def write(model: WorkloadModel, path: Path) -> list[Path]:
    """Write the model YAML (and its replay CSV beside it); returns the files written."""
    path = Path(path)
    written = []
    if model.replay is not None:
        csv_path = path.with_name(path.stem + ".traffic.csv")
        _atomic_write(csv_path, replay_csv(*model.replay))
        model.traffic["replay"]["path"] = csv_path.name
        written.append(csv_path)
    _atomic_write(path, render(model))
    written.insert(0, path)
    return written


def _umask() -> int:
    """The process umask (read by setting and restoring it): temp files are 0600, the result must not be."""
    mask = os.umask(0)
    os.umask(mask)
    return mask
