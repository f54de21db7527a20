#!/usr/bin/env python3
"""The fashion-shift method comparison (method.md §9): tunes each method's learning rates on ID validation
(seed 0), reruns the chosen setting with seeds 1 and 2, writes docs/results.md (mean ± std over 3 seeds) and,
with `daft report`, an HTML page of the chosen settings' runs (OUT/report.html: method table, ID vs mean-OOD
scatter, every run's curves, shifts, distortion histogram and parameter change).

    python3 launch/fashion_shift_benchmark.py [--daft PATH] [--ranks 2] [--epochs 3] [--eval-limit 2000] [--html FILE]

Standard library only. Every run is `daft finetune` under `launch/local.sh -n RANKS`; its results.json
(written by rank 0) is the only thing read back. Model selection uses ID validation accuracy only.
"""
import argparse, json, os, statistics, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OOD = ["clean", "rotate", "scale", "elastic", "blur", "pixelate", "impulse", "invert"]

# The grid, per method: (name in the table, method, extra flags, list of learning-rate settings to tune over)
TWO = lambda *pairs: [["--lr-head", str(h), "--lr-backbone", str(b)] for h, b in pairs]
ONE_LR = lambda *lrs: [["--lr", str(x)] for x in lrs]
# A grid entry is a list of settings, or a function of the settings already chosen (by table name).
METHODS = [
    ("FT", "ft", [], ONE_LR(0.01, 0.03, 0.1)),
    ("LP (logistic)", "lp", [], [[]]),
    ("LP (ridge, closed form)", "lp", ["--lp-solver", "ridge"], [[]]),
    ("LP-FT", "lp-ft", [], ONE_LR(0.0003, 0.001, 0.003)),
    ("LP-FT (ridge head init)", "lp-ft", ["--lp-solver", "ridge"], lambda best: [best["LP-FT"]]),
    ("DAFT", "daft", [], TWO((0.3, 0.01), (0.3, 0.03), (1, 0.03), (0.3, 0.1), (1, 0.1))),
    ("DAFT + L2-SP prior", "daft", ["--prior", "l2sp", "--prior-beta", "0"], lambda best: [best["DAFT"] + ["--prior-alpha", "0.01"]]),
    ("ablation: LP-FT + conversion", "lp-ft+conversion", [], ONE_LR(0.0003, 0.001, 0.003)),
    ("ablation: conversion only", "conversion-only", [], ONE_LR(0.01, 0.03, 0.1)),
    # the two DAFT ablations of the head: at DAFT's chosen rates, so only the missing ingredient differs
    ("ablation: fast head only", "fast-head-only", [], lambda best: [best["DAFT"]]),
]


def run_dir(args, method, extra, lrs, seed):
    tag = "_".join(a.lstrip("-") for a in extra + lrs) or "default"
    return os.path.join(args.out, f"{method}-{tag}-s{seed}")


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
    if not os.path.exists(res):
        cmd = ["bash", os.path.join(ROOT, "launch/local.sh"), "-n", str(args.ranks), "--", args.daft, "finetune",
               "--method", method, "--init", os.path.join(ROOT, "pretrained/resnet20-fashion-source.safetensors"),
               # evaluation sets are exported with --limit (a folder's first N would be its first classes)
               "--data", spec(args, "fashion-mnist:target-train@id"), "--val-data", spec(args, "fashion-mnist:target-val@id", args.eval_limit),
               "--test-data", spec(args, "fashion-mnist:test@id", args.eval_limit), "--eval-limit", str(args.eval_limit),
               "--epochs", str(args.epochs), "--batch-size", "128", "--seed", str(seed), "--out", out,
               "--checkpoint-every", "0"] + extra + lrs
        for d in OOD:
            cmd += ["--ood", f"{d}=" + spec(args, f"fashion-mnist:test@{d}", args.eval_limit)]
        t0 = time.time()
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        with open(out + ".log", "w") as f:
            f.write(" ".join(cmd) + "\n" + p.stdout)
        if p.returncode != 0:
            print(f"  FAILED ({p.returncode}): {name} {lrs} seed {seed}; see {out}.log", flush=True)
            return None
        print(f"  {name} {' '.join(lrs)} seed {seed}: {time.time() - t0:.0f} s", flush=True)
    with open(res) as f:
        return json.load(f)


