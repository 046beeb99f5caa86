"""A tuning recommendation as a reviewable change: branch, commit, PR body, and (when asked) the PR.

`capsim pr` works on the git repository that holds the scenario's GitOps
tree. It refuses to start on a dirty tree or a detached HEAD (a commit there
would mix the tuning with someone's unfinished work, or be lost), writes the
manifest changes through the minimal-diff writer, commits exactly the files
it changed, and writes the PR body next to the recommendation. It pushes and
opens the PR (with the GitHub CLI) only when asked, and never force-pushes.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sim.errors import ExternalError, InputError

Applier = Callable[[Mapping[str, Any]], list[Path]]
"""Writes a recommendation's changes into the tree; returns the files it changed."""


@dataclass(frozen=True)
class PullRequest:
    repo: Path
    branch: str
    commit: str
    files: tuple[Path, ...]
    body_file: Path
    pushed: bool
    url: str | None


def apply_recommendation(
    rec: Mapping[str, Any],
    *,
    dry_run: bool = False,
    show: Callable[[str], None] | None = None,
    gitops_root: Path | None = None,
) -> list[Path]:
    """Write a recommendation's changes with the minimal-diff writer; returns the files it (would) change.

    `gitops_root` points the changes at another copy of the tree (the
    recommendation names objects and roots relative to the root it was
    tuned on). The plan is made, shown and verified in full before any file
    is written, and written all or nothing.
    """
    from sim.k8s.writer import FieldChange, plan_changes

    root = Path(gitops_root if gitops_root is not None else rec["gitops_root"])
    roots: list[Path] = []
    changes = []
    for c in rec["changes"]:
        if not c["roots"]:
            raise InputError(
                f"{c['kind']}/{c['name']} {c['field']} cannot be written: "
                "its manifests are inline in the scenario file (or unmapped)",
                field=c["dimension"],
                valid=f"set it to {c['after']!r} by hand",
            )
        for r in c["roots"]:
            if root / r not in roots:
                roots.append(root / r)
        changes.append(
            FieldChange(c["api_version"], c["kind"], c["name"], c["field"], c["after"], c["namespace"])
        )
    plan = plan_changes(roots, changes)
    if show is not None:
        show(plan.diff(relative_to=Path.cwd()))
    if not dry_run:
        plan.apply()
    return [f.path for f in plan.files]


