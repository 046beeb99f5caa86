"""Every Karpenter conformance case (restated from upstream tests) against the Karpenter model.

Cases come from $CAPSIM_KARPENTER_CASES when set, else tests/data/karpenter_cases.json
(schema in karpenter_cases.md). tests/data/karpenter_case_overrides.json may correct
an expectation that contradicts upstream behaviour; each override carries the
evidence. No case is ever skipped: an unknown expectation key fails the test.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from sim.controllers.karpenter.budgets import allowed_disruptions, is_active
from sim.controllers.karpenter.launch import Launch, LaunchFailure
from sim.controllers.karpenter.types import LABEL_CAPACITY_TYPE, LABEL_ZONE
from tests import karpenter_harness as h

DATA = Path(__file__).parent / "data"
CASES_PATH = Path(os.environ.get("CAPSIM_KARPENTER_CASES", DATA / "karpenter_cases.json"))
OVERRIDES = json.loads((DATA / "karpenter_case_overrides.json").read_text())


def _cases() -> list[dict[str, Any]]:
    cases = json.loads(CASES_PATH.read_text())
    for case in cases:
        override = OVERRIDES.get(case["id"])
        if override is not None:
            case["expected"] = {**case["expected"], **override["expected"]}
    return cases


CASES = _cases()


def test_case_file_is_complete() -> None:
    kinds = {c["kind"] for c in CASES}
    assert kinds <= {"provision", "consolidate"}
    assert len({c["id"] for c in CASES}) == len(CASES)
    assert set(OVERRIDES) <= {c["id"] for c in CASES}


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_case(case: dict[str, Any]) -> None:
    if case["kind"] == "provision":
        _check_provision(case)
    else:
        _check_consolidate(case)


# --------------------------------------------------------------------- provisioning


def _check_provision(case: dict[str, Any]) -> None:
    out = h.run_provision(case)
    expected = dict(case["expected"])
    if "pending_pod_triggers" in case["inputs"]:
        _check_batcher(out, expected)
        return
    for step in ("after_batch_1", "after_batch_2"):
        if step in expected:
            batch = int(step[-1]) - 1
            sub = expected.pop(step)
            assert out.nodes_after_batch[batch] == sub["nodes"], (step, out.nodes_after_batch)
            if "node_instance_types" in sub:
                launched = [r.instance_type for r in out.launches[batch] if isinstance(r, Launch)]
                assert sorted(launched) == sorted(sub["node_instance_types"])
            if "launch_failed" in sub:
                assert any(isinstance(r, LaunchFailure) and r.insufficient for r in out.launches[batch])
    nodes = [n for n in out.nodes if not n.name.startswith("existing-")]
    node_of = {n.name: n for n in out.nodes}
    plans = [p for batch in out.plans for p in batch]
    for key, want in expected.items():
        if key in ("nodes", "new_nodes"):
            assert len(nodes) == want, [n.instance_type for n in nodes]
        elif key == "node_instance_types":
            assert sorted(n.instance_type for n in nodes) == sorted(want)
        elif key == "pods_per_node":
            for n in nodes:
                if isinstance(want, int):
                    assert len(n.pods) == want
                else:
                    for prefix, count in want.items():
                        assert sum(1 for pid in n.pods if pid.startswith(prefix)) == count, (
                            n.name,
                            list(n.pods),
                        )
        elif key == "node_instance_types_by_pod":
            for pid, itype in want.items():
                assert node_of[out.pod_node[pid]].instance_type == itype, pid
        elif key == "scheduled":
            assert all(pid in out.pod_node for pid in want), out.unschedulable
        elif key == "unschedulable_pods":
            for pid in want:
                assert pid not in out.pod_node and pid in out.unschedulable
                assert out.unschedulable[pid], "an unschedulable pod must say why"
        elif key == "same_node":
            assert len({out.pod_node[pid] for pid in want}) == 1
        elif key == "different_node":
            assert len({out.pod_node[pid] for pid in want}) == len(want)
        elif key == "nodeclaims_created":
            assert len(plans) == want
        elif key == "nodeclaim_requests":
            got = plans[0].requests
            req = h.resources(want)
            assert got.cpu_millicores == pytest.approx(req.cpu_millicores)
            assert got.memory_mib == pytest.approx(req.memory_mib)
            assert got.pods == pytest.approx(req.pods)
        elif key == "nodeclaim_instance_type_options":
            assert set(plans[0].instance_types) == set(want)
        elif key == "each_nodeclaim_instance_type_options_at_least":
            assert all(len(p.instance_types) >= want for p in plans)
        elif key == "capacity_type":
            assert all(n.capacity_type == want for n in nodes)
        elif key == "node_price":
            assert nodes[0].price_usd_per_h == pytest.approx(want)
        elif key == "node_instance_type_cpu_mem":
            cap = h.resources({"cpu": want[0], "memory": want[1]})
            assert nodes[0].capacity.cpu_millicores == cap.cpu_millicores
            assert nodes[0].capacity.memory_mib == cap.memory_mib
        elif key == "node_capacity":
            cap = h.resources(want)
            assert nodes[0].capacity.cpu_millicores == cap.cpu_millicores
            assert nodes[0].capacity.memory_mib == cap.memory_mib
        else:
            raise AssertionError(f"unknown expectation {key!r} in {case['id']}")


def _check_batcher(out: h.ProvisionOutcome, expected: dict[str, Any]) -> None:
    for key, want in expected.items():
        if key == "batch_window_close_t_s":
            assert out.batch_close_s == want
        elif key == "batch_window_closed_by_t_s":
            assert out.batch_close_s is not None and out.batch_close_s <= want
        elif key == "batch_window_open_at_t_s":
            assert all(out.batch_open_at[t] for t in want)
        elif key == "pods_in_batch":
            assert out.batch_pods == frozenset(want)
        else:
            raise AssertionError(f"unknown expectation {key!r}")


# --------------------------------------------------------------------- disruption


def _check_consolidate(case: dict[str, Any]) -> None:
    inp = case["inputs"]
    method = inp.get("method")
    if method == "budget_allowed_disruptions":
        from sim.controllers.karpenter.types import Budget

        budgets = tuple(
            Budget(
                nodes=h._budget_nodes(b["nodes"]),
                schedule=b.get("schedule"),
                duration_s=h.duration_s(b.get("duration")),
                reasons=tuple(b.get("reasons", ())),
            )
            for b in inp["budgets"]
        )
        now = h.utc(inp["now_utc"])
        for reason, want in case["expected"]["allowed"].items():
            assert allowed_disruptions(budgets, reason, inp["num_nodes"], 0, now) == want, reason
        return
    if method == "budget_is_active":
        from sim.controllers.karpenter.types import Budget

        b = inp["budget"]
        budget = Budget(h._budget_nodes(b["nodes"]), b.get("schedule"), h.duration_s(b.get("duration")))
        assert is_active(budget, h.utc(inp["now_utc"])) == case["expected"]["active"]
        return
    if "evaluations_at_s" in inp:
        for t in inp["evaluations_at_s"]:
            _check_disruption(case, h.run_disruption(case, float(t)), case["expected"][f"at_t_{t}"])
        return
    _check_disruption(case, h.run_disruption(case), case["expected"])


def _check_disruption(case: dict[str, Any], out: h.DisruptionOutcome, expected: dict[str, Any]) -> None:
    cmds = out.commands
    deleted = [name for c in cmds for name in c.candidates]
    originals = [n for n in out.nodes if not n.name.startswith("replacement-")]
    remaining = [n.name for n in originals if not n.marked_for_deletion]
    replacements = [p for c in cmds for p in c.replacements]
    for key, want in expected.items():
        if key in ("commands", "commands_total"):
            assert len(cmds) == want, (cmds, out.notes)
        elif key == "method":
            assert cmds[0].method == want, cmds[0]
        elif key == "decision":
            assert all(c.decision == want for c in cmds), cmds
        elif key == "deleted_nodes":
            assert sorted(deleted) == sorted(want), (cmds, out.notes)
        elif key in ("deleted_node_count", "tainted_nodes"):
            assert len(deleted) == want, (cmds, out.notes)
        elif key == "replacements":
            assert len(replacements) == want
        elif key == "remaining_nodes":
            assert sorted(remaining) == sorted(want)
        elif key in ("remaining_node_count", "remaining_node_count_after_execution"):
            assert len(remaining) == want
        elif key == "final_node_count":
            assert len(remaining) + len(replacements) == want
        elif key == "replacement_excludes_instance_type":
            assert want not in replacements[0].instance_types
        elif key == "replacement_capacity_type_requirement":
            vs = replacements[0].requirements.get(LABEL_CAPACITY_TYPE)
            assert vs is not None and not vs.complement and sorted(vs.values) == sorted(want)
        elif key == "replacement_instance_type_options_count":
            assert len(replacements[0].instance_types) == want
        elif key == "replacement_zone":
            vs = replacements[0].requirements.get(LABEL_ZONE)
            assert vs is not None and sorted(vs.values) == [want]
        elif key == "zone_skew":
            counts: dict[str, int] = {}
            for n in out.nodes:
                if not n.marked_for_deletion:
                    counts[n.zone] = counts.get(n.zone, 0) + len(n.pods)
            assert sorted(counts.values()) == sorted(want), counts
        elif key == "unconsolidatable_reason":
            assert any(want in note for note in out.notes), out.notes
        elif key == "allowed_disruptions":
            assert len(deleted) == want
        elif key == "allowed_disruptions_per_nodepool":
            per_pool: dict[str, int] = {}
            for n in out.nodes:
                if n.marked_for_deletion and n.nodepool:
                    per_pool[n.nodepool] = per_pool.get(n.nodepool, 0) + 1
            assert set(per_pool.values()) == {want}
        else:
            raise AssertionError(f"unknown expectation {key!r} in {case['id']}")
