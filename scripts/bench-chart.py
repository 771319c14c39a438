#!/usr/bin/env python3
"""Turns benchmark output into the tables and SVG charts of docs/benchmarks.md.

Standard library only, so it runs anywhere Python 3.8+ does.

    # criterion results of `cargo bench -p seglog-benches --bench compare` (and `--bench index`)
    python3 scripts/bench-chart.py criterion target/criterion \
        --svg docs/bench-compare.svg --markdown -

    # the JSON of `seglog bench --json`
    python3 scripts/bench-chart.py cli bench.json --svg docs/bench-seed.svg --markdown -

    # keep a run: criterion's directory flattened to one small JSON file, readable as input
    python3 scripts/bench-chart.py export target/criterion > run.json
    python3 scripts/bench-chart.py criterion run.json --markdown -

Criterion keeps one directory per benchmark with `new/benchmark.json` (its id and throughput)
and `new/estimates.json` (nanoseconds per iteration). Every iteration of these benches is one
operation, so ops/s = 1e9 / mean. Ids look like `get/16B/seglog/2t` and `index/get/papaya/1t`.
"""

import argparse
import json
import math
import os
import sys
from collections import defaultdict

SUBJECT_ORDER = [
    "seglog", "seglog-mem", "seed-design", "papaya", "scc", "dashmap", "skiplist",
    "fjall", "redb", "floor",
    "seglog-in-memory", "scc-hashindex",
]
SIZE_ORDER = ["16B", "128B", "3KiB"]
WORKLOAD_ORDER = ["put", "get", "mixed", "hotspot"]
PALETTE = {
    "seglog": "#d62728", "seglog-mem": "#ff9896", "seed-design": "#7f7f7f",
    "papaya": "#1f77b4", "scc": "#aec7e8", "dashmap": "#2ca02c", "skiplist": "#98df8a",
    "fjall": "#9467bd", "redb": "#c5b0d5", "floor": "#17becf",
    "seglog-in-memory": "#d62728", "scc-hashindex": "#aec7e8",
}


def order(items, preferred):
    rank = {name: i for i, name in enumerate(preferred)}
    return sorted(items, key=lambda x: (rank.get(x, len(rank)), x))


def load_criterion(root):
    """{full_id: {"ops": ops/s, "mbps": MB/s or None}} for every benchmark under `root`, or
    from a file written by `export`."""
    if os.path.isfile(root):
        with open(root) as f:
            return json.load(f)["results"]
    results = {}
    for dirpath, _dirs, files in os.walk(root):
        if os.path.basename(dirpath) != "new" or "estimates.json" not in files:
            continue
        with open(os.path.join(dirpath, "benchmark.json")) as f:
            bench = json.load(f)
        with open(os.path.join(dirpath, "estimates.json")) as f:
            estimates = json.load(f)
        ns = estimates["mean"]["point_estimate"]
        ops = 1e9 / ns if ns > 0 else 0.0
        throughput = bench.get("throughput") or {}
        per_iter_bytes = None
        if "ElementsAndBytes" in throughput:
            per_iter_bytes = throughput["ElementsAndBytes"]["bytes"]
        elif "Bytes" in throughput:
            per_iter_bytes = throughput["Bytes"]
        mbps = ops * per_iter_bytes / 1e6 if per_iter_bytes else None
        results[bench["full_id"]] = {"ops": ops, "mbps": mbps}
    return results


def fmt_seconds(seconds):
    for scale, unit in ((1, "s"), (1e-3, "ms"), (1e-6, "µs")):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds * 1e9:.0f} ns"


def fmt_ops(ops):
    if ops >= 1e6:
        return f"{ops / 1e6:.2f} M"
    if ops >= 1e3:
        return f"{ops / 1e3:.0f} K"
    return f"{ops:.0f}"


