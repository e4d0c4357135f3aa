# t5_ref.py — our PyTorch transcription of the umT5 encoder (wan_model_spec.md §6.2): RMS norm,
# per-layer relative position bias (bidirectional buckets, max distance 128), unscaled attention with
# masked_fill(finfo.min), gated tanh-GELU FFN. Tiny random config; writes OUT/t5.pth (f32 state dict
# with the official key names), OUT/t5_bf16.pth and OUT/fixture.pt (inputs and outputs).
# Usage: t5_ref.py OUTDIR [spiece.model]   (with a model: also prompt_embeds for the cleaned prompts)
import math
import sys

import torch

CFG = dict(vocab=512, dim=32, dim_attn=32, heads=4, ffn=48, layers=2, buckets=32, max_dist=128)


def make_state_dict(g, c=CFG):
    """random weights with the official key names for config c (CFG's keys; the bench passes real widths)"""
    sd = {"token_embedding.weight": torch.randn(c["vocab"], c["dim"], generator=g)}
    for i in range(c["layers"]):
        p = "blocks.%d." % i
        sd[p + "norm1.weight"] = 1 + 0.3 * torch.randn(c["dim"], generator=g)
        sd[p + "norm2.weight"] = 1 + 0.3 * torch.randn(c["dim"], generator=g)
        for n in "qkv":
            sd[p + "attn.%s.weight" % n] = torch.randn(c["dim_attn"], c["dim"], generator=g) / math.sqrt(c["dim"])
        sd[p + "attn.o.weight"] = torch.randn(c["dim"], c["dim_attn"], generator=g) / math.sqrt(c["dim_attn"])
        sd[p + "ffn.gate.0.weight"] = torch.randn(c["ffn"], c["dim"], generator=g) / math.sqrt(c["dim"])
        sd[p + "ffn.fc1.weight"] = torch.randn(c["ffn"], c["dim"], generator=g) / math.sqrt(c["dim"])
        sd[p + "ffn.fc2.weight"] = torch.randn(c["dim"], c["ffn"], generator=g) / math.sqrt(c["ffn"])
        sd[p + "pos_embedding.embedding.weight"] = torch.randn(c["buckets"], c["heads"], generator=g)
    sd["norm.weight"] = 1 + 0.3 * torch.randn(c["dim"], generator=g)
    return sd


def rms(x, w, eps=1e-6):
    x = x * torch.rsqrt(x.float().pow(2).mean(dim=-1, keepdim=True) + eps)
    return w * x


def buckets(L, nb, max_dist):
    rel = torch.arange(L).unsqueeze(0) - torch.arange(L).unsqueeze(1)  # key - query
    half = nb // 2
    b = (rel > 0).long() * half
    n = rel.abs()
    exact = half // 2
    large = exact + (torch.log(n.float() / exact) / math.log(max_dist / exact) * (half - exact)).long()
    large = torch.clamp(large, max=half - 1)
    return b + torch.where(n < exact, n, large)


