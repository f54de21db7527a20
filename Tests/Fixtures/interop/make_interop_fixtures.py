#!/usr/bin/env python3
"""Fixtures for Tests/DaftInteropTests, written by the reference Python implementations.

    python3 make_interop_fixtures.py            # (re)write the fixtures below with torch/safetensors/numpy
    python3 make_interop_fixtures.py --check    # check that files written by the Swift writer
                                                # (swift_written*) load in Python with the expected values

Needs: pip install torch safetensors numpy. The Swift tests do not need Python: they read the committed
fixtures. The values here are repeated literally in SafeTensorsTests.swift and NpyTests.swift.
Regenerate the swift_written* files with: DAFT_INTEROP_RECORD_GOLDEN=1 swift test --filter DaftInteropTests
"""
import os
import sys

import numpy as np
import torch
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))


def path(name):
    return os.path.join(HERE, name)


def write_fixtures():
    # F32 / F64 / I64 with metadata, like a torchvision state_dict plus our __metadata__.
    save_file(
        {
            "fc.weight": torch.tensor([[0.5, -1.25, 3.0], [0.1, -0.0, 1e10]], dtype=torch.float32),
            "fc.bias": torch.tensor([1.0, -2.0], dtype=torch.float32),
            "bn1.running_var": torch.tensor([0.1, 2.5, -1e-300], dtype=torch.float64),
            "bn1.num_batches_tracked": torch.tensor(42, dtype=torch.int64),
            "ids": torch.tensor([-1, 0, 2**40, -(2**62)], dtype=torch.int64),
        },
        path("torch_basic.safetensors"),
        metadata={"arch": "resnet20", "num_classes": "10", "mean": "0.2860", "std": "0.3530"},
    )
    # Every other dtype the format has.
    save_file(
        {
            "f16": torch.tensor([1.0, -2.5, 65504.0, 2.0**-24, float("inf")], dtype=torch.float16),
            "bf16": torch.tensor([1.0, -3.0, 0.15625], dtype=torch.bfloat16),
            "i32": torch.tensor([[-7, 2**31 - 1], [-(2**31), 0]], dtype=torch.int32),
            "i16": torch.tensor([-300, 0, 32767], dtype=torch.int16),
            "i8": torch.tensor([-128, 127], dtype=torch.int8),
            "u8": torch.tensor([0, 128, 255], dtype=torch.uint8),
            "flags": torch.tensor([True, False, False, True], dtype=torch.bool),
            "empty": torch.zeros((0, 3), dtype=torch.float32),
        },
        path("torch_all_dtypes.safetensors"),
    )
    np.save(path("images_u8.npy"), (np.arange(12, dtype=np.int64) * 20).astype(np.uint8).reshape(2, 1, 2, 3))
    np.save(path("labels_i64.npy"), np.array([0, -1, 9, 2**40, -(2**62)], dtype=np.int64))
    np.save(path("matrix_f32.npy"), np.array([[0.5, -1.25, 3.0], [0.1, -0.0, 1e10]], dtype=np.float32))
    np.save(path("values_f64.npy"), np.array([0.1, -2.5], dtype=np.float64))
    np.save(path("values_i32.npy"), np.array([-7, 2**31 - 1], dtype=np.int32))
    # Files the reader must reject.
    np.save(path("fortran_f32.npy"), np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3)))
    np.save(path("bigendian_f4.npy"), np.array([1.0, 2.0], dtype=">f4"))
    print("fixtures written to", HERE)


def check_swift_written():
    """Files written by DaftInterop's writers must load in PyTorch and NumPy with these values."""
    tensors = load_file(path("swift_written.safetensors"))
    expected = {
        "conv1.weight": torch.tensor([[[[0.5, -1.5]]], [[[2.0, 0.25]]]], dtype=torch.float32),
        "bn1.running_mean": torch.tensor([0.1, -0.2], dtype=torch.float64),
        "bn1.num_batches_tracked": torch.tensor(7, dtype=torch.int64),
        "layer1.0.bn1.weight": torch.tensor([1.0, 2.0, 3.0], dtype=torch.float32),
        "mask": torch.tensor([1, 0, 255], dtype=torch.uint8),
        "counts": torch.tensor([-5, 6], dtype=torch.int32),
    }
    assert set(tensors) == set(expected), sorted(tensors)
    for name, value in expected.items():
        got = tensors[name]
        assert got.dtype == value.dtype and got.shape == value.shape and torch.equal(got, value), (name, got)
    from safetensors import safe_open

    with safe_open(path("swift_written.safetensors"), framework="pt") as f:
        assert f.metadata() == {"arch": "resnet20", "num_classes": "10", "note": 'quote " and \\ ü'}, f.metadata()
    model = torch.nn.Sequential()
    model.add_module("fc", torch.nn.Linear(3, 2))
    model.load_state_dict(load_file(path("swift_written_fc.safetensors")))
    assert torch.equal(model.fc.weight.detach(), torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]))

    for name, value in {
        "swift_written_u8.npy": np.arange(24, dtype=np.uint8).reshape(2, 3, 2, 2),
        "swift_written_i64.npy": np.array([3, -4, 2**40], dtype=np.int64),
        "swift_written_f32.npy": np.array([[0.5, -1.0], [1e-3, 7.0]], dtype=np.float32),
    }.items():
        with open(path(name), "rb") as f:
            raw = f.read()
        assert raw[6:8] == b"\x01\x00", name
        data_start = 10 + int.from_bytes(raw[8:10], "little")
        assert data_start % 64 == 0, (name, data_start)
        got = np.load(path(name))
        assert got.dtype == value.dtype and got.shape == value.shape and np.array_equal(got, value), (name, got)
    print("swift-written files load in torch and numpy with the expected values")


if __name__ == "__main__":
    if sys.argv[1:] == ["--check"]:
        check_swift_written()
    else:
        write_fixtures()
