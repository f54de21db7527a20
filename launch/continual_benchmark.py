#!/usr/bin/env python3
"""The domain-incremental benchmark of the continual-adaptation mode (method.md §6, issue 13): Fashion-MNIST domains
arrive one after another (default id → rotate → blur → pixelate, the same 10 classes, a small labelled set each);
after every step each method is evaluated on every domain's test set (seen so far: forgetting; not yet seen: what
fusion protects) and on the pretrained model's source domain (clean test images). Methods:

  pretrained            the pretrained model's own head, never adapted (the fusion fallback)
  ridge / kernel ridge  `daft adapt --lp-solver ridge|kernel-ridge`, the adapter alone, chained with --adapter-base
  … + fusion            the same runs' fused predictions (adapter if the seen-domain detector accepts, else pretrained)
  sequential FT         `daft finetune --method ft` on each new domain in turn, starting from the previous step's model
  joint FT              `daft finetune --method ft` from the pretrained model on the union of the domains seen so far
                        (the upper bound: it sees every earlier domain's data again)

Seeds pick the labelled sets: seed s, domain d trains on slice s·T + d of `fashion-mnist:target-train` (disjoint base
images for every domain and seed), and holds out slice d of `target-val` (λ, the detector's threshold and FT's model
selection use it). Both pretraining regimes (clean: `resnet20-fashion-source`, robust: `resnet20-fashion-robust`) by
default. Writes docs/continual.md (mean ± std over the seeds; the hand-written part below its marker line is kept) and
docs/images/continual-accuracy.svg.

    python3 launch/continual_benchmark.py [--daft .build/release/daft] [--regimes clean,robust] [--ranks 1] [--seeds 0,1,2]

Standard library only. Every run's results.json is cached under --out, so an interrupted benchmark continues where it
stopped.
"""
import argparse, json, os, statistics, struct, subprocess, sys, time, ast

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REGIMES = {"clean": "pretrained/resnet20-fashion-source.safetensors", "robust": "pretrained/resnet20-fashion-robust.safetensors"}
MARKER = "<!-- hand-written below this line: kept when the script rewrites the page -->"
METHODS = ["pretrained", "ridge", "ridge + fusion", "kernel ridge", "kernel ridge + fusion", "sequential FT", "joint FT"]
COLOURS = {"pretrained": "#777777", "ridge": "#1f77b4", "ridge + fusion": "#17becf", "kernel ridge": "#d62728",
           "kernel ridge + fusion": "#ff7f0e", "sequential FT": "#2ca02c", "joint FT": "#9467bd"}


# --- NPY subsets (daft data export writes x uint8 N×C×H×W and y int64 N) ---------------------------------------------

def read_npy(path):
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:6] != b"\x93NUMPY":
        sys.exit(f"continual_benchmark: {path}: not an NPY file")
    major = raw[6]
    hlen, start = (struct.unpack("<H", raw[8:10])[0], 10) if major == 1 else (struct.unpack("<I", raw[8:12])[0], 12)
    header = ast.literal_eval(raw[start:start + hlen].decode("latin1"))
    return header["descr"], tuple(header["shape"]), raw[start + hlen:]


def write_npy(path, descr, shape, data):
    header = repr({"descr": descr, "fortran_order": False, "shape": tuple(shape)}).encode("latin1")
    pad = 64 - (10 + len(header) + 1) % 64
    header += b" " * pad + b"\n"
    with open(path + ".tmp", "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + data)
    os.replace(path + ".tmp", path)


def item_bytes(descr, shape):
    size = int(descr[2:]) if descr[1] in "uif" else 1
    for s in shape[1:]:
        size *= s
    return size


def subset(sources, out):
    """Writes OUT/x.npy, OUT/y.npy holding the rows [start, stop) of each (exported directory, start, stop), in order."""
    if os.path.exists(os.path.join(out, "y.npy")):
        return out
    os.makedirs(out, exist_ok=True)
    for name in ["x.npy", "y.npy"]:
        parts, shape, descr = [], None, None
        for directory, start, stop in sources:
            descr, shape, data = read_npy(os.path.join(directory, name))
            if stop > shape[0]:
                sys.exit(f"continual_benchmark: {directory}/{name} has {shape[0]} rows, the slice needs {stop}")
            b = item_bytes(descr, shape)
            parts.append(data[start * b:stop * b])
        rows = sum(stop - start for _, start, stop in sources)
        write_npy(os.path.join(out, name), descr, (rows,) + tuple(shape[1:]), b"".join(parts))
    return out


def exported(args, split, domain):
    out = os.path.join(args.data_dir, f"{split}-{domain}")
    if not os.path.exists(os.path.join(out, "y.npy")):
        subprocess.run([args.daft, "data", "export", "--data", f"fashion-mnist:{split}@{domain}", "--out", out],
                       check=True, stdout=subprocess.DEVNULL)
    return out


def npy(directory):
    return f"npy:{directory}/x.npy,{directory}/y.npy"


# --- runs ------------------------------------------------------------------------------------------------------------

def launch(args, cmd, out):
    res = os.path.join(out, "results.json")
    if not os.path.exists(res):
        run_and_wait(args, cmd, out)
    with open(res) as f:
        r = json.load(f)
    args.run_seconds[0] += r.get("seconds", 0)
    return r


def run_and_wait(args, cmd, out):
    if args.ranks > 1:
        cmd = ["bash", os.path.join(ROOT, "launch/local.sh"), "-n", str(args.ranks), "--"] + cmd
    t0 = time.time()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out + ".log", "w") as f:
        f.write(" ".join(cmd) + "\n" + p.stdout)
    if p.returncode != 0:
        sys.exit(f"continual_benchmark: run failed ({p.returncode}); see {out}.log\n" + p.stdout[-2000:])
    print(f"  {os.path.relpath(out, os.path.dirname(args.data_dir))}: {time.time() - t0:.0f} s", flush=True)


