# vae_ref.py — our PyTorch transcription of the Wan2.1 VAE (wan_model_spec.md §7): causal 3-D convs
# with per-chunk feature caches (CACHE_T = 2), residual blocks, middle attention, resamplers with the
# first-chunk rules ("Rep" on the decoder side), chunked encode (1, 4, 4, ...) and per-frame decode.
# Usage: vae_ref.py OUTDIR [dim z_dim]  — random weights (all parameters, official key names) saved to
# OUTDIR/vae.pth; inputs/outputs to OUTDIR/fixture.pt.
import sys

import torch
import torch.nn.functional as F

MEAN = [-0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
        0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921]
STD = [2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
       3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160]


# ---------------- architecture as a list of (kind, prefix, params) ----------------
def layout(dim, z, mult=(1, 2, 4, 4), nres=2, tdown=(False, True, True)):
    enc, dec = [], []
    dims = [dim * u for u in (1,) + tuple(mult)]
    i = 0
    for s, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        for _ in range(nres):
            enc.append(("res", "encoder.downsamples.%d" % i, a, b)); i += 1; a = b
        if s != len(mult) - 1:
            enc.append(("down3d" if tdown[s] else "down2d", "encoder.downsamples.%d" % i, b, b)); i += 1
    ddims = [dim * u for u in (mult[-1],) + tuple(mult[::-1])]
    tup = tdown[::-1]
    i = 0
    for s, (a, b) in enumerate(zip(ddims[:-1], ddims[1:])):
        if s in (1, 2, 3):
            a = a // 2
        for _ in range(nres + 1):
            dec.append(("res", "decoder.upsamples.%d" % i, a, b)); i += 1; a = b
        if s != len(mult) - 1:
            dec.append(("up3d" if tup[s] else "up2d", "decoder.upsamples.%d" % i, b, b)); i += 1
    return dims, ddims, enc, dec


