#!/usr/bin/env python3
"""Policies for `kubedrs compare` that run in Python: one process per run, one JSON line in and one out per pass.

    bridge.py proxlb  [--time-limit S] [--balanciness N] [--method cpu]
    bridge.py optimum [--time-limit S]

Request (from src/sim/policies/external.rs): nodes and VMs in name order.
    {"now", "nodes": [{"name", "cpu_millis", "memory_bytes", "accepts", "counted", "maintenance"}],
     "vms": [{"name", "node" (index or null), "vcpus", "memory_bytes", "req_cpu", "req_mem", "demand_cpu",
              "demand_mem", "ent": [cpu, mem], "allowed": [node indices], "migrating", "movable"}],
     "weights": [cpu, mem], "slots_pool", "slots_out": [...], "slots_in": [...]}
Answer:
    {"moves": [{"vm", "to"}], "placements": [], "status", "solve_ms", "bound", "value"} or {"error": "..."}

proxlb:  the real ProxLB solver (PyPI `proxlb-solver`, CP-SAT), `solve_reachable` on the snapshot converted to
         its Cluster model; the moves are the first step of its migration plan (the next pass re-solves).
optimum: CP-SAT, exact: the least engine imbalance (standard deviation of the nodes' combined load, the
         entitlement and contention weights exactly as the engine computes them) reachable with at most as
         many balancing moves as there are free migration slots (per pool, per node out and in), requests
         fitting and CPU models respected; moves off nodes in maintenance are mandatory and not counted.
         "bound" is CP-SAT's proven lower bound of that imbalance, "value" the imbalance of its solution.
"""
import argparse
import json
import math
import sys
import time


