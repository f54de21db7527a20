#!/usr/bin/env python3
"""The fashion-shift method comparison (method.md §9) in both pretraining regimes: for each pretrained checkpoint
(clean, robust) it tunes every method's learning rates on ID validation (seed 0, the reference's wide grids,
extended past an edge the best value sits on), reruns the chosen setting with seeds 1 and 2, evaluates every
selected model under each BN-statistics policy (`daft evaluate --bn-stats own|source|mix:α`, α on ID val) and
WiSE-FT (`daft interpolate`, α ∈ {0, 0.1, …, 1} on ID val), and writes docs/results.md (mean ± std over 3 seeds),
the ID-vs-OOD and distortion-vs-OOD picture (docs/images/fashion-shift-robustness.svg) and, with `daft report`,
an HTML page per regime (OUT/REGIME/report.html).

    python3 launch/fashion_shift_benchmark.py [--regimes clean,robust] [--daft PATH] [--ranks 2] [--epochs 3] [--eval-limit 1000]
                                              [--no-wise] [--no-bn-stats]

Standard library only. Every run is `daft finetune` under `launch/local.sh -n RANKS`; its results.json (written
by rank 0) and the JSON lines of `daft evaluate` are the only things read back, and each is cached on disk, so an
interrupted benchmark continues where it stopped. Model selection uses ID validation accuracy only.
"""
import argparse, json, os, statistics, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OOD = ["clean", "rotate", "scale", "elastic", "blur", "pixelate", "impulse", "invert"]
REGIMES = {"clean": "pretrained/resnet20-fashion-source.safetensors", "robust": "pretrained/resnet20-fashion-robust.safetensors"}

# The grid, per method: (name in the table, method, extra flags, grid). A grid is a list of settings; ("lr", values)
# for a one-rate decade grid that is extended by a factor 10 past whichever edge the best value sits on (once per
# side); "two-step" for DAFT's reference search (backbone lr at head lr 1, then the head lr at the best backbone lr);
# or a function of the settings already chosen (by table name).
TWO = lambda *pairs: [["--lr-head", f"{h:g}", "--lr-backbone", f"{b:g}"] for h, b in pairs]
METHODS = [
    ("FT", "ft", [], ("lr", [1e-1, 1e-2, 1e-3])),
    ("LP (logistic)", "lp", [], [[]]),
    ("LP (ridge, closed form)", "lp", ["--lp-solver", "ridge"], [[]]),
    ("LP-FT", "lp-ft", [], ("lr", [1e-3, 1e-4, 1e-5])),
    ("LP-FT (ridge head init)", "lp-ft", ["--lp-solver", "ridge"], lambda best: [best["LP-FT"]]),
    ("DAFT", "daft", [], "two-step"),
    ("DAFT + L2-SP prior", "daft", ["--prior", "l2sp", "--prior-beta", "0"], lambda best: [best["DAFT"] + ["--prior-alpha", "0.01"]]),
    ("ablation: LP-FT + conversion", "lp-ft+conversion", [], ("lr", [1e-3, 1e-4, 1e-5])),
    ("ablation: conversion only", "conversion-only", [], ("lr", [1e-1, 1e-2, 1e-3])),
    # the two DAFT ablations of the head: at DAFT's chosen rates, so only the missing ingredient differs
    ("ablation: fast head only", "fast-head-only", [], lambda best: [best["DAFT"]]),
]
DAFT_BACKBONE = [1e-1, 1e-2, 1e-3, 1e-4]  # reference: 1e-4 … 3e-6 (1e-2 … 1e-4 on harder shifts), head lr 1
DAFT_HEAD = [10, 3, 0.3, 0.1]                   # reference: then the head lr at the chosen backbone lr
# methods whose BN running statistics move while fine-tuning (BN training mode): the --bn-stats policies differ for
# them; LP and LP-FT never change their statistics, so source = mix = own by construction (EvaluationStatisticsTests)
MOVING_STATS = {"FT", "DAFT", "DAFT + L2-SP prior", "ablation: LP-FT + conversion", "ablation: conversion only", "ablation: fast head only"}
MIX_ALPHAS = [0.25, 0.5, 0.75]
WISE_ALPHAS = [round(0.1 * k, 1) for k in range(11)]
# WiSE-FT's θ_0 (method.md §10: the starting model, after conversion, with an LP head): for FT the LP run (pretrained
# backbone + logistic head), for LP-FT its own start, for DAFT the start of LP-FT + conversion (converted backbone +
# logistic head on the converted features; the same conversion: same data, seed and batch)
WISE = {"FT": ("LP (logistic)", "final"), "LP-FT": ("LP-FT", "start"), "DAFT": ("ablation: LP-FT + conversion", "start")}