def tune_ft(args, train, held):
    """FT's learning rate: the grid value with the best held-out accuracy on the first domain, seed of the first run."""
    best = None
    for lr in args.ft_lr_grid:
        out = os.path.join(args.out, "ft-tune", f"lr{lr:g}")
        r = launch(args, [args.daft, "finetune", "--method", "ft", "--epochs", str(args.ft_epochs), "--batch-size", str(args.ft_batch_size),
                          "--seed", str(args.seeds[0]), "--no-epoch-ood", "--checkpoint-every", "0", "--lr", f"{lr:g}",
                          "--weights", args.weights, "--data", npy(train), "--val-data", npy(held), "--out", out], out)
        args.ft_tuning.append((lr, r["valAccuracy"]))
        if best is None or r["valAccuracy"] > best[1]:
            best = (lr, r["valAccuracy"])
    return best[0]


def evaluation_flags(args):
    flags = []
    for d in args.domains:
        flags += ["--ood", f"{d}=fashion-mnist:test@{d}"]
    return flags + ["--ood", "source=fashion-mnist:test", "--eval-limit", str(args.eval_limit)]


def benchmark(args):
    T, n, h = len(args.domains), args.per_domain, args.held_out
    if len(args.seeds) * T * n > 4000:
        sys.exit(f"continual_benchmark: {len(args.seeds)} seeds × {T} domains × {n} samples pass target-train's 4,000 images")
    if T * h > 2000:
        sys.exit(f"continual_benchmark: {T} domains × {h} held-out samples pass target-val's 2,000 images")
    train = {d: exported(args, "target-train", d) for d in args.domains}
    val = {d: exported(args, "target-val", d) for d in args.domains}
    data = args.data_dir
    held = {d: subset([(val[d], i * h, (i + 1) * h)], os.path.join(data, f"held-{d}")) for i, d in enumerate(args.domains)}
    acc = {}  # (method, seed, step) -> {set: accuracy}
    for seed in args.seeds:
        slices = {d: (train[d], (seed * T + i) * n, (seed * T + i + 1) * n) for i, d in enumerate(args.domains)}
        labelled = {d: subset([slices[d]], os.path.join(data, f"s{seed}", f"train-{d}")) for d in args.domains}
        for solver, name in [("ridge", "ridge"), ("kernel-ridge", "kernel ridge")]:
            base = None
            for t, d in enumerate(args.domains, 1):
                out = os.path.join(args.out, solver, f"s{seed}", f"step{t}-{d}")
                cmd = [args.daft, "adapt", "--weights", args.weights, "--lp-solver", solver, "--domain", d,
                       "--data", npy(labelled[d]), "--val-data", npy(held[d]), "--false-reject", f"{args.false_reject:g}",
                       "--out", out] + evaluation_flags(args)
                cmd += ["--adapter-base", base] if base else []
                r = launch(args, cmd, out)
                base = os.path.join(out, "adapter.safetensors")
                ev = r["evaluation"]
                acc[(name, seed, t)] = {k: v["adapterCorrect"] / v["total"] for k, v in ev.items()}
                acc[(name + " + fusion", seed, t)] = {k: v["fusedCorrect"] / v["total"] for k, v in ev.items()}
                acc[(name + " + fusion/routed", seed, t)] = {k: v["routedToAdapter"] / v["total"] for k, v in ev.items()}
                acc[("pretrained", seed, t)] = {k: v["pretrainedCorrect"] / v["total"] for k, v in ev.items()}
        weights = args.weights
        if args.ft_lr is None:
            args.ft_lr = tune_ft(args, labelled[args.domains[0]], held[args.domains[0]])
        ft = ["finetune", "--method", "ft", "--epochs", str(args.ft_epochs), "--batch-size", str(args.ft_batch_size),
              "--seed", str(seed), "--no-epoch-ood", "--checkpoint-every", "0", "--lr", f"{args.ft_lr:g}"]
        for t, d in enumerate(args.domains, 1):
            out = os.path.join(args.out, "ft-sequential", f"s{seed}", f"step{t}-{d}")
            r = launch(args, [args.daft] + ft + ["--weights", weights, "--data", npy(labelled[d]), "--val-data", npy(held[d]),
                                                "--out", out] + evaluation_flags(args), out)
            weights = os.path.join(out, "final.safetensors")
            acc[("sequential FT", seed, t)] = {k: v["accuracy"] for k, v in r["ood"].items()}
        for t in range(1, T + 1):
            seen = args.domains[:t]
            union = subset([slices[d] for d in seen], os.path.join(data, f"s{seed}", f"joint-{t}"))
            union_held = subset([(val[d], i * h, (i + 1) * h) for i, d in enumerate(seen)], os.path.join(data, f"held-joint-{t}"))
            out = os.path.join(args.out, "ft-joint", f"s{seed}", f"step{t}")
            r = launch(args, [args.daft] + ft + ["--weights", args.weights, "--data", npy(union), "--val-data", npy(union_held),
                                                "--out", out] + evaluation_flags(args), out)
            acc[("joint FT", seed, t)] = {k: v["accuracy"] for k, v in r["ood"].items()}
    return acc


