"""capsim tune -> apply -> pr against a real git repository with a bare remote, in a temporary directory."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sim import cli
from sim.errors import InputError
from sim.gitops import apply_recommendation, create_pr

DEMO = Path(__file__).resolve().parents[1] / "scenarios" / "demo"
SO = "demo/k8s/argocd/apps/dev/front/scaledobject.yaml"
SCENARIO = """\
name: front-ramp
horizon: 15m
step: 5s
seed: 1
gitops_root: demo
services:
  - name: front
    manifests: k8s/argocd/apps/dev/front
    traffic: {kind: ramp, from_rps: 100, to_rps: 900, start: 2m, duration: 10m}
    model:
      workers: 4
      service_time: {distribution: lognormal, mean: 60ms, cv: 1.0}
      cpu_per_request: 10ms
      idle_cpu: 20m
      queue_limit: 64
    initial_replicas: 4
slos:
  - {name: front-latency, service: front, kind: latency, threshold: 500ms, objective: 0.99}
tune:
  seeds: 2
  services:
    front:
      threshold: {choices: [30, 40, 50]}
      max_replicas: {choices: [20, 40]}
      min_replicas: false
      scale_up: {percent: false}
      scale_down: {stabilization_window: false}
"""


def git(repo: Path, *args: str) -> str:
    env_args = ["-c", "user.email=capsim@example.com", "-c", "user.name=capsim-test"]
    proc = subprocess.run(["git", *env_args, *args], cwd=repo, capture_output=True, text=True, check=True)
    return proc.stdout.strip()


def capsim(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["capsim", *args])
    with pytest.raises(SystemExit) as done:
        cli.main()
        raise SystemExit(0)
    return int(done.value.code or 0)


@pytest.fixture(autouse=True)
def identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """capsim commits as the user; CI machines may have no git identity configured."""
    for role in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{role}_NAME", "capsim-test")
        monkeypatch.setenv(f"GIT_{role}_EMAIL", "capsim@example.com")


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A GitOps repo (with a bare remote) and the recommendation of a small grid tune over it."""
    base = tmp_path_factory.mktemp("pr")
    repo = base / "repo"
    shutil.copytree(DEMO, repo / "demo")
    (repo / "front.yaml").write_text(SCENARIO)
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "platform repo")
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(base / "remote.git")], check=True)
    git(repo, "remote", "add", "origin", str(base / "remote.git"))
    git(repo, "push", "-q", "origin", "main")
    import sim
    from sim.tune import tune
    from sim.tune_report import write_tune

    run = tune(sim.load_scenario(repo / "front.yaml"))
    out = write_tune(run, base / "reports" / "tune-1", "capsim tune front.yaml --seeds 2")
    return repo, out / "recommendation.json"


def fresh_clone(tuned: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    """Each test gets its own clone (and a recommendation pointing at it)."""
    repo, rec_file = tuned
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(repo.parent / "remote.git"), str(clone)], check=True)
    rec = json.loads(rec_file.read_text())
    rec["gitops_root"] = str(clone / "demo")
    mine = tmp_path / "rec" / "recommendation.json"
    mine.parent.mkdir()
    mine.write_text(json.dumps(rec))
    return clone, mine


def test_the_recommendation_changes_only_the_threshold(tuned: tuple[Path, Path]) -> None:
    rec = json.loads(tuned[1].read_text())
    assert rec["status"] == "recommended" and not rec["before"]["feasible"] and rec["after"]["feasible"]
    assert [c["field"] for c in rec["changes"]] == ["spec.triggers[0].metadata.threshold"]


def test_pr_refuses_a_dirty_tree(
    tuned: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clone, rec = fresh_clone(tuned, tmp_path)
    (clone / "notes.txt").write_text("work in progress\n")
    head = git(clone, "rev-parse", "HEAD")
    assert capsim(monkeypatch, "pr", str(rec)) == 2
    assert git(clone, "rev-parse", "HEAD") == head and git(clone, "branch", "--show-current") == "main"
    with pytest.raises(InputError, match="uncommitted changes"):
        create_pr(rec, apply_recommendation)


def test_pr_refuses_a_detached_head(tuned: tuple[Path, Path], tmp_path: Path) -> None:
    clone, rec = fresh_clone(tuned, tmp_path)
    git(clone, "checkout", "-q", "--detach")
    with pytest.raises(InputError, match="detached"):
        create_pr(rec, apply_recommendation)


def test_pr_branches_commits_and_writes_the_body_without_pushing(
    tuned: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clone, rec = fresh_clone(tuned, tmp_path)
    before = (clone / SO).read_text()
    assert capsim(monkeypatch, "pr", str(rec), "--branch", "tune/front") == 0
    assert git(clone, "branch", "--show-current") == "tune/front"
    assert git(clone, "status", "--porcelain") == ""
    assert git(clone, "diff", "--name-only", "main", "HEAD").splitlines() == [SO]
    diff = git(clone, "diff", "-U0", "main", "HEAD")
    assert '-        threshold: "40"' in diff and '+        threshold: "30"' in diff
    assert len([ln for ln in diff.splitlines() if ln.startswith(("+ ", "- ", "+  ", "-  "))]) == 2
    after = (clone / SO).read_text()
    assert after == before.replace('threshold: "40"', 'threshold: "30"')
    message = git(clone, "log", "-1", "--format=%B")
    assert message.startswith("Tune front-ramp scaling: meet SLOs") and "threshold: 40 -> 30" in message
    body = (rec.parent / "pr-body.md").read_text()
    assert "## Before / after" in body and "| current | recommended |" in body
    assert "(seed range)" in body and "pareto.png" in body and "capsim tune front.yaml --seeds 2" in body
    remote_branches = git(clone, "ls-remote", "--heads", "origin")
    assert "tune/front" not in remote_branches  # never pushed unless asked


def test_pr_pushes_when_asked_and_open_needs_push(tuned: tuple[Path, Path], tmp_path: Path) -> None:
    clone, rec = fresh_clone(tuned, tmp_path)
    with pytest.raises(InputError, match="--push"):
        create_pr(rec, apply_recommendation, open_pr=True)
    pr = create_pr(rec, apply_recommendation, push=True, branch="tune/pushed")
    assert pr.pushed and "refs/heads/tune/pushed" in git(clone, "ls-remote", "--heads", "origin")
    assert git(clone, "rev-parse", "origin/tune/pushed") == pr.commit


def test_apply_dry_run_writes_nothing(tuned: tuple[Path, Path], tmp_path: Path) -> None:
    clone, rec = fresh_clone(tuned, tmp_path)
    shown: list[str] = []
    files = apply_recommendation(json.loads(rec.read_text()), dry_run=True, show=shown.append)
    assert [f.name for f in files] == ["scaledobject.yaml"]
    assert '+        threshold: "30"' in shown[0]
    assert git(clone, "status", "--porcelain") == ""
