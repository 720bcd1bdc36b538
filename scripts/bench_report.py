#!/usr/bin/env python3
"""Runs the benchmarks (optionally) and regenerates the results section of BENCHMARKS.md.

    python3 scripts/bench_report.py --run     # run every bench, then write the tables
    python3 scripts/bench_report.py           # only rebuild the tables from target/criterion

Times on a shared 2-core VM drift by 15% or more between runs, so every table is a
ratio against baselines measured in the same run; instruction counts (callgrind) are
added because they do not drift at all.
"""

import argparse
import datetime
import json
import os
import pathlib
import platform
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
CRITERION = ROOT / "target" / "criterion"
BEGIN = "<!-- results:begin -->"
END = "<!-- results:end -->"

BENCHES = ["hot_path", "contention", "end_to_end", "refresh_storm", "early_refresh", "allocations", "users"]
INSTRUCTION_VARIANTS = [
    "bare", "static_header", "floor", "floor_retry", "oauth2", "oauth2_no_retry", "bare_foreign", "oauth2_foreign",
    "bare_cloned", "static_header_cloned", "oauth2_cloned",
]


def sh(*args, **kw):
    return subprocess.run(args, cwd=ROOT, check=True, text=True, capture_output=True, **kw).stdout


def run_benches():
    for bench in BENCHES:
        print(f"== cargo bench --bench {bench}", file=sys.stderr)
        out = subprocess.run(
            ["cargo", "bench", "--all-features", "--bench", bench],
            cwd=ROOT, text=True, capture_output=True,
        )
        (CRITERION / f"{bench}.log").parent.mkdir(parents=True, exist_ok=True)
        (CRITERION / f"{bench}.log").write_text(out.stdout + out.stderr)
        if out.returncode != 0:
            print(out.stdout[-3000:] + out.stderr[-3000:], file=sys.stderr)
            print(f"bench {bench} failed (exit {out.returncode}); its table will say so", file=sys.stderr)


def instructions():
    """Instructions per call for each variant, from two callgrind runs."""
    exe = None
    out = subprocess.run(
        ["cargo", "bench", "--all-features", "--bench", "instructions", "--no-run", "--message-format=json"],
        cwd=ROOT, text=True, capture_output=True, check=True,
    ).stdout
    for line in out.splitlines():
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" and msg["target"]["name"] == "instructions" and msg.get("executable"):
            exe = msg["executable"]
    if not exe:
        return {}
    counts = {}
    for variant in INSTRUCTION_VARIANTS:
        totals = []
        for calls in (1000, 11000):
            res = subprocess.run(
                ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", exe, variant, str(calls)],
                cwd=ROOT, text=True, capture_output=True,
            )
            m = re.search(r"refs:\s+([\d,]+)", res.stderr)
            if not m:
                return {}
            totals.append(int(m.group(1).replace(",", "")))
        counts[variant] = (totals[1] - totals[0]) / 10000
    return counts


def criterion_results():
    """full_id -> (median ns per iteration, throughput elements per iteration or None)."""
    results = {}
    for estimates in CRITERION.glob("**/new/estimates.json"):
        bench = estimates.parent / "benchmark.json"
        if not bench.exists():
            continue
        meta = json.loads(bench.read_text())
        est = json.loads(estimates.read_text())
        results[meta["full_id"]] = est["median"]["point_estimate"]
    return results


def json_lines(name):
    path = CRITERION / name
    if not path.exists():
        return []
    return [json.loads(l) for l in path.read_text().splitlines() if l.strip()]


def fmt_ratio(x):
    return f"{x:.2f}×"


