#!/usr/bin/env python3
"""Chart and tables from criterion's output for the evmux benchmarks.

Reads the mean point estimate of every benchmark in
target/criterion/idle_round_trip/<contender>/<N>/new/estimates.json (and
register_modify_deregister/ if present), writes an SVG line chart of
round-trip time against N (log-log, one line per contender) and prints
markdown tables for BENCHMARKS.md.

    cargo bench --bench idle_connections
    cargo bench --bench registration
    python3 benches/plot_idle.py [--criterion DIR] [--svg docs/idle_round_trip.svg]

Several runs, each saved as a criterion baseline, give steadier figures on
a busy machine: every figure is then the median over the runs.

    for r in 1 2 3; do cargo bench --bench idle_connections -- --save-baseline r$r; done
    python3 benches/plot_idle.py --baselines r1,r2,r3

Standard library only; the SVG is drawn by hand.
"""

import argparse
import json
import math
import os
import sys

# Draw order and style: evmux solid, raw floors dashed, peers dotted.
CONTENDERS = [
    ("evmux-select", "#1f77b4", ""),
    ("raw-select", "#1f77b4", "6,4"),
    ("evmux-poll", "#2ca02c", ""),
    ("raw-poll", "#2ca02c", "6,4"),
    ("evmux-epoll-level", "#d62728", ""),
    ("raw-epoll-level", "#d62728", "6,4"),
    ("evmux-epoll-edge", "#ff7f0e", ""),
    ("raw-epoll-edge", "#ff7f0e", "6,4"),
    ("mio-edge", "#9467bd", "2,3"),
    ("polling-level", "#8c564b", "2,3"),
    ("polling-edge", "#e377c2", "2,3"),
]
FLOORS = [
    ("evmux-select", "raw-select"),
    ("evmux-poll", "raw-poll"),
    ("evmux-epoll-level", "raw-epoll-level"),
    ("evmux-epoll-edge", "raw-epoll-edge"),
]
PEERS = [
    ("evmux-epoll-edge", "mio-edge"),
    ("evmux-epoll-edge", "polling-edge"),
    ("evmux-epoll-level", "polling-level"),
]


def load_group(root, group, baselines):
    """{contender: {n: [mean_ns per baseline]}} for one criterion group."""
    out = {}
    base = os.path.join(root, group)
    if not os.path.isdir(base):
        return out
    for name in sorted(os.listdir(base)):
        cdir = os.path.join(base, name)
        if not os.path.isdir(cdir) or name == "report":
            continue
        for param in os.listdir(cdir):
            if not param.isdigit():
                continue
            for bl in baselines:
                path = os.path.join(cdir, param, bl, "estimates.json")
                if not os.path.exists(path):
                    continue
                with open(path) as f:
                    est = json.load(f)
                runs = out.setdefault(name, {}).setdefault(int(param), [])
                runs.append(est["mean"]["point_estimate"])
    return out


def load_tsv(path):
    """({contender: {n: [median_ns]}}, {contender: {n: N=0 median_ns}})
    from the interleaved mode's file; the second holds each contender's
    N=0 blocks timed in the same window as its N blocks."""
    out, zero = {}, {}
    with open(path) as f:
        next(f)
        for line in f:
            cols = line.rstrip("\n").split("\t")
            name, n, mid = cols[0], int(cols[1]), float(cols[2])
            out.setdefault(name, {})[n] = [mid]
            if len(cols) > 5:
                zero.setdefault(name, {})[n] = float(cols[5])
    return out, zero


def median(xs):
    xs = sorted(xs)
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2


def collapse(runs):
    """{contender: {n: median over runs}}, and the widest max/min spread."""
    data, spread = {}, 1.0
    for name, by_n in runs.items():
        for n, xs in by_n.items():
            data.setdefault(name, {})[n] = median(xs)
            spread = max(spread, max(xs) / min(xs))
    return data, spread


def fmt_ns(ns):
    return f"{ns:,.0f}" if ns >= 100 else f"{ns:.1f}"