def make_state_dict(dim, z, g):
    sd = {}

    def conv(name, o, i, *k):
        fan = i
        for kk in k:
            fan *= kk
        bound = fan ** -0.5
        sd[name + ".weight"] = (torch.rand(o, i, *k, generator=g) * 2 - 1) * bound
        sd[name + ".bias"] = (torch.rand(o, generator=g) * 2 - 1) * bound

    def gamma(name, c, img=False):
        sd[name] = 1 + 0.2 * torch.randn(c, 1, 1, generator=g) if img else 1 + 0.2 * torch.randn(c, 1, 1, 1, generator=g)

    def res(p, a, b):
        gamma(p + ".residual.0.gamma", a)
        conv(p + ".residual.2", b, a, 3, 3, 3)
        gamma(p + ".residual.3.gamma", b)
        conv(p + ".residual.6", b, b, 3, 3, 3)
        if a != b:
            conv(p + ".shortcut", b, a, 1, 1, 1)

    def attn(p, c):
        gamma(p + ".norm.gamma", c, img=True)
        conv(p + ".to_qkv", 3 * c, c, 1, 1)
        conv(p + ".proj", c, c, 1, 1)

    dims, ddims, enc, dec = layout(dim, z)
    conv("encoder.conv1", dims[0], 3, 3, 3, 3)
    for kind, p, a, b in enc:
        if kind == "res":
            res(p, a, b)
        else:
            conv(p + ".resample.1", b, b, 3, 3)
            if kind == "down3d":
                conv(p + ".time_conv", b, b, 3, 1, 1)
    c = dims[-1]
    res("encoder.middle.0", c, c); attn("encoder.middle.1", c); res("encoder.middle.2", c, c)
    gamma("encoder.head.0.gamma", c)
    conv("encoder.head.2", 2 * z, c, 3, 3, 3)
    conv("conv1", 2 * z, 2 * z, 1, 1, 1)
    conv("conv2", z, z, 1, 1, 1)
    c = ddims[0]
    conv("decoder.conv1", c, z, 3, 3, 3)
    res("decoder.middle.0", c, c); attn("decoder.middle.1", c); res("decoder.middle.2", c, c)
    for kind, p, a, b in dec:
        if kind == "res":
            res(p, a, b)
        else:
            conv(p + ".resample.1", b // 2, b, 3, 3)
            if kind == "up3d":
                conv(p + ".time_conv", 2 * b, b, 3, 1, 1)
    gamma("decoder.head.0.gamma", ddims[-1])
    conv("decoder.head.2", 3, ddims[-1], 3, 3, 3)
    return sd


# ---------------- forward ----------------
# bf16 mode (Self-Forcing's VAE after `.to(bfloat16)`, as it runs on CUDA): every op computes in f32 from
# bf16 operands and rounds its output to bf16 once (convs: bf16 products summed in f32, bias added, one
# rounding; the python scalar of RMS_norm kept in f32; the vector norm summed in f32; attention as a fused
# SDPA: f32 inside, one rounding). Written with explicit casts around f32 ops because torch 1.13's CPU bf16
# kernels differ from the CUDA ones the reference runs on (its bf16 norm sums in low precision and its
# bf16 * scalar rounds the scalar to bf16).
BF16 = False


def R(t):
    return t.bfloat16().float() if BF16 else t


def causal_conv(x, w, b, pt, ph, pw, cache=None):
    # zero padding: W, H both sides; T 2*pt in front, reduced by the cached frames prepended
    front = 2 * pt
    if cache is not None and front > 0:
        x = torch.cat([cache, x], 2)
        front -= cache.shape[2]
    x = F.pad(x, (pw, pw, ph, ph, front, 0))
    return R(F.conv3d(x, R(w), R(b)))


def conv2d(x, w, b, **kw):
    return R(F.conv2d(x, R(w), R(b), **kw))


def rms(x, gamma):
    if BF16:
        n = R(x.norm(dim=1, keepdim=True)).clamp_min(R(torch.tensor(1e-12)))
        return R(R(R(x / n) * (x.shape[1] ** 0.5)) * R(gamma))
    return F.normalize(x, dim=1) * (x.shape[1] ** 0.5) * gamma


def silu(x):
    return R(F.silu(x))


class Runner:
    def __init__(self, sd):
        self.sd = sd

    def cconv(self, name, x, slots):
        # the cached 3-tap causal conv (conv1, residual convs, head)
        i = self.idx
        self.idx += 1
        new = x[:, :, -2:].clone()
        if new.shape[2] < 2 and slots[i] is not None:
            new = torch.cat([slots[i][:, :, -1:], new], 2)
        y = causal_conv(x, self.sd[name + ".weight"], self.sd[name + ".bias"], 1, 1, 1, slots[i])
        slots[i] = new
        return y

    def res(self, p, x, slots):
        sc = p + ".shortcut.weight"
        h = causal_conv(x, self.sd[sc], self.sd[p + ".shortcut.bias"], 0, 0, 0) if sc in self.sd else x
        t = silu(rms(x, self.sd[p + ".residual.0.gamma"]))
        t = self.cconv(p + ".residual.2", t, slots)
        t = silu(rms(t, self.sd[p + ".residual.3.gamma"]))
        t = self.cconv(p + ".residual.6", t, slots)
        return R(t + h)

    def attn(self, p, x):
        b, c, t, h, w = x.shape
        y = x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
        y = rms(y, self.sd[p + ".norm.gamma"])
        qkv = conv2d(y, self.sd[p + ".to_qkv.weight"], self.sd[p + ".to_qkv.bias"])
        qkv = qkv.reshape(b * t, 3 * c, h * w).permute(0, 2, 1)  # [bt, hw, 3c]
        q, k, v = qkv[..., :c], qkv[..., c:2 * c], qkv[..., 2 * c:]
        a = R(torch.softmax(q @ k.transpose(1, 2) / (c ** 0.5), dim=-1) @ v)  # [bt, hw, c]
        a = a.permute(0, 2, 1).reshape(b * t, c, h, w)
        a = conv2d(a, self.sd[p + ".proj.weight"], self.sd[p + ".proj.bias"])
        return R(x + a.reshape(b, t, c, h, w).permute(0, 2, 1, 3, 4))

    def per_frame(self, x, fn):
        b, c, t, h, w = x.shape
        y = fn(x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w))
        return y.reshape(b, t, *y.shape[1:]).permute(0, 2, 1, 3, 4)

    def down(self, p, kind, x, slots):
        x = self.per_frame(x, lambda f: conv2d(F.pad(f, (0, 1, 0, 1)), self.sd[p + ".resample.1.weight"],
                                               self.sd[p + ".resample.1.bias"], stride=2))
        if kind == "down3d":
            i = self.idx
            self.idx += 1
            if slots[i] is None:
                slots[i] = x.clone()
            else:
                last = x[:, :, -1:].clone()
                x = R(F.conv3d(torch.cat([slots[i][:, :, -1:], x], 2), R(self.sd[p + ".time_conv.weight"]),
                               R(self.sd[p + ".time_conv.bias"]), stride=(2, 1, 1)))
                slots[i] = last
        return x

    def up(self, p, kind, x, slots):
        if kind == "up3d":
            i = self.idx
            self.idx += 1
            if slots[i] is None:
                slots[i] = "Rep"
            else:
                b, c, t, h, w = x.shape
                new = x[:, :, -2:].clone()
                if new.shape[2] < 2:
                    prev = torch.zeros_like(new) if isinstance(slots[i], str) else slots[i][:, :, -1:]
                    new = torch.cat([prev, new], 2)
                cache = None if isinstance(slots[i], str) else slots[i]
                y = causal_conv(x, self.sd[p + ".time_conv.weight"], self.sd[p + ".time_conv.bias"], 1, 0, 0, cache)
                slots[i] = new
                y = y.reshape(b, 2, c, t, h, w)
                x = torch.stack((y[:, 0], y[:, 1]), 3).reshape(b, c, 2 * t, h, w)
        return self.per_frame(x, lambda f: conv2d(F.interpolate(f, scale_factor=2.0, mode="nearest"),
                                                  self.sd[p + ".resample.1.weight"], self.sd[p + ".resample.1.bias"],
                                                  padding=1))

    def middle(self, name, x, slots):
        x = self.res(name + ".middle.0", x, slots)
        x = self.attn(name + ".middle.1", x)
        return self.res(name + ".middle.2", x, slots)

    def coder(self, name, mods, x, slots):
        self.idx = 0
        x = self.cconv(name + ".conv1", x, slots)
        if name == "decoder":  # the decoder runs its middle blocks first, the encoder last
            x = self.middle(name, x, slots)
        for kind, p, a, b in mods:
            if kind == "res":
                x = self.res(p, x, slots)
            elif kind.startswith("down"):
                x = self.down(p, kind, x, slots)
            else:
                x = self.up(p, kind, x, slots)
        if name == "encoder":
            x = self.middle(name, x, slots)
        x = silu(rms(x, self.sd[name + ".head.0.gamma"]))
        return self.cconv(name + ".head.2", x, slots)


