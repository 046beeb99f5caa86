"""Notebook timings (run on demand): `python benchmarks/bench_notebooks.py [--full]`.

Smoke mode (CAPSIM_SMOKE=1, what the tests use) aims at < 30 s a notebook, the
full run at < 2 min; the test suite only checks that they run.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--full", action="store_true", help="run without CAPSIM_SMOKE")
    args = parser.parse_args()
    if args.full:
        os.environ.pop("CAPSIM_SMOKE", None)
    else:
        os.environ["CAPSIM_SMOKE"] = "1"
    os.environ.setdefault("MPLBACKEND", "Agg")
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        book = nbformat.read(path, as_version=4)
        client = NotebookClient(
            book, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
        )
        started = time.perf_counter()
        client.execute()
        print(f"{path.name}: {time.perf_counter() - started:.1f} s ({'full' if args.full else 'smoke'})")


if __name__ == "__main__":
    main()
