# multistep_ref.py — our PyTorch/numpy transcription of the multi-step samplers the originals' diffusion
# pipelines use (Wan's FlowUniPCMultistepScheduler and FlowDPMSolverMultistepScheduler as Self-Forcing's
# Causal/BidirectionalDiffusionInferencePipeline build them: class shift 1, sampling shift in set_timesteps,
# int64 timesteps), and of those two pipelines (classifier-free guidance on the flow, two KV caches, a fresh
# scheduler per block, the clean context pass at t = 0), driving the tiny DiT of wan_ref.py.
#
#   /usr/bin/python3 tests/ref/multistep_ref.py OUTDIR
# writes OUTDIR/sched.lua (grids and step sequences), OUTDIR/<case>/{config.json, weights, data.safetensors,
# manifest.lua} for the pipeline cases.
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from wan_ref import TINY, Cfg, KVCache, Wan, make_params, save_safetensors, to_lua  # noqa: E402
from scheduler_ref import grid, nearest  # noqa: E402
from pipeline_ref import model_call  # noqa: E402

torch.set_grad_enabled(False)
torch.set_num_threads(1)


def lam(sig):
    a = 1 - sig
    return torch.log(a) - torch.log(sig), a


class UniPC:
    """order-2 UniPC (bh2, predict x0, lower_order_final) on flow predictions"""

    def __init__(self, n, shift, ntrain=1000, order=2):
        alphas = np.linspace(1, 1 / ntrain, ntrain)[::-1].copy()
        base = torch.from_numpy(1.0 - alphas).to(torch.float32)
        base = 1 * base / (1 + (1 - 1) * base)
        smax, smin = base[0].item(), base[-1].item()
        sig = np.linspace(smax, smin, n + 1).copy()[:-1]
        sig = shift * sig / (1 + (shift - 1) * sig)
        self.timesteps = torch.from_numpy(sig * ntrain).to(torch.int64)
        self.sigmas = torch.from_numpy(np.concatenate([sig, [0]]).astype(np.float32))
        self.order = order
        self.mo = [None] * order
        self.lower = 0
        self.last = None
        self.si = None
        self.this_order = None

    def predict(self, x, order):
        m0 = self.mo[-1]
        st, s0 = self.sigmas[self.si + 1], self.sigmas[self.si]
        lt, at = lam(st)
        l0, _ = lam(s0)
        h = lt - l0
        D1 = None
        if order == 2:
            li, _ = lam(self.sigmas[self.si - 1])
            rk = (li - l0) / h
            D1 = (self.mo[-2] - m0) / rk
        hh = -h
        hp1 = torch.expm1(hh)
        Bh = torch.expm1(hh)
        xt = st / s0 * x - at * hp1 * m0
        if D1 is not None:
            xt = xt - at * Bh * (0.5 * D1)
        return xt

    def correct(self, model_t, x, order):
        m0 = self.mo[-1]
        st, s0 = self.sigmas[self.si], self.sigmas[self.si - 1]
        lt, at = lam(st)
        l0, _ = lam(s0)
        h = lt - l0
        rks, D1s = [], []
        for i in range(1, order):
            li, _ = lam(self.sigmas[self.si - (i + 1)])
            rk = (li - l0) / h
            rks.append(rk)
            D1s.append((self.mo[-(i + 1)] - m0) / rk)
        rks.append(1.0)
        rks = torch.tensor(rks)
        hh = -h
        hp1 = torch.expm1(hh)
        hpk = hp1 / hh - 1
        fact = 1
        Bh = torch.expm1(hh)
        R, b = [], []
        for i in range(1, order + 1):
            R.append(torch.pow(rks, i - 1))
            b.append(hpk * fact / Bh)
            fact *= i + 1
            hpk = hpk / hh - 1 / fact
        R = torch.stack(R)
        b = torch.tensor(b)
        rhos = torch.tensor([0.5]) if order == 1 else torch.linalg.solve(R, b)
        corr = sum(rhos[k] * D1s[k] for k in range(len(D1s))) if D1s else 0
        return st / s0 * x - at * hp1 * m0 - at * Bh * (corr + rhos[-1] * (model_t - m0))

    def step(self, flow, t, x):
        n = len(self.timesteps)
        if self.si is None:
            idx = (self.timesteps == t).nonzero()
            self.si = idx[1 if len(idx) > 1 else 0].item()
        use_c = self.si > 0 and self.last is not None
        x0 = x - self.sigmas[self.si] * flow
        if use_c:
            x = self.correct(x0, self.last, self.this_order)
        self.mo = self.mo[1:] + [x0]
        order = min(self.order, n - self.si)
        self.this_order = min(order, self.lower + 1)
        self.last = x
        prev = self.predict(x, self.this_order)
        self.lower = min(self.lower + 1, self.order)
        self.si += 1
        return prev