def fmt(values, pct=True):
    if not values:
        return "–"
    m = statistics.mean(values) * (100 if pct else 1)
    s = (statistics.stdev(values) if len(values) > 1 else 0) * (100 if pct else 1)
    return f"{m:.2f} ± {s:.2f}" if pct else f"{m:.3f} ± {s:.3f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--daft", default=os.path.join(ROOT, ".build/release/daft"))
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--eval-limit", type=int, default=1000)
    ap.add_argument("--out", default=os.path.join(ROOT, "runs/fashion-shift"))
    ap.add_argument("--report", default=os.path.join(ROOT, "docs/results.md"))
    ap.add_argument("--from-folders", help="export every split once as an ImageFolder under this directory and train/evaluate from the folders")
    ap.add_argument("--folder-jpeg", type=int, help="with --from-folders: JPEG files of this quality instead of PNG")
    ap.add_argument("--html", help="the daft report page of the chosen settings' runs (default OUT/report.html)")
    args = ap.parse_args()
    args.html = args.html or os.path.join(args.out, "report.html")
    os.makedirs(args.out, exist_ok=True)
    rows = []
    chosen = {}
    reported = []  # run directories of each method's chosen setting, every seed
    for name, method, extra, grid in METHODS:
        if callable(grid):
            try:
                grid = grid(chosen)
            except KeyError as missing:
                print(f"{name}: skipped, {missing} has no chosen setting", flush=True)
                rows.append((name, "skipped", [])); continue
        print(f"{name}: tuning over {len(grid)} setting(s) on ID validation (seed 0)", flush=True)
        tuned = [(lrs, run(args, name, method, extra, lrs, 0)) for lrs in grid]
        tuned = [(lrs, r) for lrs, r in tuned if r]
        if not tuned:
            rows.append((name, "failed", [])); continue
        best_lrs, best = max(tuned, key=lambda t: t[1].get("valAccuracy") or 0)
        chosen[name] = [a for a in best_lrs if not a.startswith("--prior")] if name == "DAFT" else best_lrs
        results = [best] + [r for r in (run(args, name, method, extra, best_lrs, s) for s in (1, 2)) if r]
        rows.append((name, " ".join(extra + best_lrs) or "(no lr)", results, [(l, r.get("valAccuracy")) for l, r in tuned]))
        reported += [d for d in (run_dir(args, method, extra, best_lrs, s) for s in (0, 1, 2))
                     if d not in reported and os.path.exists(os.path.join(d, "results.json"))]
    write_html(args, reported)
    write_report(args, rows)


def write_html(args, dirs):
    """The results page of the runs: `daft report` over every chosen setting's seeds."""
    if not dirs:
        args.html = None
        return
    cmd = [args.daft, "report", *dirs, "--out", args.html, "--title", "Fashion-shift benchmark: the chosen settings' runs"]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if p.returncode != 0:
        print(f"daft report failed ({p.returncode}): {p.stdout.strip()}", flush=True)
        args.html = None
    else:
        print(p.stdout.strip(), flush=True)


def write_report(args, rows):
    cmd = "python3 launch/fashion_shift_benchmark.py " + " ".join(sys.argv[1:])
    L = ["# Fashion-shift results", "",
         "Produced by `" + cmd.strip() + "` (daft on " + str(args.ranks) + " ranks, "
         f"{args.epochs} epochs, global batch 128, pretrained `pretrained/resnet20-fashion-source.safetensors`).", "",
         "- Target (ID) training: `fashion-mnist:target-train@id` (4,000 images); model selection and every learning rate on "
         "`fashion-mnist:target-val@id` (2,000) only; seed 0 tunes, seeds 1 and 2 repeat the chosen setting.",
         f"- ID test: `fashion-mnist:test@id`; OOD: `fashion-mnist:test@D` for D in {', '.join(OOD)} "
         f"(first {args.eval_limit} test images of each).",
         "- Accuracies in %, mean ± std over 3 seeds. Distortion: penultimate-feature L2 distance and cosine similarity "
         "between the selected model and the model at the start of fine-tuning (after conversion / probe), on ID test.",
         "- Wall time: whole run on a 2-core machine shared with other work (noisy)."]
    if args.html:
        L += ["- Every run of the chosen settings (curves, per-shift accuracy, feature-distortion histogram, parameter change): "
              f"`daft report` page `{os.path.relpath(args.html, ROOT)}` (not committed; rerun the script to make it)."]
    L += ["",
         "| method | setting | ID val | ID test | " + " | ".join(OOD) + " | mean OOD | feature L2 | cosine | wall s |",
         "|" + "---|" * (8 + len(OOD)) ]
    for row in rows:
        name, setting, results = row[0], row[1], row[2]
        if not results:
            L.append(f"| {name} | {setting} |" + " – |" * (6 + len(OOD))); continue
        val = [r["valAccuracy"] for r in results if r.get("valAccuracy") is not None]
        test = [r["test"]["accuracy"] for r in results if r.get("test")]
        ood = [fmt([r["ood"][d]["accuracy"] for r in results]) for d in OOD]
        mean_ood = [r["meanOOD"] for r in results if r.get("meanOOD") is not None]
        l2 = [r["distortion"]["l2Mean"] for r in results if r.get("distortion")]
        cos = [r["distortion"]["cosineMean"] for r in results if r.get("distortion")]
        wall = [r["seconds"] for r in results]
        L.append(f"| {name} | `{setting}` | {fmt(val)} | {fmt(test)} | " + " | ".join(ood) +
                 f" | {fmt(mean_ood)} | {fmt(l2, False)} | {fmt(cos, False)} | {statistics.mean(wall):.0f} |")
    L += ["", "## Tuning (seed 0, ID validation accuracy %)", ""]
    for row in rows:
        if len(row) > 3:
            L.append(f"- {row[0]}: " + "; ".join(f"`{' '.join(l) or '(none)'}` {100 * (v or 0):.2f}" for l, v in row[3]))
    with open(args.report, "w") as f:
        f.write("\n".join(L) + "\n")
    print("wrote", args.report)


if __name__ == "__main__":
    main()
