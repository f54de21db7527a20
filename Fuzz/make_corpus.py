#!/usr/bin/env python3
"""Writes the seed corpora of the libFuzzer targets, Fuzz/corpus/TARGET/ (a few small valid files each).

    python3 Fuzz/make_corpus.py [CHECKPOINT_DIR ...]

- safetensors, npy: the interop fixtures of Tests/Fixtures/interop (written by torch/numpy and by daft's own
  writers) plus a few written here (every dtype, a scalar, an empty tensor, metadata).
- idx, idxgz: IDX files (1-, 3- and 4-dimensional), plain and gzip-compressed, as the MNIST files are.
- image: PNGs of every colour type daft decodes (grey 1/8/16-bit, grey+alpha, RGB, RGBA, palette with tRNS,
  interlaced), written with zlib here, and baseline, progressive, greyscale and CMYK JPEGs written by Pillow when
  it is importable (launch/python-env.sh's venv has it); otherwise the committed JPEG seeds are kept.
- config: TOML and YAML --config files like the documented ones.
- manifest, trainer-state: manifest.json and trainer.json of checkpoints written by `daft` (pass checkpoint
  directories, e.g. OUT/checkpoints/ckpt-000000480, to refresh them; without arguments the committed ones stay).
Only the Python standard library is needed (Pillow optionally). The output is deterministic.
"""
import gzip
import json
import os
import shutil
import struct
import sys
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "Fuzz", "corpus")


def out(target, name, data):
    os.makedirs(os.path.join(CORPUS, target), exist_ok=True)
    with open(os.path.join(CORPUS, target, name), "wb") as f:
        f.write(data)