class DPMpp:
    """order-2 DPM-Solver++ (midpoint, final sigma zero) with sigmas from get_sampling_sigmas"""

    def __init__(self, n, shift, ntrain=1000):
        sig = np.linspace(1, 0, n + 1)[:n]
        sig = shift * sig / (1 + (shift - 1) * sig)
        sig = 1 * sig / (1 + (1 - 1) * sig)     # the class's own shift (1): a no-op, as retrieve_timesteps
        self.timesteps = torch.from_numpy(sig * ntrain).to(torch.int64)
        self.sigmas = torch.from_numpy(np.concatenate([sig, [0]]).astype(np.float32))
        self.mo = [None, None]
        self.lower = 0
        self.si = None

    def step(self, flow, t, x):
        n = len(self.timesteps)
        if self.si is None:
            idx = (self.timesteps == t).nonzero()
            self.si = idx[1 if len(idx) > 1 else 0].item()
        final = self.si == n - 1
        x0 = x - self.sigmas[self.si] * flow
        self.mo = self.mo[1:] + [x0]
        sample = x.float()
        st, s0 = self.sigmas[self.si + 1], self.sigmas[self.si]
        lt, at = lam(st)
        l0, _ = lam(s0)
        h = lt - l0
        if self.lower < 1 or final:
            prev = (st / s0) * sample - (at * (torch.exp(-h) - 1.0)) * x0
        else:
            l1, _ = lam(self.sigmas[self.si - 1])
            r0 = (l0 - l1) / h
            D0, D1 = self.mo[-1], (1.0 / r0) * (self.mo[-1] - self.mo[-2])
            prev = (st / s0) * sample - (at * (torch.exp(-h) - 1.0)) * D0 - 0.5 * (at * (torch.exp(-h) - 1.0)) * D1
        self.lower = min(self.lower + 1, 2)
        self.si += 1
        return prev.to(x0.dtype)


class Euler:
    """scripts/generate_ode_pairs.py: FlowMatchScheduler(shift, sigma_min=0, extra_one_step) with n steps"""

    def __init__(self, n, shift):
        self.sigmas, self.timesteps, _ = grid(shift, n=n, training=False)

    def idx(self, t):
        return nearest(self.timesteps, t.reshape(-1).float())

    def step(self, flow, t, x):  # flat [N, ...], t [N]
        i = self.idx(t)
        sig = self.sigmas[i].reshape(-1, 1, 1, 1)
        nxt = torch.where(i + 1 >= len(self.timesteps), torch.zeros(()), self.sigmas[torch.clamp(i + 1, max=len(self.timesteps) - 1)])
        return x + flow * (nxt.reshape(-1, 1, 1, 1) - sig)

    def x0_to_flow(self, x0, xt, t):
        sig = self.sigmas.double()[self.idx(t)].reshape(-1, 1, 1, 1)
        return ((xt.double() - x0.double()) / sig).to(x0.dtype)


def make(kind, n, shift):
    if kind == "euler":
        return Euler(n, shift)
    return UniPC(n, shift) if kind == "unipc" else DPMpp(n, shift)


W8 = None


def euler_advance(s, model_flows, x, t, g):
    """generate_ode_pairs.py's update: x0 guidance on the wrapper's shift-8 grid, flow on the sampling grid"""
    global W8
    if W8 is None:
        W8 = grid(8.0)
    sig8, ts8 = W8[0], W8[1]
    fc, fu = model_flows
    B, F = x.shape[:2]
    tt = torch.full((B * F,), float(t))
    i8 = nearest(ts8, tt)
    s8 = sig8.double()[i8].reshape(-1, 1, 1, 1)
    x0c = (x.flatten(0, 1).double() - s8 * fc.flatten(0, 1).double()).float()
    x0u = (x.flatten(0, 1).double() - s8 * fu.flatten(0, 1).double()).float()
    x0 = x0u + g * (x0c - x0u)
    flow = s.x0_to_flow(x0, x.flatten(0, 1), tt)
    return s.step(flow, tt, x.flatten(0, 1)).unflatten(0, (B, F))


def sched_fixtures(gen):
    meta, res = {}, {}
    for kind in ("unipc", "dpm++"):
        for n, shift in ((50, 5.0), (50, 8.0), (4, 3.0), (7, 1.0), (48, 8.0)):
            s = make(kind, n, shift)
            key = "%s_%d_%g" % (kind.replace("+", "p"), n, shift)
            meta[key] = {"timesteps": s.timesteps.tolist(), "n": n, "shift": shift, "kind": kind}
            ent = {"sigmas": s.sigmas}
            # a step sequence on fixed random flows
            x = torch.randn(2, 3, 4, generator=gen)
            ent["x"] = x.clone()
            flows, outs = [], []
            for t in s.timesteps:
                f = torch.randn(2, 3, 4, generator=gen)
                x = s.step(f, t, x)
                flows.append(f)
                outs.append(x)
            ent["flows"] = torch.stack(flows)
            ent["outs"] = torch.stack(outs)
            for k, v in ent.items():
                res[key + "." + k] = v.contiguous()
    return meta, res


