# dmd_step_ref.py — our PyTorch transcription of one Self-Forcing DMD generator step and one critic step
# (model/dmd.py generator_loss / critic_loss, model/base.py _run_generator,
# pipeline/self_forcing_training.py inference_with_trajectory, the causal model's KV path) on tiny random
# Wan networks, with PyTorch's own in-place semantics for the KV cache: the exit-step forward writes its
# keys/values into the cache tensor with autograd recording (CopySlices), the no-grad passes overwrite
# the values only, so a later block's loss reaches the earlier block's exit-step K/V. With
# gradient_checkpointing the grad forward does not use the cross-attention cache (K/V recomputed from the
# text context with gradient). Every random draw is recorded (kind, shape, value) for the sfwb test to
# replay through tr.rng.
#
#   /usr/bin/python3 tests/ref/dmd_step_ref.py OUTDIR VARIANT     VARIANT: inplace | inplace_ckpt | detach
#
# OUTDIR/{gen,real,fake}: Wan folders; OUTDIR/data.safetensors: the draws, the embeddings and every parameter
# gradient (gen.<name>, critic.<name>); OUTDIR/manifest.lua: losses, draw kinds and shapes.
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wan_ref  # noqa: E402
from luaout import write_lua  # noqa: E402
from scheduler_ref import grid, nearest  # noqa: E402

torch.set_grad_enabled(True)  # wan_ref turns it off

TINY = dict(model_type="t2v", dim=32, ffn_dim=48, num_heads=2, num_layers=2, in_dim=16, out_dim=16,
            text_dim=8, text_len=4, freq_dim=16, eps=1e-6)
B, C, H, W = 2, 16, 2, 4
NFPB, FRAMES = 3, 6
STEPS = [1000, 750, 500, 250]
GUIDANCE, SCORE_SHIFT = 3.0, 5.0


class Draws:
    """every draw of the step, in order (the sfwb test replays them through tr.rng)"""

    def __init__(self, seed):
        self.g = torch.Generator().manual_seed(seed)
        self.log = []

    def randn(self, *shape):
        t = torch.randn(*shape, generator=self.g)
        self.log.append(("randn", list(shape), t.clone()))
        return t

    def randint(self, lo, hi, shape):
        t = torch.randint(lo, hi, shape, generator=self.g)
        self.log.append(("randint", list(shape), t.clone()))
        return t


class CausalRef(wan_ref.Wan):
    """the causal model's KV-path forward with Self-Forcing's caches"""

    xcache = None  # {layer: (k, v)} as crossattn_cache, or None (not passed)

    def cross_attn(self, i, x, ctx, cap, capkey, q_frames):
        P, N, d = self.P, self.N, self.d
        b = "blocks.%d.cross_attn." % i
        Bx, L, D = x.shape
        q = self.qk_norm(self.lin(x, b + "q"), P[b + "norm_q.weight"]).reshape(Bx, L, N, d)
        xc = self.xcache
        if xc is not None and i in xc:
            k, v = xc[i]
        else:
            k = self.qk_norm(self.lin(ctx, b + "k"), P[b + "norm_k.weight"]).reshape(Bx, -1, N, d)
            v = self.lin(ctx, b + "v").reshape(Bx, -1, N, d)
            if xc is not None:
                xc[i] = (k, v)  # with the graph of the call that filled it, as the original's dict
        return self.lin(self.attn(q, k, v).reshape(Bx, L, D), b + "o")