# --- summary ---------------------------------------------------------------------------------------------------------

def measures(args, acc, method, seed, t):
    """Seen-domain mean, unseen-domain mean (None after the last step), source accuracy, per domain."""
    a = acc[(method, seed, t)]
    seen, unseen = args.domains[:t], args.domains[t:]
    return {"seen": statistics.mean(a[d] for d in seen), "unseen": statistics.mean(a[d] for d in unseen) if unseen else None,
            "source": a["source"], **{d: a[d] for d in args.domains}}


def mean_std(values):
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def fmt(values):
    m, s = mean_std(values)
    return "–" if m is None else f"{100 * m:.1f} ± {100 * s:.1f}"


def forgetting(args, acc, method, seed):
    """Mean over the domains before the last of (best accuracy on it at any step since it arrived − accuracy at the end)."""
    T = len(args.domains)
    drops = []
    for i, d in enumerate(args.domains[:-1]):
        history = [acc[(method, seed, t)][d] for t in range(i + 1, T + 1)]
        drops.append(max(history) - history[-1])
    return statistics.mean(drops) if drops else 0.0


def write_figure(args, runs, path):
    """One row of three panels (seen, not yet seen, source) per regime; mean over the seeds."""
    T, W, H, L, B = len(args.domains), 300, 270, 48, 40
    panels = [("seen domains (mean)", "seen"), ("domains not yet seen (mean)", "unseen"), ("source (clean test)", "source")]
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{len(panels) * W + 190}" height="{H * len(runs) + 10}" font-family="sans-serif">',
           '<rect width="100%" height="100%" fill="white"/>']
    for row, (regime, ra, acc) in enumerate(runs):
        y0 = row * H
        for k, (title, key) in enumerate(panels):
            x0, pw, ph = k * W + L, W - L - 12, H - B - 40
            svg.append(f'<text x="{x0 + pw / 2}" y="{y0 + 28}" font-size="13" text-anchor="middle">{regime} pretraining: {title}</text>')
            X = lambda t: x0 + (t - 1) * pw / max(T - 1, 1)
            Y = lambda v: y0 + 40 + ph * (1 - v)
            for v in [0, 0.2, 0.4, 0.6, 0.8, 1.0]:
                svg.append(f'<line x1="{x0}" x2="{x0 + pw}" y1="{Y(v):.1f}" y2="{Y(v):.1f}" stroke="#e5e5e5"/>')
                svg.append(f'<text x="{x0 - 6}" y="{Y(v) + 4:.1f}" font-size="10" text-anchor="end">{int(100 * v)}</text>')
            for t in range(1, T + 1):
                svg.append(f'<text x="{X(t):.1f}" y="{Y(0) + 16:.1f}" font-size="10" text-anchor="middle">{t}: +{args.domains[t - 1]}</text>')
            svg.append(f'<text x="{x0 + pw / 2}" y="{Y(0) + 32:.1f}" font-size="11" text-anchor="middle">step: domain added</text>')
            if k == 0:
                svg.append(f'<text x="12" y="{Y(0.5):.1f}" font-size="11" transform="rotate(-90 12 {Y(0.5):.1f})" text-anchor="middle">accuracy (%)</text>')
            svg.append(f'<rect x="{x0}" y="{Y(1):.1f}" width="{pw}" height="{ph}" fill="none" stroke="#888"/>')
            for m in METHODS:
                pts = []
                for t in range(1, T + 1):
                    v, _ = mean_std([measures(ra, acc, m, s, t)[key] for s in ra.seeds])
                    if v is not None:
                        pts.append((X(t), Y(v)))
                dash = ' stroke-dasharray="5,3"' if "fusion" in m else ""
                if len(pts) > 1:
                    svg.append(f'<polyline fill="none" stroke="{COLOURS[m]}" stroke-width="2"{dash} points="'
                               + " ".join(f"{x:.1f},{y:.1f}" for x, y in pts) + '"/>')
                for x, y in pts:
                    svg.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{COLOURS[m]}"/>')
    lx = len(panels) * W + 5
    for i, m in enumerate(METHODS):
        dash = ' stroke-dasharray="5,3"' if "fusion" in m else ""
        svg.append(f'<line x1="{lx}" x2="{lx + 22}" y1="{50 + 18 * i}" y2="{50 + 18 * i}" stroke="{COLOURS[m]}" stroke-width="2"{dash}/>'
                   f'<text x="{lx + 28}" y="{54 + 18 * i}" font-size="11">{m}</text>')
    svg.append("</svg>")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(svg) + "\n")


