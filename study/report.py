#!/usr/bin/env python3
"""Turn `ascend-cold eval` outputs into the study's tables and its plot (standard library only).

Inputs are what `eval` writes (docs/EVAL.md): the records (`--out`, one line per problem and
decoding, graded by eval's answer parser) and the summary (`--summary`: accuracies with 95%
Wilson intervals and the paired exact McNemar tests, computed by eval's stats.rs). This script
computes no statistic and parses no answer: it reads those numbers and lays them out. By default
the summary of `X.jsonl` is `X.summary.json`. Outputs:

  * the dev sweep as a markdown table (accuracy per alpha x beta), and the setting it selects:
    highest strict accuracy on dev, ties broken by flexible accuracy, then by smaller beta
    (the milder contrast), then by smaller alpha;
  * the test table (accuracy with 95% Wilson intervals, mean length) and the paired exact
    McNemar tests, if a test file is given;
  * per template, the problems each decoding got right (counted from the records' grades);
  * an SVG plot of dev accuracy against beta, one line per alpha, with the greedy decodings as
    horizontal references (beta = 0 is greedy with the adapter, exactly: the expert's argmax
    always survives the alpha mask).

    python3 study/report.py --dev study/results/dev.jsonl --test study/results/test.jsonl \\
        --svg docs/results-dev-sweep.svg
"""

import argparse
import json
import math
import re
from collections import defaultdict

BASE = "greedy (base)"
ADAPTER = "greedy (adapter)"
COLD = re.compile(r"^CoLD a=([0-9.e-]+) b=([0-9.e-]+)$")


def load(path):
    """{config: {problem id: row}} from an eval --out file."""
    out = defaultdict(dict)
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                out[row["config"]][row["id"]] = row
    return out


def load_summary(path):
    """{config: row} from an eval --summary file, and the paired tests."""
    with open(path, encoding="utf-8") as f:
        summary = json.load(f)
    return {d["config"]: d for d in summary["decodings"]}, summary["paired"]


def summary_path(records_path):
    stem = records_path[:-len(".jsonl")] if records_path.endswith(".jsonl") else records_path
    return stem + ".summary.json"


def rate(rows, name, metric="strict"):
    return rows[name][metric]["rate"]


def format_p(p):
    """As eval prints it (stats.rs format_p): three decimals, or scientific below 0.001."""
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def cold_settings(results):
    """{(alpha, beta): config name} for the CoLD configurations present."""
    found = {}
    for name in results:
        m = COLD.match(name)
        if m:
            found[(float(m.group(1)), float(m.group(2)))] = name
    return found


def select(rows):
    """The dev-selected CoLD setting (see the module doc for the rule)."""
    settings = cold_settings(rows)

    def key(ab):
        name = settings[ab]
        return (-rate(rows, name), -rate(rows, name, "flexible"), ab[1], ab[0])

    return min(settings, key=key)


def sweep_table(rows):
    settings = cold_settings(rows)
    alphas = sorted({a for a, _ in settings})
    betas = sorted({b for _, b in settings})
    lines = ["| alpha \\ beta | " + " | ".join(f"{b:g}" for b in betas) + " |",
             "|---|" + "---|" * len(betas)]
    for a in alphas:
        cells = []
        for b in betas:
            name = settings.get((a, b))
            cells.append(f"{100 * rate(rows, name):.0f} / {100 * rate(rows, name, 'flexible'):.0f}"
                         if name else "-")
        lines.append(f"| {a:g} | " + " | ".join(cells) + " |")
    for name in (BASE, ADAPTER):
        if name in rows:
            lines.append(f"\n{name}: strict {100 * rate(rows, name):.0f}%, "
                         f"flexible {100 * rate(rows, name, 'flexible'):.0f}% "
                         f"({rows[name]['strict']['of']} problems)")
    return "\n".join(lines)


def test_table(rows, paired):
    lines = ["| decoding | strict % (95% CI) | flexible % (95% CI) | mean tokens |",
             "|---|---|---|---|"]
    order = [n for n in (BASE, ADAPTER) if n in rows] + sorted(cold_settings(rows).values())
    for name in order:
        cells = []
        for metric in ("strict", "flexible"):
            acc = rows[name][metric]
            lo, hi = acc["wilson95"]
            cells.append(f"{100 * acc['rate']:.1f} ({100 * lo:.1f}-{100 * hi:.1f})")
        lines.append(f"| {name} | {cells[0]} | {cells[1]} | {rows[name]['mean_tokens']:.1f} |")
    lines.append("")
    for p in paired:
        lines.append(f"- {p['first']} vs {p['second']} ({p['metric']}): {p['points']:+.1f} points; "
                     f"{p['only_first']} problems right only with the first, {p['only_second']} only "
                     f"with the second; exact McNemar p = {format_p(p['mcnemar_p'])}")
    return "\n".join(lines)


