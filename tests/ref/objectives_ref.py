# objectives_ref.py — our PyTorch transcription of Self-Forcing's one-network objectives on tiny Wan DiTs:
# CausalDiffusion.generator_loss (model/diffusion.py: per-block timesteps, flow target, per-frame MSE times
# the grid's training weight, noise augmentation draws) and ODERegression.generator_loss
# (model/ode_regression.py: per-block trajectory rows, x0 regression on frames with t != 0), each with
# model/base.py's _get_timestep. Every random draw is recorded in order (kind, shape, range, value) so the
# sfwb trainer can replay them through tr.rng; the loss and every parameter gradient are written.
#
#   /usr/bin/python3 tests/ref/objectives_ref.py OUTDIR
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wan_ref as W  # noqa: E402
from scheduler_ref import grid, nearest  # noqa: E402

torch.set_grad_enabled(True)
torch.set_num_threads(1)

TINY = dict(model_type="t2v", dim=32, ffn_dim=48, num_heads=2, num_layers=2, in_dim=16, out_dim=16,
            text_dim=8, text_len=6, freq_dim=16, eps=1e-6)


class Draws:
    def __init__(self, gen):
        self.gen, self.log = gen, []

    def randn(self, *shape):
        v = torch.randn(*shape, generator=self.gen)
        self.log.append(("randn", list(shape), None, v))
        return v

    def randint(self, lo, hi, shape):
        v = torch.randint(lo, hi, shape, generator=self.gen, dtype=torch.long)
        self.log.append(("randint", list(shape), [lo, hi], v))
        return v


def get_timestep(d, lo, hi, B, F, nfpb, indep, uniform):
    if uniform:
        return d.randint(lo, hi, [B, 1]).repeat(1, F)
    t = d.randint(lo, hi, [B, F])
    if indep:
        rest = t[:, 1:].reshape(B, -1, nfpb)
        rest[:, :, 1:] = rest[:, :, 0:1]
        t = torch.cat([t[:, 0:1], rest.reshape(B, -1)], dim=1)
    else:
        t = t.reshape(B, -1, nfpb)
        t[:, :, 1:] = t[:, :, 0:1]
        t = t.reshape(B, -1)
    return t


def teacher_forcing_mask(F, S, nfpb):
    """CausalWanModel._prepare_teacher_forcing_mask as a dense [2L, 2L] bool (True = visible), before padding"""
    L, bs = F * S, nfpb * S
    total = 2 * L
    context_ends = torch.zeros(total, dtype=torch.long)
    nn_starts, nn_ends = torch.zeros(total, dtype=torch.long), torch.zeros(total, dtype=torch.long)
    nc_starts, nc_ends = torch.zeros(total, dtype=torch.long), torch.zeros(total, dtype=torch.long)
    for start in range(0, L, bs):
        context_ends[start:start + bs] = start + bs
    for b, start in enumerate(range(L, total, bs)):
        nn_starts[start:start + bs] = start
        nn_ends[start:start + bs] = start + bs
        nc_ends[start:start + bs] = b * bs
    q = torch.arange(total).reshape(-1, 1)
    kv = torch.arange(total).reshape(1, -1)
    clean = (q < L) & (kv < context_ends[q])
    c1 = (kv < nn_ends[q]) & (kv >= nn_starts[q])
    c2 = (kv < nc_ends[q]) & (kv >= nc_starts[q])
    noise = (q >= L) & (c1 | c2)
    return (q == kv) | clean | noise


