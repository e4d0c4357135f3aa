#!/usr/bin/python3
"""philox_ref.py — an independent transcription of Philox4x32-10 (Salmon et al., "Parallel random
numbers: as easy as 1, 2, 3", SC'11; the Random123 reference) used by tests/c/test_philox.c.

Checks itself against the Random123 known-answer vectors, then for each input line
"counter seed" (decimal u64) prints the four output words (hex) and the sfwb element transforms:
normal = Box-Muller on words 0 and 1 (double math, rounded to f32), uniform = (w0 >> 8) / 2^24."""
import math
import struct
import sys

M0, M1 = 0xD2511F53, 0xCD9E8D57
W0, W1 = 0x9E3779B9, 0xBB67AE85
MASK = 0xFFFFFFFF


def philox4x32_10(ctr, key):
    c = list(ctr)
    k0, k1 = key
    for _ in range(10):
        p0 = M0 * c[0]
        p1 = M1 * c[2]
        hi0, lo0 = p0 >> 32, p0 & MASK
        hi1, lo1 = p1 >> 32, p1 & MASK
        c = [hi1 ^ c[1] ^ k0, lo1, hi0 ^ c[3] ^ k1, lo0]
        k0 = (k0 + W0) & MASK
        k1 = (k1 + W1) & MASK
    return c


KAT = [  # Random123 kat_vectors: ctr[4] key[2] -> out[4]
    ((0, 0, 0, 0), (0, 0), (0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8)),
    ((MASK,) * 4, (MASK, MASK), (0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd)),
    ((0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344), (0xa4093822, 0x299f31d0),
     (0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1)),
]


def f32(x):
    return struct.unpack("f", struct.pack("f", x))[0]


def main():
    for ctr, key, want in KAT:
        got = philox4x32_10(ctr, key)
        if tuple(got) != want:
            print("KAT mismatch", [hex(v) for v in got], [hex(v) for v in want], file=sys.stderr)
            sys.exit(1)
    for line in sys.stdin:
        if not line.strip():
            continue
        counter, seed = (int(v) for v in line.split())
        w = philox4x32_10((counter & MASK, counter >> 32, 0, 0), (seed & MASK, seed >> 32))
        u1 = ((w[0] >> 8) + 1.0) / 16777216.0
        u2 = (w[1] >> 8) / 16777216.0
        normal = f32(math.sqrt(-2.0 * math.log(u1)) * math.cos(6.283185307179586 * u2))
        uniform = f32((w[0] >> 8) / 16777216.0)
        print("%08x %08x %08x %08x %.9g %.9g" % (w[0], w[1], w[2], w[3], normal, uniform))


if __name__ == "__main__":
    main()
