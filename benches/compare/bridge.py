#!/usr/bin/env python3
"""Policies for `kubedrs compare` that run in Python: one process per run, one JSON line in and one out per pass.

    bridge.py proxlb  [--time-limit S] [--balanciness N] [--method cpu]
    bridge.py optimum [--time-limit S]

Request (from crates/sim/src/policies/external.rs): nodes and VMs in name order.
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


def greedy(req, x, coef, const_req):
    """A feasible start: where each VM of `x` goes after mandatory moves (best node first) and up to
    `slots_pool` best single balancing moves (each lowering the imbalance most), within the slots."""
    nodes, vms = req["nodes"], req["vms"]
    n = len(nodes)
    counted = [nodes[h]["counted"] for h in range(n)]
    where = {i: vms[i]["node"] for i in x}
    load = [0.0] * n
    used = [list(c) for c in const_req]
    for i, v in enumerate(vms):
        if v["node"] is not None:
            load[v["node"]] += coef(v, v["node"])
    for i, h in where.items():
        used[h][0] += vms[i]["req_cpu"]
        used[h][1] += vms[i]["req_mem"]
    N = sum(counted)

    def ssd(ld):
        xs = [ld[h] for h in range(n) if counted[h]]
        mu = sum(xs) / len(xs)
        return sum((a - mu) ** 2 for a in xs)

    def fits(i, h):
        v = vms[i]
        return (used[h][0] + v["req_cpu"] <= nodes[h]["cpu_millis"]
                and used[h][1] + v["req_mem"] <= nodes[h]["memory_bytes"])

    def move(i, h):
        src = where[i]
        v = vms[i]
        load[src] -= coef(v, src)
        load[h] += coef(v, h)
        used[src][0] -= v["req_cpu"]; used[src][1] -= v["req_mem"]
        used[h][0] += v["req_cpu"]; used[h][1] += v["req_mem"]
        where[i] = h

    for i in x:
        if nodes[vms[i]["node"]]["maintenance"]:
            best = min((h for h in x[i] if fits(i, h)), key=lambda h: load[h] / 1, default=None)
            if best is not None:
                move(i, best)
    out = list(req["slots_out"])
    inn = list(req["slots_in"])
    for _ in range(req["slots_pool"]):
        base = ssd(load)
        best = None
        for i in x:
            src = where[i]
            if nodes[src]["maintenance"] or where[i] != vms[i]["node"] or out[src] <= 0:
                continue
            ci = coef(vms[i], src)
            for h in x[i]:
                if h == src or inn[h] <= 0 or not fits(i, h):
                    continue
                load[src] -= ci; load[h] += coef(vms[i], h)
                gain = base - ssd(load)
                load[src] += ci; load[h] -= coef(vms[i], h)
                if gain > 1e-12 and (best is None or gain > best[0]):
                    best = (gain, i, h)
        if best is None:
            break
        _, i, h = best
        out[where[i]] -= 1
        inn[h] -= 1
        move(i, h)
    return where


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
        x[i] = vars_
    m.add(sum(balance_moves) <= req["slots_pool"])
    # Warm start: the greedy plan (mandatory moves to the best node, then up to k best single moves).
    start = greedy(req, x, coef, const_req)
    for i, h in start.items():
        for hh, b in x[i].items():
            m.add_hint(b, 1 if hh == h else 0)
    for h in range(n):
        if out_terms[h]:
            m.add(sum(out_terms[h]) <= req["slots_out"][h])
        if in_terms[h]:
            m.add(sum(in_terms[h]) <= req["slots_in"][h])
        if nodes[h]["accepts"]:
            for r, cap in ((0, nodes[h]["cpu_millis"]), (1, nodes[h]["memory_bytes"])):
                if req_terms[h][r]:
                    m.add(sum(req_terms[h][r]) + const_req[h][r] <= max(cap, const_req[h][r]))
    # N * variance = min over c of sum_h (L_h - c)^2. Each square is bounded below by its tangents at a grid of
    # points (an outer approximation): the objective below never exceeds the true one, so CP-SAT's bound is a
    # valid lower bound of the imbalance; the solution's own imbalance is then computed exactly.
    top = S * 50
    loads = []
    for h in counted:
        l = m.new_int_var(0, top, f"l{h}")
        m.add(l == sum(load_terms[h]) + const_load[h])
        loads.append(l)
    c = m.new_int_var(0, top, "c")
    step = S // 200  # tangents every 0.005 of load: the approximation is within 0.005^2/4 per node
    grid = range(-S, S + 1, step)
    ts = []
    for k, l in enumerate(loads):
        d = m.new_int_var(-top, top, f"d{k}")
        m.add(d == l - c)
        t = m.new_int_var(0, top * top, f"t{k}")
        for p0 in grid:
            m.add(t >= 2 * p0 * d - p0 * p0)
        ts.append(t)
    N = len(counted)
    m.minimize(sum(ts))
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = args.time_limit
    solver.parameters.num_workers = args.workers
    t0 = time.monotonic()
    status = solver.solve(m)
    ms = (time.monotonic() - t0) * 1000

    def imbalance(where):
        ld = [0.0] * n
        for i, v in enumerate(vms):
            if v["node"] is not None:
                h = where.get(i, v["node"])
                ld[h] += coef(v, h) / S
        xs = [ld[h] for h in counted]
        mu = sum(xs) / N
        return math.sqrt(sum((a - mu) ** 2 for a in xs) / N)

    where, value, label = start, imbalance(start), "GREEDY"
    bound = None
    if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        bound = math.sqrt(max(0.0, solver.best_objective_bound) / N) / S
        found = {i: next(h for h, b in vars_.items() if solver.value(b)) for i, vars_ in x.items()}
        v = imbalance(found)
        if v <= value:
            where, value, label = found, v, solver.status_name(status)
    moves = [
        {"vm": vms[i]["name"], "to": nodes[h]["name"]} for i, h in where.items() if h != vms[i]["node"]
    ]
    return {"moves": moves, "status": label, "solve_ms": ms, "value": value, "bound": bound}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["proxlb", "optimum"])
    p.add_argument("--time-limit", type=float, default=5.0)
    p.add_argument("--balanciness", type=int, default=3)
    p.add_argument("--method", default="cpu")
    p.add_argument("--workers", type=int, default=2)
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
