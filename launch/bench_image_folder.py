#!/usr/bin/env python3
"""Image-folder throughput, daft and torchvision side by side in one run (issue 10, part 4).

    python3 launch/bench_image_folder.py [--images 1024] [--steps 20] [--write-docs]

1. Makes (once) a JPEG ImageFolder under .build/bench-folder: 10 classes, photo-like synthetic images (smooth
   colour fields + texture, sizes 300–500 × 240–400 px, JPEG quality 90) written by Pillow.
2. Decode + transform throughput per core (training view: RandomResizedCrop(224) + flip, normalised float
   batches of 64): `daft data bench --workers 1/2` vs torchvision `ImageFolder` + `DataLoader(num_workers=0/2)`.
3. Training-step throughput of ResNet-18 at 224, batch 16, 1 BLAS thread: `daft bench` on synthetic tensors vs
   the same from the JPEG folder (prefetched while the previous step runs), run daft-synthetic, daft-folder,
   daft-synthetic.
Prints a markdown table; --write-docs replaces the section between the markers in docs/benchmarks.md.
"""
import argparse, json, os, platform, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DAFT = os.environ.get("DAFT_BIN", os.path.join(ROOT, ".build/release/daft"))
BEGIN, END = "<!-- image-folder-bench:begin -->", "<!-- image-folder-bench:end -->"


def make_folder(path, n):
    import numpy as np
    from PIL import Image
    stamp = os.path.join(path, f".complete-{n}")
    if os.path.exists(stamp):
        return
    rng = np.random.default_rng(0)
    for i in range(n):
        c = i % 10
        w, h = int(rng.integers(300, 501)), int(rng.integers(240, 401))
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        base = np.stack([np.sin(xx / rng.uniform(20, 80) + k) * np.cos(yy / rng.uniform(20, 80) - k) for k in range(3)], -1)
        img = (127 + 90 * base + rng.normal(0, 12, (h, w, 3))).clip(0, 255).astype(np.uint8)
        d = os.path.join(path, f"class_{c:02d}")
        os.makedirs(d, exist_ok=True)
        Image.fromarray(img).save(os.path.join(d, f"{i:06d}.jpg"), quality=90)
    open(stamp, "w").close()


def daft(args, threads=1):
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads))
    out = subprocess.run([DAFT] + args + ["--json"], capture_output=True, text=True, env=env, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def torchvision_loader(path, workers, batches, batch=64):
    import torch
    import torchvision.transforms as T
    from torchvision.datasets import ImageFolder
    torch.set_num_threads(1)
    tf = T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    loader = torch.utils.data.DataLoader(ImageFolder(path, transform=tf), batch_size=batch, shuffle=True, num_workers=workers,
                                         persistent_workers=workers > 0)
    it = iter(loader)
    next(it)  # warm-up (and worker start)
    t0 = time.perf_counter()
    for _ in range(batches):
        try:
            next(it)
        except StopIteration:
            it = iter(loader); next(it)
    return batch * batches / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=1024)
    ap.add_argument("--batches", type=int, default=10)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--write-docs", action="store_true")
    a = ap.parse_args()
    folder = os.path.join(ROOT, ".build/bench-folder")
    make_folder(folder, a.images)
    rows = []
    for w in (1, 2):
        d = daft(["data", "bench", "--data", "folder:" + folder, "--batch", "64", "--batches", str(a.batches), "--workers", str(w)])
        t = torchvision_loader(folder, 0 if w == 1 else w, a.batches)
        label = "1 core (daft 1 decode thread; torchvision num_workers=0)" if w == 1 else f"{w} workers (daft --workers {w}; torchvision num_workers={w})"
        rows.append(("decode + RandomResizedCrop(224) + flip + normalise, batch 64, " + label, d["images_per_s"], t))
    bench = ["bench", "--arch", "resnet18", "--input", "3x224x224", "--batch", "16", "--threads", "1", "--steps", str(a.steps)]
    s1 = daft(bench)
    f = daft(bench + ["--data", "folder:" + folder, "--workers", "1"])
    s2 = daft(bench)
    syn = (s1["images_per_s"] + s2["images_per_s"]) / 2
    lines = [f"Measured {time.strftime('%Y-%m-%d')} on {platform.processor() or platform.machine()} ({os.cpu_count()} cores), "
             f"`python3 launch/bench_image_folder.py --images {a.images}` ({a.images} JPEGs, 300–500 × 240–400 px, quality 90).", "",
             "| data pipeline | daft img/s | torchvision img/s | ratio |", "|---|---|---|---|"]
    for name, d, t in rows:
        lines.append(f"| {name} | {d:.1f} | {t:.1f} | {d / t:.2f} |")
    lines += ["", "| ResNet-18 3×224×224, batch 16, 1 BLAS thread | img/s | data wait ms/step |", "|---|---|---|",
              f"| synthetic tensors (mean of the runs before and after) | {syn:.2f} ({s1['images_per_s']:.2f} / {s2['images_per_s']:.2f}) | {s1['data_wait_ms']:.1f} |",
              f"| JPEG folder, 1 decode thread, prefetched | {f['images_per_s']:.2f} | {f['data_wait_ms']:.1f} |",
              f"| ratio folder / synthetic | {f['images_per_s'] / syn:.3f} | |"]
    text = "\n".join(lines)
    print(text)
    if a.write_docs:
        p = os.path.join(ROOT, "docs/benchmarks.md")
        doc = open(p).read()
        block = BEGIN + "\n" + text + "\n" + END
        doc = doc[:doc.index(BEGIN)] + block + doc[doc.index(END) + len(END):] if BEGIN in doc else doc.rstrip() + "\n\n## Image folders: decode throughput and training from JPEG\n\n" + block + "\n"
        open(p, "w").write(doc)


if __name__ == "__main__":
    main()
