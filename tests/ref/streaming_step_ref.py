# streaming_step_ref.py — our PyTorch transcription of LongLive v1.0's streaming long tuning (NVlabs/LongLive,
# branch v1.0): trainer/distillation.py start_new_sequence + fwdbwd_one_step_streaming, model/streaming_training.py
# (StreamingTrainingModel: the sequence state, the random new-frame count, the overlap with the previous 21 frames,
# _process_first_frame_encoding, compute_generator_loss / compute_critic_loss with the gradient mask,
# _clear_cache_gradients), pipeline/streaming_training.py and pipeline/streaming_switch_training.py
# (generate_chunk_with_cache over a KV cache of local_attn_size + slice_last_frames frames that persists along the
# sequence, max_attention_size = local_attn_size frames, _recache_after_switch of the training pipeline) and
# wan/modules/causal_model.py's KV path (temporary clone, roll, protected sink on recompute, attention over
# [sink | window], then the same updates applied IN PLACE to the cache: PyTorch's autograd semantics for
# free). Tiny random Wan networks; the VAE is a stand-in (below) defined identically in the sfwb test.
#
#   /usr/bin/python3 tests/ref/streaming_step_ref.py OUTDIR VARIANT [checkpoint]     VARIANT: stream | switch
#
# `checkpoint` runs LongLive's gradient_checkpointing (longlive_train_long.yaml sets it): every block of a grad call
# under torch.utils.checkpoint(use_reentrant=False) without the cross-attention cache, the cache updates applied
# after the last block (_apply_cache_updates), so a block's backward re-runs its KV path against the cache tensors
# and indices of backward time. In this scenario that gives bit-identical gradients (streaming_checkpoint_probe.py
# shows it and the cases where it does not; docs/longlive.md says why).
#
# The run: dfake_gen_update_ratio 1, train_first_chunk true, two trainer iterations without optimizer steps:
# generator loss (a new sequence: chunk 1, 21 frames), critic loss (chunk 2: the random new-frame count, 21
# frames after the overlap re-encode), generator loss (chunk 3: the cache has rolled past its 33 frames), critic
# loss (the sequence is full: a new one starts). Every loss and parameter gradient is written; every draw is
# recorded for the sfwb test to replay through tr.rng (python `random` draws as randint {1}).
import os
import sys

import torch
import torch.utils.checkpoint

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wan_ref  # noqa: E402
from dmd_step_ref import CausalRef, Draws, write_model  # noqa: E402
from luaout import write_lua  # noqa: E402
from scheduler_ref import grid, nearest  # noqa: E402

torch.set_grad_enabled(True)
torch.set_num_threads(1)

TINY = dict(model_type="t2v", dim=32, ffn_dim=48, num_heads=2, num_layers=2, in_dim=16, out_dim=16,
            text_dim=8, text_len=4, freq_dim=16, eps=1e-6)
B, C, H, W = 2, 16, 2, 4
NFPB = 3
STEPS = [1000, 750, 500, 250]
GUIDANCE, SCORE_SHIFT = 3.0, 5.0
LOCAL, SINK, SLICE = 12, 3, 21
CHUNK, MAX_LEN, MIN_NEW = 21, 60, 12
SWITCH_CHOICES = [42, 63]  # 63 >= streaming_max_length: filtered out, as the original filters
CONTEXT_NOISE = 0


