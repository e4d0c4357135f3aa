#!/usr/bin/python3
"""bench_encoders.py — the PyTorch side of bench_encoders.sh: generates random weights at real width
(Wan VAE dim 96 / z 16; umT5-XXL blocks 4096/10240/64 heads) and times our PyTorch transcriptions
(tests/ref/vae_ref.py, tests/ref/t5_ref.py) on them, one process per measurement.
Usage: bench_encoders.py gen DIR [quick] | vae DIR | vae1 DIR (one thread) | t5 DIR
Prints "key seconds peak_MB" lines; outputs are saved for the sfwb side to check parity."""
import os
import resource
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "ref"))
import t5_ref  # noqa: E402
import vae_ref  # noqa: E402


def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def t5_cfg(quick):
    return dict(dim=4096, dim_attn=4096, heads=64, ffn=10240, layers=1 if quick else 2, buckets=32, L=128 if quick else 512)


def gen(d, quick):
    g = torch.Generator().manual_seed(11)
    sd = vae_ref.make_state_dict(96, 16, g)
    torch.save(sd, d + "/vae.pth")
    f = 2 if quick else 3
    hw = 8 if quick else 16
    torch.save({"z": torch.randn(1, f, 16, hw, hw, generator=g)}, d + "/vae_in.pt")
    c = t5_cfg(quick)
    torch.save(t5_ref.make_state_dict(g, dict(c, vocab=8)), d + "/t5.pth")
    mask = torch.ones(1, c["L"], dtype=torch.long)
    mask[0, c["L"] * 3 // 4:] = 0
    torch.save({"x": torch.randn(1, c["L"], c["dim"], generator=g), "mask": mask}, d + "/t5_in.pt")


def t5_blocks(sd, x, mask):
    heads = sd["blocks.0.pos_embedding.embedding.weight"].shape[1]
    n_layers = len([k for k in sd if k.endswith(".norm1.weight")])
    B, L, D = x.shape
    d = sd["blocks.0.attn.q.weight"].shape[0] // heads
    bk = t5_ref.buckets(L, 32, 128)
    for i in range(n_layers):
        p = "blocks.%d." % i
        h = t5_ref.rms(x, sd[p + "norm1.weight"])
        q = (h @ sd[p + "attn.q.weight"].t()).view(B, L, heads, d)
        k = (h @ sd[p + "attn.k.weight"].t()).view(B, L, heads, d)
        v = (h @ sd[p + "attn.v.weight"].t()).view(B, L, heads, d)
        ab = x.new_zeros(B, heads, L, L) + sd[p + "pos_embedding.embedding.weight"][bk].permute(2, 0, 1).unsqueeze(0)
        ab.masked_fill_(mask.view(B, 1, 1, L) == 0, torch.finfo(x.dtype).min)
        att = torch.softmax((torch.einsum("binc,bjnc->bnij", q, k) + ab).float(), dim=-1)
        o = torch.einsum("bnij,bjnc->binc", att, v).reshape(B, L, heads * d)
        x = x + o @ sd[p + "attn.o.weight"].t()
        h = t5_ref.rms(x, sd[p + "norm2.weight"])
        x = x + ((h @ sd[p + "ffn.fc1.weight"].t()) * t5_ref.gelu_tanh(h @ sd[p + "ffn.gate.0.weight"].t())) @ sd[p + "ffn.fc2.weight"].t()
    return x


def main():
    what, d = sys.argv[1], sys.argv[2]
    torch.set_num_threads(1 if what == "vae1" else (os.cpu_count() or 1))
    if what == "gen":
        gen(d, len(sys.argv) > 3 and sys.argv[3] == "quick")
        return
    with torch.no_grad():
        if what in ("vae", "vae1"):
            sd = torch.load(d + "/vae.pth")
            z = torch.load(d + "/vae_in.pt")["z"].permute(0, 2, 1, 3, 4)
            _, _, _, dec = vae_ref.layout(96, 16)
            mean, std = torch.tensor(vae_ref.MEAN), torch.tensor(vae_ref.STD)
            t0 = time.perf_counter()
            out = vae_ref.decode(sd, dec, z, 16, mean, std).clamp(-1, 1)
            dt = time.perf_counter() - t0
            torch.save({"out": out.permute(0, 2, 1, 3, 4).contiguous()}, d + "/vae_out.pt")
            print("%s %.3f %.0f" % ("vae_decode" if what == "vae" else "vae_decode_1t", dt, peak_mb()))
        else:
            sd = torch.load(d + "/t5.pth")
            inp = torch.load(d + "/t5_in.pt")
            t0 = time.perf_counter()
            out = t5_blocks(sd, inp["x"], inp["mask"])
            dt = time.perf_counter() - t0
            torch.save({"out": out}, d + "/t5_out.pt")
            print("t5_blocks %.3f %.0f" % (dt, peak_mb()))


if __name__ == "__main__":
    main()
