# pipeline_ref.py — our PyTorch transcription of Self-Forcing's inference pipelines (training_spec.md §4.1,
# wan_model_spec.md §3.6, §5.3): the causal few-step block loop with KV cache and clean context pass, and
# the bidirectional few-step loop. Drives the tiny DiT of wan_ref.py (imported, not duplicated) and the
# scheduler grid of scheduler_ref.py.
#
#   /usr/bin/python3 tests/ref/pipeline_ref.py CASE OUTDIR [--seed N]
#   /usr/bin/python3 tests/ref/pipeline_ref.py all OUTROOT         (every case into OUTROOT/CASE, one process)
#
# writes OUTDIR/config.json + diffusion_pytorch_model.safetensors (the tiny model), OUTDIR/data.safetensors
# (context, noise, every step-noise draw in order of use, per-chunk x0, final latents) and
# OUTDIR/manifest.lua (the pipeline settings of the case).
import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from wan_ref import TINY, TINY_I2V, Cfg, KVCache, Wan, make_params, save_safetensors, to_lua  # noqa: E402
from scheduler_ref import grid  # noqa: E402

torch.set_grad_enabled(False)
torch.set_num_threads(1)


class Sched:
    """the generator's grid (shift 5, sigma_min 0, extra step); nearest-grid lookups as FlowMatchScheduler"""

    def __init__(self, shift):
        self.sigmas, self.timesteps, _ = grid(shift)

    def idx(self, t):
        t = torch.as_tensor(t, dtype=torch.float32).reshape(-1)
        return torch.argmin((self.timesteps.unsqueeze(0) - t.unsqueeze(1)).abs(), dim=1)

    def warp(self, lst):
        ext = torch.cat((self.timesteps, torch.tensor([0.0])))
        return ext[1000 - torch.tensor(lst, dtype=torch.long)]

    def add_noise(self, x0, eps, t):  # x0, eps [N, ...]; t scalar for every row
        sig = self.sigmas[self.idx(t)].reshape(-1, *([1] * (x0.dim() - 1)))
        return ((1 - sig) * x0 + sig * eps).type_as(eps)

    def pred_x0(self, flow, xt, t):  # in float64 as the wrapper, cast back
        sig = self.sigmas.double()[self.idx(t)].reshape(-1, *([1] * (flow.dim() - 1)))
        return (xt.double() - sig * flow.double()).to(flow.dtype)


def model_call(model, kv, x, tval, start, ctx, S, clip_fea=None, y=None):
    """one wrapper call: x [B, n, C, h, w] -> (flow, x0) in the pipeline layout"""
    B, n = x.shape[:2]
    t = torch.full((B, n), float(tval))
    kw = {}
    if clip_fea is not None:
        kw["clip_fea"] = clip_fea
    if y is not None:
        kw["y"] = y[:, :, start:start + n]
    if kv is not None:
        kv.start = start * S
        out = model.forward(x.permute(0, 2, 1, 3, 4), t, ctx, kv_attend=kv.attend, f0=start, **kw)
    else:
        out = model.forward(x.permute(0, 2, 1, 3, 4), t[:, 0], ctx, **kw)
    return out.permute(0, 2, 1, 3, 4)


