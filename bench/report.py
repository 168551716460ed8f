#!/usr/bin/env python3
"""Report for bench/ldap-plan.sh (which sets the BENCH_* environment variables).

Checks the plan's summary against the counts the generated data implies, prints a
table, and replaces the dated results section between the ldap-plan markers in
BENCHMARKS.md (appends it when the markers are missing).
"""
import datetime
import json
import os
import statistics
import sys

BEGIN = "<!-- ldap-plan results: begin (written by bench/ldap-plan.sh) -->"
END = "<!-- ldap-plan results: end -->"
TARGET_RATIO = 1.1
TARGET_RSS_MB = 200


def env(name):
    return os.environ[name]


def floats(name):
    return [float(x) for x in env(name).split()]


def main():
    count = int(env("BENCH_COUNT"))
    base_t = floats("BENCH_BASE_T")
    tan_t = floats("BENCH_TAN_T")
    tan_rss_mb = [kb / 1024 for kb in floats("BENCH_TAN_RSS")]
    base_rss_mb = [kb / 1024 for kb in floats("BENCH_BASE_RSS")]
    expected = json.loads(env("BENCH_EXPECTED"))

    with open(env("BENCH_PLAN"), encoding="utf-8") as f:
        plan = json.load(f)
    plan_bytes = os.path.getsize(env("BENCH_PLAN"))
    s = plan["summary"]
    want = {
        "provision": expected.get("provision", 0),
        "update": expected.get("update", 0),
        "move": expected.get("move", 0),
        "remove": expected.get("remove", 0),
        "unchanged": expected.get("unchanged", 0),
        "restore": 0, "join": 0, "blocked": 0, "rejected": 0,
    }
    mismatches = {k: (s.get(k), v) for k, v in want.items() if s.get(k) != v}
    src = plan["source"]
    tgt = plan["target"]

    b_med = statistics.median(base_t)
    t_med = statistics.median(tan_t)
    ratio = t_med / b_med
    rss_peak = max(tan_rss_mb)
    ok_ratio = ratio <= TARGET_RATIO
    ok_rss = rss_peak <= TARGET_RSS_MB

    def fmt_list(xs, unit="s"):
        return ", ".join(f"{x:.2f}" for x in xs) + f" {unit}"

    summary_line = ", ".join(f"{k} {s.get(k)}" for k in
                             ["provision", "update", "move", "remove", "restore", "join",
                              "unchanged", "blocked", "rejected"])
    rows = [
        ("ldapsearch (baseline), median wall", f"{b_med:.2f} s", "", fmt_list(base_t)),
        ("tansync plan, median wall", f"{t_med:.2f} s", "", fmt_list(tan_t)),
        ("ratio tansync / ldapsearch", f"{ratio:.2f}", f"≤ {TARGET_RATIO}",
         "met" if ok_ratio else "**missed**"),
        ("tansync peak RSS (max of runs)", f"{rss_peak:.0f} MB", f"≤ {TARGET_RSS_MB} MB",
         ("met" if ok_rss else "**missed**") + "; runs: " + fmt_list(tan_rss_mb, "MB")),
        ("ldapsearch peak RSS (max of runs)", f"{max(base_rss_mb):.0f} MB", "", ""),
    ]

    print()
    print(f"ldap-plan: {count} users over LDAPS, page size 1000, {len(tan_t)} runs each (alternating, after one warm-up each)")
    w = max(len(r[0]) for r in rows)
    for name, value, target, note in rows:
        print(f"  {name:<{w}}  {value:>9}  {target:<10} {note}")
    print(f"  plan: source read {src['read']}, in scope {src['in_scope']}, rejected {src['rejected']}; "
          f"target read {tgt['read']}; {plan_bytes / 1e6:.0f} MB JSON")
    print(f"  plan summary: {summary_line}")
    if mismatches:
        print("  WARNING: plan summary differs from what the generated data implies: "
              + ", ".join(f"{k} {got} (expected {exp})" for k, (got, exp) in mismatches.items()))
    else:
        print("  plan summary matches the counts the generated data implies")

    if env("BENCH_NO_MD") == "1":
        return 0

    now = datetime.datetime.now(datetime.timezone.utc)
    lines = [
        BEGIN,
        f"### Results {now:%Y-%m-%d %H:%M} UTC",
        "",
        f"{count} users, LDAPS on loopback, page size 1000; {len(tan_t)} runs of each, alternating, "
        "after one untimed warm-up of each.",
        "",
        f"* Machine: {env('BENCH_CPU')}, {env('BENCH_NPROC')} cores, {env('BENCH_MEM')} RAM, "
        f"{env('BENCH_OS')}; {env('BENCH_SLAPD') or 'slapd'}",
        f"* Build: {env('BENCH_TANSYNC_VERSION')} (git {env('BENCH_GIT')}), {env('BENCH_RUSTC')}, "
        "`cargo build --release`",
        f"* Attributes requested (by tansync, and so by the baseline): `{env('BENCH_ATTRS')}`",
        "",
        "| measure | value | target | |",
        "| --- | ---: | --- | --- |",
    ]
    for name, value, target, note in rows:
        lines.append(f"| {name} | {value} | {target} | {note} |")
    lines += [
        "",
        f"Plan: source read {src['read']}, in scope {src['in_scope']}, rejected {src['rejected']}; "
        f"target read {tgt['read']}; plan JSON {plan_bytes / 1e6:.0f} MB.",
        f"Summary: {summary_line}"
        + (" — as the generated data implies." if not mismatches else
           " — **differs from the generated data**: "
           + ", ".join(f"{k} {got} (expected {exp})" for k, (got, exp) in mismatches.items())),
        END,
    ]
    section = "\n".join(lines) + "\n"

    path = env("BENCH_MD")
    text = open(path, encoding="utf-8").read() if os.path.exists(path) else "# Benchmarks\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        text = head + section.rstrip("\n") + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"  written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