def tf_forward(m, x, clean_x, t, aug_t, ctx, nfpb):
    """CausalWanModel._forward_train with clean_x: [clean | noisy] tokens, time embeddings of aug_t (zeros when
    None) then t, the same RoPE positions for both halves, the teacher-forcing mask; the head on the noisy half"""
    B = x.shape[0]
    tok_n, grid = m.patchify(x)
    tok_c, _ = m.patchify(clean_x)
    F, Hp, Wp = grid
    S = Hp * Wp
    e, e0 = m.embed_time(t.reshape(-1))
    e, e0 = e.reshape(B, F, -1), e0.reshape(B, F, 6, -1)
    if aug_t is None:
        aug_t = torch.zeros_like(t)
    _, e0c = m.embed_time(aug_t.reshape(-1))
    e0 = torch.cat([e0c.reshape(B, F, 6, -1), e0], dim=1)
    tok = torch.cat([tok_c, tok_n], dim=1)
    context = m.embed_context(ctx, None)
    ang = W.rope_angles(m.d, list(range(F)), Hp, Wp)
    ang = torch.cat([ang, ang], dim=0)
    mask = teacher_forcing_mask(F, S, nfpb)
    qf = [n // S for n in range(2 * F * S)]
    for i in range(m.c.num_layers):
        tok = m.block(i, tok, e0, context, ang, lambda i, k, v: (k, v, mask, qf), None, "", qf)
    tok = tok[:, F * S:]
    hm = m.P["head.modulation"].reshape(1, 1, 2, -1) + e.reshape(B, F, 1, -1)
    shift, scale = hm[:, :, 0:1], hm[:, :, 1:2]
    hn = m.norm(tok).reshape(B, F, -1, m.c.dim) * (1 + scale) + shift
    return m.unpatchify(m.lin_island(hn.reshape(B, F * S, m.c.dim), "head.head"), grid)


class Wrapper:
    """WanDiffusionWrapper: [B, F, C, H, W] in, flow and x0 (float64 conversion on its grid) out"""

    def __init__(self, model, shift, causal, nfpb, indep):
        self.m, self.causal, self.nfpb, self.indep = model, causal, nfpb, indep
        self.sigmas, self.timesteps, self.weights = grid(shift)

    def __call__(self, x, t, ctx, clean_x=None, aug_t=None):
        B, F, C, H, Wd = x.shape
        xm = x.permute(0, 2, 1, 3, 4)
        if clean_x is not None:
            out = tf_forward(self.m, xm, clean_x.permute(0, 2, 1, 3, 4), t, aug_t, ctx, self.nfpb)
        elif self.causal:
            S = (H // 2) * (Wd // 2)
            mask = W.block_causal_mask(F, S, self.nfpb, self.indep, -1)
            qf = [n // S for n in range(F * S)]
            out = self.m.forward(xm, t, ctx, kv_attend=lambda i, k, v: (k, v, mask, qf))
        else:
            out = self.m.forward(xm, t[:, 0], ctx)
        flow = out.permute(0, 2, 1, 3, 4)
        idx = nearest(self.timesteps, t.flatten().float())
        sig = self.sigmas.double()[idx].reshape(-1, 1, 1, 1)
        x0 = (x.flatten(0, 1).double() - sig * flow.flatten(0, 1).double()).to(flow.dtype).unflatten(0, (B, F))
        return flow, x0

    def add_noise(self, x, n, t):  # x, n [N, ...], t [N]
        sig = self.sigmas[nearest(self.timesteps, t.float())].reshape(-1, *([1] * (x.dim() - 1)))
        return (1 - sig) * x + sig * n

    def training_weight(self, t):
        return self.weights[nearest(self.timesteps, t.flatten().float())]


def diffusion_loss(G, d, clean, ctx, nfpb, indep, nam, uniform, tf=False):
    noise = d.randn(*clean.shape)
    B, F = clean.shape[:2]
    index = get_timestep(d, 0, 1000, B, F, nfpb, indep, uniform)
    t = G.timesteps[index]
    noisy = G.add_noise(clean.flatten(0, 1), noise.flatten(0, 1), t.flatten(0, 1)).unflatten(0, (B, F))
    target = noise - clean
    clean_aug, t_aug = clean, None
    if nam > 0:
        ia = get_timestep(d, 0, nam, B, F, nfpb, indep, uniform)
        t_aug = G.timesteps[ia]
        clean_aug = G.add_noise(clean.flatten(0, 1), noise.flatten(0, 1), t_aug.flatten(0, 1)).unflatten(0, (B, F))
    if tf:  # teacher forcing: the clean (augmented) context runs beside the noisy sequence
        flow, x0 = G(noisy, t, ctx, clean_x=clean_aug, aug_t=t_aug)
    else:
        flow, x0 = G(noisy, t, ctx)
    loss = torch.nn.functional.mse_loss(flow.float(), target.float(), reduction="none").mean(dim=(2, 3, 4))
    loss = loss * G.training_weight(t).unflatten(0, (B, F))
    return loss.mean(), t


def ode_loss(G, d, ode, ctx, steps, nfpb, indep, i2v):
    B, K, F, C, H, Wd = ode.shape
    target = ode[:, -1]
    with torch.no_grad():
        index = get_timestep(d, 0, len(steps), B, F, nfpb, indep, False)
        if i2v:
            index[:, 0] = len(steps) - 1
        noisy = torch.gather(ode, dim=1, index=index.reshape(B, 1, F, 1, 1, 1).expand(-1, -1, -1, C, H, Wd)).squeeze(1)
        t = steps[index]
    _, pred = G(noisy, t, ctx)
    mask = t != 0
    loss = torch.nn.functional.mse_loss(pred[mask], target[mask], reduction="mean")
    return loss, t


def causvid_losses(G, R, Fk, PF, d, clean, ctx, neg, steps, nfpb, indep, score_shift, g, tf=False):
    """model/causvid.py: generator loss (backward simulation, one forward, DMD loss) and critic loss"""
    B, F = clean.shape[:2]
    s8, T8, _ = grid(8.0)

    def run_generator():
        sim = []
        for tv in steps:
            n = d.randn(*clean.shape)
            if tv != 0:
                tt = torch.full((B * F,), float(tv))
                sim.append(G.add_noise(clean.flatten(0, 1), n.flatten(0, 1), tt).unflatten(0, (B, F)))
            else:
                sim.append(clean)
        sim = torch.stack(sim, dim=1)
        index = get_timestep(d, 0, len(steps), B, F, nfpb, indep, False)
        noisy = torch.gather(sim, dim=1, index=index.reshape(B, 1, F, 1, 1, 1).expand(-1, -1, -1, *clean.shape[2:])).squeeze(1)
        t = steps[index]
        _, x0 = G(noisy, t, ctx, clean_x=clean if tf else None)  # teacher forcing: the data as clean context
        return x0

    def score_t():
        t = get_timestep(d, 0, 1000, B, F, nfpb, indep, True).float()
        t = score_shift * (t / 1000) / (1 + (score_shift - 1) * (t / 1000)) * 1000
        return t.clamp(20, 980)

    def score_x0(model, xt, tt, cond):
        flow = model.forward(xt.permute(0, 2, 1, 3, 4), tt[:, 0], cond).permute(0, 2, 1, 3, 4)
        sd = s8.double()[nearest(T8.double(), tt.reshape(-1).double())].reshape(B, F, 1, 1, 1)
        return (xt.double() - sd * flow.double()).float()

    x = run_generator()
    with torch.no_grad():
        t = score_t()
        n = d.randn(*x.shape)
        xt = G.add_noise(x.flatten(0, 1), n.flatten(0, 1), t.flatten(0, 1)).unflatten(0, (B, F))
        fake = score_x0(Fk, xt, t, ctx)
        rc, ru = score_x0(R, xt, t, ctx), score_x0(R, xt, t, neg)
        real = rc + (rc - ru) * g
        grad = (fake - real) / torch.abs(x - real).mean(dim=[1, 2, 3, 4], keepdim=True)
        grad = torch.nan_to_num(grad)
    gloss = 0.5 * torch.nn.functional.mse_loss(x.double(), (x.double() - grad.double()).detach(), reduction="mean")
    gloss.backward()
    for p in PF.values():
        p.grad = None
    with torch.no_grad():
        xg = run_generator()
    tc = score_t()
    nc = d.randn(*xg.shape)
    xtc = G.add_noise(xg.flatten(0, 1), nc.flatten(0, 1), tc.flatten(0, 1)).unflatten(0, (B, F))
    x0p = score_x0(Fk, xtc, tc, ctx)
    sig = G.sigmas.double()[nearest(G.timesteps, tc.flatten().float())].reshape(-1, 1, 1, 1)
    flow = ((xtc.flatten(0, 1).double() - x0p.flatten(0, 1).double()) / sig).float()
    closs = torch.mean((flow - (nc.flatten(0, 1) - xg.flatten(0, 1))) ** 2)
    closs.backward()
    return gloss, closs, t, tc


def dmd_bidir_loss(G, R, Fk, d, ctx, neg, steps, shape, nfpb, score_shift, g, force_exit=None):
    """Self-Forcing-Plus: _run_generator with BidirectionalTrainingPipeline, then model/dmd.py's loss"""
    B, F = shape[:2]
    s8, T8, _ = grid(8.0)
    nb = d.randint(F // nfpb, F // nfpb + 1, [1]).item()      # min = max = num_training_frames here
    noise = d.randn(B, nb * nfpb, *shape[2:])
    K = len(steps)
    ex_t = d.randint(0, K, [1])
    if force_exit is not None:   # the recorded draw is replaced in place, so the replay sees this value
        ex_t.fill_(force_exit)
    ex = ex_t.item()
    x = noise
    for k in range(ex + 1):
        t = torch.ones(B, F, dtype=torch.int64) * steps[k]
        if k < ex:
            with torch.no_grad():
                _, x0 = G(x, t, ctx)
                nt = steps[k + 1] * torch.ones(B, F, dtype=torch.long)
                x = G.add_noise(x0.flatten(0, 1), d.randn(B * F, *shape[2:]), nt.flatten(0, 1)).unflatten(0, (B, F))
        else:
            _, x0 = G(x, t, ctx)
    with torch.no_grad():
        t = get_timestep(d, 0, 1000, B, F, nfpb, False, True).float()   # ts_schedule false: [min_score_timestep, 1000)
        t = score_shift * (t / 1000) / (1 + (score_shift - 1) * (t / 1000)) * 1000
        t = t.clamp(20, 980)
        n = d.randn(*x0.shape)
        xt = G.add_noise(x0.flatten(0, 1), n.flatten(0, 1), t.flatten(0, 1)).unflatten(0, (B, F))

        def score_x0(model, cond):
            flow = model.forward(xt.permute(0, 2, 1, 3, 4), t[:, 0], cond).permute(0, 2, 1, 3, 4)
            sd = s8.double()[nearest(T8.double(), t.reshape(-1).double())].reshape(B, F, 1, 1, 1)
            return (xt.double() - sd * flow.double()).float()

        fake = score_x0(Fk, ctx)
        rc, ru = score_x0(R, ctx), score_x0(R, neg)
        real = rc + (rc - ru) * g
        grad = torch.nan_to_num((fake - real) / torch.abs(x0 - real).mean(dim=[1, 2, 3, 4], keepdim=True))
    loss = 0.5 * torch.nn.functional.mse_loss(x0.double(), (x0.double() - grad.double()).detach(), reduction="mean")
    return loss, t, ex


CASES = {
    "diff_causal": dict(kind="diffusion", causal=True, B=1, F=4, nfpb=2, indep=False, nam=0, shift=5.0),
    "diff_aug_indep": dict(kind="diffusion", causal=True, B=2, F=3, nfpb=2, indep=True, nam=200, shift=5.0),
    "diff_tf": dict(kind="diffusion", causal=True, B=2, F=4, nfpb=2, indep=False, nam=0, shift=5.0, tf=True),
    "diff_tf_aug": dict(kind="diffusion", causal=True, B=1, F=3, nfpb=1, indep=False, nam=300, shift=5.0, tf=True),
    "diff_bidir": dict(kind="diffusion", causal=False, B=2, F=2, nfpb=1, indep=False, nam=0, shift=8.0),
    "ode_causal": dict(kind="ode", causal=True, B=2, F=4, nfpb=2, indep=False, shift=5.0, i2v=False,
                       steps=[1000, 750, 500, 0], warp=True),
    "causvid": dict(kind="causvid", causal=True, B=1, F=4, nfpb=2, indep=False, shift=5.0, score_shift=5.0, g=3.0,
                    steps=[1000, 750, 500, 250, 0], warp=True),
    "dmd_bidir": dict(kind="dmd_bidir", causal=False, B=1, F=3, nfpb=3, indep=False, shift=5.0, score_shift=5.0,
                      g=3.0, steps=[1000, 750, 500, 250], warp=True, force_exit=0),
    "dmd_bidir_exit2": dict(kind="dmd_bidir", causal=False, B=1, F=3, nfpb=3, indep=False, shift=5.0, score_shift=5.0,
                            g=3.0, steps=[1000, 750, 500, 250], warp=True, force_exit=2),
    "ode_i2v": dict(kind="ode", causal=True, B=1, F=3, nfpb=2, indep=True, shift=5.0, i2v=True,
                    steps=[1000, 500, 250, 0], warp=False),
    "causvid_tf": dict(kind="causvid", causal=True, B=1, F=4, nfpb=2, indep=False, shift=5.0, score_shift=5.0, g=3.0,
                       steps=[1000, 750, 500, 250, 0], warp=True, tf=True),
}


def run(name, cs, gen, out):
    c = W.Cfg(TINY)
    P = W.make_params(c, gen)
    for p in P.values():
        p.requires_grad_(True)
    G = Wrapper(W.Wan(c, P), cs["shift"], cs["causal"], cs["nfpb"], cs["indep"])
    B, F = cs["B"], cs["F"]
    ctx = torch.randn(B, 5, c.text_dim, generator=gen)
    d = Draws(gen)
    data = dict(context=ctx)
    if cs["kind"] in ("causvid", "dmd_bidir"):
        PR, PF = W.make_params(c, gen), W.make_params(c, gen)
        for p in PF.values():
            p.requires_grad_(True)
        R, Fk = W.Wan(c, PR), W.Wan(c, PF)
        clean = torch.randn(B, F, 16, 4, 4, generator=gen)
        neg = torch.randn(B, 5, c.text_dim, generator=gen)
        data.update(clean_latent=clean, negative=neg)
        steps = torch.tensor(cs["steps"], dtype=torch.long)
        if cs["warp"]:
            ext = torch.cat((G.timesteps, torch.tensor([0], dtype=torch.float32)))
            steps = ext[1000 - steps]
        if cs["kind"] == "causvid":
            gloss, closs, t, tc = causvid_losses(G, R, Fk, PF, d, clean, ctx, neg, steps, cs["nfpb"], cs["indep"],
                                                 cs["score_shift"], cs["g"], cs.get("tf", False))
            data["critic_loss"] = closs.detach().reshape(1)
            data["critic_timestep"] = tc.float()
        else:
            gloss, t, ex = dmd_bidir_loss(G, R, Fk, d, ctx, neg, steps, (B, F, 16, 4, 4), cs["nfpb"],
                                          cs["score_shift"], cs["g"], cs.get("force_exit"))
            gloss.backward()
            cs = dict(cs, exit=ex)
        data["loss"] = gloss.detach().reshape(1).float()
        data["timestep"] = t.float()
        for k, p in PF.items():
            if p.grad is not None:
                data["cg." + k] = p.grad
        d_ = os.path.join(out, name)
        for sub, PP in (("real", PR), ("fake", PF)):
            os.makedirs(os.path.join(d_, sub), exist_ok=True)
            with open(os.path.join(d_, sub, "config.json"), "w") as f:
                json.dump(dict(TINY, _class_name="WanModel"), f)
            W.save_safetensors(os.path.join(d_, sub, "diffusion_pytorch_model.safetensors"),
                               {k: v.detach() for k, v in PP.items()})
        loss = None
    elif cs["kind"] == "diffusion":
        clean = torch.randn(B, F, 16, 4, 4, generator=gen)
        data["clean_latent"] = clean
        loss, t = diffusion_loss(G, d, clean, ctx, cs["nfpb"], cs["indep"], cs["nam"], not cs["causal"],
                                 cs.get("tf", False))
    else:
        K = len(cs["steps"])
        ode = torch.randn(B, K, F, 16, 4, 4, generator=gen)
        data["ode_latent"] = ode
        steps = torch.tensor(cs["steps"], dtype=torch.long)
        if cs["warp"]:
            ext = torch.cat((G.timesteps, torch.tensor([0], dtype=torch.float32)))
            steps = ext[1000 - steps]
        loss, t = ode_loss(G, d, ode, ctx, steps, cs["nfpb"], cs["indep"], cs["i2v"])
    if loss is not None:
        loss.backward()
        data["loss"] = loss.detach().reshape(1)
        data["timestep"] = t.float()
    draws = []
    for i, (kind, shape, rng, v) in enumerate(d.log):
        data["draw_%d" % (i + 1)] = v.float() if kind == "randn" else v.double()
        draws.append(dict(kind=kind, shape=shape, range=rng or []))
    for k, p in P.items():
        data["g." + k] = p.grad
    d_ = os.path.join(out, name)
    os.makedirs(d_, exist_ok=True)
    with open(os.path.join(d_, "config.json"), "w") as f:
        json.dump(dict(TINY, _class_name="WanModel"), f)
    W.save_safetensors(os.path.join(d_, "diffusion_pytorch_model.safetensors"), {k: v.detach() for k, v in P.items()})
    W.save_safetensors(os.path.join(d_, "data.safetensors"), {k: v.detach().contiguous() for k, v in data.items()})
    with open(os.path.join(d_, "manifest.lua"), "w") as f:
        f.write("return " + W.to_lua(dict(cs, draws=draws)) + "\n")


def main(out):
    gen = torch.Generator().manual_seed(23)
    for name, cs in CASES.items():
        run(name, cs, gen, out)


if __name__ == "__main__":
    main(sys.argv[1])