class KV:
    """LongLive's per-layer cache dicts and CausalWanSelfAttention's kv branch; the updates of _apply_cache_updates
    are applied in place right after the layer's attention (each layer reads only its own cache, so this equals
    applying them after the last layer)"""

    def __init__(self, c, frames, S):
        N, d = c.num_heads, c.dim // c.num_heads
        self.S = S
        self.size = frames * S
        self.max_attention_size = LOCAL * S
        self.k = [torch.zeros(B, self.size, N, d) for _ in range(c.num_layers)]
        self.v = [torch.zeros(B, self.size, N, d) for _ in range(c.num_layers)]
        self.G, self.Lend = [0] * c.num_layers, [0] * c.num_layers
        self.start = 0

    def clear(self):  # clear_kv_cache (zero_() under the grad mode of the caller)
        for t in self.k + self.v:
            t.zero_()
        self.G, self.Lend = [0] * len(self.G), [0] * len(self.Lend)

    def zero(self):  # _recache_after_switch without global_sink: buffers zeroed, indices kept
        for t in self.k + self.v:
            t.zero_()

    def detach(self):  # _clear_cache_gradients
        self.k = [t.detach() for t in self.k]
        self.v = [t.detach() for t in self.v]

    deferred = False  # CHECKPOINT mode: the updates wait for the end of the forward (_apply_cache_updates)
    pending = None

    def attend(self, i, roped_key, v, start=None):
        S = self.S
        current_start = self.start if start is None else start
        n = roped_key.shape[1]
        current_end = current_start + n
        sink = SINK * S
        G, Lend = self.G[i], self.Lend[i]
        cache_k, cache_v = self.k[i], self.v[i]
        is_recompute = current_end <= G and current_start > 0
        temp_k, temp_v = cache_k.clone(), cache_v.clone()
        roll = None
        if current_end > G and n + Lend > self.size:  # local_attn_size != -1
            ev = n + Lend - self.size
            rolled = Lend - ev - sink
            local_end = Lend + current_end - G - ev
            roll = (ev, rolled)
            temp_k[:, sink:sink + rolled] = temp_k[:, sink + ev:sink + ev + rolled].clone()
            temp_v[:, sink:sink + rolled] = temp_v[:, sink + ev:sink + ev + rolled].clone()
        else:
            local_end = Lend + current_end - G
        local_start = local_end - n
        ws = max(local_start, sink) if is_recompute else local_start  # sink_recache_after_switch never passed here
        off = max(0, ws - local_start)
        wl = max(0, local_end - ws)
        if wl > 0:
            temp_k[:, ws:local_end] = roped_key[:, off:off + wl]
            temp_v[:, ws:local_end] = v[:, off:off + wl]
        budget = self.max_attention_size - sink
        lo = max(sink, local_end - budget)
        kk = torch.cat([temp_k[:, :sink], temp_k[:, lo:local_end]], dim=1)
        vv = torch.cat([temp_v[:, :sink], temp_v[:, lo:local_end]], dim=1)
        if self.deferred:  # read back by apply_pending after the last layer (a recompute's entry is never read)
            self.pending.append((i, roll, ws, local_end, off, wl, roped_key, v, is_recompute, current_end))
            return kk, vv, None, None
        self.apply(i, roll, ws, local_end, off, wl, roped_key, v, is_recompute, current_end)
        return kk, vv, None, None

    def apply(self, i, roll, ws, local_end, off, wl, roped_key, v, is_recompute, current_end):
        # _apply_cache_updates, in place on the cache tensors
        sink = SINK * self.S
        cache_k, cache_v = self.k[i], self.v[i]
        if roll is not None:
            ev, rolled = roll
            cache_k[:, sink:sink + rolled] = cache_k[:, sink + ev:sink + ev + rolled].clone()
            cache_v[:, sink:sink + rolled] = cache_v[:, sink + ev:sink + ev + rolled].clone()
        if wl > 0:
            cache_k[:, ws:local_end] = roped_key[:, off:off + wl]
            cache_v[:, ws:local_end] = v[:, off:off + wl]
        if not is_recompute:
            self.G[i], self.Lend[i] = current_end, local_end

    def apply_pending(self):
        for u in self.pending:
            self.apply(*u)
        self.pending = []


class CheckpointedRef(CausalRef):
    """gradient_checkpointing as LongLive's _forward_inference does it: every block of a grad call runs under
    torch.utils.checkpoint(use_reentrant=False) without the cross-attention cache; the block's backward re-runs it
    (kv_attend included, with its own current_start) against the cache tensors and indices of backward time"""

    def block(self, *args):
        if not torch.is_grad_enabled():
            return CausalRef.block(self, *args)

        def run(*a):
            saved, self.xcache = self.xcache, None
            try:
                return CausalRef.block(self, *a)
            finally:
                self.xcache = saved

        return torch.utils.checkpoint.checkpoint(run, *args, use_reentrant=False)


def vae_decode(x):  # the stand-in VAE (the sfwb test defines the same): [B, T, C, h, w] -> pixels [B, T, 3, h, w]
    return torch.tanh(x[:, :, :3])