def run_dir(args, method, extra, lrs, seed):
    tag = "_".join(a.lstrip("-") for a in extra + lrs) or "default"
    return os.path.join(args.out, args.regime, f"{method}-{tag}-s{seed}")


def spec(args, data, limit=None):
    """The data specification a run uses: the named split, or (--from-folders DIR) the same images exported once
    as a torchvision ImageFolder (PNG, or JPEG with --folder-jpeg Q) and read as folder:DIR/NAME."""
    if not args.from_folders:
        return data
    folder = os.path.join(args.from_folders, data.replace("fashion-mnist:", "").replace("@", "_"))
    if not os.path.isdir(folder):
        cmd = [args.daft, "data", "export", "--data", data, "--format", "folder", "--out", folder]
        cmd += ["--limit", str(limit)] if limit else []
        cmd += ["--jpeg-quality", str(args.folder_jpeg)] if args.folder_jpeg else []
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return "folder:" + folder


def run(args, name, method, extra, lrs, seed):
    out = run_dir(args, method, extra, lrs, seed)
    res = os.path.join(out, "results.json")
    if not os.path.exists(res) and args.report_only:
        return None
    if not os.path.exists(res):
        cmd = ["bash", os.path.join(ROOT, "launch/local.sh"), "-n", str(args.ranks), "--", args.daft, "finetune",
               "--method", method, "--init", os.path.join(ROOT, REGIMES[args.regime]), "--no-epoch-ood",
               # evaluation sets are exported with --limit (a folder's first N would be its first classes)
               "--data", spec(args, "fashion-mnist:target-train@id"), "--val-data", spec(args, "fashion-mnist:target-val@id", args.eval_limit),
               "--test-data", spec(args, "fashion-mnist:test@id", args.eval_limit), "--eval-limit", str(args.eval_limit),
               "--epochs", str(args.epochs), "--batch-size", "128", "--seed", str(seed), "--out", out,
               "--checkpoint-every", "0"] + extra + lrs + (["--max-steps", str(args.max_steps)] if args.max_steps else [])
        for d in OOD:
            cmd += ["--ood", f"{d}=" + spec(args, f"fashion-mnist:test@{d}", args.eval_limit)]
        t0 = time.time()
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        with open(out + ".log", "w") as f:
            f.write(" ".join(cmd) + "\n" + p.stdout)
        if p.returncode != 0:
            print(f"  [{args.regime}] FAILED ({p.returncode}): {name} {lrs} seed {seed}; see {out}.log", flush=True)
            return None
        print(f"  [{args.regime}] {name} {' '.join(lrs)} seed {seed}: {time.time() - t0:.0f} s", flush=True)
    with open(res) as f:
        return json.load(f)


def fmt(values, pct=True):
    if not values:
        return "–"
    m = statistics.mean(values) * (100 if pct else 1)
    s = (statistics.stdev(values) if len(values) > 1 else 0) * (100 if pct else 1)
    return f"{m:.2f} ± {s:.2f}" if pct else f"{m:.3f} ± {s:.3f}"


def lr_of(lrs):
    return float(lrs[lrs.index("--lr") + 1])


def tune(args, name, method, extra, grid, chosen):
    """Seed-0 runs of the method's grid: [(setting, results.json)] of the runs that finished."""
    def runs(settings):
        return [(lrs, r) for lrs, r in ((lrs, run(args, name, method, extra, lrs, 0)) for lrs in settings) if r]

    def val(t):
        return t[1].get("valAccuracy") or 0

    if callable(grid):
        return runs(grid(chosen))
    if grid == "two-step":
        step1 = runs(TWO(*[(1, b) for b in DAFT_BACKBONE]))
        if not step1:
            return []
        b = float(max(step1, key=val)[0][3])
        edge = [x for x in ([b / 10] if b == min(DAFT_BACKBONE) else [b * 10] if b == max(DAFT_BACKBONE) and b < 1 else [])]
        step1 += runs(TWO(*[(1, x) for x in edge]))
        b = float(max(step1, key=val)[0][3])
        return step1 + runs(TWO(*[(h, b) for h in DAFT_HEAD]))
    if isinstance(grid, tuple) and grid[0] == "lr":
        values = list(grid[1])
        tuned = runs([["--lr", f"{x:g}"] for x in values])
        # extend once past an edge the best value sits on (a diverged run counts as not finished)
        for _ in range(2):
            if not tuned:
                break
            best = lr_of(max(tuned, key=val)[0])
            tried = sorted(lr_of(l) for l, _ in tuned)
            nxt = best / 10 if best == tried[0] else best * 10 if best == tried[-1] and best * 10 <= 1 else None
            if nxt is None or any(abs(nxt - lr_of(l)) < 1e-12 for l, _ in tuned):
                break
            tuned += runs([["--lr", f"{nxt:g}"]])
        return tuned
    return runs(grid)