def compare_tables(results):
    """Markdown: one table per workload, subjects × (size, threads), ops/s (MB/s)."""
    table = defaultdict(dict)  # (workload) -> {(subject, size, threads): result}
    for full_id, r in results.items():
        parts = full_id.split("/")
        if len(parts) != 4 or parts[0] == "index":
            continue
        workload, size, subject, threads = parts
        table[workload][(subject, size, threads)] = r
    out = []
    for workload in order(table, WORKLOAD_ORDER):
        cells = table[workload]
        subjects = order({k[0] for k in cells}, SUBJECT_ORDER)
        columns = [(s, t) for s in order({k[1] for k in cells}, SIZE_ORDER)
                   for t in sorted({k[2] for k in cells})]
        out.append(f"#### {workload}: ops/s (MB/s of values)\n")
        out.append("| subject | " + " | ".join(f"{s} {t}" for s, t in columns) + " |")
        out.append("| --- |" + " ---: |" * len(columns))
        for subject in subjects:
            row = []
            for s, t in columns:
                r = cells.get((subject, s, t))
                if r is None:
                    row.append("–")
                else:
                    mb = f" ({r['mbps']:.0f})" if r["mbps"] is not None else ""
                    row.append(fmt_ops(r["ops"]) + mb)
            name = f"**{subject}**" if subject == "seglog" else subject
            out.append(f"| {name} | " + " | ".join(row) + " |")
        out.append("")
        # seglog against the best peer (everyone but seglog itself, its in-memory twin and the floor).
        out.append(f"seglog ÷ best other (not the floor) for {workload}:\n")
        out.append("| value, threads | seglog | best other | seglog ÷ best | seglog ÷ seed design "
                   "| seglog ÷ floor |")
        out.append("| --- | ---: | --- | ---: | ---: | ---: |")
        for s, t in columns:
            mine = cells.get(("seglog", s, t))
            others = [(r["ops"], subj) for (subj, ss, tt), r in cells.items()
                      if ss == s and tt == t and subj not in ("seglog", "seglog-mem", "floor")]
            floor = cells.get(("floor", s, t))
            seed = cells.get(("seed-design", s, t))
            if not mine or not others:
                continue
            best_ops, best = max(others)
            floor_ratio = f"{mine['ops'] / floor['ops']:.2f}" if floor else "–"
            seed_ratio = f"{mine['ops'] / seed['ops']:.2f}" if seed else "–"
            out.append(f"| {s} {t} | {fmt_ops(mine['ops'])} | {best} {fmt_ops(best_ops)} | "
                       f"{mine['ops'] / best_ops:.2f} | {seed_ratio} | {floor_ratio} |")
        out.append("")
    return "\n".join(out)


def index_tables(results):
    cells = {}
    for full_id, r in results.items():
        parts = full_id.split("/")
        if len(parts) == 4 and parts[0] == "index":
            cells[(parts[1], parts[2], parts[3])] = r
    if not cells:
        return ""
    ops = order({k[0] for k in cells}, ["insert", "get", "mixed"])
    threads = sorted({k[2] for k in cells})
    subjects = order({k[1] for k in cells}, SUBJECT_ORDER)
    columns = [(o, t) for o in ops for t in threads]
    out = ["#### index: ops/s\n",
           "| subject | " + " | ".join(f"{o} {t}" for o, t in columns) + " |",
           "| --- |" + " ---: |" * len(columns)]
    for subject in subjects:
        row = [fmt_ops(cells[(o, subject, t)]["ops"]) if (o, subject, t) in cells else "–"
               for o, t in columns]
        out.append(f"| {subject} | " + " | ".join(row) + " |")
    out.append("")
    return "\n".join(out)


# --- SVG ------------------------------------------------------------------------------------

