# gan_ref.py — our PyTorch transcription of Self-Forcing's GAN objective (model/gan.py generator_loss and
# critic_loss, with the fixes sfwb documents: 4 values from _run_generator, r2_loss zeros when r2_weight is 0) and
# its discriminator (utils/wan_wrapper.py adding_cls_branch, wan/modules/model.py GanAttentionBlock /
# WanGanCrossAttention / RegisterTokens and _forward's classify_mode), on tiny Wan DiTs, with the heads at the
# critic's width and feature blocks given by the test (the original hard-codes 1536 and blocks 13, 21, 29).
# The generator is bidirectional (Self-Forcing-Plus's BidirectionalTrainingPipeline rollout), so one generator
# loss and one critic loss run end to end; every draw is recorded for the sfwb test to replay through tr.rng.
#
#   /usr/bin/python3 tests/ref/gan_ref.py OUTDIR
# OUTDIR/<case>/{gen,fake}: Wan folders; data.safetensors: heads (h.*), inputs, draws, losses, gradients of the
# generator (g.*, from the generator loss) and of the critic (cg.*, from the critic loss); manifest.lua.
import json
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wan_ref as W  # noqa: E402
from objectives_ref import Draws, Wrapper  # noqa: E402

torch.set_grad_enabled(True)
torch.set_num_threads(1)

GEN = dict(model_type="t2v", dim=32, ffn_dim=48, num_heads=2, num_layers=2, in_dim=16, out_dim=16,
           text_dim=8, text_len=6, freq_dim=16, eps=1e-6)
CRITIC = dict(GEN, num_layers=3)


def head_params(D, FF, nc, concat, gen):
    r = lambda *s, scale=1.0, base=0.0: (base + scale * torch.randn(*s, generator=gen)).float()
    In = 3 * D + (D if concat else 0)
    P = {"_cls_pred_branch.0.weight": r(In, scale=0.1, base=1.0), "_cls_pred_branch.0.bias": r(In, scale=0.1),
         "_cls_pred_branch.1.weight": r(D, In, scale=1 / math.sqrt(In)), "_cls_pred_branch.1.bias": r(D, scale=0.1),
         "_cls_pred_branch.3.weight": r(nc, D, scale=1 / math.sqrt(D)), "_cls_pred_branch.3.bias": r(nc, scale=0.1),
         "_register_tokens.register_tokens": r(3, D), "_register_tokens.rms_norm.weight": r(D, scale=0.1, base=1.0)}
    for j in range(3):
        b = "_gan_ca_blocks.%d." % j
        for l in "qkvo":
            P[b + "cross_attn.%s.weight" % l] = r(D, D, scale=1 / math.sqrt(D))
            P[b + "cross_attn.%s.bias" % l] = r(D, scale=0.1)
        P[b + "cross_attn.norm_q.weight"] = r(D, scale=0.1, base=1.0)
        P[b + "cross_attn.norm_k.weight"] = r(D, scale=0.1, base=1.0)
        P[b + "norm3.weight"] = r(D, scale=0.1, base=1.0)
        P[b + "norm3.bias"] = r(D, scale=0.1)
        P[b + "ffn.0.weight"] = r(FF, D, scale=1 / math.sqrt(D))
        P[b + "ffn.0.bias"] = r(FF, scale=0.1)
        P[b + "ffn.2.weight"] = r(D, FF, scale=1 / math.sqrt(FF))
        P[b + "ffn.2.bias"] = r(D, scale=0.1)
    return P


def rms(x, w, eps=1e-6):  # WanRMSNorm
    return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps) * w


def gan_block(H, j, x, token, heads):
    """GanAttentionBlock: token + WanGanCrossAttention(norm3(x), token), then + ffn(norm2(.))"""
    b = "_gan_ca_blocks.%d." % j
    B, L, D = x.shape
    d = D // heads
    n3 = W.layer_norm(x, 1e-6, H[b + "norm3.weight"], H[b + "norm3.bias"])
    q = rms(W.lin(token, H, b + "cross_attn.q"), H[b + "cross_attn.norm_q.weight"]).view(B, 1, -1, d)
    k = rms(W.lin(n3, H, b + "cross_attn.k"), H[b + "cross_attn.norm_k.weight"]).view(B, -1, heads, d)
    v = W.lin(n3, H, b + "cross_attn.v").view(B, -1, heads, d)
    a = W.attention(q, k, v).flatten(2)
    t2 = token + W.lin(a, H, b + "cross_attn.o")
    return W.lin(W.gelu_tanh(W.lin(W.layer_norm(t2, 1e-6), H, b + "ffn.0")), H, b + "ffn.2") + t2


