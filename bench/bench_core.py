#!/usr/bin/python3
"""bench_core.py — the ops of bench_core.c timed in numpy (same shapes, dtypes, best-of timing and
byte counts), printing the same "key value unit" lines. Usage: bench_core.py [quick]"""
import sys
import time

import numpy as np


def best_time(fn, min_s):
    fn()
    best, total, reps = 1e30, 0.0, 0
    while reps < 3 or (total < min_s and reps < 50):
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        total += dt
        reps += 1
        best = min(best, dt)
    return best


def gelu_tanh(x):
    # torch's approximate='tanh' formula written with numpy ufuncs
    return 0.5 * x * (1.0 + np.tanh(np.float32(0.7978845608028654) * (x + np.float32(0.044715) * x * x * x)))


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def main():
    quick = len(sys.argv) > 1 and sys.argv[1] == "quick"
    min_s = 0.05 if quick else 0.5
    rng = np.random.default_rng(0)
    gemms = [("gemm_f32_512", 512, 512, 512), ("gemm_f32_1024", 1024, 1024, 1024)]
    if not quick:
        gemms += [("gemm_f32_2048", 2048, 2048, 2048), ("gemm_f32_1560x1536x8960", 1560, 1536, 8960)]
    for key, m, k, n in gemms:
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        t = best_time(lambda: a @ b, min_s)
        print("%s %.2f GFLOP/s" % (key, 2.0 * m * n * k / t / 1e9), flush=True)
    n = (1 << 20) if quick else (1 << 24)
    x = rng.standard_normal(n, dtype=np.float32)
    y = rng.standard_normal(n, dtype=np.float32)
    sq = rng.standard_normal((4096, 4096), dtype=np.float32)
    streams = [
        ("add_f32", lambda: x + y, n, 12), ("add_f32_inplace", lambda: np.add(x, y, out=x), n, 12),
        ("mul_f32", lambda: x * y, n, 12), ("exp_f32", lambda: np.exp(x), n, 8),
        ("gelu_tanh_f32", lambda: gelu_tanh(x), n, 8), ("sum_f32", lambda: x.sum(), n, 4),
        ("rowsum_f32_4096x4096", lambda: sq.sum(axis=-1), sq.size, 4),
        ("softmax_f32_4096x4096", lambda: softmax(sq), sq.size, 8),
    ]
    for key, fn, count, bpe in streams:
        t = best_time(fn, min_s)
        print("%s %.2f GB/s" % (key, count * bpe / t / 1e9), flush=True)
    # numpy has no bf16: cast_f32_bf16 has no counterpart


if __name__ == "__main__":
    main()