def table(headers, rows):
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(["---"] + ["---:"] * (len(headers) - 1)) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def section_hot_path(res, instr):
    out = ["### 1. Hot path (single thread)", ""]
    variants = ["bare", "static_header", "floor", "floor_retry", "oauth2", "oauth2_no_retry", "std_rwlock", "tokio_rwlock"]
    base = res.get("hot_path/static_header")
    bare = res.get("hot_path/bare")
    rows = []
    for v in variants:
        ns = res.get(f"hot_path/{v}")
        if ns is None:
            continue
        over = f"{ns - bare:+.0f}" if bare else "-"
        rows.append([v, f"{ns:.0f}", fmt_ratio(ns / base) if base else "-", over,
                     f"{instr[v]:.0f}" if v in instr else "-",
                     fmt_ratio((instr[v] - instr["bare"]) / (instr["static_header"] - instr["bare"])) if v in instr and "bare" in instr else "-"])
    out.append(table(["variant", "ns/call", "× static header", "ns over bare", "instructions/call", "instructions over bare, × static header's"], rows))
    # Against the hand-written floor of the same obligations (benches/common/floor.rs).
    for ours, floor, what in (("oauth2", "floor_retry", "retries on"), ("oauth2_no_retry", "floor", "retries off")):
        ns_ours, ns_floor = res.get(f"hot_path/{ours}"), res.get(f"hot_path/{floor}")
        if ns_ours and ns_floor:
            extra = f", {instr[ours] - instr[floor]:+.0f} instructions" if ours in instr and floor in instr else ""
            out += ["", f"`{ours}` against `{floor}` ({what}): {fmt_ratio(ns_ours / ns_floor)} the time{extra} per call."]
    # A clone of the service per call, as idiomatic tower code does.
    rows = []
    c_base, c_bare = res.get("cloned_per_call/static_header"), res.get("cloned_per_call/bare")
    for v in ("bare", "static_header", "oauth2"):
        ns = res.get(f"cloned_per_call/{v}")
        key = f"{v}_cloned"
        if ns is None:
            continue
        rows.append([f"{v}, cloned per call", f"{ns:.0f}", fmt_ratio(ns / c_base) if c_base else "-",
                     f"{ns - c_bare:+.0f}" if c_bare else "-", f"{instr[key]:.0f}" if key in instr else "-",
                     fmt_ratio((instr[key] - instr["bare_cloned"]) / (instr["static_header_cloned"] - instr["bare_cloned"]))
                     if key in instr and "bare_cloned" in instr and "static_header_cloned" in instr else "-"])
    if rows:
        out += ["", "A clone of the service per call (`svc.clone().oneshot(req)`), against the static header cloned the same way:", "",
                table(["variant", "ns/call", "× static header cloned", "ns over bare cloned", "instructions/call",
                       "instructions over bare, × static header's"], rows)]
    p_bare, p_ours = res.get("passthrough/bare"), res.get("passthrough/oauth2")
    if p_bare and p_ours:
        out += ["", f"Foreign origin (passes through untouched): {p_ours:.0f} ns against {p_bare:.0f} ns bare ({fmt_ratio(p_ours / p_bare)})"
                + (f"; {instr['oauth2_foreign'] - instr['bare_foreign']:+.0f} instructions per call." if "oauth2_foreign" in instr else ".")]
    return out


def section_contention(res):
    out = ["### 3. Contention (2 workers, 64 tasks; the token replaced every 1 ms)", ""]
    ids = {k: v for k, v in res.items() if k.startswith("contention/")}
    if not ids:
        return out + ["_not run_"]
    rate = {k.split("/", 1)[1]: 1e3 / v for k, v in ids.items()}
    base, lock = rate.get("static_header"), rate.get("tokio_rwlock")
    rows = [[k, f"{r:.1f}", fmt_ratio(r / base) if base else "-", fmt_ratio(r / lock) if lock else "-"] for k, r in sorted(rate.items(), key=lambda kv: -kv[1])]
    out.append(table(["variant", "Mcalls/s", "× static header", "× tokio RwLock"], rows))
    cloned, static_cloned = rate.get("oauth2_cloned"), rate.get("static_header_cloned")
    if cloned and static_cloned:
        out += ["", f"Cloned per call: `oauth2_cloned` makes {fmt_ratio(cloned / static_cloned)} the calls of "
                f"`static_header_cloned` (each call through a clone of the task's service), i.e. "
                f"{fmt_ratio(static_cloned / cloned)} its time per call."]
    handoff = CRITERION / "handoff.txt"
    if handoff.exists():
        out += ["", "Core-to-core hand-off latency measured with this run: " + handoff.read_text().strip().replace("\n", "; ") + "."]
    swaps = CRITERION / "swaps.txt"
    if swaps.exists():
        out += ["", "Token swaps per second during the timed calls: " + swaps.read_text().strip() + "."]
    return out


def paired_e2e():
    """level -> (bare, static, layer req/s, p25-p75 of the per-round layer/bare ratio, CPU per request x3)
    from the paired rounds end_to_end prints after its criterion groups."""
    log = CRITERION / "end_to_end.log"
    if not log.exists():
        return {}
    rows = {}
    for line in log.read_text().splitlines():
        m = re.match(r"(http1_c\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+[\d.]+\s+([\d.]+-[\d.]+)\s+(\S+)\s+(\S+)\s+(\S+)", line)
        if m:
            rows[m.group(1)] = (int(m.group(2)), int(m.group(3)), int(m.group(4)), m.group(5), m.group(6), m.group(7), m.group(8))
    return rows


def section_e2e(res):
    out = ["### 6. End to end over loopback (hyper client → hyper server)", ""]
    ids = {k: v for k, v in res.items() if k.startswith("e2e/")}
    if not ids:
        return out + ["_not run_"]
    levels = sorted({k.split("/")[1] for k in ids}, key=lambda s: int(re.sub(r"\D", "", s) or 0))
    paired = paired_e2e()
    rows = []
    for level in levels:
        bare = ids.get(f"e2e/{level}/bare")
        ours = ids.get(f"e2e/{level}/with_layer")
        if bare and ours:
            p = paired.get(level)
            rows.append([level, f"{1e9 / bare:,.0f}", f"{1e9 / ours:,.0f}", fmt_ratio(bare / ours)]
                        + ([fmt_ratio(p[2] / p[0]), p[3], fmt_ratio(p[1] / p[0]), fmt_ratio(p[2] / p[1]), f"{p[4]} / {p[5]} / {p[6]}"] if p else ["-"] * 5))
    out.append(table(["shape", "bare req/s", "with layer req/s", "× bare (criterion, back to back)",
                      "× bare (paired rounds)", "rounds p25–p75", "fixed header × bare", "layer × fixed header",
                      "CPU/request bare / fixed / layer"], rows))
    out += ["", "Criterion measures bare and then the layer, each for several seconds and with one clone of the "
            "client per task, so drift of the machine between the two moves that ratio; the paired rounds "
            "alternate bare, a fixed header (tower-http `SetRequestHeader`, the cost of carrying the header "
            "alone) and the layer in rotating order, 18 rounds of 2,000 requests each, every request through a "
            "clone of its task's client (`client.clone().oneshot(req)`)."]
    return out