def table(data, names, sizes, cell):
    head = "| contender | " + " | ".join(f"N={n}" for n in sizes) + " |"
    rule = "|---|" + "---:|" * len(sizes)
    rows = [head, rule]
    for name in names:
        cells = [cell(name, n) for n in sizes]
        if any(c != "-" for c in cells):
            rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def ratio(data, a, b, n):
    x, y = data.get(a, {}).get(n), data.get(b, {}).get(n)
    return f"{x / y:.2f}x" if x and y else "-"


def print_tables(data, reg, stat, zero):
    sizes = sorted({n for d in data.values() for n in d})
    names = [c[0] for c in CONTENDERS if c[0] in data]
    print(f"### Idle connections: ns per round trip ({stat})\n")
    print(table(data, names, sizes, lambda c, n: fmt_ns(data[c][n]) if n in data[c] else "-"))
    print("\n### evmux against the raw system call floor (lower is better, 1.00x = floor)\n")
    rows = [f"{a} / {b}" for a, b in FLOORS]
    print(table(data, rows, sizes, lambda r, n: ratio(data, *r.split(" / "), n)))
    print("\n### evmux epoll against the peers (below 1.00x: evmux faster)\n")
    rows = [f"{a} / {b}" for a, b in PEERS]
    print(table(data, rows, sizes, lambda r, n: ratio(data, *r.split(" / "), n)))
    print("\n### N=8000 against N=0, per contender\n")
    for name in names:
        d = data[name]
        if 8000 in d and name in zero and 8000 in zero[name]:
            z = zero[name][8000]
            print(f"- {name}: {d[8000] / z:.2f}x ({fmt_ns(z)} -> {fmt_ns(d[8000])} ns, "
                  "N=0 timed alongside)")
        elif 0 in d and 8000 in d:
            print(f"- {name}: {d[8000] / d[0]:.2f}x ({fmt_ns(d[0])} -> {fmt_ns(d[8000])} ns)")
    if reg:
        rsizes = sorted({n for d in reg.values() for n in d})
        order = [n for n in ("select", "poll", "epoll", "raw-epoll") if n in reg]
        print("\n### Registration: ns per register + modify + deregister (mean)\n")
        print(table(reg, order, rsizes, lambda c, n: fmt_ns(reg[c][n]) if n in reg[c] else "-"))


# --- SVG -----------------------------------------------------------------

W, H = 900, 520
LEFT, RIGHT, TOP, BOTTOM = 80, 200, 40, 60


def x_of(n, sizes):
    """Log-x; N=0 sits one decade left of the smallest positive N."""
    pos = [n for n in sizes if n > 0]
    lo, hi = math.log10(min(pos)) - 1, math.log10(max(pos))
    v = math.log10(n) if n > 0 else lo
    return LEFT + (v - lo) / (hi - lo) * (W - LEFT - RIGHT)


def y_ticks(lo, hi):
    ticks = []
    e = math.floor(math.log10(lo))
    while 10 ** e <= hi * 10:
        for m in (1, 2, 5):
            t = m * 10 ** e
            if lo <= t <= hi:
                ticks.append(t)
        e += 1
    return ticks


def label_ns(t):
    return f"{t / 1000:g} µs" if t >= 1000 else f"{t:g} ns"