def causal(model, kind, n, shift, g, ctx, neg, noise, nfpb, indep, traj):
    B, F, C, h, w = noise.shape
    S = (h // 2) * (w // 2)
    kvp = KVCache(model.c, B, S, F, -1, 0)
    kvn = KVCache(model.c, B, S, F, -1, 0)
    blocks = [nfpb] * (F // nfpb) if not indep else [1] + [nfpb] * ((F - 1) // nfpb)
    out, pos, trajs = [], 0, []
    for nb in blocks:
        x = noise[:, pos:pos + nb]
        s = make(kind, n, shift)
        states = [x]
        for t in s.timesteps:
            tv = float(t)
            fc = model_call(model, kvp, x, tv, pos, ctx, S)
            fu = model_call(model, kvn, x, tv, pos, neg, S)
            if kind == "euler":
                x = euler_advance(s, (fc, fu), x, t, g)
            else:
                x = s.step(fu + g * (fc - fu), t, x)
            states.append(x)
        out.append(x)
        trajs.append(torch.stack([states[i] for i in traj], dim=1))
        model_call(model, kvp, x, 0.0, pos, ctx, S)
        model_call(model, kvn, x, 0.0, pos, neg, S)
        pos += nb
    return torch.cat(out, 1), torch.cat(trajs, 2)


def bidirectional(model, kind, n, shift, g, ctx, neg, noise, traj):
    S = (noise.shape[3] // 2) * (noise.shape[4] // 2)
    s = make(kind, n, shift)
    x = noise
    states = [x]
    for t in s.timesteps:
        tv = float(t)
        fc = model_call(model, None, x, tv, 0, ctx, S)
        fu = model_call(model, None, x, tv, 0, neg, S)
        if kind == "euler":
            x = euler_advance(s, (fc, fu), x, t, g)
        else:
            x = s.step(fu + g * (fc - fu), t, x)
        states.append(x)
    return x, torch.stack([states[i] for i in traj], dim=1)


CASES = {
    "causal_unipc": dict(causal=True, kind="unipc", n=6, shift=5.0, g=3.0, B=1, F=4, nfpb=2, indep=False),
    "causal_dpm": dict(causal=True, kind="dpm++", n=5, shift=5.0, g=2.0, B=2, F=3, nfpb=2, indep=True),
    "bidir_unipc": dict(causal=False, kind="unipc", n=6, shift=8.0, g=3.0, B=1, F=3),
    "bidir_dpm": dict(causal=False, kind="dpm++", n=4, shift=8.0, g=5.0, B=1, F=3),
    "bidir_euler": dict(causal=False, kind="euler", n=6, shift=8.0, g=6.0, B=1, F=3),
    "causal_euler": dict(causal=True, kind="euler", n=5, shift=5.0, g=2.0, B=1, F=2, nfpb=1, indep=False),
}


def main(out):
    gen = torch.Generator().manual_seed(11)
    os.makedirs(out, exist_ok=True)
    meta, tens = sched_fixtures(gen)
    with open(os.path.join(out, "sched.lua"), "w") as f:
        f.write("return " + to_lua(meta) + "\n")
    save_safetensors(os.path.join(out, "sched.safetensors"), tens)
    for name, cs in CASES.items():
        c = Cfg(dict(TINY))
        P = make_params(c, gen)
        model = Wan(c, P)
        B, F = cs["B"], cs["F"]
        ctx = torch.randn(B, c.text_len - 5, c.text_dim, generator=gen)
        neg = torch.randn(B, c.text_len - 3, c.text_dim, generator=gen)
        noise = torch.randn(B, F, 16, 4, 6, generator=gen)
        traj = [0, 2, cs["n"]]
        if cs["causal"]:
            lat, tr = causal(model, cs["kind"], cs["n"], cs["shift"], cs["g"], ctx, neg, noise, cs["nfpb"],
                             cs["indep"], traj)
        else:
            lat, tr = bidirectional(model, cs["kind"], cs["n"], cs["shift"], cs["g"], ctx, neg, noise, traj)
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        conf = dict(TINY)
        conf["_class_name"] = "WanModel"
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(conf, f)
        save_safetensors(os.path.join(d, "diffusion_pytorch_model.safetensors"), P)
        save_safetensors(os.path.join(d, "data.safetensors"),
                         dict(context=ctx, negative=neg, noise=noise, latents=lat, trajectory=tr.contiguous()))
        with open(os.path.join(d, "manifest.lua"), "w") as f:
            f.write("return " + to_lua(dict(cs, traj=traj)) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
