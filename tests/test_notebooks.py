"""Every notebook in notebooks/ runs top to bottom (smoke mode: CAPSIM_SMOKE=1) through a real kernel."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.stem)
def test_notebook_runs_in_smoke_mode(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAPSIM_SMOKE", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    book = nbformat.read(path, as_version=4)
    code = [c.source for c in book.cells if c.cell_type == "code"]
    assert not any("subprocess" in src or "!capsim" in src for src in code), "notebooks use the Python API"
    client = NotebookClient(
        book, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    )
    # Smoke mode aims at < 30 s a notebook (benchmarks/bench_notebooks.py prints the times); the
    # test checks that they run and show their plots, not how fast: timings belong in benchmarks.
    client.execute()
    errors = [
        out
        for cell in book.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if out.get("output_type") == "error"
    ]
    assert not errors
    assert any(
        out.get("output_type") in ("display_data", "execute_result") and "image/png" in out.get("data", {})
        for cell in book.cells
        for out in cell.get("outputs", [])
    ), "every notebook shows at least one plot"