def causal_pipeline(model, sched, ctx, noise, steps, nfpb, indep, context_noise, kv, draw, initial=None,
                    clip_fea=None, y=None):
    B, F, C, h, w = noise.shape
    S = (h // 2) * (w // 2)
    n_in = 0 if initial is None else initial.shape[1]
    if not indep or initial is not None:
        blocks = [nfpb] * (F // nfpb)
    else:
        blocks = [1] + [nfpb] * ((F - 1) // nfpb)
    out = torch.zeros(B, F + n_in, C, h, w)
    chunks = []
    pos = 0
    if initial is not None:
        sizes = ([1] if indep else []) + [nfpb] * ((n_in - (1 if indep else 0)) // nfpb)
        for n in sizes:
            lat = initial[:, pos:pos + n]
            out[:, pos:pos + n] = lat
            model_call(model, kv, lat, 0.0, pos, ctx, S, clip_fea, y)
            pos += n
    for n in blocks:
        x = noise[:, pos - n_in:pos - n_in + n]
        for k, tk in enumerate(steps):
            flow = model_call(model, kv, x, tk, pos, ctx, S, clip_fea, y)
            x0 = sched.pred_x0(flow.flatten(0, 1), x.flatten(0, 1), tk).unflatten(0, (B, n))
            if k < len(steps) - 1:
                eps = draw((B, n, C, h, w))
                x = sched.add_noise(x0.flatten(0, 1), eps.flatten(0, 1), steps[k + 1]).unflatten(0, (B, n))
        out[:, pos:pos + n] = x0
        chunks.append(x0)
        model_call(model, kv, x0, context_noise, pos, ctx, S, clip_fea, y)  # clean context, no noise added
        pos += n
    return out, chunks


def bidirectional_pipeline(model, sched, ctx, noise, steps, draw, all_steps=False):
    B, F = noise.shape[:2]
    S = (noise.shape[3] // 2) * (noise.shape[4] // 2)
    x = noise
    last = len(steps) if all_steps else len(steps) - 1
    for k in range(last):
        flow = model_call(model, None, x, steps[k], 0, ctx, S)
        x0 = sched.pred_x0(flow.flatten(0, 1), x.flatten(0, 1), steps[k]).unflatten(0, (B, F))
        if k < len(steps) - 1 and (k < last - 1 or not all_steps):
            eps = draw(tuple(x0.shape))
            x = sched.add_noise(x0.flatten(0, 1), eps.flatten(0, 1), steps[k + 1]).unflatten(0, (B, F))
    return x0


CASES = {
    # name: pipeline settings
    "t2v": dict(B=2, F=6, nfpb=3, indep=False, local=-1, sink=0, context_noise=0, warp=True),
    "indep": dict(B=1, F=7, nfpb=3, indep=True, local=-1, sink=0, context_noise=0, warp=True),
    "window": dict(B=1, F=9, nfpb=3, indep=False, local=5, sink=1, context_noise=0, warp=True),
    "nowarp": dict(B=1, F=4, nfpb=2, indep=False, local=-1, sink=0, context_noise=100, warp=False,
                   steps=[1000, 500, 0]),
    "extend": dict(B=1, F=3, nfpb=3, indep=False, local=-1, sink=0, context_noise=0, warp=True, n_in=3),
    "i2v": dict(B=1, F=3, nfpb=3, indep=True, local=-1, sink=0, context_noise=0, warp=True, n_in=1, i2v=True),
    "bidir": dict(B=1, F=6, bidir=True, warp=True),
}


def run(name, seed, outdir):
    cs = CASES[name]
    gen = torch.Generator().manual_seed(seed)
    rnd = lambda *s: torch.randn(*s, generator=gen)
    cfgd = dict(TINY_I2V if cs.get("i2v") else TINY)
    c = Cfg(cfgd)
    P = make_params(c, gen)
    model = Wan(c, P)
    sched = Sched(5.0)
    lst = cs.get("steps", [1000, 750, 500, 250])
    ref_list = [v for v in lst]
    if len(ref_list) > 1 and ref_list[-1] == 0:
        ref_list = ref_list[:-1]
    steps = sched.warp(ref_list).tolist() if cs["warp"] else [float(v) for v in ref_list]
    B, F, H, W = cs["B"], cs["F"], 4, 6
    data = {}
    ctx = rnd(B, c.text_len - 5, c.text_dim)
    noise = rnd(B, F, 16, H, W)
    data.update(context=ctx, noise=noise)
    draws = []

    def draw(shape):
        e = rnd(*shape)
        draws.append(e)
        return e

    if cs.get("bidir"):
        lat = bidirectional_pipeline(model, sched, ctx, noise, steps, draw)
        data["latents"] = lat
        # all_steps variant with its own draws
        n0 = len(draws)
        data["latents_all"] = bidirectional_pipeline(model, sched, ctx, noise, steps, draw, all_steps=True)
        meta_extra = dict(draws_first=n0, draws_all=len(draws) - n0)
        chunks = []
    else:
        n_in = cs.get("n_in", 0)
        initial, clip_fea, y = None, None, None
        if n_in:
            initial = rnd(B, n_in, 16, H, W)
            data["initial_latent"] = initial
        if cs.get("i2v"):
            clip_fea = rnd(B, 7, c.clip_dim)
            y = rnd(B, 20, F + n_in, H, W)
            data.update(clip_fea=clip_fea, y=y)
        S = (H // 2) * (W // 2)
        frames = cs["local"] if cs["local"] != -1 else F + n_in
        kv = KVCache(c, B, S, frames, cs["local"], cs["sink"])
        lat, chunks = causal_pipeline(model, sched, ctx, noise, steps, cs["nfpb"], cs["indep"], cs["context_noise"],
                                      kv, draw, initial, clip_fea, y)
        data["latents"] = lat
        for i, ch in enumerate(chunks):
            data["chunk_%d" % (i + 1)] = ch
        meta_extra = {}
    for i, e in enumerate(draws):
        data["step_noise_%d" % (i + 1)] = e
    os.makedirs(outdir, exist_ok=True)
    conf = {k: v for k, v in cfgd.items() if k != "clip_dim"}
    conf["_class_name"] = "WanModel"
    with open(os.path.join(outdir, "config.json"), "w") as f:
        json.dump(conf, f)
    save_safetensors(os.path.join(outdir, "diffusion_pytorch_model.safetensors"), P)
    save_safetensors(os.path.join(outdir, "data.safetensors"), {k: v.float().contiguous() for k, v in data.items()})
    meta = dict(case=name, steps=steps, step_list=lst, draws=len(draws), nchunks=len(chunks),
                **{k: v for k, v in cs.items() if k != "steps"}, **meta_extra)
    with open(os.path.join(outdir, "manifest.lua"), "w") as f:
        f.write("return " + to_lua(meta) + "\n")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("case", choices=sorted(CASES) + ["all"])
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=3)
    a = ap.parse_args()
    if a.case == "all":
        for name in sorted(CASES):
            run(name, a.seed, os.path.join(a.out, name))
    else:
        run(a.case, a.seed, a.out)
