# scheduler_ref.py — our PyTorch transcription of Self-Forcing's FlowMatchScheduler grid, add_noise,
# training weights, flow<->x0 conversions and warp_denoising_step (spec: wan_model_spec.md §5,
# training_spec.md §1.1-1.3). Usage: scheduler_ref.py OUT.lua ; writes a Lua table of fixtures.
import sys
import torch
from luaout import write_lua


def grid(shift, n=1000, ntrain=1000, sigma_max=1.0, sigma_min=0.0, extra=True, training=True):
    start = sigma_min + (sigma_max - sigma_min) * 1.0
    if extra:
        s = torch.linspace(start, sigma_min, n + 1)[:-1]
    else:
        s = torch.linspace(start, sigma_min, n)
    s = shift * s / (1 + (shift - 1) * s)
    t = s * ntrain
    w = None
    if training:
        y = torch.exp(-2 * ((t - n / 2) / n) ** 2)
        ys = y - y.min()
        w = ys * (n / ys.sum())
    return s, t, w


def nearest(t_grid, t):
    return torch.argmin((t_grid.unsqueeze(0) - t.unsqueeze(1)).abs(), dim=1)


def main(out):
    torch.manual_seed(0)
    res = {}
    for name, kw in [("s5", dict(shift=5.0)), ("s8", dict(shift=8.0)),
                     ("s3_default", dict(shift=3.0, sigma_min=0.003 / 1.002, extra=False))]:
        s, t, w = grid(**kw)
        res[name] = {"sigmas": s, "timesteps": t, "weights": w}
    s, t, w = grid(5.0)
    lst = torch.tensor([1000, 750, 500, 250], dtype=torch.long)
    ext = torch.cat((t, torch.tensor([0.0])))
    res["warp5"] = ext[1000 - lst]
    s8, t8, _ = grid(8.0)
    res["warp8"] = torch.cat((t8, torch.tensor([0.0])))[1000 - lst]
    # add_noise / conversions on a small batch with mixed on- and off-grid timesteps
    x0 = torch.randn(4, 3, 2, 5)
    eps = torch.randn(4, 3, 2, 5)
    flow = torch.randn(4, 3, 2, 5)
    ts = torch.tensor([1000.0, 937.5, 0.0, 377.3])
    sig = s[nearest(t, ts)].reshape(-1, 1, 1, 1)
    xt = ((1 - sig) * x0 + sig * eps).type_as(eps)
    sd = s.double()[nearest(t.double(), ts)].reshape(-1, 1, 1, 1)
    x0p = (xt.double() - sd * flow.double()).float()
    fl = ((xt.double() - x0.double()) / sd).float()
    tw = w[nearest(t, ts)]
    res["batch"] = {"x0": x0.flatten(), "eps": eps.flatten(), "flow": flow.flatten(), "t": ts,
                    "xt": xt.flatten(), "x0_pred": x0p.flatten(), "flow_from_x0": fl.flatten(),
                    "target": (eps - x0).flatten(), "tw": tw, "shape": list(x0.shape)}
    write_lua(out, res)


if __name__ == "__main__":
    main(sys.argv[1])
