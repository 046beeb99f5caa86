"""report.html: self-contained (every plot embedded and non-empty), with the SLO verdict and tuning table."""

from __future__ import annotations

import base64
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

import sim
from sim.report import BUCKET_LABELS, write_run
from tests import simple_scenario as ss


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[dict[str, str | None]] = []
        self.ids: dict[str, str] = {}
        self._open_id: str | None = None
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "img":
            self.images.append(a)
        if a.get("id"):
            self._open_id = a["id"]
            self.ids[self._open_id or ""] = ""

    def handle_endtag(self, tag: str) -> None:
        self._open_id = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._open_id:
            self.ids[self._open_id] += data


@pytest.fixture(scope="module")
def spiky(tmp_path_factory: pytest.TempPathFactory) -> tuple[sim.Result, object]:
    tmp = tmp_path_factory.mktemp("scn")
    data = ss.scenario(
        traffic={"kind": "spike", "base_rps": 50, "multiplier": 8, "start": "5m", "rise": "1m", "hold": "5m"},
        max_replicas=4,
        horizon="20m",
    )
    scn = sim.load_scenario(ss.write(tmp, data))
    return sim.simulate(scn), scn


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text())
    return page


def test_html_embeds_every_plot_and_states_the_verdict(spiky: tuple, tmp_path: Path) -> None:
    result, scn = spiky
    out = write_run(result, tmp_path / "run", {}, scenario=scn)
    page = _parse(out / "report.html")
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert len(pngs) == 4
    assert sorted(str(i.get("alt")) for i in page.images) == pngs
    for img in page.images:
        src = str(img.get("src"))
        assert src.startswith("data:image/png;base64,"), "images must be embedded, not linked"
        raw = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert raw.startswith(b"\x89PNG\r\n\x1a\n") and len(raw) > 5000
    assert not result.summary["slos_met"]
    assert page.ids["verdict"].startswith("SLO breached: api-latency")
    assert "before-after" not in page.ids


def test_html_verdict_when_met_and_tuning_table(tmp_path: Path) -> None:
    scn = sim.load_scenario(ss.write(tmp_path, ss.scenario(horizon="10m")))
    result = sim.simulate(scn)
    rows = [
        {"": "threshold", "before": 40, "after": 28},
        {"": "monthly cost (USD)", "before": 812.5, "after": 655.25},
    ]
    out = write_run(result, tmp_path / "run", {}, scenario=scn, before_after=rows)
    page = _parse(out / "report.html")
    assert page.ids["verdict"] == "All 1 SLOs met"
    assert "Tuning: before and after" in page.ids["before-after"]
    assert "655.2" in "".join(page.text)
    assert "## Tuning: before and after" in (out / "report.md").read_text()


def test_histogram_and_metric_identity_are_kept_for_export(spiky: tuple, tmp_path: Path) -> None:
    result, scn = spiky
    out = write_run(result, tmp_path / "run", {}, scenario=scn)
    hist = pd.read_parquet(out / "latency_histogram.parquet")
    assert list(hist.columns[2 : 2 + len(BUCKET_LABELS)]) == BUCKET_LABELS
    served = result.timeseries["served_rps"].sum() * result.step_s
    assert hist[BUCKET_LABELS].to_numpy().sum() == pytest.approx(served, rel=1e-9)
    assert (out / "metrics.json").read_text().count("keda-hpa-api") == 1


def test_node_counts_are_kept_when_the_run_has_them(tmp_path: Path) -> None:
    data = ss.scenario(horizon="10m")
    data["gitops_root"] = str(Path(__file__).resolve().parents[1] / "scenarios" / "demo")
    data["cluster"] = {"nodepools": "k8s/karpenter"}
    scn = sim.load_scenario(ss.write(tmp_path, data))
    result = sim.simulate(scn)
    assert result.nodes is not None and result.nodes["nodes"].sum() > 0
    out = write_run(result, tmp_path / "run", {}, scenario=scn)
    pd.testing.assert_frame_equal(pd.read_parquet(out / "nodes.parquet"), result.nodes)
    page = _Page()
    page.feed((out / "report.html").read_text())
    names = {img.get("alt") or img.get("title") or "" for img in page.images}
    assert len(page.images) >= 7, names  # 4 service plots + nodes by type, cost rate, pending pods
