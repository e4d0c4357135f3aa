"""tfevents_read.py EVENTS OUT.json — an independent reader of TensorBoard event files (TFRecord framing
with masked CRC-32C, Event / Summary / Value protobufs decoded by hand, as tensorboard's loader does);
writes {"file_version": ..., "scalars": {tag: [[step, value], ...]}}. Fails on any bad CRC."""
import json
import struct
import sys


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def masked(c):
    return ((((c >> 15) | (c << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def varint(buf, i):
    v, shift = 0, 0
    while True:
        b = buf[i]
        i += 1
        v |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return v, i


def fields(buf):
    i = 0
    while i < len(buf):
        key, i = varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = varint(buf, i)
        elif wt == 1:
            v = buf[i:i + 8]
            i += 8
        elif wt == 5:
            v = buf[i:i + 4]
            i += 4
        elif wt == 2:
            n, i = varint(buf, i)
            v = buf[i:i + n]
            i += n
        else:
            raise ValueError("wire type %d" % wt)
        yield num, wt, v


def main(path, out):
    data = open(path, "rb").read()
    i, res = 0, {"file_version": None, "scalars": {}}
    while i < len(data):
        header = data[i:i + 8]
        (n,) = struct.unpack("<Q", header)
        (hc,) = struct.unpack("<I", data[i + 8:i + 12])
        assert hc == masked(crc32c(header)), "length CRC"
        body = data[i + 12:i + 12 + n]
        (bc,) = struct.unpack("<I", data[i + 12 + n:i + 16 + n])
        assert bc == masked(crc32c(body)), "data CRC"
        i += 16 + n
        step = 0
        for num, wt, v in fields(body):
            if num == 2:
                step = v
            elif num == 3:
                res["file_version"] = v.decode()
            elif num == 5:
                for snum, _, val in fields(v):
                    if snum != 1:
                        continue
                    tag, value = None, None
                    for vn, _, vv in fields(val):
                        if vn == 1:
                            tag = vv.decode()
                        elif vn == 2:
                            (value,) = struct.unpack("<f", vv)
                    res["scalars"].setdefault(tag, []).append([step, value])
    json.dump(res, open(out, "w"))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
