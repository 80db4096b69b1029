#!/usr/bin/env python3
"""Turn a bench/out/results-*.txt file (written by bench/run.sh) into a markdown table.

Usage: report.py RESULTS_FILE
"""
import re
import sys


def parse_duration_ms(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError(f"cannot parse wrk latency {text!r}")
    value, unit = float(m.group(1)), m.group(2)
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def parse_wrk(text):
    out = {"errors": []}
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    out["rps"] = float(m.group(1)) if m else None
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", text, re.M)
        out[f"p{pct}"] = parse_duration_ms(m.group(1)) if m else None
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    if m:
        out["errors"].append(f"{m.group(1)} non-2xx")
    m = re.search(r"Socket errors:(.*)", text)
    if m:
        out["errors"].append("socket errors:" + m.group(1).strip())
    m = re.search(r"(\d+) requests in", text)
    out["requests"] = int(m.group(1)) if m else None
    return out


def main():
    path = sys.argv[1]
    results = {}
    header = []
    text = open(path).read()
    # "## wrk <key> -c<conns> <url>" followed by wrk's own output, up to the next section
    wrk = {}
    for m in re.finditer(r"^## wrk (\S+) -c(\d+) .*\n((?:(?!## |RESULT ).*\n)*)", text, re.M):
        wrk[f"{m.group(1)}.c{m.group(2)}"] = parse_wrk(m.group(3))
    for line in text.splitlines(True):
        if line.startswith("RESULT "):
            _, key, value = line.rstrip("\n").split(" ", 2)
            results[key] = value
        elif line.startswith(("machine:", "wisp:", "serverless:", "python:", "wrk:", "settings:")):
            header.append(line.rstrip("\n"))

    conns = sorted({int(k.rsplit(".c", 1)[1]) for k in wrk})

    def f(x, digits=1):
        return "n/a" if x is None else f"{x:,.{digits}f}"

    def ratio(a, b):
        if a is None or b is None or b == 0:
            return None
        return a / b

    def rx(x):
        return "n/a" if x is None else f"{x:.2f}x"

    def verdict(ok):
        return "n/a" if ok is None else ("**met**" if ok else "**missed**")

    rows = []
    notes = []
    for c in conns:
        w = wrk.get(f"wisp_invoke.c{c}", {})
        p = wrk.get(f"peer_http.c{c}", {})
        pi = wrk.get(f"peer_invoke.c{c}", {})
        for name, d in (("wisp Invoke API", w), ("serverless-offline HTTP route", p),
                        ("serverless-offline Invoke API", pi)):
            if d.get("errors"):
                notes.append(f"{name}, {c} connections: " + ", ".join(d["errors"]))
        r = ratio(w.get("rps"), p.get("rps"))
        rows.append((f"throughput, {c} conns (req/s)", f(w.get("rps"), 0), f(p.get("rps"), 0),
                     rx(r), ">= 2x", verdict(None if r is None else r >= 2),
                     f(pi.get("rps"), 0), rx(ratio(w.get("rps"), pi.get("rps")))))
        r = ratio(p.get("p50"), w.get("p50"))
        rows.append((f"p50, {c} conns (ms)", f(w.get("p50"), 2), f(p.get("p50"), 2), rx(r), "", "",
                     f(pi.get("p50"), 2), rx(ratio(pi.get("p50"), w.get("p50")))))
        r = ratio(p.get("p99"), w.get("p99"))
        rows.append((f"p99, {c} conns (ms)", f(w.get("p99"), 2), f(p.get("p99"), 2), rx(r),
                     ">= 4x", verdict(None if r is None else r >= 4),
                     f(pi.get("p99"), 2), rx(ratio(pi.get("p99"), w.get("p99")))))

    def num(key, scale=1.0):
        v = results.get(key)
        return None if v is None else float(v) * scale

    wf, pf = num("wisp.first_s", 1000), num("peer.first_s", 1000)
    rows.append(("first invocation (ms, median)", f(wf, 1), f(pf, 1), rx(ratio(pf, wf)),
                  "wisp <= 100 ms", verdict(None if wf is None else wf <= 100), "", ""))
    mb = 1 / 1024
    rows.append(("RSS after start (MB)", f(num("wisp.rss_start_kb", mb)),
                 f(num("peer.rss_start_kb", mb)) + " (tree)", "", "", "", "", ""))
    rows.append(("RSS after the runs (MB)",
                 f"{f(num('wisp.rss_after_kb', mb))} ({f(num('wisp.tree_rss_after_kb', mb))} tree)",
                 f(num("peer.rss_after_kb", mb)) + " (tree)", "", "", "", "", ""))
    idle = num("wisp.rss_idle_kb", mb)
    rows.append(("idle RSS after keep-alive expiry (MB)",
                 f"{f(idle)} ({f(num('wisp.tree_rss_idle_kb', mb))} tree, "
                 f"{results.get('wisp.children_idle', '?')} children)",
                 "", "", "wisp <= 30 MB", verdict(None if idle is None else idle <= 30), "", ""))

    cols = ("metric", "wisp (Invoke API)", "serverless-offline (HTTP route)", "ratio", "target",
            "met?", "serverless-offline (Invoke API)", "ratio")
    print("| " + " | ".join(cols) + " |")
    print("|" + "|".join(["---"] + ["---:"] * 4 + ["---"] + ["---:"] * 2) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()
    print("Ratios: wisp/peer for throughput, peer/wisp for latencies (higher is better for wisp).")
    print("RSS: the wisp server process alone (tree = with its function instances); "
          "serverless-offline: node plus its python children.")
    for n in notes:
        print(f"- warning: {n}")
    print()
    for h in header:
        print(f"    {h}")


if __name__ == "__main__":
    main()