def encode(sd, enc, video, z, mean, std):
    r = Runner(sd)
    slots = [None] * 64
    t = video.shape[2]
    outs = []
    video = R(video)
    for i in range(1 + (t - 1) // 4):
        chunk = video[:, :, :1] if i == 0 else video[:, :, 1 + 4 * (i - 1):1 + 4 * i]
        outs.append(r.coder("encoder", enc, chunk, slots))
    out = torch.cat(outs, 2)
    mu = causal_conv(out, sd["conv1.weight"], sd["conv1.bias"], 0, 0, 0)[:, :z]
    inv = R(1.0 / R(std))  # the wrapper's scale = [mean.to(dtype), 1.0 / std.to(dtype)]
    return R(R(mu - R(mean).view(1, z, 1, 1, 1)) * inv.view(1, z, 1, 1, 1))


def decode(sd, dec, lat, z, mean, std, slots=None):
    r = Runner(sd)
    if slots is None:
        slots = [None] * 64
    inv = R(1.0 / R(std))
    x = R(R(R(lat) / inv.view(1, z, 1, 1, 1)) + R(mean).view(1, z, 1, 1, 1))
    x = causal_conv(x, sd["conv2.weight"], sd["conv2.bias"], 0, 0, 0)
    return torch.cat([r.coder("decoder", dec, x[:, :, i:i + 1], slots) for i in range(x.shape[2])], 2)


def main(out, dim=96, z=16):
    g = torch.Generator().manual_seed(7)
    sd = make_state_dict(dim, z, g)
    torch.save(sd, out + "/vae.pth")
    _, _, enc, dec = layout(dim, z)
    mean = torch.tensor(MEAN[:z]) if z == 16 else torch.zeros(z)
    std = torch.tensor(STD[:z]) if z == 16 else torch.ones(z)
    fx = {}
    with torch.no_grad():
        video = torch.rand(1, 3, 5, 32, 32, generator=g) * 2 - 1
        lat = encode(sd, enc, video, z, mean, std)                     # [1, z, 2, 4, 4]
        fx["video"] = video
        fx["latents"] = lat.permute(0, 2, 1, 3, 4).contiguous()          # Self-Forcing [B, F, C, h, w]
        zl = torch.randn(1, z, 3, 4, 4, generator=g)                      # 3 latent frames: the "Rep" quirk
        fx["z"] = zl.permute(0, 2, 1, 3, 4).contiguous()
        dv = decode(sd, dec, zl, z, mean, std)
        fx["decoded_raw"] = dv.permute(0, 2, 1, 3, 4).contiguous()
        fx["decoded"] = dv.clamp(-1, 1).permute(0, 2, 1, 3, 4).contiguous()
        # streaming: frames [0, 1] then [2] with kept caches equals the one-shot decode
        slots = [None] * 64
        a = decode(sd, dec, zl[:, :, :2], z, mean, std, slots)
        b = decode(sd, dec, zl[:, :, 2:], z, mean, std, slots)
        fx["stream"] = torch.cat([a, b], 2).clamp(-1, 1).permute(0, 2, 1, 3, 4).contiguous()
        # I2V conditioning y for a 32x32 image and 9 frames
        img = torch.rand(3, 32, 32, generator=g) * 2 - 1
        v = torch.cat([img[:, None], torch.zeros(3, 8, 32, 32)], 1)[None]
        lat_i = encode(sd, enc, v, z, mean, std)[0]
        msk = torch.ones(1, 9, 4, 4)
        msk[:, 1:] = 0
        msk = torch.cat([torch.repeat_interleave(msk[:, 0:1], repeats=4, dim=1), msk[:, 1:]], 1)
        msk = msk.view(1, msk.shape[1] // 4, 4, 4, 4).transpose(1, 2)[0]
        fx["img"] = img
        fx["y"] = torch.cat([msk, lat_i])[None]
        # bf16 mode (the test compares it with the f32 outputs above, on the cpu and on a device)
        # With random weights the network amplifies single bf16 rounding flips: two valid bf16 runs that
        # differ only in how the convolutions sum (f32 vs f64 here) already differ by ~2.5e-2 at the output,
        # about as much as f32 differs from bf16. "_f64" is that second run: the test's noise floor.
        if True:
            global BF16
            BF16 = True
            fx["bf16_latents"] = encode(sd, enc, video, z, mean, std).permute(0, 2, 1, 3, 4).contiguous()
            fx["bf16_decoded"] = decode(sd, dec, zl, z, mean, std).clamp(-1, 1).permute(0, 2, 1, 3, 4).contiguous()
            c3, c2 = F.conv3d, F.conv2d
            F.conv3d = lambda x, w, b=None, **kw: c3(x.double(), w.double(), b.double(), **kw).float()
            F.conv2d = lambda x, w, b=None, **kw: c2(x.double(), w.double(), b.double(), **kw).float()
            try:
                fx["bf16_latents_f64"] = encode(sd, enc, video, z, mean, std).permute(0, 2, 1, 3, 4).contiguous()
                fx["bf16_decoded_f64"] = decode(sd, dec, zl, z, mean, std).clamp(-1, 1).permute(0, 2, 1, 3, 4).contiguous()
            finally:
                F.conv3d, F.conv2d = c3, c2
                BF16 = False
    torch.save(fx, out + "/fixture.pt")


if __name__ == "__main__":
    if len(sys.argv) > 3:
        main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
    else:
        main(sys.argv[1])
