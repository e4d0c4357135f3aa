# wan_ref.py — an independent PyTorch transcription of the Wan2.1 DiT as described in
# /work/shared/spec/wan_model_spec.md (sections 1, 3, 10), used to produce golden data for the
# sfwb tests at test time. Written from the spec's prose and formulas only.
#
#   /usr/bin/python3 tests/ref/wan_ref.py CASE[,CASE...] OUTDIR [--seed N]   (several: OUTDIR/CASE each)
#
# writes OUTDIR/config.json + OUTDIR/diffusion_pytorch_model.safetensors (random weights with the
# official key names), OUTDIR/data.safetensors (inputs, outputs, attention captures) and
# OUTDIR/manifest.lua (a Lua table describing the calls, read by tests/lua/test_wan_*.lua).
import argparse
import json
import math
import os
import struct
import sys

import torch

torch.set_grad_enabled(False)
torch.set_num_threads(1)


# ---------------------------------------------------------------- small safetensors writer
def save_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    names = {torch.float32: "F32", torch.float64: "F64", torch.int64: "I64", torch.bfloat16: "BF16"}
    for k in sorted(tensors):
        t = tensors[k].contiguous()
        if t.dtype == torch.bfloat16:
            raw = t.view(torch.int16).numpy().tobytes()
        else:
            raw = t.numpy().tobytes()
        header[k] = {"dtype": names[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


# ---------------------------------------------------------------- the model (spec section 1)
class Cfg:
    def __init__(self, d):
        self.model_type = d.get("model_type", "t2v")
        self.dim = d["dim"]
        self.ffn_dim = d["ffn_dim"]
        self.num_heads = d["num_heads"]
        self.num_layers = d["num_layers"]
        self.in_dim = d["in_dim"]
        self.out_dim = d["out_dim"]
        self.text_dim = d.get("text_dim", 4096)
        self.text_len = d.get("text_len", 512)
        self.freq_dim = d.get("freq_dim", 256)
        self.eps = d.get("eps", 1e-6)
        self.clip_dim = d.get("clip_dim", 1280)


def make_params(c, gen):
    """random weights with the official state-dict names (spec 2.3, 2.4); every tensor randomised"""
    D, P = c.dim, {}

    def r(*shape, scale=None, base=0.0):
        fan = shape[-1] if len(shape) > 1 else 1
        s = scale if scale is not None else 1.0 / math.sqrt(fan)
        return (base + s * torch.randn(*shape, generator=gen)).float()

    P["patch_embedding.weight"] = r(D, c.in_dim, 1, 2, 2, scale=1.0 / math.sqrt(c.in_dim * 4))
    P["patch_embedding.bias"] = r(D, scale=0.1)
    P["text_embedding.0.weight"] = r(D, c.text_dim)
    P["text_embedding.0.bias"] = r(D, scale=0.1)
    P["text_embedding.2.weight"] = r(D, D)
    P["text_embedding.2.bias"] = r(D, scale=0.1)
    P["time_embedding.0.weight"] = r(D, c.freq_dim)
    P["time_embedding.0.bias"] = r(D, scale=0.1)
    P["time_embedding.2.weight"] = r(D, D)
    P["time_embedding.2.bias"] = r(D, scale=0.1)
    P["time_projection.1.weight"] = r(6 * D, D, scale=0.3 / math.sqrt(D))
    P["time_projection.1.bias"] = r(6 * D, scale=0.05)
    for i in range(c.num_layers):
        b = "blocks.%d." % i
        P[b + "modulation"] = r(1, 6, D, scale=0.1)
        for a in ("self_attn", "cross_attn"):
            for n in ("q", "k", "v", "o"):
                P[b + a + "." + n + ".weight"] = r(D, D)
                P[b + a + "." + n + ".bias"] = r(D, scale=0.1)
            P[b + a + ".norm_q.weight"] = r(D, scale=0.1, base=1.0)
            P[b + a + ".norm_k.weight"] = r(D, scale=0.1, base=1.0)
        if c.model_type == "i2v":
            for n in ("k_img", "v_img"):
                P[b + "cross_attn." + n + ".weight"] = r(D, D)
                P[b + "cross_attn." + n + ".bias"] = r(D, scale=0.1)
            P[b + "cross_attn.norm_k_img.weight"] = r(D, scale=0.1, base=1.0)
        P[b + "norm3.weight"] = r(D, scale=0.1, base=1.0)
        P[b + "norm3.bias"] = r(D, scale=0.1)
        P[b + "ffn.0.weight"] = r(c.ffn_dim, D)
        P[b + "ffn.0.bias"] = r(c.ffn_dim, scale=0.1)
        P[b + "ffn.2.weight"] = r(D, c.ffn_dim)
        P[b + "ffn.2.bias"] = r(D, scale=0.1)
    P["head.modulation"] = r(1, 2, D, scale=0.1)
    P["head.head.weight"] = r(c.out_dim * 4, D)
    P["head.head.bias"] = r(c.out_dim * 4, scale=0.1)
    if c.model_type == "i2v":
        C = c.clip_dim
        P["img_emb.proj.0.weight"] = r(C, scale=0.1, base=1.0)
        P["img_emb.proj.0.bias"] = r(C, scale=0.1)
        P["img_emb.proj.1.weight"] = r(C, C)
        P["img_emb.proj.1.bias"] = r(C, scale=0.1)
        P["img_emb.proj.3.weight"] = r(D, C)
        P["img_emb.proj.3.bias"] = r(D, scale=0.1)
        P["img_emb.proj.4.weight"] = r(D, scale=0.1, base=1.0)
        P["img_emb.proj.4.bias"] = r(D, scale=0.1)
    return P


def lin(x, P, name):
    w = P[name + ".weight"]
    return x @ w.reshape(w.shape[0], -1).t() + P[name + ".bias"]


def layer_norm(x, eps, w=None, b=None):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    y = (x - mu) / torch.sqrt(var + eps)
    if w is not None:
        y = y * w + b
    return y


def rms_norm(x, w, eps):
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * w


def gelu_tanh(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def gelu_erf(x):
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def sinusoid(t, dim, dtype=torch.float32):
    half = dim // 2
    omega = torch.pow(torch.tensor(10000.0, dtype=torch.float64), -torch.arange(half, dtype=torch.float64) / half)
    ang = t.double().reshape(-1, 1) * omega.reshape(1, -1)
    return torch.cat([torch.cos(ang), torch.sin(ang)], dim=1).to(dtype)


def rope_angles(d, f_pos, Hp, Wp):
    """angles [len(f_pos)*Hp*Wp, d/2] in float64 for tokens in (f, h, w) order (spec 1.8)"""
    q6 = d // 6
    dt, dh = d - 4 * q6, 2 * q6

    def axis(pos, dim_axis):
        j = torch.arange(dim_axis // 2, dtype=torch.float64)
        inv = torch.pow(torch.tensor(10000.0, dtype=torch.float64), -2.0 * j / dim_axis)
        return pos.double().reshape(-1, 1) * inv.reshape(1, -1)

    at = axis(torch.tensor(f_pos), dt)
    ah = axis(torch.arange(Hp), dh)
    aw = axis(torch.arange(Wp), dh)
    F = len(f_pos)
    a = torch.cat([
        at.reshape(F, 1, 1, -1).expand(F, Hp, Wp, -1),
        ah.reshape(1, Hp, 1, -1).expand(F, Hp, Wp, -1),
        aw.reshape(1, 1, Wp, -1).expand(F, Hp, Wp, -1)], dim=-1)
    return a.reshape(F * Hp * Wp, d // 2)


def rope(x, ang, dtype=torch.float32):
    """x [B, L, N, d]; interleaved pairs (2j, 2j+1) rotated by ang [L, d/2]; float64 inside, result in dtype"""
    B, L, N, d = x.shape
    xd = x.double().reshape(B, L, N, d // 2, 2)
    a, b = xd[..., 0], xd[..., 1]
    c, s = torch.cos(ang).reshape(1, L, 1, -1), torch.sin(ang).reshape(1, L, 1, -1)
    out = torch.stack([a * c - b * s, a * s + b * c], dim=-1)
    return out.reshape(B, L, N, d).to(dtype)


class Capture:
    """frame-level reductions of one attention call (what the sfwb capture must reproduce)"""

    def __init__(self):
        self.rec = {}

    def add(self, key, q, k, mask, q_grp, k_grp, nq, nk):
        # q [B, Lq, N, d], k [B, Lk, N, d], mask bool [Lq, Lk] (True = visible) or None
        B, Lq, N, d = q.shape
        q, k = q.float(), k.float()
        logits = torch.einsum("bqnd,bknd->bnqk", q, k) / math.sqrt(d)
        if mask is not None:
            lm = logits.masked_fill(~mask, float("-inf"))
        else:
            lm = logits
            mask = torch.ones(Lq, k.shape[1], dtype=torch.bool)
        probs = torch.softmax(lm, dim=-1)
        qg = torch.nn.functional.one_hot(torch.tensor(q_grp), nq).double()   # [Lq, nq]
        # never-written cache slots (id -1) are attended (zeros) but belong to no frame: an extra column, dropped
        kg = torch.nn.functional.one_hot(torch.tensor([j if j >= 0 else nk for j in k_grp]), nk + 1).double()[:, :nk]
        m = mask.double()
        cnt = qg.t() @ m @ kg                                                # visible pairs per cell
        lsum = torch.einsum("qa,bnqk,kc->nac", qg, (logits.double() * m), kg) / B
        psum = torch.einsum("qa,bnqk,kc->nac", qg, probs.double(), kg) / B
        nan = torch.full_like(cnt, float("nan"))
        vis = cnt > 0
        lg = torch.where(vis, lsum / cnt.clamp(min=1), nan)
        pr = torch.where(vis, psum / cnt.clamp(min=1), nan)
        qn = qg.sum(0).reshape(-1, 1)                                        # queries per group
        ms = torch.where(vis, psum / qn.clamp(min=1), nan)
        self.rec[key] = {"logits": lg.float(), "probs": pr.float(), "mass": ms.float()}


def attention(q, k, v, mask=None):
    d = q.shape[-1]
    s = torch.einsum("bqnd,bknd->bnqk", q, k) / math.sqrt(d)
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf"))
    p = torch.softmax(s, dim=-1)
    return torch.einsum("bnqk,bknd->bqnd", p, v)


class Wan:
    """all-f32 computation; WanAutocast below overrides the precision hooks (spec 1.10)"""

    def __init__(self, c, P):
        self.c, self.P = c, P
        self.N, self.d = c.num_heads, c.dim // c.num_heads

    # precision hooks: identity in f32
    ACT = torch.float32  # dtype of the sinusoid and of RoPE's result

    def lin(self, x, name):  # a linear that autocast runs in low precision
        return lin(x, self.P, name)

    def lin_island(self, x, name):  # a linear that autocast keeps in f32 (time MLP, head)
        return lin(x, self.P, name)

    def ln_affine(self, x, w, b, eps):  # LayerNorm with affine (norm3, img_emb)
        return layer_norm(x, eps, w, b)

    def rope(self, x, ang):
        return rope(x, ang, self.ACT)

    def qk_norm(self, a, w):
        return rms_norm(a, w, self.c.eps)

    def attn(self, q, k, v, mask=None):
        return attention(q, k, v, mask)

    def norm(self, x):  # WanLayerNorm without affine
        return layer_norm(x, self.c.eps)

    def res(self, x):  # a residual-stream operand
        return x

    def gelu_tanh(self, x):
        return gelu_tanh(x)

    def embed_time(self, t):  # t flat [M]
        P = self.P
        silu = lambda v: torch.nn.functional.silu(v.float()).to(v.dtype)  # opmath f32, one rounding (as on the GPU)
        e = self.lin_island(silu(self.lin_island(sinusoid(t, self.c.freq_dim, self.ACT), "time_embedding.0")), "time_embedding.2")
        e0 = self.lin_island(silu(e), "time_projection.1")
        return e, e0.reshape(-1, 6, self.c.dim)

    def embed_context(self, ctx, clip_fea):
        P, c = self.P, self.c
        B, Lt, _ = ctx.shape
        pad = torch.zeros(B, c.text_len, c.text_dim)
        pad[:, :Lt] = ctx
        txt = self.lin(self.gelu_tanh(self.lin(pad, "text_embedding.0")), "text_embedding.2")
        if c.model_type == "i2v":
            h = self.ln_affine(clip_fea, P["img_emb.proj.0.weight"], P["img_emb.proj.0.bias"], 1e-5)
            h = self.lin(gelu_erf(self.lin(h, "img_emb.proj.1").float()).to(txt.dtype), "img_emb.proj.3")
            h = self.ln_affine(h, P["img_emb.proj.4.weight"], P["img_emb.proj.4.bias"], 1e-5)
            txt = torch.cat([h, txt.to(h.dtype)], dim=1)
        return txt

    def patchify(self, x):
        P = self.P
        B, C, F, H, W = x.shape
        p = x.reshape(B, C, F, H // 2, 2, W // 2, 2).permute(0, 2, 3, 5, 1, 4, 6).reshape(B, F * (H // 2) * (W // 2), C * 4)
        return self.lin(p, "patch_embedding"), (F, H // 2, W // 2)

    def unpatchify(self, y, grid):
        F, Hp, Wp = grid
        B = y.shape[0]
        C = self.c.out_dim
        y = y.reshape(B, F, Hp, Wp, 2, 2, C).permute(0, 6, 1, 2, 4, 3, 5)
        return y.reshape(B, C, F, Hp * 2, Wp * 2)

    def self_attn(self, i, x, ang, kv_attend, cap, capkey, q_frames):
        P, N, d, eps = self.P, self.N, self.d, self.c.eps
        b = "blocks.%d.self_attn." % i
        B, L, D = x.shape
        q = self.qk_norm(self.lin(x, b + "q"), P[b + "norm_q.weight"]).reshape(B, L, N, d)
        k = self.qk_norm(self.lin(x, b + "k"), P[b + "norm_k.weight"]).reshape(B, L, N, d)
        v = self.lin(x, b + "v").reshape(B, L, N, d)
        q, k = self.rope(q, ang), self.rope(k, ang)
        kk, vv, mask, k_frames = kv_attend(i, k, v)
        if cap is not None:
            nq = max(q_frames) + 1
            cap.add(capkey + "self", q, kk, mask, q_frames, k_frames, max(max(q_frames), max(k_frames)) + 1,
                    max(max(q_frames), max(k_frames)) + 1)
        o = self.attn(q, kk, vv, mask)
        return self.lin(o.reshape(B, L, D), b + "o")

    def cross_attn(self, i, x, ctx, cap, capkey, q_frames):
        P, N, d, eps, c = self.P, self.N, self.d, self.c.eps, self.c
        b = "blocks.%d.cross_attn." % i
        B, L, D = x.shape
        q = self.qk_norm(self.lin(x, b + "q"), P[b + "norm_q.weight"]).reshape(B, L, N, d)
        n_img = ctx.shape[1] - c.text_len if c.model_type == "i2v" else 0
        ci, ct = ctx[:, :n_img], ctx[:, n_img:]
        k = self.qk_norm(self.lin(ct, b + "k"), P[b + "norm_k.weight"]).reshape(B, -1, N, d)
        v = self.lin(ct, b + "v").reshape(B, -1, N, d)
        o = self.attn(q, k, v)
        nf = max(q_frames) + 1
        if cap is not None:
            cap.add(capkey + "cross", q, k, None, q_frames, [n_img + j for j in range(ct.shape[1])], nf, ctx.shape[1])
        if n_img > 0:
            ki = self.qk_norm(self.lin(ci, b + "k_img"), P[b + "norm_k_img.weight"]).reshape(B, -1, N, d)
            vi = self.lin(ci, b + "v_img").reshape(B, -1, N, d)
            o = self.res(o) + self.res(self.attn(q, ki, vi))
            if cap is not None:
                cap.add(capkey + "cross_img", q, ki, None, q_frames, list(range(n_img)), nf, ctx.shape[1])
        return self.lin(o.reshape(B, L, D), b + "o")

    def block(self, i, x, e0, ctx, ang, kv_attend, cap, capkey, q_frames):
        """e0 [B, F, 6, D] per-frame modulation (F = 1 for a uniform timestep)"""
        P, eps = self.P, self.c.eps
        B, L, D = x.shape
        F = e0.shape[1]
        m = (P["blocks.%d.modulation" % i].reshape(1, 1, 6, D) + e0)
        m0, m1, m2, m3, m4, m5 = [m[:, :, j].reshape(B, F, 1, D) for j in range(6)]

        def per_frame(t):
            return t.reshape(B, F, L // F, D)

        h = (per_frame(self.norm(x)) * (1 + m1) + m0).reshape(B, L, D)
        y = self.self_attn(i, h, ang, kv_attend, cap, capkey, q_frames)
        x = (per_frame(self.res(x)) + per_frame(self.res(y)) * m2).reshape(B, L, D)
        n3 = self.ln_affine(x, P["blocks.%d.norm3.weight" % i], P["blocks.%d.norm3.bias" % i], eps)
        x = x + self.res(self.cross_attn(i, n3, ctx, cap, capkey, q_frames))
        g = (per_frame(self.norm(x)) * (1 + m4) + m3).reshape(B, L, D)
        f = self.lin(self.gelu_tanh(self.lin(g, "blocks.%d.ffn.0" % i)), "blocks.%d.ffn.2" % i)
        return (per_frame(x) + per_frame(self.res(f)) * m5).reshape(B, L, D)

    def forward(self, x, t, ctx, clip_fea=None, y=None, kv_attend=None, f0=0, cap=None, capkey=""):
        """t [B] (uniform) or [B, F] (per frame). kv_attend(i, k, v) -> (k, v, mask, key_frame_ids)."""
        c, P = self.c, self.P
        if y is not None:
            x = torch.cat([x, y], dim=1)
        B = x.shape[0]
        tok, grid = self.patchify(x)
        F, Hp, Wp = grid
        S = Hp * Wp
        if t.dim() == 1:
            e, e0 = self.embed_time(t)
            e, e0 = e.reshape(B, 1, -1), e0.reshape(B, 1, 6, -1)
        else:
            e, e0 = self.embed_time(t.reshape(-1))
            e, e0 = e.reshape(B, F, -1), e0.reshape(B, F, 6, -1)
        context = self.embed_context(ctx, clip_fea)
        ang = rope_angles(self.d, list(range(f0, f0 + F)), Hp, Wp)
        q_frames = [f0 + n // S for n in range(F * S)]
        if kv_attend is None:
            kv_attend = lambda i, k, v: (k, v, None, q_frames)
        for i in range(c.num_layers):
            tok = self.block(i, tok, e0, context, ang, kv_attend, cap, capkey + "L%d_" % i, q_frames)
        Fe = e.shape[1]
        hm = P["head.modulation"].reshape(1, 1, 2, -1) + e.reshape(B, Fe, 1, -1)
        shift, scale = hm[:, :, 0:1], hm[:, :, 1:2]
        hn = self.norm(tok).reshape(B, Fe, -1, c.dim) * (1 + scale) + shift
        out = self.lin_island(hn.reshape(B, F * S, c.dim), "head.head")
        return self.unpatchify(out, grid)


class WanAutocast(Wan):
    """upstream Wan under amp.autocast(bf16) with f32 parameters (spec 1.10, upstream column), with explicit
    casts: linears take bf16-rounded operands, accumulate in f32 and round once (a GPU GEMM with a bias
    epilogue); attention takes bf16 q/k/v, computes in f32 and rounds its output; norms, modulation, the
    time MLP, RoPE, the residual stream and the head stay f32"""

    LOW = torch.bfloat16

    def lin(self, x, name):
        r = lambda t: t.to(self.LOW).float()
        w = self.P[name + ".weight"]
        return (r(x) @ r(w.reshape(w.shape[0], -1)).t() + r(self.P[name + ".bias"])).to(self.LOW)

    def qk_norm(self, a, w):  # normalised in f32, rounded to a's dtype, times the f32 weight -> f32
        return rms_norm(a.float(), torch.ones_like(w), self.c.eps).to(a.dtype).float() * w

    def attn(self, q, k, v, mask=None):
        r = lambda t: t.to(self.LOW).float()
        return attention(r(q), r(k), r(v), mask).to(self.LOW)

    def norm(self, x):  # f32 LayerNorm rounded to x's dtype (type_as), then .float()
        return layer_norm(x.float(), self.c.eps).to(x.dtype).float()

    def res(self, x):
        return x.float()

    def gelu_tanh(self, x):
        return gelu_tanh(x.float()).to(x.dtype)

    def ln_affine(self, x, w, b, eps):  # norm3 upcasts; autocast runs nn.LayerNorm in f32
        return layer_norm(x.float(), eps, w, b)


class WanSFbf16(Wan):
    """Self-Forcing's bf16 regime (spec 1.10, right column): weights and activations bf16, every PyTorch op
    rounding its result to bf16 (elementwise ops compute in f32 internally); linears accumulate in f32 and
    round once (bias epilogue); norms compute in f32 and round (RMSNorm before and after its weight); the
    sinusoid and RoPE in f64 rounded to bf16; attention on bf16 q/k/v in f32, output rounded"""

    LOW = ACT = torch.bfloat16
    # (torch 1.13's CPU bf16 kernels of silu and friends round differently from its GPU kernels, which compute
    # in f32 and round once; the original ran on GPUs, so unary ops here compute in f32 and round once)

    def __init__(self, c, P):
        super().__init__(c, {k: v.to(self.LOW) for k, v in P.items()})

    def lin(self, x, name):
        return WanAutocast.lin(self, x, name)

    def lin_island(self, x, name):
        return self.lin(x, name)

    def attn(self, q, k, v, mask=None):
        return WanAutocast.attn(self, q, k, v, mask)

    def qk_norm(self, a, w):
        return rms_norm(a.float(), torch.ones(w.shape), self.c.eps).to(self.LOW) * w

    def norm(self, x):
        return layer_norm(x.float(), self.c.eps).to(self.LOW)

    def ln_affine(self, x, w, b, eps):
        return layer_norm(x.float(), eps, w.float(), b.float()).to(self.LOW)

    def gelu_tanh(self, x):
        return gelu_tanh(x.float()).to(self.LOW)

    def forward(self, x, t, ctx, clip_fea=None, y=None, **kw):  # the wrapper casts every input to bf16 (t stays)
        r = lambda v: None if v is None else v.to(self.LOW)
        return super().forward(r(x), t, r(ctx), clip_fea=r(clip_fea), y=r(y), **kw)


# ---------------------------------------------------------------- causal paths (spec section 3)
def block_causal_mask(F, S, nfpb, indep_first, local):
    ends = []
    for f in range(F):
        if indep_first:
            e = 1 if f == 0 else 1 + ((f - 1) // nfpb + 1) * nfpb
        else:
            e = (f // nfpb + 1) * nfpb
        ends.append(e)
    mask = torch.zeros(F * S, F * S, dtype=torch.bool)
    for fq in range(F):
        e = ends[fq]
        lo = 0 if local == -1 else max(0, e - local)
        mask[fq * S:(fq + 1) * S, lo * S:e * S] = True
    return mask


class KVCache:
    """Self-Forcing's per-layer cache bookkeeping (spec 3.4), tracking the frame id of each slot"""

    def __init__(self, c, B, S, frames, local, sink):
        N, d = c.num_heads, c.dim // c.num_heads
        self.S, self.local, self.sink = S, local, sink
        self.Kc = (local if local != -1 else frames) * S
        self.max_attn = self.Kc
        self.k = [torch.zeros(B, self.Kc, N, d) for _ in range(c.num_layers)]
        self.v = [torch.zeros(B, self.Kc, N, d) for _ in range(c.num_layers)]
        self.fid = [[-1] * self.Kc for _ in range(c.num_layers)]
        self.G = [0] * c.num_layers
        self.Lend = [0] * c.num_layers
        self.start = 0

    def attend(self, i, k, v):
        n = k.shape[1]
        cur_start = self.start
        cur_end = cur_start + n
        sink = self.sink * self.S
        G, Lend, Kc = self.G[i], self.Lend[i], self.Kc
        kb, vb, fid = self.k[i], self.v[i], self.fid[i]
        if self.local != -1 and cur_end > G and Lend + n > Kc:
            evict = Lend + n - Kc
            keep = Lend - evict - sink
            kb[:, sink:sink + keep] = kb[:, sink + evict:sink + evict + keep].clone()
            vb[:, sink:sink + keep] = vb[:, sink + evict:sink + evict + keep].clone()
            fid[sink:sink + keep] = fid[sink + evict:sink + evict + keep]
            new_end = Lend + (cur_end - G) - evict
        else:
            new_end = Lend + (cur_end - G)
        new_start = new_end - n
        kb[:, new_start:new_end] = k
        vb[:, new_start:new_end] = v
        fid[new_start:new_end] = [cur_start // self.S + j // self.S for j in range(n)]
        lo = max(0, new_end - self.max_attn)
        self.G[i], self.Lend[i] = cur_end, new_end
        return kb[:, lo:new_end], vb[:, lo:new_end], None, fid[lo:new_end]


# ---------------------------------------------------------------- cases
TINY = dict(model_type="t2v", dim=64, ffn_dim=128, num_heads=2, num_layers=2, in_dim=16, out_dim=16,
            text_dim=32, text_len=16, freq_dim=256, eps=1e-6)
TINY_I2V = dict(TINY, model_type="i2v", in_dim=36, clip_dim=32)


def run_case(case, seed, out):
    """CASE_autocast / CASE_sfbf16: the same case computed in upstream Wan's autocast regime (WanAutocast) or
    Self-Forcing's bf16 regime (WanSFbf16); the weights file stays f32"""
    regime = Wan
    name = case
    for suffix, cls in (("_autocast", WanAutocast), ("_sfbf16", WanSFbf16)):
        if case.endswith(suffix):
            regime, name = cls, case[:-len(suffix)]
    gen = torch.Generator().manual_seed(seed)
    rnd = lambda *s: torch.randn(*s, generator=gen)
    data, calls, meta = {}, [], {}
    cfgd = dict(TINY)
    B, F, H, W = 1, 6, 4, 6
    causal = {}
    if name == "t2v_bidir":
        B = 2
    elif name == "i2v_bidir":
        cfgd = dict(TINY_I2V)
    elif name.startswith("train"):
        causal = dict(num_frame_per_block=3, independent_first_frame=False, local_attn_size=-1, sink_size=0)
        if name == "train_indep":
            F = 7
            causal["independent_first_frame"] = True
        if name == "train_local":
            F = 9
            causal["local_attn_size"] = 5
    elif name.startswith("kv"):
        causal = dict(num_frame_per_block=3, independent_first_frame=False, local_attn_size=-1, sink_size=0)
        if name == "kv_b1":
            F = 7
            causal.update(num_frame_per_block=1, local_attn_size=4, sink_size=1)
        if name == "kv_b2":
            F = 9
            causal.update(num_frame_per_block=3, local_attn_size=5, sink_size=1)
        if name == "kv_b3":  # video extension: the first call starts at frame 5 on an empty cache
            F = 3
        if name == "kv_i2v":
            cfgd = dict(TINY_I2V)
            F = 4
            causal.update(num_frame_per_block=1, local_attn_size=3, sink_size=1, independent_first_frame=True)
    else:
        raise SystemExit("unknown case " + name)
    c = Cfg(cfgd)
    P = make_params(c, gen)
    model = regime(c, P)
    Lt = c.text_len - 5
    ctx = rnd(B, Lt, c.text_dim)
    data["context"] = ctx
    kw = {}
    if c.model_type == "i2v":
        kw["clip_fea"] = rnd(B, 7, c.clip_dim)
        data["clip_fea"] = kw["clip_fea"]
    S = (H // 2) * (W // 2)
    if not causal:
        x = rnd(B, 16, F, H, W)
        t = torch.tensor([937.5, 250.0][:B])
        if c.model_type == "i2v":
            kw["y"] = rnd(B, 20, F, H, W)
            data["y"] = kw["y"]
        cap = Capture()
        o = model.forward(x, t, ctx, cap=cap, **kw)
        data.update(x=x, t=t, out=o)
        calls.append(dict(x="x", t="t", out="out", cap="c0_"))
        for k, v in cap.rec.items():
            for w, a in v.items():
                data["c0_" + k + "_" + w] = a
    elif name.startswith("train"):
        nf, ind = causal["num_frame_per_block"], causal["independent_first_frame"]
        x = rnd(B, 16, F, H, W)
        blocks = [1] + [nf] * ((F - 1) // nf) if ind else [nf] * (F // nf)
        tv = [1000.0, 937.5, 833.25, 625.0, 0.0]
        t = torch.tensor([[tv[bi % 5] for bi, nb in enumerate(blocks) for _ in range(nb)]] * B)
        mask = block_causal_mask(F, S, nf, ind, causal["local_attn_size"])
        q_frames = [n // S for n in range(F * S)]
        cap = Capture()
        o = model.forward(x, t, ctx, kv_attend=lambda i, k, v: (k, v, mask, q_frames), cap=cap, **kw)
        data.update(x=x, t=t, out=o)
        calls.append(dict(x="x", t="t", out="out", cap="c0_"))
        for k, v in cap.rec.items():
            for w, a in v.items():
                data["c0_" + k + "_" + w] = a
    else:
        nf, ind = causal["num_frame_per_block"], causal["independent_first_frame"]
        f_start = 5 if name == "kv_b3" else 0
        kv_frames = F + f_start
        meta["kv_frames"] = kv_frames
        kv = KVCache(c, B, S, kv_frames, causal["local_attn_size"], causal["sink_size"])
        blocks = [1] + [nf] * ((F - 1) // nf) if ind else [nf] * (F // nf)
        steps = [1000.0, 937.5, 833.25]
        start, ci = f_start, 0
        for chunk, nb in enumerate(blocks):
            xc = rnd(B, 16, nb, H, W)
            if c.model_type == "i2v":
                kw["y"] = rnd(B, 20, nb, H, W)
            for si, tau in enumerate(steps + [0.0]):
                tt = torch.full((B, nb), tau)
                kv.start = start * S
                cap = Capture()
                o = model.forward(xc, tt, ctx, kv_attend=kv.attend, f0=start, cap=cap, **kw)
                key = "k%d" % ci
                data[key + "_x"], data[key + "_t"], data[key + "_out"] = xc, tt, o
                if "y" in kw:
                    data[key + "_y"] = kw["y"]
                call = dict(x=key + "_x", t=key + "_t", out=key + "_out", start=start, chunk=chunk,
                            step=si + 1, cap=key + "_c_", **{"pass": "denoise" if tau > 0 else "refresh"})
                if "y" in kw:
                    call["y"] = key + "_y"
                call["global_end"], call["local_end"] = kv.G[0], kv.Lend[0]
                call["key_frames"] = sorted(set(kv.fid[0][:kv.Lend[0]]))
                calls.append(call)
                for k, v in cap.rec.items():
                    for w, a in v.items():
                        data[key + "_c_" + k + "_" + w] = a
                ci += 1
                xc = o * 0.5 + xc * 0.5 if tau > 0 else xc  # a deterministic next input
            start += nb
        for i in range(c.num_layers):
            data["cache_k_%d" % i] = kv.k[i][:, :kv.Lend[i]]
            data["cache_v_%d" % i] = kv.v[i][:, :kv.Lend[i]]
        meta["cache_frames"] = kv.fid[0][:kv.Lend[0]:S]
    os.makedirs(out, exist_ok=True)
    conf = {k: v for k, v in cfgd.items() if k != "clip_dim"}
    conf["_class_name"] = "WanModel"
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(conf, f)
    save_safetensors(os.path.join(out, "diffusion_pytorch_model.safetensors"), P)
    save_safetensors(os.path.join(out, "data.safetensors"), {k: v.float() for k, v in data.items()})
    meta.update(case=case, regime=regime.__name__, B=B, F=F, H=H, W=W, S=S, causal=causal, calls=calls, num_layers=c.num_layers)
    with open(os.path.join(out, "manifest.lua"), "w") as f:
        f.write("return " + to_lua(meta) + "\n")
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(meta, f)


def to_lua(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "{" + ", ".join(to_lua(x) for x in v) + "}"
    if isinstance(v, dict):
        return "{" + ", ".join("[%s] = %s" % (json.dumps(k), to_lua(x)) for k, x in v.items()) + "}"
    raise TypeError(type(v))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("case")
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    cases = a.case.split(",")
    if len(cases) == 1:
        run_case(cases[0], a.seed, a.out)
    else:  # several cases in one interpreter (torch imports once): OUT/CASE each
        for c in cases:
            run_case(c, a.seed, os.path.join(a.out, c))