def svg(data, sizes, title):
    vals = [v for d in data.values() for v in d.values()]
    lo = 10 ** math.floor(math.log10(min(vals)))
    hi = 10 ** math.ceil(math.log10(max(vals)))
    span = math.log10(hi) - math.log10(lo)

    def y_of(v):
        return TOP + (1 - (math.log10(v) - math.log10(lo)) / span) * (H - TOP - BOTTOM)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
        f'viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">',
        f'<rect width="{W}" height="{H}" fill="white"/>',
        f'<text x="{(W - RIGHT + LEFT) / 2}" y="22" text-anchor="middle" '
        f'font-size="15">{title}</text>',
    ]
    x0, x1, y0, y1 = LEFT, W - RIGHT, TOP, H - BOTTOM
    for t in y_ticks(lo, hi):
        y = y_of(t)
        out.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x1}" y2="{y:.1f}" stroke="#e4e4e4"/>')
        out.append(f'<text x="{x0 - 6}" y="{y + 4:.1f}" text-anchor="end">{label_ns(t)}</text>')
    for n in sizes:
        x = x_of(n, sizes)
        out.append(f'<line x1="{x:.1f}" y1="{y0}" x2="{x:.1f}" y2="{y1}" stroke="#e4e4e4"/>')
        out.append(f'<text x="{x:.1f}" y="{y1 + 18}" text-anchor="middle">{n}</text>')
    out.append(f'<rect x="{x0}" y="{y0}" width="{x1 - x0}" height="{y1 - y0}" '
               'fill="none" stroke="#444"/>')
    out.append(f'<text x="{(x0 + x1) / 2}" y="{H - 15}" text-anchor="middle">'
               'idle registered connections N (log scale; 0 at the left)</text>')
    out.append(f'<text transform="translate(18,{(y0 + y1) / 2}) rotate(-90)" '
               'text-anchor="middle">time per round trip (mean, log scale)</text>')
    # Lines in reverse legend order, so select ends up on top of poll.
    for name, color, dash in reversed(CONTENDERS):
        pts = sorted(data.get(name, {}).items())
        if not pts:
            continue
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        path = " ".join(f"{x_of(n, sizes):.1f},{y_of(v):.1f}" for n, v in pts)
        out.append(f'<polyline points="{path}" fill="none" stroke="{color}" '
                   f'stroke-width="2"{dash_attr}/>')
        for n, v in pts:
            out.append(f'<circle cx="{x_of(n, sizes):.1f}" cy="{y_of(v):.1f}" r="2.5" '
                       f'fill="{color}"/>')
    ly = TOP + 10
    for name, color, dash in CONTENDERS:
        if name not in data:
            continue
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        lx = x1 + 15
        out.append(f'<line x1="{lx}" y1="{ly}" x2="{lx + 30}" y2="{ly}" stroke="{color}" '
                   f'stroke-width="2"{dash_attr}/>')
        out.append(f'<text x="{lx + 36}" y="{ly + 4}">{name}</text>')
        ly += 20
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--criterion", default="target/criterion")
    ap.add_argument("--svg", default="docs/idle_round_trip.svg")
    ap.add_argument("--baselines", default="new",
                    help="comma-separated criterion baselines (runs saved with "
                         "--save-baseline NAME); each figure is the median over them")
    ap.add_argument("--tsv", help="read the interleaved mode's medians "
                    "(EVMUX_INTERLEAVED=ROUNDS cargo bench --bench idle_connections) "
                    "instead of criterion's output")
    args = ap.parse_args()
    baselines = args.baselines.split(",")
    zero = {}
    if args.tsv:
        runs, zero = load_tsv(args.tsv)
        baselines = [f"interleaved blocks from {args.tsv}"]
    else:
        runs = load_group(args.criterion, "idle_round_trip", baselines)
    if not runs:
        sys.exit(f"no idle_round_trip results under {args.criterion}; "
                 "run cargo bench --bench idle_connections first")
    data, spread = collapse(runs)
    reg_runs = {} if args.tsv else load_group(
        args.criterion, "register_modify_deregister", baselines)
    reg, reg_spread = collapse(reg_runs)
    sizes = sorted({n for d in data.values() for n in d})
    title = "One readiness round trip with N idle connections"
    os.makedirs(os.path.dirname(args.svg) or ".", exist_ok=True)
    with open(args.svg, "w") as f:
        f.write(svg(data, sizes, title))
    if args.tsv:
        print(f"Median of the interleaved blocks in {args.tsv}.\n")
    else:
        print(f"Median of criterion's mean over {len(baselines)} run(s) "
              f"({', '.join(baselines)}); widest run-to-run spread: "
              f"{spread:.2f}x idle, {reg_spread:.2f}x registration.\n")
    stat = "median block" if args.tsv else "mean"
    print_tables(data, reg, stat, zero)
    print(f"\n(chart written to {args.svg})", file=sys.stderr)


if __name__ == "__main__":
    main()