def safetensors(tensors, metadata=None):
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name in sorted(tensors):
        dtype, shape, data = tensors[name]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def npy(descr, shape, data, version=1):
    shape_text = "()" if not shape else "(%s,)" % shape[0] if len(shape) == 1 else "(%s)" % ", ".join(map(str, shape))
    header = ("{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (descr, shape_text)).encode("latin1")
    prefix = 10 if version == 1 else 12
    header += b" " * ((64 - (prefix + len(header) + 1) % 64) % 64) + b"\n"
    size = struct.pack("<H", len(header)) if version == 1 else struct.pack("<I", len(header))
    return b"\x93NUMPY" + bytes([version, 0]) + size + header + data


def idx(dims, data):
    return bytes([0, 0, 8, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + bytes(data)


def png(width, height, color, depth, rows, palette=None, trns=None, interlace=0):
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    raw = b"".join(b"\x00" + bytes(row) for row in rows)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, interlace))
    if palette:
        data += chunk(b"PLTE", bytes(palette))
    if trns is not None:
        data += chunk(b"tRNS", bytes(trns))
    return data + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def adam7_rows(width, height, bpp, pixel):
    """The rows of an Adam7-interlaced 8-bit image, pass by pass (each pass's rows as PNG stores them)."""
    passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
    rows = []
    for x0, y0, dx, dy in passes:
        for y in range(y0, height, dy):
            row = [v for x in range(x0, width, dx) for v in pixel(x, y)]
            if row:
                rows.append(row)
    return rows


def write_safetensors():
    for name in ["swift_written.safetensors", "swift_written_fc.safetensors", "torch_all_dtypes.safetensors"]:
        shutil.copy(os.path.join(ROOT, "Tests", "Fixtures", "interop", name), os.path.join(CORPUS, "safetensors", name))
    out("safetensors", "small_mixed.safetensors", safetensors({
        "w": ("F32", [2, 2], struct.pack("<4f", 1.0, -2.5, 0.0, 3.25)),
        "h": ("F16", [3], struct.pack("<3H", 0x3C00, 0x8001, 0x7C00)),
        "b": ("BF16", [1], struct.pack("<H", 0x3F80)),
        "n": ("I64", [], struct.pack("<q", 7)),
        "m": ("U8", [0, 4], b""),
        "z": ("BOOL", [2], b"\x00\x01"),
    }, {"format": "pt", "daft.arch": "resnet20"}))


def write_npy():
    for name in ["swift_written_f32.npy", "swift_written_i64.npy", "swift_written_u8.npy", "values_f64.npy",
                 "values_i32.npy", "images_u8.npy"]:
        shutil.copy(os.path.join(ROOT, "Tests", "Fixtures", "interop", name), os.path.join(CORPUS, "npy", name))
    out("npy", "scalar_f8.npy", npy("<f8", [], struct.pack("<d", 0.5)))
    out("npy", "v2_u1.npy", npy("|u1", [2, 3], bytes(range(6)), version=2))
    out("npy", "v3_i4.npy", npy("<i4", [0], b"", version=3))


def write_idx():
    images = idx([3, 4, 4], [(i * 37) % 256 for i in range(48)])
    labels = idx([3], [0, 9, 4])
    four = idx([2, 1, 2, 3], list(range(12)))
    for name, data in [("images-idx3-ubyte", images), ("labels-idx1-ubyte", labels), ("four-idx4-ubyte", four)]:
        out("idx", name, data)
        out("idxgz", name + ".gz", gzip.compress(data, 9, mtime=0))
    out("idxgz", "labels-idx1-ubyte", labels)  # a plain file read through the same gzread path


def write_images():
    w, h = 5, 3
    grey = [[(x * 50 + y * 20) % 256 for x in range(w)] for y in range(h)]
    out("image", "grey8.png", png(w, h, 0, 8, grey))
    out("image", "grey1.png", png(9, 2, 0, 1, [[0b10110011, 0b10000000], [0b01001100, 0b00000000]]))
    out("image", "grey16.png", png(2, 2, 0, 16, [[0x00, 0x10, 0x01, 0x00], [0xFF, 0xFF, 0x00, 0x00]], trns=[0, 0x10]))
    out("image", "greyalpha.png", png(2, 2, 4, 8, [[10, 255, 20, 0], [30, 128, 40, 64]]))
    out("image", "rgb.png", png(w, h, 2, 8, [[v for x in range(w) for v in (x * 40, y * 80, 200)] for y in range(h)]))
    out("image", "rgba16.png", png(1, 2, 6, 16, [[1, 2, 3, 4, 5, 6, 7, 8], [9, 10, 11, 12, 13, 14, 15, 16]]))
    out("image", "palette_trns.png", png(4, 2, 3, 2, [[0b00011011], [0b11100100]],
                                        palette=[255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9], trns=[255, 128]))
    out("image", "interlaced_rgb.png", png(9, 9, 2, 8, adam7_rows(9, 9, 3, lambda x, y: (x * 28, y * 28, 99)),
                                          interlace=1))
    try:
        from PIL import Image
    except ImportError:
        print("make_corpus: Pillow is not importable; keeping the committed JPEG seeds", file=sys.stderr)
        return
    rgb = Image.new("RGB", (16, 8))
    rgb.putdata([(x * 16, y * 32, 128) for y in range(8) for x in range(16)])
    for name, image, options in [("baseline.jpg", rgb, {"quality": 75}),
                                 ("progressive.jpg", rgb, {"quality": 60, "progressive": True}),
                                 ("grey.jpg", rgb.convert("L"), {"quality": 90}),
                                 ("cmyk.jpg", rgb.convert("CMYK"), {"quality": 80}),
                                 ("nosubsample.jpg", rgb, {"quality": 95, "subsampling": 0})]:
        path = os.path.join(CORPUS, "image", name)
        image.save(path, "JPEG", **options)


def write_config():
    out("config", "run.toml", b'method = "daft"\nepochs = 3\nbatch-size = 64\nlr-head = 0.5\naugment = false\n'
        b'seed = 7\n[ood]\nrotate = "data/rot"\n[data]\nfolders = ["a", "b"]\n')
    out("config", "run.yaml", b'method: lp-ft\nepochs: 2\nlr_backbone: 1.0e-3\nnumbers: [1, 2.5, -3]\n'
        b'ood:\n  blur: "data/blur"\n  noise: data/noise\nquiet: true\n# a comment\n')
    out("config", "anchors.yaml", b"base: &b {epochs: 1, seed: 3}\nrun:\n  <<: *b\n  tags:\n    - x\n    - 'y z'\n")


def write_checkpoints(dirs):
    for i, d in enumerate(dirs):
        step = os.path.basename(os.path.normpath(d))
        for name, target in [("manifest.json", "manifest"), ("trainer.json", "trainer-state")]:
            shutil.copy(os.path.join(d, name), os.path.join(CORPUS, target, "%s-%s" % (step, name)))


def main():
    for target in ["safetensors", "npy", "idx", "idxgz", "image", "config", "manifest", "trainer-state"]:
        os.makedirs(os.path.join(CORPUS, target), exist_ok=True)
    write_safetensors()
    write_npy()
    write_idx()
    write_images()
    write_config()
    write_checkpoints(sys.argv[1:])


if __name__ == "__main__":
    main()