def classify(m, H, x, t, ctx, blocks, concat):
    """WanModel._forward(classify_mode=True) logits; x [B, F, C, H, W] (pipeline layout), t [B, F] -> t[:, 0]"""
    c = m.c
    xm = x.permute(0, 2, 1, 3, 4)
    B = xm.shape[0]
    tok, grid = m.patchify(xm)
    F, Hp, Wp = grid
    S = Hp * Wp
    e, e0 = m.embed_time(t[:, 0])
    e0 = e0.reshape(B, 1, 6, -1)
    context = m.embed_context(ctx, None)
    ang = W.rope_angles(m.d, list(range(F)), Hp, Wp)
    qf = [n // S for n in range(F * S)]
    feats = []
    for i in range(c.num_layers):
        tok = m.block(i, tok, e0, context, ang, lambda i, k, v: (k, v, None, qf), None, "", qf)
        feats.append(tok)
    regs = rms(H["_register_tokens.register_tokens"], H["_register_tokens.rms_norm.weight"])
    outs = [gan_block(H, j, feats[blk], regs[j:j + 1].unsqueeze(0).expand(B, 1, -1), c.num_heads)
            for j, blk in enumerate(blocks)]
    f = torch.cat(outs, dim=1)
    if concat:
        f = torch.cat([f, 10 * e[:, None, :]], dim=1)
    f = f.view(B, -1)
    h = W.layer_norm(f, 1e-5, H["_cls_pred_branch.0.weight"], H["_cls_pred_branch.0.bias"])
    return W.lin(torch.nn.functional.silu(W.lin(h, H, "_cls_pred_branch.1")), H, "_cls_pred_branch.3")


def rollout(G, d, ctx, steps, shape, nfpb, force_exit):
    """BidirectionalTrainingPipeline (as objectives_ref.dmd_bidir_loss): x0 of the exit step, with its graph"""
    B, F = shape[:2]
    nb = d.randint(F // nfpb, F // nfpb + 1, [1]).item()
    noise = d.randn(B, nb * nfpb, *shape[2:])
    ex_t = d.randint(0, len(steps), [1])
    ex_t.fill_(force_exit)  # the recorded draw is replaced in place, so the replay sees this value
    x = noise
    for k in range(force_exit + 1):
        t = torch.ones(B, F, dtype=torch.int64) * steps[k]
        if k < force_exit:
            with torch.no_grad():
                _, x0 = G(x, t, ctx)
                nt = steps[k + 1] * torch.ones(B, F, dtype=torch.long)
                x = G.add_noise(x0.flatten(0, 1), d.randn(B * F, *shape[2:]), nt.flatten(0, 1)).unflatten(0, (B, F))
        else:
            _, x0 = G(x, t, ctx)
    return x0


def critic_t(d, B, F, shift):
    t = d.randint(0, 1000, [B, 1]).repeat(1, F).float()  # ts_schedule false: [min_score_timestep, 1000)
    if shift > 1:
        t = shift * (t / 1000) / (1 + (shift - 1) * (t / 1000)) * 1000
    return t.clamp(20, 980)


def noised(G, x, n, t):
    B, F = x.shape[:2]
    return G.add_noise(x.flatten(0, 1), n.flatten(0, 1), t.flatten(0, 1)).unflatten(0, (B, F))


softplus = torch.nn.functional.softplus

CASES = {
    "gan": dict(B=1, F=3, nfpb=3, num_class=1, relativistic=False, concat=False, blocks=[2, 0, 1], r1=0.5, r2=0.25,
                r1_sigma=0.05, r2_sigma=0.1, gw=0.7, dw=0.3, shift=5.0, critic_shift=3.0, exit=1),
    "gan_rel": dict(B=2, F=3, nfpb=3, num_class=2, relativistic=True, concat=True, blocks=[1, 1, 2], r1=0.0, r2=0.0,
                    r1_sigma=0.01, r2_sigma=0.01, gw=0.01, dw=0.01, shift=5.0, critic_shift=1.0, exit=0),
}


def run(name, cs, gen, out):
    cg, cc = W.Cfg(GEN), W.Cfg(CRITIC)
    PG, PF = W.make_params(cg, gen), W.make_params(cc, gen)
    H = head_params(cc.dim, cc.ffn_dim, cs["num_class"], cs["concat"], gen)
    G = Wrapper(W.Wan(cg, PG), cs["shift"], False, cs["nfpb"], False)
    Fk = W.Wan(cc, PF)
    B, F = cs["B"], cs["F"]
    shape = (B, F, 16, 4, 4)
    ctx = torch.randn(B, 5, 8, generator=gen)
    clean = torch.randn(*shape, generator=gen)
    steps = torch.tensor([1000, 750, 500, 250], dtype=torch.long)
    ext = torch.cat((G.timesteps, torch.tensor([0], dtype=torch.float32)))
    steps = ext[1000 - steps]  # warp_denoising_step
    d = Draws(gen)
    disc = lambda x, t, c: classify(Fk, H, x, t, c, cs["blocks"], cs["concat"])

    # generator loss: the generator trains, the critic is frozen (trainer/gan.py)
    for p in PG.values():
        p.requires_grad_(True)
    x0 = rollout(G, d, ctx, steps, shape, cs["nfpb"], cs["exit"])
    t = critic_t(d, B, F, cs["critic_shift"])
    fake = noised(G, x0, d.randn(*x0.shape), t)
    real = noised(G, clean.clone(), d.randn(*clean.shape), t)
    logit = disc(torch.cat([fake, real]), torch.cat([t, t]), torch.cat([ctx, ctx]))
    lf, lr = logit.chunk(2, dim=0)
    gl = softplus(-(lf - lr if cs["relativistic"] else lf).float()).mean() * cs["gw"]
    gl.backward()
    data = {"g." + k: p.grad for k, p in PG.items()}
    data["gen_timestep"] = t
    for p in PG.values():
        p.requires_grad_(False)

    # critic loss: the critic (body and heads) trains on a fresh, gradient-free rollout
    for p in list(PF.values()) + list(H.values()):
        p.requires_grad_(True)
    with torch.no_grad():
        x0 = rollout(G, d, ctx, steps, shape, cs["nfpb"], cs["exit"])
    t = critic_t(d, B, F, cs["critic_shift"])
    n = d.randn(*x0.shape)
    fake, real = noised(G, x0, n, t), noised(G, clean, n, t)
    logit = disc(torch.cat([fake, real]), torch.cat([t, t]), torch.cat([ctx, ctx]))
    lf, lr = logit.chunk(2, dim=0)
    if cs["relativistic"]:
        dl = softplus(-(lr - lf).float()).mean()
    else:
        dl = softplus(-lr.float()).mean() + softplus(lf.float()).mean()
    dl = dl * cs["dw"]
    r1 = r2 = torch.zeros_like(dl)
    if cs["r1"] > 0:
        lp = disc(real + cs["r1_sigma"] * d.randn(*real.shape), t, ctx)
        r1 = cs["r1"] * torch.mean(((lp - lr) / cs["r1_sigma"]) ** 2)
    if cs["r2"] > 0:
        lp = disc(fake + cs["r2_sigma"] * d.randn(*fake.shape), t, ctx)
        r2 = cs["r2"] * torch.mean(((lp - lf) / cs["r2_sigma"]) ** 2)
    total = dl + 0.5 * (r1 + r2)
    total.backward()
    for k, p in list(PF.items()) + list(H.items()):
        data["cg." + k] = p.grad if p.grad is not None else torch.zeros_like(p)
    data.update(context=ctx, clean_latent=clean, critic_timestep=t, real_logit=lr.detach(), fake_logit=lf.detach())
    for k, v in H.items():
        data["h." + k] = v
    draws = []
    for i, (kind, shp, rng, v) in enumerate(d.log):
        data["draw_%d" % (i + 1)] = v.float() if kind == "randn" else v.double()
        draws.append(dict(kind=kind, shape=shp, range=rng or []))
    dd = os.path.join(out, name)
    for sub, cfg, PP in (("gen", GEN, PG), ("fake", CRITIC, PF)):
        os.makedirs(os.path.join(dd, sub), exist_ok=True)
        with open(os.path.join(dd, sub, "config.json"), "w") as f:
            json.dump(dict(cfg, _class_name="WanModel"), f)
        W.save_safetensors(os.path.join(dd, sub, "diffusion_pytorch_model.safetensors"),
                           {k: v.detach() for k, v in PP.items()})
    W.save_safetensors(os.path.join(dd, "data.safetensors"),
                       {k: v.detach().float().contiguous() if v.dtype != torch.float64 else v.detach().contiguous()
                        for k, v in data.items()})
    man = dict(cs, draws=draws, generator_loss=gl.item(), critic_loss=total.item(), gan_D_loss=dl.item(),
               r1_loss=r1.item(), r2_loss=r2.item())
    with open(os.path.join(dd, "manifest.lua"), "w") as f:
        f.write("return " + W.to_lua(man) + "\n")


def main(out):
    gen = torch.Generator().manual_seed(41)
    for name, cs in CASES.items():
        run(name, cs, gen, out)


if __name__ == "__main__":
    main(sys.argv[1])