def esc(text):
    return (str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"))


def bar_panels(panels, series_order, title, unit, log_scale=True, reference=None):
    """An SVG of side-by-side panels of grouped bars.

    panels: [(panel title, [(group label, {series: value})])].
    reference: optional value drawn as a dashed line in every panel (e.g. ratio 1.0).
    """
    panel_w, panel_h = 330, 260
    margin_l, margin_t, margin_b = 56, 58, 46
    legend_h = 22 * ((len(series_order) + 4) // 5)
    width = margin_l + panel_w * len(panels) + 20
    height = margin_t + panel_h + margin_b + legend_h
    values = [v for _, groups in panels for _, series in groups for v in series.values()
              if v and v > 0]
    if reference:
        values.append(reference)
    if not values:
        raise SystemExit("nothing to chart")
    lo, hi = min(values), max(values)
    if log_scale:
        lo_e, hi_e = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
        if lo_e == hi_e:
            hi_e += 1

        def y_of(v):
            return margin_t + panel_h * (1 - (math.log10(v) - lo_e) / (hi_e - lo_e))
        ticks = [10 ** e for e in range(lo_e, hi_e + 1)]
    else:
        top = hi * 1.1

        def y_of(v):
            return margin_t + panel_h * (1 - v / top)
        step = 10 ** math.floor(math.log10(top / 2))
        ticks = [step * i for i in range(0, int(top / step) + 1)]

    def tick_label(v):
        if unit == "ops/s":
            return fmt_ops(v).replace(" ", "")
        return f"{v:g}"

    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="11">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{width / 2}" y="20" text-anchor="middle" font-size="14" '
           f'font-weight="bold">{esc(title)}</text>']
    for p, (panel_title, groups) in enumerate(panels):
        x0 = margin_l + p * panel_w
        svg.append(f'<text x="{x0 + panel_w / 2}" y="{margin_t - 12}" text-anchor="middle" '
                   f'font-size="12" font-weight="bold">{esc(panel_title)}</text>')
        for t in ticks:
            y = y_of(t)
            svg.append(f'<line x1="{x0}" x2="{x0 + panel_w - 14}" y1="{y:.1f}" y2="{y:.1f}" '
                       f'stroke="#ddd"/>')
            if p == 0:
                svg.append(f'<text x="{x0 - 4}" y="{y + 4:.1f}" text-anchor="end">'
                           f'{esc(tick_label(t))}</text>')
        if reference:
            y = y_of(reference)
            svg.append(f'<line x1="{x0}" x2="{x0 + panel_w - 14}" y1="{y:.1f}" y2="{y:.1f}" '
                       f'stroke="#333" stroke-dasharray="4 3"/>')
        group_w = (panel_w - 14) / max(1, len(groups))
        for g, (label, series) in enumerate(groups):
            present = [s for s in series_order if series.get(s)]
            bar_w = (group_w - 10) / max(1, len(present))
            gx = x0 + g * group_w + 5
            for i, s in enumerate(present):
                v = series[s]
                y = y_of(v)
                base = margin_t + panel_h
                svg.append(f'<rect x="{gx + i * bar_w:.1f}" y="{y:.1f}" width="{bar_w - 1:.1f}" '
                           f'height="{max(0.5, base - y):.1f}" fill="{PALETTE.get(s, "#555")}">'
                           f'<title>{esc(s)} {esc(label)}: {esc(tick_label(v))} {esc(unit)}'
                           f'</title></rect>')
            svg.append(f'<text x="{gx + (group_w - 10) / 2:.1f}" y="{margin_t + panel_h + 16}" '
                       f'text-anchor="middle">{esc(label)}</text>')
        svg.append(f'<line x1="{x0}" x2="{x0 + panel_w - 14}" y1="{margin_t + panel_h}" '
                   f'y2="{margin_t + panel_h}" stroke="#333"/>')
    svg.append(f'<text x="14" y="{margin_t + panel_h / 2}" transform="rotate(-90 14 '
               f'{margin_t + panel_h / 2})" text-anchor="middle">{esc(unit)}'
               f'{" (log scale)" if log_scale else ""}</text>')
    ly = margin_t + panel_h + margin_b - 4
    for i, s in enumerate(series_order):
        lx = margin_l + (i % 5) * 150
        yy = ly + (i // 5) * 20
        svg.append(f'<rect x="{lx}" y="{yy - 10}" width="12" height="12" '
                   f'fill="{PALETTE.get(s, "#555")}"/>')
        svg.append(f'<text x="{lx + 16}" y="{yy}">{esc(s)}</text>')
    svg.append("</svg>")
    return "\n".join(svg) + "\n"


def criterion_svg(results, threads):
    panels = []
    subjects = set()
    for workload in WORKLOAD_ORDER:
        groups = []
        for size in SIZE_ORDER:
            series = {}
            for full_id, r in results.items():
                parts = full_id.split("/")
                if (len(parts) == 4 and parts[0] == workload and parts[1] == size
                        and parts[3] == threads):
                    series[parts[2]] = r["ops"]
                    subjects.add(parts[2])
            if series:
                groups.append((size, series))
        if groups:
            panels.append((workload, groups))
    return bar_panels(panels, order(subjects, SUBJECT_ORDER),
                      f"seglog and its peers, {threads} (higher is better)", "ops/s")


def cli_tables(data):
    out = []
    m = data.get("machine", {})
    out.append(f"Machine: {m.get('cpu', '?')}, {m.get('cpus', '?')} CPUs, "
               f"Linux {m.get('kernel', '?')}.\n")
    out.append("| scenario | scale | threads | ops | engine | duration | ops/s | p50 | p99 | "
               "seed target | met |")
    out.append("| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | --- | --- |")
    for r in data["results"]:
        target = (f"<{r['target_duration_s']:g} s, p99 <{r['target_p99_ms']:g} ms"
                  if r["scale"] == 1 else "")
        met = {True: "yes", False: "**no**", None: ""}[r.get("meets_target")]
        out.append(f"| {r['scenario']} | {r['scale']}× | {r['threads']} | {r['ops']} | "
                   f"{r['engine']} | {fmt_seconds(r['duration_s'])} | {fmt_ops(r['ops_per_s'])} | "
                   f"{fmt_seconds(r['p50_us'] / 1e6)} | {fmt_seconds(r['p99_us'] / 1e6)} | "
                   f"{target} | {met} |")
    out.append("")
    out.append("| scenario | scale | seglog ÷ seed design, ops/s | seglog ÷ seed design, p99 |")
    out.append("| --- | ---: | ---: | ---: |")
    for r in data["ratios"]:
        out.append(f"| {r['scenario']} | {r['scale']}× | {r['ops_per_s']:.2f} | {r['p99']:.2f} |")
    out.append("")
    return "\n".join(out)


def cli_svg(data):
    panels = []
    for scale in sorted({r["scale"] for r in data["results"]}):
        groups = []
        for r in data["results"]:
            if r["scale"] != scale:
                continue
            label = r["scenario"].replace("concurrent ", "").replace("writer-writer", "w-w")
            if not groups or groups[-1][0] != label:
                groups.append((label, {}))
            groups[-1][1][r["engine"]] = r["ops_per_s"]
        panels.append((f"{scale}× the seed's operations", groups))
    return bar_panels(panels, ["seglog", "seed design"],
                      "seglog bench: the seed's scenarios, ops/s (higher is better)", "ops/s")


def write(path, text):
    if path == "-":
        sys.stdout.write(text)
    else:
        with open(path, "w") as f:
            f.write(text)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=["criterion", "cli", "export"])
    parser.add_argument("input", help="criterion directory or exported file, or a "
                        "`seglog bench --json` file")
    parser.add_argument("--svg", help="write the chart here")
    parser.add_argument("--threads", default="2t", help="criterion chart: 1t or 2t")
    parser.add_argument("--markdown", help="write markdown tables here ('-' for stdout)")
    args = parser.parse_args()
    if args.kind == "export":
        results = load_criterion(args.input)
        json.dump({"results": dict(sorted(results.items()))}, sys.stdout, indent=1)
        sys.stdout.write("\n")
    elif args.kind == "criterion":
        results = load_criterion(args.input)
        if not results:
            raise SystemExit(f"no criterion results under {args.input}")
        if args.svg:
            write(args.svg, criterion_svg(results, args.threads))
        if args.markdown:
            write(args.markdown, compare_tables(results) + "\n" + index_tables(results))
    else:
        with open(args.input) as f:
            data = json.load(f)
        if args.svg:
            write(args.svg, cli_svg(data))
        if args.markdown:
            write(args.markdown, cli_tables(data))


if __name__ == "__main__":
    main()