def section_storm():
    out = ["### 4. Refresh storm (10,000 concurrent callers, token endpoint answers after 5 ms)", ""]
    rows = [[r["scenario"], r["token_requests"], r["successes"], f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}", f"{r['max_ms']:.1f}"] for r in json_lines("refresh_storm.json")]
    return out + ([table(["scenario", "token requests", "successes", "p50 ms", "p99 ms", "max ms"], rows)] if rows else ["_not run_"])


def section_early():
    out = ["### 5. Early refresh under a slow token endpoint (200 ms)", ""]
    rows = [[r.get("variant", "?"), f"{r.get('baseline_p99_ms', 0):.3f}", f"{r.get('window_p99_ms', 0):.3f}", f"{r.get('added_p99_ms', 0):+.3f}", f"{r.get('window_max_ms', 0):.1f}"] for r in json_lines("early_refresh.json")]
    return out + ([table(["variant", "p99 outside the window (ms)", "p99 in the window (ms)", "added at p99 (ms)", "max in the window (ms)"], rows)] if rows else ["_not run_"])


def section_allocations():
    log = CRITERION / "allocations.log"
    out = ["### 2. Allocations per call", ""]
    if not log.exists():
        return out + ["_not run_"]
    text = log.read_text()
    start = text.find("allocations per call")
    if start < 0:
        return out + ["_not run_"]
    kept = []
    for line in text[start:].splitlines():
        if line.strip().startswith(("Compiling", "Finished", "Running", "warning")):
            break
        if line.strip().startswith("Blocking waiting for file lock"):
            # cargo, waiting for another build on the machine: not the bench's output
            continue
        kept.append(line)
    return out + ["```text", "\n".join(kept).strip(), "```"]


def section_users():
    out = ["### 7. Users at scale (2 workers, 64 tasks; 1,000 distinct users; memory of 100,000 idle users)", ""]
    note = CRITERION / "users.txt"
    if not note.exists():
        return out + ["_not run_"]
    values = {}
    for line in note.read_text().splitlines():
        name, _, value = line.partition(": ")
        values[name] = value
    rows = []
    for name, what in (("users_1000_calls_per_s", "users (1,000 subjects), calls/s"),
                       ("app_calls_per_s", "application credential, calls/s"),
                       ("app_tagged_calls_per_s", "application credential, request with one extension, calls/s"),
                       ("users_vs_app", "users × application (median of paired rounds)"),
                       ("users_vs_app_tagged", "users × application with one extension"),
                       ("bytes_per_idle_user", "bytes per idle user in memory"),
                       ("live_bytes_start", "live bytes at the start (registry, 100,000 users' tokens in the store)"),
                       ("live_bytes_after_idle", "live bytes after the time-to-idle"),
                       ("after_idle_vs_start", "after the time-to-idle, against the start"),
                       ("users_in_memory_after_idle", "users still in memory after the time-to-idle")):
        if name in values:
            rows.append([what, values[name]])
    out.append(table(["measure", "value"], rows))
    if "paired_rounds" in values:
        out += ["", f"Paired rounds: {values['paired_rounds']}."]
    return out


def machine():
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    rustc = sh("rustc", "--version").strip()
    return f"{os.cpu_count()} vCPU ({cpu}), {platform.system()} {platform.release()}, {rustc}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", action="store_true", help="run the benches first")
    args = ap.parse_args()
    load = CRITERION / "load.txt"
    if args.run:
        start = os.getloadavg()[0]
        run_benches()
        load.parent.mkdir(parents=True, exist_ok=True)
        load.write_text(f"Load average (1 min): {start:.2f} at the start, {os.getloadavg()[0]:.2f} at the end "
                        "(the benches themselves keep up to both cores busy).\n")
    res = criterion_results()
    instr = instructions()
    lines = [BEGIN, "", f"Measured {datetime.date.today().isoformat()} on {machine()}."]
    if load.exists():
        lines.append(load.read_text().strip())
    lines.append("")
    for part in (section_hot_path(res, instr), section_allocations(), section_contention(res), section_storm(), section_early(), section_e2e(res), section_users()):
        lines += part + [""]
    lines.append(END)
    doc = ROOT / "BENCHMARKS.md"
    text = doc.read_text() if doc.exists() else f"# Benchmarks\n\n{BEGIN}\n{END}\n"
    before, _, rest = text.partition(BEGIN)
    _, _, after = rest.partition(END)
    doc.write_text(before + "\n".join(lines) + after)
    print(f"wrote {doc}")


if __name__ == "__main__":
    main()