def daft_json(args, cmd, cache):
    """Runs a daft command under local.sh, caches its JSON lines in `cache`, returns them."""
    if os.path.exists(cache):
        with open(cache) as f:
            return [json.loads(l) for l in f if l.startswith("{")]
    if args.report_only:
        return None
    full = ["bash", os.path.join(ROOT, "launch/local.sh"), "-n", str(args.ranks), "--", args.daft] + cmd
    p = subprocess.run(full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        print(f"  [{args.regime}] FAILED ({p.returncode}): daft {' '.join(cmd)}: {p.stderr.strip()[-400:]}", flush=True)
        return None
    lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
    with open(cache, "w") as f:
        f.write("\n".join(lines) + "\n")
    return [json.loads(l) for l in lines]


def eval_sets(args, which):
    sets = {"val": spec(args, "fashion-mnist:target-val@id", args.eval_limit), "test": spec(args, "fashion-mnist:test@id", args.eval_limit)}
    sets.update({d: spec(args, f"fashion-mnist:test@{d}", args.eval_limit) for d in OOD})
    return [(k, sets[k]) for k in which]


def evaluate(args, weights, tag, which, extra=()):
    """Accuracy of `weights` on the named sets ('val', 'test', OOD names): {name: accuracy} or None."""
    sets = eval_sets(args, which)
    cmd = ["evaluate", "--weights", weights, "--json", "--limit", str(args.eval_limit)] + list(extra)
    for _, d in sets:
        cmd += ["--data", d]
    out = daft_json(args, cmd, os.path.join(os.path.dirname(weights), f"eval-{tag}.jsonl"))
    if out is None or len(out) != len(sets):
        return None
    return {k: r["accuracy"] for (k, _), r in zip(sets, out)}


def selected(d):
    """The model a run selected on ID validation (best.safetensors when it kept one, else final)."""
    b = os.path.join(d, "best.safetensors")
    return b if os.path.exists(b) else os.path.join(d, "final.safetensors")


def summary(acc):
    return {"val": acc["val"], "test": acc["test"], "meanOOD": statistics.mean(acc[d] for d in OOD), **{d: acc[d] for d in OOD}}


def bn_policies(args, d):
    """{policy: summary} for one run: own, source, and mix:α with α chosen on ID val."""
    w = selected(d)
    res = {}
    src = evaluate(args, w, "bn-source", ["val", "test"] + OOD, ["--bn-stats", "source"])
    own = evaluate(args, w, "bn-own", ["val", "test"] + OOD)
    if not src or not own:
        return None
    res["own"], res["source"] = summary(own), summary(src)
    vals = [(a, evaluate(args, w, f"bn-mix{a}-val", ["val"], ["--bn-stats", f"mix:{a}"])) for a in MIX_ALPHAS]
    vals = [(0.0, {"val": own["val"]})] + [(a, v) for a, v in vals if v] + [(1.0, {"val": src["val"]})]
    alpha = max(vals, key=lambda t: t[1]["val"])[0]
    mix = own if alpha == 0 else src if alpha == 1 else evaluate(args, w, f"bn-mix{alpha}", ["val", "test"] + OOD, ["--bn-stats", f"mix:{alpha}"])
    if mix:
        res["mix"] = dict(summary(mix), alpha=alpha)
    return res


def wise(args, theta0, d, seed):
    """WiSE-FT of one run: α chosen on ID val over WISE_ALPHAS, its summary (and α)."""
    w = selected(d)
    folder = os.path.join(d, "wise")
    os.makedirs(folder, exist_ok=True)
    vals = []
    for a in WISE_ALPHAS:
        path = os.path.join(folder, f"alpha{a}.safetensors")
        if not os.path.exists(os.path.join(folder, f"eval-val{a}.jsonl")) and not args.report_only:
            subprocess.run([args.daft, "interpolate", "--from", theta0, "--to", w, "--alpha", str(a), "--out", path], check=True, stdout=subprocess.DEVNULL)
        v = evaluate(args, path, f"val{a}", ["val"])
        if v:
            vals.append((a, v["val"]))
    if not vals:
        return None
    alpha = max(vals, key=lambda t: t[1])[0]
    path = os.path.join(folder, f"alpha{alpha}.safetensors")
    if not os.path.exists(path) and not args.report_only:
        subprocess.run([args.daft, "interpolate", "--from", theta0, "--to", w, "--alpha", str(alpha), "--out", path], check=True, stdout=subprocess.DEVNULL)
    acc = evaluate(args, path, f"chosen{alpha}", ["val", "test"] + OOD)
    for a in WISE_ALPHAS:  # keep the chosen model only (1.1 MB each)
        p = os.path.join(folder, f"alpha{a}.safetensors")
        if a != alpha and os.path.exists(p):
            os.remove(p)
    return dict(summary(acc), alpha=alpha) if acc else None


def benchmark(args):
    """One regime: rows of the table, the chosen runs, BN-policy and WiSE results."""
    rows, chosen, reported, dirs = [], {}, [], {}
    for name, method, extra, grid in METHODS:
        try:
            tuned = tune(args, name, method, extra, grid, chosen)
        except KeyError as missing:
            print(f"[{args.regime}] {name}: skipped, {missing} has no chosen setting", flush=True)
            rows.append((name, "skipped", [], [])); continue
        if not tuned:
            rows.append((name, "failed", [], [])); continue
        best_lrs, best = max(tuned, key=lambda t: t[1].get("valAccuracy") or 0)
        chosen[name] = [a for a in best_lrs if not a.startswith("--prior")] if name == "DAFT" else best_lrs
        # LP is seed-independent (un-augmented features, a deterministic solver: the seeds gave identical files), so
        # its seed 0 stands for all three; every other method reruns seeds 1 and 2
        seeds = (0,) if method == "lp" else (0, 1, 2)
        results = [best] + [r for r in (run(args, name, method, extra, best_lrs, s) for s in seeds[1:]) if r]
        rows.append((name, " ".join(extra + best_lrs) or "(no lr)", results, [(l, r.get("valAccuracy")) for l, r in tuned]))
        dirs[name] = [run_dir(args, method, extra, best_lrs, s) for s in (0, 1, 2)] if method != "lp" else [run_dir(args, method, extra, best_lrs, 0)] * 3
        reported += [d for d in dirs[name] if d not in reported and os.path.exists(os.path.join(d, "results.json"))]
    bn = {}
    for name in (dirs if args.bn_stats else []):
        if name in MOVING_STATS:
            print(f"[{args.regime}] {name}: BN statistics policies", flush=True)
            bn[name] = [r for r in (bn_policies(args, d) for d in dirs[name]) if r]
    wises = {}
    for name, (base, which) in (WISE.items() if args.wise else []):
        if name not in dirs or base not in dirs:
            continue
        print(f"[{args.regime}] {name}: WiSE-FT", flush=True)
        out = []
        for seed, (d, b) in enumerate(zip(dirs[name], dirs[base])):
            theta0 = os.path.join(b, "final.safetensors" if which == "final" else "start.safetensors")
            r = wise(args, theta0, d, seed) if os.path.exists(theta0) else None
            if r:
                out.append(r)
        wises[name] = out
    write_html(args, reported)
    return {"rows": rows, "bn": bn, "wise": wises, "html": args.html}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--regimes", default="clean,robust", help="pretraining regimes to run: clean, robust or both (comma-separated)")
    ap.add_argument("--daft", default=os.path.join(ROOT, ".build/release/daft"))
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--eval-limit", type=int, default=1000)
    ap.add_argument("--wise", action=argparse.BooleanOptionalAction, default=True,
                    help="WiSE-FT sweep of FT, LP-FT and DAFT (α on ID val; --no-wise skips it)")
    ap.add_argument("--bn-stats", action=argparse.BooleanOptionalAction, default=True,
                    help="evaluate the selected models under each BN-statistics policy (--no-bn-stats skips it)")
    ap.add_argument("--report-only", action="store_true", help="run nothing: write the report from the runs and evaluations already on disk")
    ap.add_argument("--max-steps", type=int, help="stop every run after N steps (a smoke test of the script, not a benchmark)")
    ap.add_argument("--out", default=os.path.join(ROOT, "runs/fashion-shift"))
    ap.add_argument("--report", default=os.path.join(ROOT, "docs/results.md"))
    ap.add_argument("--figure", default=os.path.join(ROOT, "docs/images/fashion-shift-robustness.svg"))
    ap.add_argument("--from-folders", help="export every split once as an ImageFolder under this directory and train/evaluate from the folders")
    ap.add_argument("--folder-jpeg", type=int, help="with --from-folders: JPEG files of this quality instead of PNG")
    args = ap.parse_args()
    regimes = [r for r in args.regimes.split(",") if r]
    for r in regimes:
        if r not in REGIMES:
            sys.exit(f"--regimes: unknown regime '{r}' (clean, robust)")
    t0 = time.time()
    results = {}
    for r in regimes:
        args.regime = r
        os.makedirs(os.path.join(args.out, r), exist_ok=True)
        args.html = os.path.join(args.out, r, "report.html")
        results[r] = benchmark(args)
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump({r: {"rows": [(n, s, res, t) for n, s, res, t in v["rows"]], "bn": v["bn"], "wise": v["wise"]} for r, v in results.items()}, f)
    write_figure(args, results)
    write_report(args, results, time.time() - t0)


def write_html(args, dirs):
    """The results page of one regime's runs: `daft report` over every chosen setting's seeds."""
    if not dirs:
        args.html = None
        return
    cmd = [args.daft, "report", *dirs, "--out", args.html, "--title", f"Fashion-shift benchmark ({args.regime} pretraining): the chosen settings' runs"]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if p.returncode != 0:
        print(f"daft report failed ({p.returncode}): {p.stdout.strip()}", flush=True)
        args.html = None
    else:
        print(p.stdout.strip(), flush=True)


def points(results):
    """(regime, method, mean ID test %, mean OOD %, mean feature L2) of every row with results, WiSE rows included."""
    out = []
    for regime, v in results.items():
        for name, _, res, _ in v["rows"]:
            if res and all(r.get("test") for r in res):
                l2 = statistics.mean(r["distortion"]["l2Mean"] for r in res) if all(r.get("distortion") for r in res) else None
                out.append((regime, name, 100 * statistics.mean(r["test"]["accuracy"] for r in res), 100 * statistics.mean(r["meanOOD"] for r in res), l2))
        for name, res in v["wise"].items():
            if res:
                out.append((regime, f"WiSE-FT ({name})", 100 * statistics.mean(r["test"] for r in res), 100 * statistics.mean(r["meanOOD"] for r in res), None))
    return out


def write_figure(args, results):
    """Two panels, one SVG: ID test vs mean OOD accuracy per method and regime, and feature distortion vs mean OOD."""
    pts = points(results)
    if not pts:
        return
    colours = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31"]
    names = []
    for _, n, *_ in pts:
        if n not in names:
            names.append(n)
    W, H, pad = 460, 360, 50
    def panel(x0, title, xs, ys, xlabel, ylabel, items):
        lo_x, hi_x = min(xs), max(xs); lo_y, hi_y = min(ys), max(ys)
        mx, my = 0.06 * ((hi_x - lo_x) or 1), 0.06 * ((hi_y - lo_y) or 1)  # keep points off the frame
        lo_x, hi_x, lo_y, hi_y = lo_x - mx, hi_x + mx, lo_y - my, hi_y + my
        sx = lambda v: x0 + pad + (v - lo_x) / ((hi_x - lo_x) or 1) * (W - 2 * pad)
        sy = lambda v: H - pad - (v - lo_y) / ((hi_y - lo_y) or 1) * (H - 2 * pad)
        g = [f'<text x="{x0 + W / 2}" y="20" text-anchor="middle" font-size="14">{title}</text>',
             f'<rect x="{x0 + pad}" y="{pad}" width="{W - 2 * pad}" height="{H - 2 * pad}" fill="none" stroke="#999"/>',
             f'<text x="{x0 + W / 2}" y="{H - 12}" text-anchor="middle" font-size="12">{xlabel}</text>',
             f'<text x="{x0 + 14}" y="{H / 2}" text-anchor="middle" font-size="12" transform="rotate(-90 {x0 + 14} {H / 2})">{ylabel}</text>']
        for k in range(5):
            vx = lo_x + (hi_x - lo_x) * k / 4; vy = lo_y + (hi_y - lo_y) * k / 4
            g.append(f'<text x="{sx(vx):.1f}" y="{H - pad + 14}" text-anchor="middle" font-size="10">{vx:.1f}</text>')
            g.append(f'<text x="{x0 + pad - 4}" y="{sy(vy) + 3:.1f}" text-anchor="end" font-size="10">{vy:.1f}</text>')
        for regime, name, x, y in items:
            c = colours[names.index(name) % len(colours)]
            if regime == "clean":
                g.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="5" fill="{c}"><title>{name} ({regime}): {x:.1f}, {y:.1f}</title></circle>')
            else:
                g.append(f'<rect x="{sx(x) - 5:.1f}" y="{sy(y) - 5:.1f}" width="10" height="10" fill="{c}"><title>{name} ({regime}): {x:.1f}, {y:.1f}</title></rect>')
        return g
    # one ID-vs-OOD panel per regime (their scales differ by 20-40 points), then distortion vs OOD for all
    panels = []
    for regime in results:
        a = [(r, n, x, y) for r, n, x, y, _ in pts if r == regime]
        if a:
            panels.append((f"{regime} pretraining: ID test vs mean OOD (%)", a, "ID test accuracy (%)"))
    b = [(r, n, l2, y) for r, n, _, y, l2 in pts if l2 is not None]
    if b:
        panels.append(("feature distortion vs mean OOD", b, "penultimate-feature L2 to the start"))
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{len(panels) * W + 230}" height="{H}" font-family="sans-serif">',
           '<rect width="100%" height="100%" fill="white"/>']
    for k, (title, items, xlabel) in enumerate(panels):
        svg += panel(k * W, title, [p[2] for p in items], [p[3] for p in items], xlabel, "mean OOD accuracy (%)", items)
    lx = len(panels) * W + 10
    svg.append(f'<circle cx="{lx + 6}" cy="30" r="5" fill="#444"/><text x="{lx + 16}" y="34" font-size="11">clean pretraining</text>')
    svg.append(f'<rect x="{lx + 1}" y="45" width="10" height="10" fill="#444"/><text x="{lx + 16}" y="54" font-size="11">robust pretraining</text>')
    for i, n in enumerate(names):
        svg.append(f'<rect x="{lx + 1}" y="{75 + 17 * i}" width="10" height="10" fill="{colours[i % len(colours)]}"/>'
                   f'<text x="{lx + 16}" y="{84 + 17 * i}" font-size="11">{n}</text>')
    svg.append("</svg>")
    os.makedirs(os.path.dirname(args.figure), exist_ok=True)
    with open(args.figure, "w") as f:
        f.write("\n".join(svg) + "\n")
    print("wrote", args.figure)