class KV:
    """the self-attention cache of causal_model.py (no local window in this case)"""

    def __init__(self, c, frames, S, detach):
        N, d = c.num_heads, c.dim // c.num_heads
        self.k = [torch.zeros(B, frames * S, N, d) for _ in range(c.num_layers)]
        self.v = [torch.zeros(B, frames * S, N, d) for _ in range(c.num_layers)]
        self.G, self.Lend = [0] * c.num_layers, [0] * c.num_layers
        self.start, self.detach = 0, detach

    def attend(self, i, k, v):
        n = k.shape[1]
        cur_end = self.start + n
        new_end = self.Lend[i] + cur_end - self.G[i]
        ns = new_end - n
        kb, vb = self.k[i], self.v[i]
        if self.detach:  # sfwb's detach_kv_cache: values only, attend over [detached past | k, v]
            with torch.no_grad():
                kb[:, ns:new_end] = k
                vb[:, ns:new_end] = v
            if torch.is_grad_enabled():
                kk, vv = torch.cat([kb[:, :ns].clone(), k], 1), torch.cat([vb[:, :ns].clone(), v], 1)
            else:
                kk, vv = kb[:, :new_end], vb[:, :new_end]
        else:
            # the original's in-place write: CopySlices under grad mode; the attention sees the values of
            # this moment (flash-attn's flatten copy for B > 1, the checkpoint's recompute otherwise)
            kb[:, ns:new_end] = k
            vb[:, ns:new_end] = v
            kk, vv = kb[:, :new_end].clone(), vb[:, :new_end].clone()
        self.G[i], self.Lend[i] = cur_end, new_end
        return kk, vv, None, None


def write_model(path, P, causal):  # noqa: ARG001 (kept for the reader)
    os.makedirs(path, exist_ok=True)
    cfg = dict(TINY, _class_name="WanModel")  # causal is a load option in sfwb
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(cfg, f)
    wan_ref.save_safetensors(os.path.join(path, "diffusion_pytorch_model.safetensors"), {k: v.detach() for k, v in P.items()})


