# clip_ref.py — our PyTorch transcription of Wan's CLIP image path (wan_model_spec.md §8): bicubic
# resize (align_corners=False), x*0.5+0.5, CLIP mean/std, patch conv without bias, class token, positions,
# pre-norm, pre-LN blocks (LayerNorm eps 1e-5, qkv split [3][heads][d], scale 1/sqrt(d), erf GELU MLP),
# output of all blocks but the last. Tiny random config (28 px, patch 14, width 32, 4 heads, 3 blocks).
# Usage: clip_ref.py OUTDIR -> OUTDIR/clip.pth (official "visual.*" names + unused text keys), fixture.pt
import sys

import torch
import torch.nn.functional as F

DIM, HEADS, LAYERS, PATCH, SIZE, MLP = 32, 4, 3, 14, 28, 128
MEAN = [0.48145466, 0.4578275, 0.40821073]
STD = [0.26862954, 0.26130258, 0.27577711]


def make_state_dict(g):
    n = (SIZE // PATCH) ** 2
    sd = {"visual.patch_embedding.weight": torch.randn(DIM, 3, PATCH, PATCH, generator=g) * 0.05,
          "visual.cls_embedding": torch.randn(1, 1, DIM, generator=g),
          "visual.pos_embedding": torch.randn(1, n + 1, DIM, generator=g),
          "visual.pre_norm.weight": 1 + 0.2 * torch.randn(DIM, generator=g),
          "visual.pre_norm.bias": 0.2 * torch.randn(DIM, generator=g),
          "visual.post_norm.weight": torch.ones(DIM), "visual.post_norm.bias": torch.zeros(DIM),
          "visual.head": torch.randn(DIM, 16, generator=g),
          "textual.token_embedding.weight": torch.randn(10, 8, generator=g), "log_scale": torch.tensor(4.6)}
    for i in range(LAYERS):
        p = "visual.transformer.%d." % i
        for nm in ("norm1", "norm2"):
            sd[p + nm + ".weight"] = 1 + 0.2 * torch.randn(DIM, generator=g)
            sd[p + nm + ".bias"] = 0.2 * torch.randn(DIM, generator=g)
        sd[p + "attn.to_qkv.weight"] = torch.randn(3 * DIM, DIM, generator=g) / DIM ** 0.5
        sd[p + "attn.to_qkv.bias"] = 0.1 * torch.randn(3 * DIM, generator=g)
        sd[p + "attn.proj.weight"] = torch.randn(DIM, DIM, generator=g) / DIM ** 0.5
        sd[p + "attn.proj.bias"] = 0.1 * torch.randn(DIM, generator=g)
        sd[p + "mlp.0.weight"] = torch.randn(MLP, DIM, generator=g) / DIM ** 0.5
        sd[p + "mlp.0.bias"] = 0.1 * torch.randn(MLP, generator=g)
        sd[p + "mlp.2.weight"] = torch.randn(DIM, MLP, generator=g) / MLP ** 0.5
        sd[p + "mlp.2.bias"] = 0.1 * torch.randn(DIM, generator=g)
    return sd


def ln(x, sd, p):
    return F.layer_norm(x.float(), (DIM,), sd[p + ".weight"], sd[p + ".bias"], 1e-5)


def tower(sd, x):
    b = x.shape[0]
    x = F.conv2d(x, sd["visual.patch_embedding.weight"], stride=PATCH).flatten(2).permute(0, 2, 1)
    x = torch.cat([sd["visual.cls_embedding"].expand(b, -1, -1), x], 1) + sd["visual.pos_embedding"]
    x = ln(x, sd, "visual.pre_norm")
    d = DIM // HEADS
    for i in range(LAYERS - 1):
        p = "visual.transformer.%d." % i
        h = ln(x, sd, p + "norm1")
        s = x.shape[1]
        q, k, v = F.linear(h, sd[p + "attn.to_qkv.weight"], sd[p + "attn.to_qkv.bias"]).view(b, s, 3, HEADS, d).unbind(2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
        a = torch.softmax(q @ k.transpose(-1, -2) / d ** 0.5, -1) @ v
        a = a.transpose(1, 2).reshape(b, s, DIM)
        x = x + F.linear(a, sd[p + "attn.proj.weight"], sd[p + "attn.proj.bias"])
        h = ln(x, sd, p + "norm2")
        h = F.gelu(F.linear(h, sd[p + "mlp.0.weight"], sd[p + "mlp.0.bias"]))
        x = x + F.linear(h, sd[p + "mlp.2.weight"], sd[p + "mlp.2.bias"])
    return x


def tower_lp(sd, x, dt):
    """Wan's tower with dt weights under dt autocast, as on CUDA: linears / the patch conv on dt operands
    summed in f32 and rounded once, LayerNorm in f32 cast back, fused attention (f32 inside, one rounding),
    GELU and residual adds rounded. Explicit casts around f32 ops (torch 1.13's CPU lacks f16 kernels)."""
    def R(t):
        return t.to(dt).float()

    W = {k: R(v) for k, v in sd.items()}
    b = x.shape[0]
    x = R(F.conv2d(R(x), W["visual.patch_embedding.weight"], stride=PATCH)).flatten(2).permute(0, 2, 1)
    x = R(torch.cat([W["visual.cls_embedding"].expand(b, -1, -1), x], 1) + W["visual.pos_embedding"])
    x = R(ln(x, W, "visual.pre_norm"))
    d = DIM // HEADS
    for i in range(LAYERS - 1):
        p = "visual.transformer.%d." % i
        h = R(ln(x, W, p + "norm1"))
        s = x.shape[1]
        qkv = R(F.linear(h, W[p + "attn.to_qkv.weight"], W[p + "attn.to_qkv.bias"]))
        q, k, v = qkv.view(b, s, 3, HEADS, d).unbind(2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
        a = R(torch.softmax(q @ k.transpose(-1, -2) / d ** 0.5, -1) @ v)
        a = a.transpose(1, 2).reshape(b, s, DIM)
        x = R(x + R(F.linear(a, W[p + "attn.proj.weight"], W[p + "attn.proj.bias"])))
        h = R(ln(x, W, p + "norm2"))
        h = R(F.gelu(R(F.linear(h, W[p + "mlp.0.weight"], W[p + "mlp.0.bias"]))))
        x = R(x + R(F.linear(h, W[p + "mlp.2.weight"], W[p + "mlp.2.bias"])))
    return x


def preprocess(img):
    x = F.interpolate(img, size=(SIZE, SIZE), mode="bicubic", align_corners=False)
    x = x * 0.5 + 0.5
    return (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def main(out):
    g = torch.Generator().manual_seed(3)
    sd = make_state_dict(g)
    torch.save(sd, out + "/clip.pth")
    img = torch.rand(2, 3, 40, 56, generator=g) * 2 - 1
    with torch.no_grad():
        resized = F.interpolate(img, size=(SIZE, SIZE), mode="bicubic", align_corners=False)
        up = F.interpolate(img, size=(61, 83), mode="bicubic", align_corners=False)
        fx = {"img": img, "resized": resized, "up": up, "out": tower(sd, preprocess(img))}
        # compute dtypes on a 28x28 image (the resize is then exact on both sides: our bicubic differs from
        # torch's by ~1e-6, and f16 rounding flips spread that through the tower as much as the mode's effect)
        img28 = torch.rand(2, 3, SIZE, SIZE, generator=g) * 2 - 1
        fx["img28"] = img28
        fx["out28"] = tower(sd, preprocess(img28))
        for name, dt in (("f16", torch.float16), ("bf16", torch.bfloat16)):
            fx["out28_" + name] = tower_lp(sd, preprocess(img28), dt)
    torch.save(fx, out + "/fixture.pt")


if __name__ == "__main__":
    main(sys.argv[1])