def template_table(results, task_path):
    """Strict accuracy per template: problems of one template share a wording, so an effect carried
    by a single template is a different claim from one spread over all of them."""
    template = {}
    with open(task_path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                template[row["id"]] = f"{row['template']} ({row.get('skeleton', '?')})"
    order = [n for n in (BASE, ADAPTER) if n in results] + sorted(cold_settings(results).values())
    names = sorted({template[i] for rows in results.values() for i in rows})
    lines = ["| template (skeleton) | " + " | ".join(order) + " |", "|---|" + "---|" * len(order)]
    for t in names:
        cells = []
        for name in order:
            rows = [r for i, r in results[name].items() if template[i] == t]
            cells.append(f"{sum(r['correct_strict'] for r in rows)}/{len(rows)}")
        lines.append(f"| {t} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def svg_plot(rows, path, title):
    """Dev strict accuracy vs beta, one polyline per alpha; dashed references for the greedy runs."""
    settings = cold_settings(rows)
    alphas = sorted({a for a, _ in settings})
    betas = sorted({b for _, b in settings} | {0.0})
    w, h, left, right, top, bottom = 640, 400, 60, 170, 40, 50
    pw, ph = w - left - right, h - top - bottom
    bmax = max(betas) or 1.0
    series = {}
    for a in alphas:
        pts = []
        for b in betas:
            if b == 0.0 and ADAPTER in rows:
                pts.append((0.0, rate(rows, ADAPTER)))
            elif (a, b) in settings:
                pts.append((b, rate(rows, settings[(a, b)])))
        series[a] = pts
    values = [v for pts in series.values() for _, v in pts]
    values += [rate(rows, n) for n in (BASE, ADAPTER) if n in rows]
    top_value = max(values) + 0.05 if values else 1.0
    tick = 0.1 if top_value <= 0.6 else 0.2
    ymax = min(1.0, math.ceil(top_value / tick - 1e-9) * tick)

    def x(b):
        return left + pw * b / bmax

    def y(v):
        return top + ph * (1 - v / ymax)

    colours = ["#1b6ca8", "#d1495b", "#2e933c", "#edae49", "#6c4f8c", "#555555"]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="{left}" y="22" font-size="14">{title}</text>',
           f'<line x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}" stroke="black"/>',
           f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + ph}" stroke="black"/>',
           f'<text x="{left + pw / 2}" y="{h - 12}" text-anchor="middle">beta (0 = greedy with the adapter)</text>',
           f'<text x="16" y="{top + ph / 2}" transform="rotate(-90 16 {top + ph / 2})" '
           f'text-anchor="middle">strict accuracy (dev)</text>']
    for b in betas:
        out.append(f'<line x1="{x(b):.1f}" y1="{top + ph}" x2="{x(b):.1f}" y2="{top + ph + 5}" stroke="black"/>')
        out.append(f'<text x="{x(b):.1f}" y="{top + ph + 18}" text-anchor="middle">{b:g}</text>')
    for i in range(int(round(ymax / tick)) + 1):
        v = i * tick
        out.append(f'<line x1="{left - 5}" y1="{y(v):.1f}" x2="{left + pw}" y2="{y(v):.1f}" '
                   f'stroke="#dddddd"/>')
        out.append(f'<text x="{left - 8}" y="{y(v) + 4:.1f}" text-anchor="end">{100 * v:.0f}%</text>')
    legend_y = top + 10
    for name, dash in ((BASE, "6,4"), (ADAPTER, "2,3")):
        if name in rows:
            v = rate(rows, name)
            out.append(f'<line x1="{left}" y1="{y(v):.1f}" x2="{left + pw}" y2="{y(v):.1f}" '
                       f'stroke="black" stroke-dasharray="{dash}"/>')
            out.append(f'<line x1="{left + pw + 15}" y1="{legend_y}" x2="{left + pw + 40}" y2="{legend_y}" '
                       f'stroke="black" stroke-dasharray="{dash}"/>')
            out.append(f'<text x="{left + pw + 45}" y="{legend_y + 4}">{name}</text>')
            legend_y += 20
    for i, (a, pts) in enumerate(series.items()):
        colour = colours[i % len(colours)]
        coords = " ".join(f"{x(b):.1f},{y(v):.1f}" for b, v in pts)
        out.append(f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for b, v in pts:
            out.append(f'<circle cx="{x(b):.1f}" cy="{y(v):.1f}" r="3" fill="{colour}"/>')
        out.append(f'<line x1="{left + pw + 15}" y1="{legend_y}" x2="{left + pw + 40}" y2="{legend_y}" '
                   f'stroke="{colour}" stroke-width="2"/>')
        out.append(f'<text x="{left + pw + 45}" y="{legend_y + 4}">CoLD alpha {a:g}</text>')
        legend_y += 20
    out.append("</svg>")
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(out) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dev", required=True, help="eval --out file of the dev sweep")
    ap.add_argument("--dev-summary", help="its eval --summary file (default: DEV with .summary.json)")
    ap.add_argument("--test", help="eval --out file of the test run")
    ap.add_argument("--test-summary", help="its eval --summary file (default: TEST with .summary.json)")
    ap.add_argument("--svg", help="write the accuracy-vs-beta plot here")
    ap.add_argument("--data", default="study/data", help="folder of the task files (for templates)")
    args = ap.parse_args()

    dev = load(args.dev)
    dev_rows, _ = load_summary(args.dev_summary or summary_path(args.dev))
    print("## Dev sweep (strict / flexible accuracy, %)\n")
    print(sweep_table(dev_rows))
    alpha, beta = select(dev_rows)
    print(f"\nselected on dev: alpha {alpha:g}, beta {beta:g}")
    print("\nper template (strict, right / problems):\n")
    print(template_table(dev, f"{args.data}/dev.jsonl"))
    if args.svg:
        n = dev_rows[next(iter(dev_rows))]["strict"]["of"]
        svg_plot(dev_rows, args.svg, f"CoLD on gsm-mini dev ({n} problems): strict accuracy vs beta")
        print(f"wrote {args.svg}")
    if args.test:
        print("\n## Test\n")
        test_rows, test_paired = load_summary(args.test_summary or summary_path(args.test))
        print(test_table(test_rows, test_paired))
        print("\nper template (strict, right / problems):\n")
        print(template_table(load(args.test), f"{args.data}/test.jsonl"))


if __name__ == "__main__":
    main()