def regime_section(ra, acc, regime):
    T = len(ra.domains)
    steps = " | ".join(f"{t}: +{d}" for t, d in enumerate(ra.domains, 1))
    lines = [f"## {regime.capitalize()} pretraining: `{os.path.relpath(ra.weights, ROOT)}`", "",
             f"FT's learning rate {ra.ft_lr:g}" + (" (chosen on the first domain's held-out set, seed " + str(ra.seeds[0]) + ": "
                                                  + ", ".join(f"lr {lr:g} → {100 * v:.1f}%" for lr, v in ra.ft_tuning) + ")" if ra.ft_tuning else "")
             + ".", ""]
    for title, key in [("Mean accuracy (%) on the domains seen so far", "seen"),
                       ("Mean accuracy (%) on the domains not yet seen", "unseen"),
                       ("Accuracy (%) on the source domain (clean test images)", "source")]:
        lines += [f"### {title}", "", "| method | " + steps + " |", "|---" * (T + 1) + "|"]
        for m in METHODS:
            lines.append(f"| {m} | " + " | ".join(fmt([measures(ra, acc, m, s, t)[key] for s in ra.seeds]) for t in range(1, T + 1)) + " |")
        lines.append("")
    lines += ["### After the last step: every domain, and forgetting", "",
              "Forgetting: for each domain but the last, the best accuracy it had at any step since it arrived minus its "
              "accuracy at the end, averaged (percentage points; lower is better).", "",
              "| method | " + " | ".join(ra.domains) + " | source | forgetting |", "|---" * (T + 3) + "|"]
    for m in METHODS:
        lines.append(f"| {m} | " + " | ".join(fmt([acc[(m, s, T)][d] for s in ra.seeds]) for d in ra.domains)
                     + f" | {fmt([acc[(m, s, T)]['source'] for s in ra.seeds])} | "
                     + fmt([forgetting(ra, acc, m, s) for s in ra.seeds]) + " |")
    lines += ["", "### Fusion's routing: share (%) of each test set sent to the adapter", "",
              "| adapter | after step | " + " | ".join(ra.domains) + " | source |", "|---" * (T + 3) + "|"]
    for name in ["ridge", "kernel ridge"]:
        for t in range(1, T + 1):
            r = [acc[(name + " + fusion/routed", s, t)] for s in ra.seeds]
            lines.append(f"| {name} | {t}: +{ra.domains[t - 1]} | " + " | ".join(fmt([x[d] for x in r]) for d in ra.domains + ["source"]) + " |")
    return lines + [""]