def gelu_tanh(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def encoder(sd, ids, mask):
    c = CFG
    B, L = ids.shape
    n, d = c["heads"], c["dim_attn"] // c["heads"]
    x = sd["token_embedding.weight"][ids]
    bk = buckets(L, c["buckets"], c["max_dist"])
    for i in range(c["layers"]):
        p = "blocks.%d." % i
        h = rms(x, sd[p + "norm1.weight"])
        q = (h @ sd[p + "attn.q.weight"].t()).view(B, L, n, d)
        k = (h @ sd[p + "attn.k.weight"].t()).view(B, L, n, d)
        v = (h @ sd[p + "attn.v.weight"].t()).view(B, L, n, d)
        bias = sd[p + "pos_embedding.embedding.weight"][bk].permute(2, 0, 1).unsqueeze(0)  # [1, n, L, L]
        ab = x.new_zeros(B, n, L, L) + bias
        ab.masked_fill_(mask.view(B, 1, 1, L) == 0, torch.finfo(x.dtype).min)
        att = torch.einsum("binc,bjnc->bnij", q, k) + ab
        att = torch.softmax(att.float(), dim=-1)
        o = torch.einsum("bnij,bjnc->binc", att, v).reshape(B, L, n * d)
        x = x + o @ sd[p + "attn.o.weight"].t()
        h = rms(x, sd[p + "norm2.weight"])
        f = (h @ sd[p + "ffn.fc1.weight"].t()) * gelu_tanh(h @ sd[p + "ffn.gate.0.weight"].t())
        x = x + f @ sd[p + "ffn.fc2.weight"].t()
    return rms(x, sd["norm.weight"])


def encoder_lp(sd, ids, mask, dt):
    """The encoder after .to(dt) as it runs on CUDA: every op computes in f32 from dt operands and rounds its
    output to dt once; fp16_clamp after each residual add. Written with explicit casts around f32 ops
    (torch 1.13's CPU half/bf16 kernels differ from CUDA's, and CPU f16 matmul is missing)."""
    c = CFG
    B, L = ids.shape
    n, d = c["heads"], c["dim_attn"] // c["heads"]

    def R(t):
        return t.to(dt).float()

    W = {k: R(v.float()) for k, v in sd.items()}

    def norm(x, w):
        return R(w * R(x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + 1e-6)))

    def lin(h, w):
        return R(h @ w.t())

    def clamp16(x):
        if dt == torch.float16 and torch.isinf(x).any():
            m = 65504.0 - 1000
            x = x.clamp(-m, m)
        return x

    def gelu(x):
        p = R(torch.pow(x, 3.0))
        t = R(torch.tanh(R(math.sqrt(2.0 / math.pi) * R(x + R(0.044715 * p)))))
        return R(R(0.5 * x) * R(1.0 + t))

    x = W["token_embedding.weight"][ids]
    bk = buckets(L, c["buckets"], c["max_dist"])
    for i in range(c["layers"]):
        p = "blocks.%d." % i
        h = norm(x, W[p + "norm1.weight"])
        q = lin(h, W[p + "attn.q.weight"]).view(B, L, n, d)
        k = lin(h, W[p + "attn.k.weight"]).view(B, L, n, d)
        v = lin(h, W[p + "attn.v.weight"]).view(B, L, n, d)
        ab = torch.zeros(B, n, L, L) + W[p + "pos_embedding.embedding.weight"][bk].permute(2, 0, 1).unsqueeze(0)
        ab.masked_fill_(mask.view(B, 1, 1, L) == 0, torch.finfo(dt).min)
        att = R(R(torch.einsum("binc,bjnc->bnij", q, k)) + ab)
        att = R(torch.softmax(att, dim=-1))
        o = R(torch.einsum("bnij,bjnc->binc", att, v)).reshape(B, L, n * d)
        x = clamp16(R(x + lin(o, W[p + "attn.o.weight"])))
        h = norm(x, W[p + "norm2.weight"])
        f = R(lin(h, W[p + "ffn.fc1.weight"]) * gelu(lin(h, W[p + "ffn.gate.0.weight"])))
        x = clamp16(R(x + lin(f, W[p + "ffn.fc2.weight"])))
    return norm(x, W["norm.weight"])


PROMPTS = ["A cat walks on the grass, realistic, 4k.", "  一只猫在草地上行走，写实风格。 ",
           "Tom &amp; Jerry “chase” each other"]


def main(out, spm_model=None):
    g = torch.Generator().manual_seed(42)
    sd = make_state_dict(g)
    torch.save(sd, out + "/t5.pth")
    sd16 = {k: v.to(torch.bfloat16) for k, v in sd.items()}
    torch.save(sd16, out + "/t5_bf16.pth")
    B, L = 2, 160
    ids = torch.randint(0, CFG["vocab"], (B, L), generator=g)
    mask = torch.zeros(B, L, dtype=torch.long)
    mask[0, :100] = 1
    mask[1, :37] = 1
    ids = ids * mask  # padding id 0 as the tokenizer
    fx = {"ids": ids, "mask": mask}
    with torch.no_grad():
        fx["out"] = encoder(sd, ids, mask)
        fx["out_bf16"] = encoder({k: v.float() for k, v in sd16.items()}, ids, mask)
        # compute dtypes on the bf16 file (the official T5 file is bf16)
        fx["out_c_bf16"] = encoder_lp(sd16, ids, mask, torch.bfloat16)
        fx["out_c_f16"] = encoder_lp(sd16, ids, mask, torch.float16)
        # fp16 overflow: a layer-0 FFN whose outputs (not weights) pass f16's range makes fp16_clamp act
        big = dict(sd16)
        big["blocks.0.ffn.fc2.weight"] = (sd["blocks.0.ffn.fc2.weight"] * 5e4).to(torch.bfloat16)
        torch.save(big, out + "/t5_big.pth")
        fx["out_c_f16_big"] = encoder_lp(big, ids, mask, torch.float16)
        fx["out_c_bf16_big"] = encoder_lp(big, ids, mask, torch.bfloat16)
        if spm_model:
            import sentencepiece as spm
            sys.path.insert(0, __file__.rsplit("/", 1)[0])
            from tokenizer_ref import clean
            sp = spm.SentencePieceProcessor(model_file=spm_model)
            rows, masks = [], []
            for p in PROMPTS:
                t = sp.encode(clean(p))[:511] + [1]
                masks.append([1] * len(t) + [0] * (512 - len(t)))
                rows.append(t + [0] * (512 - len(t)))
            pids, pm = torch.tensor(rows), torch.tensor(masks)
            ctx = encoder(sd, pids, pm)
            for u, v in zip(ctx, pm.gt(0).sum(dim=1)):
                u[v:] = 0.0
            fx["prompt_embeds"] = ctx
            fx["prompt_ids"] = pids
    bk = buckets(160, CFG["buckets"], CFG["max_dist"])
    fx["buckets_160"] = bk[0]  # row 0: rel = 0 .. 159
    fx["buckets_160_back"] = bk[:, 0]  # column 0: rel = 0 .. -159
    torch.save(fx, out + "/fixture.pt")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)