def git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run git in `repo`; a failure is an external error (exit 3) carrying git's own message."""
    try:
        proc = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise ExternalError("git is not installed (needed by capsim pr)") from exc
    if check and proc.returncode != 0:
        raise ExternalError(f"git {' '.join(args)} failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def repo_root(path: Path) -> Path:
    proc = git(path if path.is_dir() else path.parent, "rev-parse", "--show-toplevel", check=False)
    if proc.returncode != 0:
        raise InputError(f"{path} is not inside a git repository", valid="a GitOps tree under git")
    return Path(proc.stdout.strip())


def check_clean(repo: Path) -> str:
    """The current branch's name; InputError on a detached HEAD or uncommitted changes."""
    head = git(repo, "symbolic-ref", "-q", "--short", "HEAD", check=False)
    if head.returncode != 0:
        raise InputError(
            "HEAD is detached: a tuning commit here would belong to no branch",
            file=repo,
            valid="check out a branch first (git switch <branch>)",
        )
    status = git(repo, "status", "--porcelain", "--untracked-files=normal").stdout
    if status.strip():
        dirty = ", ".join(line[3:] for line in status.splitlines()[:5])
        raise InputError(
            f"the working tree has uncommitted changes ({dirty}): the tuning commit would mix with them",
            file=repo,
            valid="commit or stash them first (git stash -u)",
        )
    return head.stdout.strip()


def branch_name(rec: Mapping[str, Any]) -> str:
    stamp = re.sub(r"[^0-9]", "", str(rec.get("created", "")))[:12] or "now"
    return f"capsim/tune-{rec['scenario']}-{stamp}"


def commit_message(rec: Mapping[str, Any]) -> str:
    before = rec["before"]["cost_month_usd"]["mean"]
    after = rec["after"]["cost_month_usd"]["mean"]
    delta = (after - before) / before if before else 0.0
    fixes = "" if rec["before"]["feasible"] else "meet SLOs, "
    title = f"Tune {rec['scenario']} scaling: {fixes}{delta:+.1%} monthly cost"
    lines = [title, ""]
    for c in rec["changes"]:
        lines.append(f"- {c['kind']}/{c['name']} {c['field']}: {_short(c['before'])} -> {_short(c['after'])}")
    lines += [
        "",
        f"Worst of {len(rec['search']['seeds'])} seeds, hard SLOs with {rec['rules']['slo_margin']:.0%} "
        "of the error budget to spare.",
        f"Reproduce: {rec['reproduce']}",
    ]
    return "\n".join(lines) + "\n"


def _short(v: Any) -> str:
    return "(unset)" if v is None else json.dumps(v) if isinstance(v, list | dict) else str(v)


def pr_body(rec: Mapping[str, Any], plot_link: str) -> str:
    """Markdown for the PR: field changes, before/after with the seeds' spread, the plot, how to reproduce."""
    from sim.tune_report import recommendation_markdown

    body = recommendation_markdown(rec, plot_link)
    return body + (
        "\n---\nGenerated by `capsim pr` from "
        f"`{rec['scenario_file']}`; the Pareto plot is in the tuning report beside this body.\n"
    )


def create_pr(
    rec_file: Path,
    apply: Applier,
    *,
    push: bool = False,
    open_pr: bool = False,
    remote: str = "origin",
    branch: str | None = None,
) -> PullRequest:
    """Branch, write, commit, body; push and `gh pr create` only when asked."""
    rec = json.loads(rec_file.read_text())
    if rec.get("status") != "recommended" or not rec.get("changes"):
        raise InputError(
            f"the recommendation has nothing to write (status {rec.get('status')!r})",
            file=rec_file,
            valid="a recommendation.json with status 'recommended' and changes",
        )
    if open_pr and not push:
        raise InputError(
            "--open needs the branch on the remote, and capsim pushes only when told to",
            field="--open",
            valid="add --push (or push yourself and run gh pr create)",
        )
    repo = repo_root(Path(rec["gitops_root"]).resolve())
    start_branch = check_clean(repo)
    name = branch or branch_name(rec)
    if git(repo, "rev-parse", "--verify", "--quiet", f"refs/heads/{name}", check=False).returncode == 0:
        raise InputError(f"branch {name} already exists", valid="pass --branch with a new name")
    git(repo, "switch", "-c", name)
    try:
        files = apply(rec)
    except BaseException:
        git(repo, "checkout", "--", ".", check=False)
        git(repo, "switch", start_branch, check=False)
        git(repo, "branch", "-D", name, check=False)
        raise
    rel = [str(Path(f).resolve().relative_to(repo)) for f in files]
    if not rel:
        git(repo, "switch", start_branch, check=False)
        git(repo, "branch", "-D", name, check=False)
        raise InputError("the writer changed no file: the manifests already hold the recommended values")
    git(repo, "add", "--", *rel)
    _commit(repo, commit_message(rec), rel)
    sha = git(repo, "rev-parse", "HEAD").stdout.strip()
    body_file = rec_file.with_name("pr-body.md")
    body_file.write_text(pr_body(rec, "pareto.png"))
    url = None
    if push:
        git(repo, "push", "-u", remote, name)
    if open_pr:
        url = _gh_create(repo, rec, name, body_file)
    return PullRequest(repo, name, sha, tuple(Path(repo) / r for r in rel), body_file, push, url)


def _commit(repo: Path, message: str, files: Sequence[str]) -> None:
    try:
        proc = subprocess.run(
            ["git", "commit", "-q", "-F", "-", "--", *files],
            cwd=repo,
            input=message,
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError as exc:
        raise ExternalError("git is not installed (needed by capsim pr)") from exc
    if proc.returncode != 0:
        raise ExternalError(f"git commit failed: {proc.stderr.strip() or proc.stdout.strip()}")


def gh_ready() -> str | None:
    """None when `gh` can open a PR here; else what to do about it."""
    if shutil.which("gh") is None:
        return "the GitHub CLI (gh) is not installed: install it, or open the PR in the web UI"
    proc = subprocess.run(["gh", "auth", "status"], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return "gh is not authenticated: run `gh auth login`, or open the PR in the web UI"
    return None


def _gh_create(repo: Path, rec: Mapping[str, Any], branch: str, body_file: Path) -> str | None:
    problem = gh_ready()
    if problem is not None:
        raise ExternalError(
            f"{problem}; the branch {branch} is pushed and the body is in {body_file} "
            f"(gh pr create --head {branch} --body-file {body_file})"
        )
    title = commit_message(rec).splitlines()[0]
    proc = subprocess.run(
        ["gh", "pr", "create", "--head", branch, "--title", title, "--body-file", str(body_file)],
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise ExternalError(f"gh pr create failed: {proc.stderr.strip()}")
    return proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else None