def write_report(args, runs, seconds, commit):
    lines = ["# Continual adaptation: the domain-incremental benchmark", "",
             "Generated by `python3 launch/continual_benchmark.py" + "".join(" " + a for a in sys.argv[1:]) + "` "
             f"({time.strftime('%Y-%m-%d')}, commit {commit}; the runs took {args.run_seconds[0] / 60:.0f} min on this 2-core machine, "
             f"{args.ranks} rank(s) each). "
             "Rerun the script rather than editing the generated part.", "",
             f"Domains arrive in the order {' → '.join(args.domains)} (each a `fashion-mnist` shift, the same 10 classes); step t adds "
             f"{args.per_domain} labelled `target-train` images of domain t (disjoint base images per domain and seed) and holds out "
             f"{args.held_out} `target-val` images of it. After every step each method is evaluated on the first {args.eval_limit} `test` "
             f"images under every domain and clean (`source`, the pretraining domain). Mean ± std over seeds {', '.join(map(str, args.seeds))} "
             "(the seed picks the labelled sets and FT's shuffling and head init). The pretrained model's own head is the "
             "zero-shot fallback. Ridge and kernel ridge (`daft adapt`; RBF, γ = 1 on unit-norm features): λ chosen on the new "
             "domain's held-out set at each step; fusion routes a test image to the adapter when the seen-domain detector "
             f"(class-conditional Mahalanobis distance, threshold at a {100 * args.false_reject:g}% false-reject rate on each domain's "
             "held-out set) accepts it, else to the pretrained head. FT: `daft finetune --method ft` (new random head, BN in "
             f"training mode), {args.ft_epochs} epochs, batch {args.ft_batch_size}, the best epoch on the held-out set of the domains it "
             "trains on; sequential FT starts each step from the previous step's model, joint FT from the pretrained model on the "
             "union of the domains seen so far.", "",
             "![accuracy vs step, both regimes](images/continual-accuracy.svg)", ""]
    for regime, ra, acc in runs:
        lines += regime_section(ra, acc, regime)
    kept = ""
    if os.path.exists(args.report):
        with open(args.report) as f:
            old = f.read()
        if MARKER in old:
            kept = old[old.index(MARKER) + len(MARKER):]
    with open(args.report, "w") as f:
        f.write("\n".join(lines) + "\n" + MARKER + (kept if kept else "\n"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--daft", default=os.path.join(ROOT, ".build/release/daft"))
    ap.add_argument("--regimes", default="clean,robust", help="pretrained checkpoints: clean, robust, or PATH.safetensors")
    ap.add_argument("--domains", default="id,rotate,blur,pixelate")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--per-domain", type=int, default=300, help="labelled training images per domain and step")
    ap.add_argument("--held-out", type=int, default=500, help="held-out images per domain")
    ap.add_argument("--eval-limit", type=int, default=1000)
    ap.add_argument("--false-reject", type=float, default=0.05, help="the seen-domain detector's target false-reject rate")
    ap.add_argument("--ft-epochs", type=int, default=10)
    ap.add_argument("--ft-batch-size", type=int, default=32)
    ap.add_argument("--ft-lr", type=float, default=None, help="FT's learning rate (default: chosen per regime from --ft-lr-grid on held-out data)")
    ap.add_argument("--ft-lr-grid", default="0.1,0.01,0.001")
    ap.add_argument("--ranks", type=int, default=1)
    ap.add_argument("--out", default=os.path.join(ROOT, "runs/continual"))
    ap.add_argument("--report", default=os.path.join(ROOT, "docs/continual.md"))
    ap.add_argument("--figure", default=os.path.join(ROOT, "docs/images/continual-accuracy.svg"))
    args = ap.parse_args()
    args.domains = args.domains.split(",")
    args.seeds = [int(s) for s in args.seeds.split(",")]
    args.ft_lr_grid = [float(v) for v in args.ft_lr_grid.split(",")]
    args.out = os.path.abspath(args.out)
    args.data_dir = os.path.join(args.out, "data")
    args.run_seconds = [0.0]   # shared by the regimes' copies of args
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    t0 = time.time()
    runs = []
    for regime in args.regimes.split(","):
        ra = argparse.Namespace(**vars(args))
        ra.weights = os.path.abspath(os.path.join(ROOT, REGIMES.get(regime, regime)))
        name = regime if regime in REGIMES else os.path.splitext(os.path.basename(regime))[0]
        ra.out, ra.ft_tuning = os.path.join(args.out, name), []
        runs.append((name, ra, benchmark(ra)))
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], stdout=subprocess.PIPE, text=True).stdout.strip()
    write_figure(args, runs, args.figure)
    write_report(args, runs, time.time() - t0, commit)
    print(f"wrote {args.report} and {args.figure}")


if __name__ == "__main__":
    main()