def main(out, variant):
    ckpt = variant == "inplace_ckpt"
    detach = variant == "detach"
    gen = torch.Generator().manual_seed(21)
    c = wan_ref.Cfg(TINY)
    PG, PR, PF = wan_ref.make_params(c, gen), wan_ref.make_params(c, gen), wan_ref.make_params(c, gen)
    write_model(os.path.join(out, "gen"), PG, True)
    write_model(os.path.join(out, "real"), PR, False)
    write_model(os.path.join(out, "fake"), PF, False)
    G, R, Fk = CausalRef(c, PG), wan_ref.Wan(c, PR), wan_ref.Wan(c, PF)
    ctx = torch.randn(B, 4, 8, generator=gen)
    neg = torch.randn(B, 4, 8, generator=gen)
    dr = Draws(5)

    s5, T5, _ = grid(5.0)
    s8, T8, _ = grid(8.0)
    steps = torch.cat((T5, torch.tensor([0.0])))[1000 - torch.tensor(STEPS)]  # warp_denoising_step
    K = len(steps)
    S = (H // 2) * (W // 2)

    def add_noise(x0, noise, tt):  # the generator's scheduler, x0 / noise [M, C, H, W], tt [M]
        sig = s5[nearest(T5, tt)].reshape(-1, 1, 1, 1)
        return ((1 - sig) * x0 + sig * noise).type_as(noise)

    def to_x0(flow, xt, tt, sg, Tg):  # _convert_flow_pred_to_x0 in float64 on the wrapper's grid
        sd = sg.double()[nearest(Tg.double(), tt.reshape(-1).double())].reshape(-1, 1, 1, 1)
        return (xt.flatten(0, 1).double() - sd * flow.flatten(0, 1).double()).to(flow.dtype).unflatten(0, xt.shape[:2])

    def gen_call(x, tt, kv, xcache, start):  # the causal generator wrapper
        kv.start = start * S
        G.xcache = None if (torch.is_grad_enabled() and ckpt) else xcache
        flow = G.forward(x.permute(0, 2, 1, 3, 4), tt, ctx, kv_attend=kv.attend, f0=start).permute(0, 2, 1, 3, 4)
        return to_x0(flow, x, tt, s5, T5)

    def score_call(model, xt, tt, cond):  # a bidirectional score wrapper: uniform timestep t[:, 0], shift 8
        flow = model.forward(xt.permute(0, 2, 1, 3, 4), tt[:, 0], cond).permute(0, 2, 1, 3, 4)
        return to_x0(flow, xt, tt, s8, T8)

    def run_generator():
        nb = dr.randint(FRAMES // NFPB, FRAMES // NFPB + 1, (1,)).item()
        noise = dr.randn(B, nb * NFPB, C, H, W)
        kv, xcache = KV(c, nb * NFPB, S, detach), {}
        exits = dr.randint(0, K, (nb,)).tolist()
        out = torch.zeros(B, nb * NFPB, C, H, W)
        start = 0
        for blk in range(nb):
            x = noise[:, start:start + NFPB]
            for idx in range(K):
                tt = torch.ones(B, NFPB) * steps[idx]
                if idx != exits[0]:
                    with torch.no_grad():
                        x0 = gen_call(x, tt, kv, xcache, start)
                        x = add_noise(x0.flatten(0, 1), dr.randn(B * NFPB, C, H, W),
                                      steps[idx + 1] * torch.ones(B * NFPB)).unflatten(0, x0.shape[:2])
                else:
                    x0 = gen_call(x, tt, kv, xcache, start)
                    break
            out[:, start:start + NFPB] = x0
            xc = add_noise(x0.flatten(0, 1), dr.randn(B * NFPB, C, H, W), torch.zeros(B * NFPB)).unflatten(0, x0.shape[:2])
            with torch.no_grad():
                gen_call(xc, torch.zeros(B, NFPB), kv, xcache, start)
            start += NFPB
        return out

    def score_t(F):
        t = dr.randint(0, 1000, [B, 1]).repeat(1, F)
        t = SCORE_SHIFT * (t / 1000) / (1 + (SCORE_SHIFT - 1) * (t / 1000)) * 1000
        return t.clamp(20, 980)

    # ---- generator step
    for p in PG.values():
        p.requires_grad_(True)
    x = run_generator()
    Fr = x.shape[1]
    with torch.no_grad():
        t = score_t(Fr)
        n = dr.randn(B, Fr, C, H, W)
        xt = add_noise(x.flatten(0, 1), n.flatten(0, 1), t.flatten(0, 1)).unflatten(0, (B, Fr))
        x0_fake = score_call(Fk, xt, t, ctx)
        x0_c, x0_u = score_call(R, xt, t, ctx), score_call(R, xt, t, neg)
        x0_real = x0_c + (x0_c - x0_u) * GUIDANCE
        g = x0_fake - x0_real
        g = torch.nan_to_num(g / (x - x0_real).abs().mean(dim=[1, 2, 3, 4], keepdim=True))
    gloss = 0.5 * torch.nn.functional.mse_loss(x.double(), (x.double() - g.double()).detach(), reduction="mean")
    gloss.backward()
    n_gen_draws = len(dr.log)

    # ---- critic step
    for p in PG.values():
        p.requires_grad_(False)
    for p in PF.values():
        p.requires_grad_(True)
    with torch.no_grad():
        xg = run_generator()
    t = score_t(xg.shape[1])
    n = dr.randn(B, xg.shape[1], C, H, W)
    xt = add_noise(xg.flatten(0, 1), n.flatten(0, 1), t.flatten(0, 1)).unflatten(0, (B, xg.shape[1]))
    x0p = score_call(Fk, xt, t, ctx)
    sd = s5.double()[nearest(T5.double(), t.flatten().double())].reshape(-1, 1, 1, 1)  # generator grid
    flow = ((xt.flatten(0, 1).double() - x0p.flatten(0, 1).double()) / sd).float()
    closs = torch.mean((flow - (n - xg).flatten(0, 1)) ** 2)
    closs.backward()

    data = {"ctx": ctx, "neg": neg}
    for k, p in PG.items():
        data["gen." + k] = p.grad if p.grad is not None else torch.zeros_like(p)
    for k, p in PF.items():
        data["critic." + k] = p.grad if p.grad is not None else torch.zeros_like(p)
    kinds = []
    for j, (kind, shape, val) in enumerate(dr.log):
        data["draw_%03d" % (j + 1)] = val
        kinds.append({"kind": kind, "shape": shape})
    wan_ref.save_safetensors(os.path.join(out, "data.safetensors"),
                             {k: (v.detach() if v.dtype == torch.int64 else v.detach().float()) for k, v in data.items()})
    write_lua(os.path.join(out, "manifest.lua"), {"generator_loss": gloss.item(), "critic_loss": closs.item(),
                                                 "draws": kinds, "n_gen_draws": n_gen_draws,
                                                 "gen_grad_norm": sum(float((p.grad ** 2).sum()) for p in PG.values()
                                                                      if p.grad is not None) ** 0.5})


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