def write_report(args, results, seconds):
    cmd = "python3 launch/fashion_shift_benchmark.py " + " ".join(a for a in sys.argv[1:] if a != "--report-only")
    took = "" if args.report_only else f" in {seconds / 60:.0f} min"
    L = ["# Fashion-shift results", "",
         "Produced by `" + cmd.strip() + f"`{took} (daft on {args.ranks} ranks, "
         f"{args.epochs} epochs, global batch 128), in two pretraining regimes: " +
         ", ".join(f"*{r}* `{REGIMES[r]}`" for r in results) + " (recipes in [fashion-shift.md](fashion-shift.md)).", "",
         "- Target (ID) training: `fashion-mnist:target-train@id` (4,000 images); model selection and every learning rate on "
         f"`fashion-mnist:target-val@id` (first {args.eval_limit}) only; seed 0 tunes, seeds 1 and 2 repeat the chosen setting.",
         f"- ID test: `fashion-mnist:test@id`; OOD: `fashion-mnist:test@D` for D in {', '.join(OOD)} "
         f"(first {args.eval_limit} test images of each).",
         "- Accuracies in %, mean ± std over 3 seeds. Distortion: penultimate-feature L2 distance and cosine similarity "
         "between the selected model and the model at the start of fine-tuning (after conversion / probe), on ID test.",
         "- Wall time: one run on the 2-core machine (2 ranks), training plus the final evaluations; noisy when other jobs "
         "shared the machine (2026-12-06: much of the clean regime ran beside another benchmark or the test suite).",
         "- Picture: [images/fashion-shift-robustness.svg](images/fashion-shift-robustness.svg) (ID vs mean OOD, distortion vs mean OOD; circles clean, squares robust).", ""]
    for regime, v in results.items():
        rows = v["rows"]
        L += [f"## {regime} pretraining (`{REGIMES[regime]}`)", ""]
        if v["html"]:
            L += [f"Every run of the chosen settings: `daft report` page `{os.path.relpath(v['html'], ROOT)}` (not committed; rerun the script to make it).", ""]
        L += ["| method | setting | ID val | ID test | " + " | ".join(OOD) + " | mean OOD | feature L2 | cosine | wall s |",
              "|" + "---|" * (8 + len(OOD))]
        for name, setting, res, _ in rows:
            if not res:
                L.append(f"| {name} | {setting} |" + " – |" * (6 + len(OOD))); continue
            val = [r["valAccuracy"] for r in res if r.get("valAccuracy") is not None]
            test = [r["test"]["accuracy"] for r in res if r.get("test")]
            ood = [fmt([r["ood"][d]["accuracy"] for r in res]) for d in OOD]
            mean_ood = [r["meanOOD"] for r in res if r.get("meanOOD") is not None]
            l2 = [r["distortion"]["l2Mean"] for r in res if r.get("distortion")]
            cos = [r["distortion"]["cosineMean"] for r in res if r.get("distortion")]
            wall = [r["seconds"] for r in res]
            L.append(f"| {name} | `{setting}` | {fmt(val)} | {fmt(test)} | " + " | ".join(ood) +
                     f" | {fmt(mean_ood)} | {fmt(l2, False)} | {fmt(cos, False)} | {statistics.mean(wall):.0f} |")
        for name, res in v["wise"].items():
            if res:
                alphas = ", ".join(f"{r['alpha']:g}" for r in res)
                L.append(f"| WiSE-FT of {name}{'' if len(res) == 3 else f' ({len(res)} of 3 seeds)'} | α on ID val: {alphas} | {fmt([r['val'] for r in res])} | {fmt([r['test'] for r in res])} | " +
                         " | ".join(fmt([r[d] for r in res]) for d in OOD) + f" | {fmt([r['meanOOD'] for r in res])} | | | |")
        L += ["", f"### BN statistics at evaluation ({regime})", "",
              "Each selected model evaluated with its own running statistics, with the pretrained source statistics restored "
              "(γ/β re-folded through the run's start model: `daft evaluate --bn-stats source`), and with the interpolation "
              f"`mix:α` (α ∈ {{0, {', '.join(map(str, MIX_ALPHAS))}, 1}} chosen on ID val). LP, LP-FT and LP-FT (ridge) never move their "
              "statistics, so every policy is their own.", "",
              "| method | own: ID test | own: mean OOD | source: ID test | source: mean OOD | mix: α (per seed) | mix: ID test | mix: mean OOD |",
              "|---|---|---|---|---|---|---|---|"]
        for name, res in v["bn"].items():
            if not res:
                continue
            mixes = [r["mix"] for r in res if "mix" in r]
            mix_alphas = ", ".join(f"{m['alpha']:g}" for m in mixes)
            L.append(f"| {name}{'' if len(res) == 3 else f' ({len(res)} of 3 seeds)'} | {fmt([r['own']['test'] for r in res])} | {fmt([r['own']['meanOOD'] for r in res])} | "
                     f"{fmt([r['source']['test'] for r in res])} | {fmt([r['source']['meanOOD'] for r in res])} | "
                     f"{mix_alphas} | {fmt([m['test'] for m in mixes])} | {fmt([m['meanOOD'] for m in mixes])} |")
        if not any(v["bn"].values()):
            L.append("| (not measured in this run: the benchmark was stopped before this regime's BN-policy evaluations) | | | | | | | |")
        if not any(v["wise"].values()):
            L += ["", f"WiSE-FT ({regime}): not measured in this run (stopped before the sweep)."]
        L += ["", f"### Tuning ({regime}, seed 0, ID validation accuracy %)", ""]
        for name, _, _, tuned in rows:
            if tuned:
                L.append(f"- {name}: " + "; ".join(f"`{' '.join(l) or '(none)'}` {100 * (v or 0):.2f}" for l, v in tuned))
        L.append("")
    with open(args.report, "w") as f:
        f.write("\n".join(L) + "\n")
    print("wrote", args.report)


if __name__ == "__main__":
    main()