def answer(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def proxlb_pass(req, args):
    from proxlb_solver import Balancing, Cluster, Constraints, Node, VM, solve_reachable
    from proxlb_solver.models import Expect

    nodes = req["nodes"]
    names = [n["name"] for n in nodes]
    pnodes = [
        Node(
            name=n["name"],
            cpu_total=max(1, n["cpu_millis"] // 1000),
            memory_total=n["memory_bytes"],
            maintenance=not n["accepts"],
        )
        for n in nodes
    ]
    pvms, pins, ignore = [], [], []
    for v in req["vms"]:
        if v["node"] is None:
            continue  # pending: kube-scheduler places it (ProxLB does not place new guests)
        pvms.append(
            VM(
                name=v["name"],
                node=names[v["node"]],
                cpu=max(1, v["vcpus"]),
                memory=v["memory_bytes"],
                cpu_usage=v["demand_cpu"] / 1000.0,
            )
        )
        if len(v["allowed"]) < len(nodes):
            pins.append({"vm": v["name"], "nodes": [names[h] for h in v["allowed"]]})
        if v["migrating"] or not v["movable"]:
            ignore.append(v["name"])
    cluster = Cluster(
        name="kubedrs-compare",
        description="snapshot from kubedrs compare",
        balancing=Balancing(
            method=args.method,
            mode="used",
            balanciness=args.balanciness,
            # KubeVirt's cpuAllocationRatio is 10: the pool's vCPUs may be 10x its cores.
            cpu_overcommit=10.0,
            max_parallel_migrations=req["slots_pool"],
            max_node_inflow=2,
        ),
        nodes=pnodes,
        vms=pvms,
        constraints=Constraints(pin=pins, ignore=ignore),
        expect=Expect(),
    )
    t0 = time.monotonic()
    sol, plan = solve_reachable(cluster, total_time_limit_s=args.time_limit, quiet=True)
    ms = (time.monotonic() - t0) * 1000
    moves = []
    if sol.feasible and plan is not None and plan.steps:
        moves = [{"vm": m.vm, "to": m.target} for m in plan.steps[0].migrations if m.vm not in plan.temp_moves]
    status = sol.stats.status + ("" if sol.path_feasible else "/path-infeasible")
    return {"moves": moves, "status": status, "solve_ms": ms, "value": sol.stats.load_gap}


def optimum_pass(req, args):
    from ortools.sat.python import cp_model

    S = 100_000  # loads in 1/100000
    nodes, vms = req["nodes"], req["vms"]
    n = len(nodes)
    w = req["weights"]
    counted = [h for h in range(n) if nodes[h]["counted"]]
    if not counted:
        return {"moves": [], "status": "NO_NODES", "solve_ms": 0.0}

    def coef(v, h):
        c = w[0] * v["ent"][0] / max(1, nodes[h]["cpu_millis"]) + w[1] * v["ent"][1] / max(1, nodes[h]["memory_bytes"])
        return int(round(c * S))

    m = cp_model.CpModel()
    const_load = [0] * n
    const_req = [[0, 0] for _ in range(n)]
    load_terms = [[] for _ in range(n)]
    req_terms = [[[], []] for _ in range(n)]
    in_terms = [[] for _ in range(n)]
    out_terms = [[] for _ in range(n)]
    balance_moves = []
    x = {}
    for i, v in enumerate(vms):
        cur = v["node"]
        if cur is None:
            continue
        mandatory = nodes[cur]["maintenance"]
        fixed = v["migrating"] or not v["movable"]
        targets = [h for h in v["allowed"] if nodes[h]["accepts"]]
        if fixed or not targets:
            const_load[cur] += coef(v, cur)
            const_req[cur][0] += v["req_cpu"]
            const_req[cur][1] += v["req_mem"]
            continue
        hs = targets if mandatory else sorted(set(targets) | {cur})
        vars_ = {}
        for h in hs:
            b = m.new_bool_var(f"x{i}_{h}")
            vars_[h] = b
            load_terms[h].append(coef(v, h) * b)
            req_terms[h][0].append(v["req_cpu"] * b)
            req_terms[h][1].append(v["req_mem"] * b)
            if h != cur:
                in_terms[h].append(b)
        m.add_exactly_one(vars_.values())
        if not mandatory:
            moved = vars_[cur].Not()
            balance_moves.append(moved)
            out_terms[cur].append(moved)
            m.add_hint(vars_[cur], 1)
        x[i] = vars_
    m.add(sum(balance_moves) <= req["slots_pool"])
    for h in range(n):
        if out_terms[h]:
            m.add(sum(out_terms[h]) <= req["slots_out"][h])
        if in_terms[h]:
            m.add(sum(in_terms[h]) <= req["slots_in"][h])
        if nodes[h]["accepts"]:
            for r, cap in ((0, nodes[h]["cpu_millis"]), (1, nodes[h]["memory_bytes"])):
                if req_terms[h][r]:
                    m.add(sum(req_terms[h][r]) + const_req[h][r] <= max(cap, const_req[h][r]))
    top = S * 50
    loads, squares = [], []
    for h in counted:
        l = m.new_int_var(0, top, f"l{h}")
        m.add(l == sum(load_terms[h]) + const_load[h])
        sq = m.new_int_var(0, top * top, f"sq{h}")
        m.add_multiplication_equality(sq, [l, l])
        loads.append(l)
        squares.append(sq)
    total = m.new_int_var(0, top * len(counted), "total")
    m.add(total == sum(loads))
    total_sq = m.new_int_var(0, (top * len(counted)) ** 2, "total_sq")
    m.add_multiplication_equality(total_sq, [total, total])
    N = len(counted)
    m.minimize(N * sum(squares) - total_sq)
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = args.time_limit
    solver.parameters.num_workers = args.workers
    t0 = time.monotonic()
    status = solver.solve(m)
    ms = (time.monotonic() - t0) * 1000
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return {"moves": [], "status": solver.status_name(status), "solve_ms": ms}

    def sd(obj):
        return math.sqrt(max(0.0, obj)) / N / S

    moves = []
    for i, vars_ in x.items():
        cur = vms[i]["node"]
        for h, b in vars_.items():
            if h != cur and solver.value(b):
                moves.append({"vm": vms[i]["name"], "to": nodes[h]["name"]})
    return {
        "moves": moves,
        "status": solver.status_name(status),
        "solve_ms": ms,
        "value": sd(solver.objective_value),
        "bound": sd(solver.best_objective_bound),
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["proxlb", "optimum"])
    p.add_argument("--time-limit", type=float, default=5.0)
    p.add_argument("--balanciness", type=int, default=3)
    p.add_argument("--method", default="cpu")
    p.add_argument("--workers", type=int, default=1)
    args = p.parse_args()
    run = proxlb_pass if args.mode == "proxlb" else optimum_pass
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            answer(run(json.loads(line), args))
        except Exception as e:  # report, let the runner stop with the reason
            answer({"error": f"{args.mode}: {type(e).__name__}: {e}"})


if __name__ == "__main__":
    main()