def vae_encode(p):  # pixels [B, 3, 1, h, w] -> latent [B, 1, C, h, w]
    q = p.permute(0, 2, 1, 3, 4)
    return torch.cat([q] * 6, dim=2)[:, :, :C] * 0.5


def main(out, variant, checkpoint=False):
    switch = variant == "switch"
    gen = torch.Generator().manual_seed(21)
    c = wan_ref.Cfg(TINY)
    PG, PR, PF = wan_ref.make_params(c, gen), wan_ref.make_params(c, gen), wan_ref.make_params(c, gen)
    write_model(os.path.join(out, "gen"), PG, True)
    write_model(os.path.join(out, "real"), PR, False)
    write_model(os.path.join(out, "fake"), PF, False)
    G, R, Fk = (CheckpointedRef if checkpoint else CausalRef)(c, PG), wan_ref.Wan(c, PR), wan_ref.Wan(c, PF)
    prompts = {"a": torch.randn(1, 4, 8, generator=gen), "b": torch.randn(1, 4, 8, generator=gen),
               "c": torch.randn(1, 4, 8, generator=gen), "d": torch.randn(1, 4, 8, generator=gen)}
    neg = torch.randn(1, 4, 8, generator=gen).repeat(B, 1, 1)
    batches = [(["a", "b"], ["c", "d"]), (["c", "d"], ["a", "b"])]  # (prompts, switch_prompts) per sequence
    dr = Draws(5)

    def pyrandint(n):  # python's random.randint(0, n - 1) / random.choice: recorded as randint(0, n, {1})
        return int(dr.randint(0, n, (1,)).item())

    s5, T5, _ = grid(5.0)
    s8, T8, _ = grid(8.0)
    steps = torch.cat((T5, torch.tensor([0.0])))[1000 - torch.tensor(STEPS)]
    K = len(steps)
    S = (H // 2) * (W // 2)

    def add_noise(x0, noise, tt):
        sig = s5[nearest(T5, tt)].reshape(-1, 1, 1, 1)
        return ((1 - sig) * x0 + sig * noise).type_as(noise)

    def to_x0(flow, xt, tt, sg, Tg):
        sd = sg.double()[nearest(Tg.double(), tt.reshape(-1).double())].reshape(-1, 1, 1, 1)
        return (xt.flatten(0, 1).double() - sd * flow.flatten(0, 1).double()).to(flow.dtype).unflatten(0, xt.shape[:2])

    st = {}

    def gen_call(x, tt, ctx, start):  # gradient_checkpointing: a grad forward does not use the cross-attn cache
        kv = st["kv"]
        kv.start = start * S
        kv.deferred, kv.pending = checkpoint, []
        G.xcache = None if torch.is_grad_enabled() else st["xcache"]
        attend = (lambda i, k, v, s=start * S: kv.attend(i, k, v, s)) if checkpoint else kv.attend
        flow = G.forward(x.permute(0, 2, 1, 3, 4), tt, ctx, kv_attend=attend, f0=start).permute(0, 2, 1, 3, 4)
        if checkpoint:
            kv.apply_pending()
        return to_x0(flow, x, tt, s5, T5)

    def score_call(model, xt, tt, cond):
        flow = model.forward(xt.permute(0, 2, 1, 3, 4), tt[:, 0], cond).permute(0, 2, 1, 3, 4)
        return to_x0(flow, xt, tt, s8, T8)

    def enc(names):
        return torch.cat([prompts[n] for n in names], 0)

    def start_new_sequence():
        p, sp = batches[st.get("seq", 0)]
        st["seq"] = st.get("seq", 0) + 1
        st["cond"] = enc(p)
        st["switch_cond"], st["switch_index"] = None, None
        if switch:
            choices = [x for x in SWITCH_CHOICES if x < MAX_LEN]
            st["switch_cond"] = enc(sp)
            st["switch_index"] = choices[pyrandint(len(choices))]
        # setup_sequence: the caches exist from the first sequence on and are cleared (reset_state)
        if "kv" not in st:
            st["kv"] = KV(c, LOCAL + SLICE, S)
        st["kv"].clear()
        st["xcache"] = {}
        st["length"], st["has_switched"], st["previous"] = 0, False, None

    def can_generate_more():
        return st["length"] < MAX_LEN and st["length"] + MIN_NEW <= MAX_LEN

    def current_cond(chunk_start):
        if st["switch_index"] is not None and (st["has_switched"] or chunk_start >= st["switch_index"]):
            return st["switch_cond"]
        return st["cond"]

    def recache_after_switch(output, pos, new_cond, local_start, recache_frames):
        kv = st["kv"]
        kv.zero()  # global_sink false
        st["xcache"] = {}
        if pos == 0:
            return
        if recache_frames is not None:
            frames = torch.cat([recache_frames, output], dim=1)[:, -21:]
        else:
            n = min(local_start, 21)
            frames = output[:, -n:]
        n = frames.shape[1]
        with torch.no_grad():
            gen_call(frames, torch.ones(B, n) * CONTEXT_NOISE, new_cond, pos - n)
        # k, v zeroed with is_init left True: later cached calls see zero cross-attention K/V
        st["xcache"] = {i: (torch.zeros_like(k), torch.zeros_like(v)) for i, (k, v) in st["xcache"].items()}

    def generate_chunk(noise, cond, start, requires_grad, sw_rel=None, sw_cond=None, sw_frames=None):
        nb = noise.shape[1] // NFPB
        output = torch.zeros_like(noise)
        exits = dr.randint(0, K, (nb,)).tolist()
        if not requires_grad:
            grad_from = noise.shape[1]
        else:
            grad_from = sw_rel if sw_rel is not None else 0
        using_second = False
        cur = cond
        ls = 0
        for blk in range(nb):
            if sw_rel is not None and not using_second and ls >= sw_rel:
                recache_after_switch(output[:, :ls], start + ls, sw_cond, ls, sw_frames)
                cur, using_second = sw_cond, True
            x = noise[:, ls:ls + NFPB]
            for idx in range(K):
                tt = torch.ones(B, NFPB) * steps[idx]
                if idx != exits[0]:
                    with torch.no_grad():
                        x0 = gen_call(x, tt, cur, start + ls)
                        if idx < K - 1:
                            x = add_noise(x0.flatten(0, 1), dr.randn(B * NFPB, C, H, W),
                                          steps[idx + 1] * torch.ones(B * NFPB)).unflatten(0, x0.shape[:2])
                else:
                    with torch.set_grad_enabled(ls >= grad_from):
                        x0 = gen_call(x, tt, cur, start + ls)
                    break
            output[:, ls:ls + NFPB] = x0
            xc = add_noise(x0.flatten(0, 1), dr.randn(B * NFPB, C, H, W),
                           torch.ones(B * NFPB) * CONTEXT_NOISE).unflatten(0, x0.shape[:2])
            with torch.no_grad():
                gen_call(xc, torch.ones(B, NFPB) * CONTEXT_NOISE, cur, start + ls)
            ls += NFPB
        return output

    def process_first_frame_encoding(frames):
        total = frames.shape[1]
        if total <= 1:
            return frames
        pf = min(21, total)
        with torch.no_grad():
            pixels = vae_decode(frames[:, :-(pf - 1)])
            last = pixels[:, -1:].permute(0, 2, 1, 3, 4)
            img = vae_encode(last)
        return torch.cat([img, frames[:, -(pf - 1):]], dim=1)

    def generate_next_chunk(requires_grad):
        cur_len = st["length"]
        prev = st["previous"]
        if prev is not None:
            max_new = min(MAX_LEN - cur_len + 1, CHUNK)
            possible = list(range(MIN_NEW, max_new, 3))
            new = possible[pyrandint(len(possible))]
            overlap = CHUNK - new
            if not (overlap > 0 and overlap <= prev.shape[1]):
                overlap, new = 0, CHUNK
        else:
            overlap, new = 0, CHUNK
        noise = dr.randn(B, new, C, H, W)
        cond = current_cond(cur_len)
        sw = {}
        if switch and not st["has_switched"] and cur_len <= st["switch_index"] < cur_len + new:
            sw = dict(sw_rel=max(0, st["switch_index"] - cur_len), sw_cond=st["switch_cond"], sw_frames=prev)
            st["has_switched"] = True
        gen_out = generate_chunk(noise, cond, cur_len, requires_grad, **sw)
        full = torch.cat([prev, gen_out], dim=1) if prev is not None else gen_out
        save = full.detach().clone()[:, -CHUNK:]
        if prev is not None:
            full = process_first_frame_encoding(full)
            mask = (overlap, overlap + new)
        else:
            mask = (0, full.shape[1])
        st["length"] += new
        st["previous"] = save
        return full, dict(start=cur_len, mask=mask, new=new)

    def score_t(F):
        t = dr.randint(0, 1000, [B, 1]).repeat(1, F)
        t = SCORE_SHIFT * (t / 1000) / (1 + (SCORE_SHIFT - 1) * (t / 1000)) * 1000
        return t.clamp(20, 980)

    def ensure_sequence():
        if "seq" not in st or not can_generate_more():
            start_new_sequence()

    def generator_loss():
        ensure_sequence()
        x, info = generate_next_chunk(True)
        cond = current_cond(info["start"])
        Fr = x.shape[1]
        with torch.no_grad():
            t = score_t(Fr)
            n = dr.randn(B, Fr, C, H, W)
            xt = add_noise(x.flatten(0, 1), n.flatten(0, 1), t.flatten(0, 1)).unflatten(0, (B, Fr))
            x0_fake = score_call(Fk, xt, t, cond)
            x0_c, x0_u = score_call(R, xt, t, cond), score_call(R, xt, t, neg)
            x0_real = x0_c + (x0_c - x0_u) * GUIDANCE
            g = torch.nan_to_num((x0_fake - x0_real) / (x - x0_real).abs().mean(dim=[1, 2, 3, 4], keepdim=True))
        a, b = info["mask"]
        gl = 0.5 * torch.nn.functional.mse_loss(x.double()[:, a:b], (x.double() - g.double()).detach()[:, a:b])
        return gl, info

    def critic_loss():
        ensure_sequence()
        with torch.no_grad():
            x, info = generate_next_chunk(False)
        x = x.detach()
        st["kv"].detach()
        cond = current_cond(info["start"])
        Fr = x.shape[1]
        t = score_t(Fr)
        n = dr.randn(B, Fr, C, H, W)
        xt = add_noise(x.flatten(0, 1), n.flatten(0, 1), t.flatten(0, 1)).unflatten(0, (B, Fr))
        x0p = score_call(Fk, xt, t, cond)
        sd = s5.double()[nearest(T5.double(), t.flatten().double())].reshape(-1, 1, 1, 1)
        flow = ((xt.flatten(0, 1).double() - x0p.flatten(0, 1).double()) / sd).float().unflatten(0, (B, Fr))
        a, b = info["mask"]
        err = (flow - (n - x)) ** 2
        return err[:, a:b].mean(), info

    data = {"neg": neg}
    for k, v in prompts.items():
        data["prompt_" + k] = v
    results = []
    n_draws = []
    for it in range(2):
        for p in PG.values():
            p.requires_grad_(True)
            p.grad = None
        gl, info = generator_loss()
        gl.backward()
        for k, p in PG.items():
            data["g%d.%s" % (it, k)] = p.grad if p.grad is not None else torch.zeros_like(p)
        results.append({"loss": gl.item(), "start": info["start"], "new": info["new"], "mask": list(info["mask"])})
        n_draws.append(len(dr.log))
        for p in PG.values():
            p.requires_grad_(False)
        for p in PF.values():
            p.requires_grad_(True)
            p.grad = None
        cl, info = critic_loss()
        cl.backward()
        for k, p in PF.items():
            data["c%d.%s" % (it, k)] = p.grad if p.grad is not None else torch.zeros_like(p)
            p.requires_grad_(False)
        results.append({"loss": cl.item(), "start": info["start"], "new": info["new"], "mask": list(info["mask"])})
        n_draws.append(len(dr.log))

    kinds = []
    for j, (kind, shape, val) in enumerate(dr.log):
        data["draw_%03d" % (j + 1)] = val
        kinds.append({"kind": kind, "shape": shape})
    wan_ref.save_safetensors(os.path.join(out, "data.safetensors"),
                             {k: (v.detach() if v.dtype == torch.int64 else v.detach().float()) for k, v in data.items()})
    write_lua(os.path.join(out, "manifest.lua"), {"results": results, "draws": kinds, "n_draws": n_draws,
                                                 "switch_index": st.get("switch_index") or -1})


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], len(sys.argv) > 3 and sys.argv[3] == "checkpoint")
