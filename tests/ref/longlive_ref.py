# longlive_ref.py — our PyTorch transcription of LongLive v1.0 (NVlabs/LongLive, branch v1.0) for the
# sfwb tests: the KV write/attention rules of wan/modules/causal_model.py (CausalWanSelfAttention's kv
# branch, _apply_cache_updates), InteractiveCausalInferencePipeline (pipeline/interactive_causal_inference.py:
# prompt switches and _recache_after_switch), and PEFT's LoRA Linear as utils/lora_utils.py configures it
# (merged and unmerged forward, gradients of the adapters). Drives the tiny DiT of wan_ref.py.
#
#   /usr/bin/python3 tests/ref/longlive_ref.py all OUTROOT      (every case into OUTROOT/CASE)
#
# LongLive hard-codes frame_seq_length = 1560 and max_attention_size = local_attn_size * 1560 (32760 = 21
# frames when global); here both are in units of the tiny model's tokens per frame.
import argparse
import json
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from wan_ref import TINY, Cfg, Wan, attention, make_params, save_safetensors, to_lua  # noqa: E402
from pipeline_ref import Sched  # noqa: E402

torch.set_num_threads(1)


# ---------------------------------------------------------------- LongLive's KV cache rules
class LongLiveKV:
    """one dict per layer as LongLive's: k, v [B, size, N, d], global_end_index, local_end_index"""

    def __init__(self, c, B, S, frames, local, sink, max_att_frames):
        N, d = c.num_heads, c.dim // c.num_heads
        self.S, self.local, self.sink_size = S, local, sink
        self.size = frames * S
        self.max_attention_size = max_att_frames * S
        self.k = [torch.zeros(B, self.size, N, d) for _ in range(c.num_layers)]
        self.v = [torch.zeros(B, self.size, N, d) for _ in range(c.num_layers)]
        self.G = [0] * c.num_layers
        self.Lend = [0] * c.num_layers
        self.start = 0
        self.sink_recache_after_switch = False

    def zero(self):
        for t in self.k + self.v:
            t.zero_()

    def attend(self, i, roped_key, v):
        S = self.S
        current_start = self.start
        num_new_tokens = roped_key.shape[1]
        current_end = current_start + num_new_tokens
        sink_tokens = self.sink_size * S
        kv_cache_size = self.size
        G, Lend = self.G[i], self.Lend[i]
        is_recompute = current_end <= G and current_start > 0
        temp_k, temp_v = self.k[i].clone(), self.v[i].clone()
        if self.local != -1 and current_end > G and num_new_tokens + Lend > kv_cache_size:
            num_evicted_tokens = num_new_tokens + Lend - kv_cache_size
            num_rolled_tokens = Lend - num_evicted_tokens - sink_tokens
            local_end_index = Lend + current_end - G - num_evicted_tokens
            local_start_index = local_end_index - num_new_tokens
            temp_k[:, sink_tokens:sink_tokens + num_rolled_tokens] = \
                temp_k[:, sink_tokens + num_evicted_tokens:sink_tokens + num_evicted_tokens + num_rolled_tokens].clone()
            temp_v[:, sink_tokens:sink_tokens + num_rolled_tokens] = \
                temp_v[:, sink_tokens + num_evicted_tokens:sink_tokens + num_evicted_tokens + num_rolled_tokens].clone()
            write_start_index = max(local_start_index, sink_tokens) if is_recompute else local_start_index
        else:
            local_end_index = Lend + current_end - G
            local_start_index = local_end_index - num_new_tokens
            write_start_index = max(local_start_index, sink_tokens) if is_recompute else local_start_index
            if self.sink_recache_after_switch:
                write_start_index = local_start_index
        roped_offset = max(0, write_start_index - local_start_index)
        write_len = max(0, local_end_index - write_start_index)
        if write_len > 0:
            temp_k[:, write_start_index:local_end_index] = roped_key[:, roped_offset:roped_offset + write_len]
            temp_v[:, write_start_index:local_end_index] = v[:, roped_offset:roped_offset + write_len]
        if sink_tokens > 0:
            local_budget = self.max_attention_size - sink_tokens
            k_sink, v_sink = temp_k[:, :sink_tokens], temp_v[:, :sink_tokens]
            if local_budget > 0:
                local_start_for_window = max(sink_tokens, local_end_index - local_budget)
                kk = torch.cat([k_sink, temp_k[:, local_start_for_window:local_end_index]], dim=1)
                vv = torch.cat([v_sink, temp_v[:, local_start_for_window:local_end_index]], dim=1)
            else:
                kk, vv = k_sink, v_sink
        else:
            window_start = max(0, local_end_index - self.max_attention_size)
            kk, vv = temp_k[:, window_start:local_end_index], temp_v[:, window_start:local_end_index]
        # _apply_cache_updates: the cache becomes the temporary one; pointers stay on a recompute
        self.k[i], self.v[i] = temp_k, temp_v
        if not is_recompute:
            self.G[i], self.Lend[i] = current_end, local_end_index
        return kk, vv, None, [0] * (kk.shape[1] // S)


def call(model, kv, x, tval, start, ctx, S):
    """one generator call: x [B, n, C, h, w] -> flow in the pipeline layout"""
    B, n = x.shape[:2]
    t = torch.full((B, n), float(tval))
    kv.start = start * S
    out = model.forward(x.permute(0, 2, 1, 3, 4), t, ctx, kv_attend=kv.attend, f0=start)
    return out.permute(0, 2, 1, 3, 4)


def interactive(model, sched, ctxs, noise, steps, nfpb, context_noise, kv, draw, switches, local, global_sink):
    """InteractiveCausalInferencePipeline.inference"""
    B, F, C, h, w = noise.shape
    S = (h // 2) * (w // 2)
    out = torch.zeros(B, F, C, h, w)
    seg = 0
    nxt = switches[0] if switches else None
    pos = 0
    recaches = []
    for _ in range(F // nfpb):
        if nxt is not None and pos >= nxt:
            seg += 1
            # _recache_after_switch
            if not global_sink:
                kv.zero()
            if pos > 0:
                n = pos if local == -1 else min(local, pos)
                st = pos - n
                kv.sink_recache_after_switch = not global_sink
                call(model, kv, out[:, st:pos], context_noise, st, ctxs[seg], S)  # the block mask plays no part
                kv.sink_recache_after_switch = False
                recaches.append([pos, st, n])
            nxt = switches[seg] if seg < len(switches) else None
        ctx = ctxs[seg]
        x = noise[:, pos:pos + nfpb]
        for k, tk in enumerate(steps):
            flow = call(model, kv, x, tk, pos, ctx, S)
            x0 = sched.pred_x0(flow.flatten(0, 1), x.flatten(0, 1), tk).unflatten(0, (B, nfpb))
            if k < len(steps) - 1:
                eps = draw((B, nfpb, C, h, w))
                x = sched.add_noise(x0.flatten(0, 1), eps.flatten(0, 1), steps[k + 1]).unflatten(0, (B, nfpb))
        out[:, pos:pos + nfpb] = x0
        call(model, kv, x0, context_noise, pos, ctx, S)
        pos += nfpb
    return out, recaches


CASES = {
    "window_gs0": dict(B=2, F=18, nfpb=3, local=6, sink=3, switches=[5, 13], gs=False),
    "window_gs1": dict(B=1, F=18, nfpb=3, local=6, sink=3, switches=[5, 13], gs=True),
    "global_gs0": dict(B=1, F=24, nfpb=3, local=-1, sink=3, switches=[7, 16], gs=False),
    "global_gs1": dict(B=1, F=24, nfpb=3, local=-1, sink=3, switches=[7, 16], gs=True),
    "global_nosink": dict(B=1, F=24, nfpb=3, local=-1, sink=0, switches=[12], gs=False),
    "sink6": dict(B=1, F=15, nfpb=3, local=9, sink=6, switches=[4], gs=True),
    "nfpb1": dict(B=1, F=8, nfpb=1, local=5, sink=2, switches=[3, 6], gs=False, context_noise=50),
}


def run_interactive(name, seed, outdir):
    cs = CASES[name]
    gen = torch.Generator().manual_seed(seed)
    rnd = lambda *s: torch.randn(*s, generator=gen)
    c = Cfg(TINY)
    P = make_params(c, gen)
    model = Wan(c, P)
    sched = Sched(5.0)
    lst = [1000, 750, 500, 250]
    steps = sched.warp(lst).tolist()
    B, F, H, W = cs["B"], cs["F"], 4, 6
    S = (H // 2) * (W // 2)
    nseg = len(cs["switches"]) + 1
    ctxs = [rnd(B, c.text_len - 5, c.text_dim) for _ in range(nseg)]
    noise = rnd(B, F, 16, H, W)
    draws = []

    def draw(shape):
        e = rnd(*shape)
        draws.append(e)
        return e

    frames = cs["local"] if cs["local"] != -1 else F
    max_att = cs["local"] if cs["local"] != -1 else 21
    kv = LongLiveKV(c, B, S, frames, cs["local"], cs["sink"], max_att)
    with torch.no_grad():
        lat, recaches = interactive(model, sched, ctxs, noise, steps, cs["nfpb"], cs.get("context_noise", 0), kv, draw,
                                    cs["switches"], cs["local"], cs["gs"])
    data = {"noise": noise, "latents": lat}
    for i, x in enumerate(ctxs):
        data["context_%d" % (i + 1)] = x
    for i, e in enumerate(draws):
        data["step_noise_%d" % (i + 1)] = e
    write_model(outdir, P)
    save_safetensors(os.path.join(outdir, "data.safetensors"), {k: v.float().contiguous() for k, v in data.items()})
    meta = dict(case=name, step_list=lst, draws=len(draws), recaches=recaches, context_noise=cs.get("context_noise", 0),
                **{k: v for k, v in cs.items() if k != "context_noise"})
    with open(os.path.join(outdir, "manifest.lua"), "w") as f:
        f.write("return " + to_lua(meta) + "\n")


def write_model(outdir, P):
    os.makedirs(outdir, exist_ok=True)
    conf = dict(TINY)
    conf["_class_name"] = "WanModel"
    with open(os.path.join(outdir, "config.json"), "w") as f:
        json.dump(conf, f)
    save_safetensors(os.path.join(outdir, "diffusion_pytorch_model.safetensors"), P)


# ---------------------------------------------------------------- PEFT LoRA (utils/lora_utils.py)
LINEARS = ["self_attn.q", "self_attn.k", "self_attn.v", "self_attn.o", "cross_attn.q", "cross_attn.k",
           "cross_attn.v", "cross_attn.o", "ffn.0", "ffn.2"]


class WanLora(Wan):
    """peft.tuners.lora.Linear.forward, dropout 0: base(x) + lora_B(lora_A(x)) * scaling"""

    def __init__(self, c, P, ad, scaling):
        super().__init__(c, P)
        self.ad, self.scaling = ad, scaling

    def lin(self, x, name):
        y = super().lin(x, name)
        if name in self.ad:
            A, B = self.ad[name]
            y = y + (x @ A.t()) @ B.t() * self.scaling
        return y


def run_lora(seed, outdir):
    gen = torch.Generator().manual_seed(seed)
    rnd = lambda *s: torch.randn(*s, generator=gen)
    c = Cfg(TINY)
    P = make_params(c, gen)
    rank, alpha = 4, 8
    scaling = alpha / rank
    ad = {}
    for i in range(c.num_layers):
        for l in LINEARS:
            name = "blocks.%d.%s" % (i, l)
            W = P[name + ".weight"]
            ad[name] = (rnd(rank, W.shape[1]) * 0.2, rnd(W.shape[0], rank) * 0.2)
    x = rnd(1, 16, 3, 4, 6)
    t = torch.tensor([700.0])
    ctx = rnd(1, c.text_len - 3, c.text_dim)
    G = rnd(1, 16, 3, 4, 6)
    data = {"x": x, "t": t, "context": ctx, "G": G}
    for name, (A, B) in ad.items():
        A.requires_grad_(True)
        B.requires_grad_(True)
    with torch.enable_grad():
        out = WanLora(c, P, ad, scaling).forward(x, t, ctx)
        loss = (out * G).sum()
        loss.backward()
    data["out_unmerged"] = out.detach()
    for name, (A, B) in ad.items():
        data["grad." + name + ".lora_A.weight"] = A.grad
        data["grad." + name + ".lora_B.weight"] = B.grad
    # merged: PEFT's merge adds B @ A * scaling to the base weight
    Pm = dict(P)
    for name, (A, B) in ad.items():
        Pm[name + ".weight"] = P[name + ".weight"] + (B.detach() @ A.detach()) * scaling
    with torch.no_grad():
        data["out_merged"] = Wan(c, Pm).forward(x, t, ctx)
        data["out_base"] = Wan(c, P).forward(x, t, ctx)
    write_model(outdir, P)
    save_safetensors(os.path.join(outdir, "data.safetensors"), {k: v.float().contiguous() for k, v in data.items()})
    # LongLive's checkpoint layout: {"generator_lora": get_peft_model_state_dict(...), "critic_lora": ...}
    peft = {"base_model.model.%s.lora_%s.weight" % (name, ab): (A if ab == "A" else B).detach().clone()
            for name, (A, B) in ad.items() for ab in ("A", "B")}
    torch.save({"generator_lora": peft, "critic_lora": {}, "step": 7}, os.path.join(outdir, "lora.pt"))
    torch.save(peft, os.path.join(outdir, "lora_raw.pt"))
    with open(os.path.join(outdir, "manifest.lua"), "w") as f:
        f.write("return " + to_lua(dict(rank=rank, alpha=alpha, linears=LINEARS)) + "\n")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("case", choices=sorted(CASES) + ["lora", "all"])
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=5)
    a = ap.parse_args()
    if a.case in ("all", "lora"):
        run_lora(a.seed, os.path.join(a.out, "lora"))
    for name in sorted(CASES):
        if a.case in ("all", name):
            run_interactive(name, a.seed, os.path.join(a.out, "ll_" + name))
