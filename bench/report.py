#!/usr/bin/env python3
"""Report for bench/ldap-plan.sh (which sets the BENCH_* environment variables).

Checks each plan's summary against the counts the generated data implies (and that the
plan from the LDIF export has the LDAPS plan's operations), prints a table with every
run, and replaces the dated results section between the ldap-plan markers in
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
TARGET_RSS_MB = 100
# The scale run: wall at most this much over linear in the user count; RSS at most 1 GB.
TARGET_SCALE_SLACK = 1.1
TARGET_SCALE_RSS_MB = 1024


def env(name):
    return os.environ[name]


def floats(name):
    return [float(x) for x in env(name).split()]


def read_plan(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f), os.path.getsize(path)


def summary_mismatches(s, expected):
    want = {
        "provision": expected.get("provision", 0),
        "update": expected.get("update", 0),
        "move": expected.get("move", 0),
        "remove": expected.get("remove", 0),
        "unchanged": expected.get("unchanged", 0),
        "restore": 0, "join": 0, "blocked": 0, "rejected": 0,
    }
    return {k: (s.get(k), v) for k, v in want.items() if s.get(k) != v}


def mismatch_text(mismatches):
    return ", ".join(f"{k} {got} (expected {exp})" for k, (got, exp) in mismatches.items())


def main():
    count = int(env("BENCH_COUNT"))
    base_t = floats("BENCH_BASE_T")
    tan_t = floats("BENCH_TAN_T")
    tan_rss_mb = [kb / 1024 for kb in floats("BENCH_TAN_RSS")]
    base_rss_mb = [kb / 1024 for kb in floats("BENCH_BASE_RSS")]
    ldif_t = floats("BENCH_LDIF_T")
    ldif_rss_mb = [kb / 1024 for kb in floats("BENCH_LDIF_RSS")]
    expected = json.loads(env("BENCH_EXPECTED"))
    scale = int(os.environ.get("BENCH_SCALE", "0") or 0)

    plan, plan_bytes = read_plan(env("BENCH_PLAN"))
    s = plan["summary"]
    mismatches = summary_mismatches(s, expected)
    src = plan["source"]
    tgt = plan["target"]

    # The plan from the LDIF export: the same entries, so the same operations.
    ldif_plan, _ = read_plan(env("BENCH_LDIF_PLAN"))
    ldif_problems = []
    if ldif_plan["summary"] != s:
        ldif_problems.append("its summary differs")
    for key in ("operations", "blocked", "rejected"):
        if ldif_plan.get(key) != plan.get(key):
            ldif_problems.append(f"its {key} differ")

    b_med = statistics.median(base_t)
    t_med = statistics.median(tan_t)
    l_med = statistics.median(ldif_t)
    ratio = t_med / b_med
    rss_peak = max(tan_rss_mb)
    ok_ratio = ratio <= TARGET_RATIO
    ok_rss = rss_peak <= TARGET_RSS_MB

    def fmt_list(xs, unit="s"):
        return ", ".join(f"{x:.2f}" for x in xs) + f" {unit}"

    def met(ok):
        return "met" if ok else "**missed**"

    def summary_of(s):
        return ", ".join(f"{k} {s.get(k)}" for k in
                         ["provision", "update", "move", "remove", "restore", "join",
                          "unchanged", "blocked", "rejected"])

    summary_line = summary_of(s)
    rows = [
        ("ldapsearch (baseline), median wall", f"{b_med:.2f} s", "", "runs: " + fmt_list(base_t)),
        ("tansync plan (LDAPS), median wall", f"{t_med:.2f} s", "", "runs: " + fmt_list(tan_t)),
        ("ratio tansync / ldapsearch", f"{ratio:.2f}", f"≤ {TARGET_RATIO}", met(ok_ratio)),
        ("tansync plan (LDAPS) peak RSS (max of runs)", f"{rss_peak:.0f} MB",
         f"≤ {TARGET_RSS_MB} MB", met(ok_rss) + "; runs: " + fmt_list(tan_rss_mb, "MB")),
        ("tansync plan (LDIF export), median wall", f"{l_med:.2f} s",
         f"≤ {t_med:.2f} s (LDAPS)", met(l_med <= t_med) + "; runs: " + fmt_list(ldif_t)),
        ("tansync plan (LDIF export) peak RSS (max of runs)", f"{max(ldif_rss_mb):.0f} MB",
         f"≤ {TARGET_RSS_MB} MB", met(max(ldif_rss_mb) <= TARGET_RSS_MB)
         + "; runs: " + fmt_list(ldif_rss_mb, "MB")),
        ("ldapsearch peak RSS (max of runs)", f"{max(base_rss_mb):.0f} MB", "",
         "runs: " + fmt_list(base_rss_mb, "MB")),
    ]

    scale_lines = []
    if scale:
        sc_t = float(env("BENCH_SCALE_T"))
        sc_rss = float(env("BENCH_SCALE_RSS")) / 1024
        sc_base_t = float(env("BENCH_SCALE_BASE_T"))
        sc_base_rss = float(env("BENCH_SCALE_BASE_RSS")) / 1024
        factor = scale / count
        limit = factor * TARGET_SCALE_SLACK * t_med
        sc_plan, sc_bytes = read_plan(env("BENCH_SCALE_PLAN"))
        sc_mismatches = summary_mismatches(sc_plan["summary"],
                                           json.loads(env("BENCH_SCALE_EXPECTED")))
        rows += [
            (f"scale: ldapsearch, {scale} users (one run)", f"{sc_base_t:.2f} s", "",
             f"RSS {sc_base_rss:.0f} MB"),
            (f"scale: tansync plan (LDAPS), {scale} users (one run)", f"{sc_t:.2f} s",
             f"≤ {limit:.2f} s ({factor * TARGET_SCALE_SLACK:.0f}× the {count} plan)",
             met(sc_t <= limit) + f"; {sc_t / t_med:.1f}× the {count} plan, "
             f"{sc_t / sc_base_t:.2f}× its ldapsearch"),
            (f"scale: tansync plan (LDAPS) peak RSS, {scale} users", f"{sc_rss:.0f} MB",
             f"≤ {TARGET_SCALE_RSS_MB} MB", met(sc_rss <= TARGET_SCALE_RSS_MB)),
        ]
        scale_lines.append(
            f"Scale plan ({scale} users): summary {summary_of(sc_plan['summary'])}; "
            f"plan JSON {sc_bytes / 1e6:.0f} MB"
            + (" — as the generated data implies." if not sc_mismatches else
               " — **differs from the generated data**: " + mismatch_text(sc_mismatches)))
    ldif_line = ("LDIF plan: the LDAPS plan's summary, operations, blocked and rejected."
                 if not ldif_problems else
                 "LDIF plan: **differs from the LDAPS plan**: " + "; ".join(ldif_problems))

    print()
    print(f"ldap-plan: {count} users over LDAPS, page size 1000, {len(tan_t)} runs each (alternating, after one warm-up each)"
          + (f"; scale run: {scale} users, one run each" if scale else ""))
    w = max(len(r[0]) for r in rows)
    for name, value, target, note in rows:
        print(f"  {name:<{w}}  {value:>9}  {target:<10} {note}")
    print(f"  plan: source read {src['read']}, in scope {src['in_scope']}, rejected {src['rejected']}; "
          f"target read {tgt['read']}; {plan_bytes / 1e6:.0f} MB JSON")
    print(f"  plan summary: {summary_line}")
    if mismatches:
        print("  WARNING: plan summary differs from what the generated data implies: "
              + mismatch_text(mismatches))
    else:
        print("  plan summary matches the counts the generated data implies")
    print(f"  {ldif_line}")
    for line in scale_lines:
        print(f"  {line}")

    if env("BENCH_NO_MD") == "1":
        return 0

    now = datetime.datetime.now(datetime.timezone.utc)
    lines = [
        BEGIN,
        f"### Results {now:%Y-%m-%d %H:%M} UTC",
        "",
        f"{count} users, LDAPS on loopback, page size 1000; {len(tan_t)} runs of each (ldapsearch, "
        "tansync over LDAPS, tansync from an `ldapsearch -L` export of the same entries), "
        "alternating, after one untimed warm-up of each"
        + (f"; then {scale} users, one run of each of ldapsearch and tansync over LDAPS." if scale
           else ".")
        + " Command: `"
        + (f"BENCH_SCALE={scale} " if scale else "")
        + (f"BENCH_USERS={count} " if count != 100000 else "")
        + (f"BENCH_RUNS={len(tan_t)} " if len(tan_t) != 3 else "")
        + "bash bench/ldap-plan.sh`.",
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
           + mismatch_text(mismatches)),
        "",
        ldif_line,
    ]
    lines += ([""] + scale_lines) if scale_lines else []
    lines += [
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
