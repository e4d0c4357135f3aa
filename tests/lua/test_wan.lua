-- test_wan.lua — the Lua surface of the Wan DiT (API.md "Wan models", "Attention capture") against the
-- PyTorch transcription tests/ref/wan_ref.py: loading a model folder, forward with I2V/causal/KV
-- options, cache bookkeeping, captures with tag filters, checkpoints (.pt, EMA, prefixes), clone, bf16.
local T = require "sfwb.testing"

-- every case's reference data from one python run (torch imports once)
local BASE = T.tmpdir("wan")
assert(os.execute(string.format("%s tests/ref/wan_ref.py i2v_bidir,train_indep,kv_b2,t2v_bidir,kv_b1 '%s'", T.python, BASE)),
       "reference script failed")
local function ref(case)
  local dir = BASE .. "/" .. case
  return dir, dofile(dir .. "/manifest.lua"), sfwb.load(dir .. "/data.safetensors")
end

local function causal_opts(man, extra)
  local o = {causal = true}
  for k, v in pairs(man.causal) do o[k] = v end
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

T.case("bidirectional i2v: load folder, forward with clip_fea and y", function()
  local dir, man, d = ref("i2v_bidir")
  local m = sfwb.wan.load(dir)
  T.eq(m.config.model_type, "i2v")
  T.eq(m.config.in_dim, 36)
  T.eq(m.config.num_layers, 2)
  local c = man.calls[1]
  local out = m:forward(d[c.x], d[c.t], d.context, {clip_fea = d.clip_fea, y = d.y})
  T.eq(out:dtype(), "f32")
  T.close(out, d[c.out], 1e-4, "i2v output")
  -- missing clip features is an error naming them
  T.raises(function() m:forward(d[c.x], d[c.t], d.context, {y = d.y}) end, "clip_fea")
  -- bf16 weights stay within bf16 tolerance
  local mb = m:clone():to("bf16")
  T.eq(mb.config.dtype, "bf16")
  T.close(mb:forward(d[c.x], d[c.t], d.context, {clip_fea = d.clip_fea, y = d.y}), d[c.out], 5e-2, "bf16 output")
  -- the clone shares nothing: the f32 model is unchanged
  T.close(m:forward(d[c.x], d[c.t], d.context, {clip_fea = d.clip_fea, y = d.y}), d[c.out], 1e-4, "after clone")
end)

T.case("causal training path with an independent first frame; capture NaN where unseen", function()
  local dir, man, d = ref("train_indep")
  local m = sfwb.wan.load(dir, causal_opts(man))
  local cap = m:capture_attention{layers = "all", attn = "self", what = "logits", reduce = "frame"}
  local c = man.calls[1]
  local out = m:forward(d[c.x], d[c.t], d.context)
  T.close(out, d[c.out], 1e-4, "block-causal output")
  for L = 0, 1 do
    local A, meta = cap:result{layer = L}
    local R = d["c0_L" .. L .. "_self_logits"]
    T.eq(A:size(1), 2)
    T.eq(A:size(2), man.F)
    -- NaN pattern: frame 0 sees only itself; NaN never becomes 0
    local a = A:totable()
    T.check(a[1][1][2] ~= a[1][1][2], "frame 0 -> frame 1 must be NaN")
    T.check(a[1][2][1] == a[1][2][1], "frame 1 -> frame 0 must be finite")
    local r = R:totable()
    local diff = 0
    for h = 1, #a do for i = 1, #a[h] do for j = 1, #a[h][i] do
      local x, y = a[h][i][j], r[h][i][j]
      T.check((x ~= x) == (y ~= y), "NaN positions differ")
      if x == x then diff = math.max(diff, math.abs(x - y)) end
    end end end
    T.check(diff < 1e-4, "capture logits differ by " .. diff)
    T.eq(meta.layer, L)
  end
  cap:reset()
  T.raises(function() cap:result{layer = 0} end, "matched")
  cap:remove()
  m:forward(d[c.x], d[c.t], d.context)
  T.eq(cap.n_calls, 0)
end)

T.case("KV cache window + sink: bookkeeping, outputs, tag-filtered captures", function()
  local dir, man, d = ref("kv_b2")
  local m = sfwb.wan.load(dir, causal_opts(man))
  local kv = m:kv_cache{batch = man.B, frames = man.F}
  local ca = m:crossattn_cache{batch = man.B}
  local cap = m:capture_attention{layers = {1}, what = "mass", where = {steps = {1}, passes = {"denoise"}}}
  local tokc = m:capture_attention{layers = {1}, what = "probs", reduce = "none", frames = {q = {6, 8}, k = {0, 8}},
                                   where = {steps = {1}}}
  local tokl = m:capture_attention{layers = {1}, what = "logits", reduce = "none", frames = {q = {6, 8}, k = {0, 8}},
                                   where = {steps = {1}}}
  local frl = m:capture_attention{layers = {1}, what = "logits", where = {steps = {1}}}
  for i, c in ipairs(man.calls) do
    local out = m:forward(d[c.x], d[c.t], d.context, {kv_cache = kv, crossattn_cache = ca, current_start_frame = c.start,
      tag = {chunk = c.chunk, step = c.step, pass = c.pass, timestep = d[c.t]:totable()[1][1]}})
    T.close(out, d[c.out], 1e-4, "call " .. i)
    T.eq(kv.global_end, c.global_end, "global_end after call " .. i)
    T.eq(kv.local_end, c.local_end, "local_end after call " .. i)
  end
  -- the window keeps the sink frame and the newest ones
  local l0 = kv:layer(0)
  T.eq(table.concat(l0.frames, ","), table.concat(man.cache_frames, ","))
  T.close(l0.k, d.cache_k_0, 1e-4, "cached keys")
  -- only step-1 denoise calls were recorded: one per chunk
  local A, meta = cap:result{layer = 1}
  T.eq(meta.n_calls, 3)
  T.eq(A:size(2), man.F)
  local last = man.calls[#man.calls - 3] -- step 1 of the last chunk
  local R = d[last.cap .. "L1_self_mass"]
  local a, r = A:totable(), R:totable()
  for h = 1, #a do for i = 7, 9 do for j = 1, #a[h][i] do
    T.check((a[h][i][j] ~= a[h][i][j]) == (r[h][i][j] ~= r[h][i][j]), "NaN pattern differs at " .. i .. "," .. j)
    if r[h][i][j] == r[h][i][j] then T.near(a[h][i][j], r[h][i][j], 1e-4) end
  end end end
  -- rows of mass sum to one over the frames the query could see
  for h = 1, #a do for i = 1, #a[h] do
    local s = 0
    for j = 1, #a[h][i] do if a[h][i][j] == a[h][i][j] then s = s + a[h][i][j] end end
    T.near(s, 1, 1e-4)
  end end
  -- token level: [heads, 3 query frames x 6 tokens, 9 key frames x 6 tokens]; reduces to the frame values
  local P = tokc:result{layer = 1, chunk = 2}
  T.eq(table.concat(P:shape(), ","), "2,18,54")
  local p = P:totable()
  local Lt = tokl:result{layer = 1, chunk = 2}:totable()
  local Lf = frl:result{layer = 1, chunk = 2}:totable()
  for h = 1, 2 do for qf = 0, 2 do for kf = 0, 8 do
    local s, sl = 0, 0
    for a = 1, 6 do for b = 1, 6 do
      s = s + p[h][qf * 6 + a][kf * 6 + b]
      sl = sl + Lt[h][qf * 6 + a][kf * 6 + b]
    end end
    local want = a[h][qf + 7][kf + 1]
    T.check((s ~= s) == (want ~= want), "token NaN pattern at " .. qf .. "," .. kf)
    if want == want then
      T.near(s / 6, want, 1e-4)
      T.near(sl / 36, Lf[h][qf + 7][kf + 1], 1e-4)
    end
  end end end
  T.raises(function() m:capture_attention{layers = {0}, reduce = "none"} end, "frames")
  kv:reset()
  T.eq(kv.global_end, 0)
  T.eq(kv.local_end, 0)
end)

T.case("checkpoints: generator / generator_ema with prefixes, strict errors, no fallback", function()
  local dir, man, d = ref("t2v_bidir")
  local m = sfwb.wan.load(dir)
  local sd = m:state_dict()
  local raw, ema = {}, {}
  for k, v in pairs(sd) do
    raw["generator.model." .. k] = v
    ema["generator_ema.model._fsdp_wrapped_module." .. k] = v * 0.5
  end
  local both = {}
  for k, v in pairs(raw) do both[k] = v end
  for k, v in pairs(ema) do both[k] = v end
  local ck = dir .. "/ckpt.pt"
  sfwb.save(ck, both)
  local m2 = sfwb.wan.load(dir)
  local info = m2:load_checkpoint(ck, {ema = true})
  T.eq(info.key, "generator_ema")
  T.close(m2:parameters()["blocks.0.ffn.0.weight"], sd["blocks.0.ffn.0.weight"] * 0.5, 1e-7)
  m2:load_checkpoint(ck, {ema = false})
  T.close(m2:parameters()["blocks.0.ffn.0.weight"], sd["blocks.0.ffn.0.weight"], 1e-7)
  -- a file without generator_ema: error, never a silent fallback
  local only = dir .. "/raw.pt"
  sfwb.save(only, raw)
  T.raises(function() m2:load_checkpoint(only, {ema = true}) end, "generator_ema")
  T.raises(function() m2:load_checkpoint(dir .. "/nope.pt") end, "nope.pt")
  -- strict checks name missing, unexpected and mis-shaped keys in one message
  local bad = {}
  for k, v in pairs(sd) do bad[k] = v end
  bad["blocks.0.norm3.bias"] = nil
  bad["blocks.9.extra"] = sfwb.zeros({3})
  bad["head.head.bias"] = sfwb.zeros({5})
  local err = T.raises(function() m2:load_state_dict(bad) end, "missing")
  T.check(tostring(err):find("blocks.0.norm3.bias", 1, true), "names the missing key")
  T.check(tostring(err):find("blocks.9.extra", 1, true), "names the unexpected key")
  T.check(tostring(err):find("head.head.bias", 1, true), "names the mis-shaped key")
  -- non-strict ignores missing/unexpected but not shapes
  bad["head.head.bias"] = sd["head.head.bias"]
  m2:load_state_dict(bad, {strict = false})
  T.raises(function() sfwb.wan.load(dir .. "/missing-folder") end, "config.json")
end)

T.case("bf16 through the windowed KV cache: cpu and emu agree, within bf16 tolerance of the f32 reference", function()
  local dir, man, d = ref("kv_b1")
  local mc = sfwb.wan.load(dir, causal_opts(man, {dtype = "bf16"}))
  T.eq(mc.config.dtype, "bf16")
  local emu = T.test_device() -- emu:0, or $SFWB_TEST_DEVICE
  local me = emu and mc:clone():to(emu)
  local kc, ke = mc:kv_cache{frames = man.F}, me and me:kv_cache{frames = man.F}
  for i, c in ipairs(man.calls) do
    local a = mc:forward(d[c.x], d[c.t], d.context, {kv_cache = kc, current_start_frame = c.start})
    T.close(a, d[c.out], 3e-2, "bf16 call " .. i)
    if me then
      local b = me:forward(d[c.x]:to(emu), d[c.t]:to(emu), d.context:to(emu), {kv_cache = ke, current_start_frame = c.start})
      T.close(b:cpu(), a, 1e-2, "emu vs cpu bf16 call " .. i)
    end
  end
end)

T.case("sharded folder: index.json weight_map over two shards loads like the single file", function()
  local dir, man, d = ref("t2v_bidir")
  local sd = sfwb.wan.load(dir):state_dict()
  local sh = T.tmpdir("wan-sharded")
  local a, b, map, n = {}, {}, {}, 0
  for k, v in pairs(sd) do
    n = n + 1
    local file = (n % 2 == 0) and "diffusion_pytorch_model-00001-of-00002.safetensors" or "diffusion_pytorch_model-00002-of-00002.safetensors"
    if n % 2 == 0 then a[k] = v else b[k] = v end
    map[#map + 1] = string.format("%q: %q", k, file)
  end
  sfwb.save(sh .. "/diffusion_pytorch_model-00001-of-00002.safetensors", a)
  sfwb.save(sh .. "/diffusion_pytorch_model-00002-of-00002.safetensors", b)
  local f = io.open(sh .. "/diffusion_pytorch_model.safetensors.index.json", "w")
  f:write('{"metadata": {}, "weight_map": {' .. table.concat(map, ", ") .. '}}')
  f:close()
  os.execute(string.format("cp '%s/config.json' '%s/'", dir, sh))
  local m = sfwb.wan.load(sh)
  local c = man.calls[1]
  T.close(m:forward(d[c.x], d[c.t], d.context), d[c.out], 1e-4, "sharded")
  os.execute(string.format("rm -rf '%s'", sh))
end)

T.case("sfwb.wan.new: random init from a config table, requires_grad_", function()
  local m = sfwb.wan.new({dim = 32, ffn_dim = 48, num_heads = 2, num_layers = 1, text_dim = 8, text_len = 4, freq_dim = 16},
                         {causal = true, num_frame_per_block = 1})
  T.eq(m.config.head_dim, 16)
  local n = 0
  for _ in pairs(m:parameters()) do n = n + 1 end
  T.eq(n, 15 + 27)
  local out = m:forward(sfwb.randn({1, 16, 2, 2, 4}), sfwb.full({1, 2}, 300), sfwb.randn({1, 3, 8}))
  T.eq(table.concat(out:shape(), ","), "1,16,2,2,4")
  T.raises(function() m:capture_attention{layers = {5}} end, "layer 5")
  T.raises(function() m:forward(sfwb.randn({1, 16, 2, 3, 4}), sfwb.full({1, 2}, 3), sfwb.randn({1, 3, 8})) end, "even")
  -- cache misuse is an error naming the problem, never a silent wrap-around
  local kv = m:kv_cache{batch = 1, frames = 2}
  local x1 = sfwb.randn({1, 16, 1, 2, 4})
  m:forward(x1, sfwb.full({1, 1}, 3), sfwb.randn({1, 3, 8}), {kv_cache = kv, current_start_frame = 0})
  m:forward(x1, sfwb.full({1, 1}, 3), sfwb.randn({1, 3, 8}), {kv_cache = kv, current_start_frame = 1})
  T.eq(kv.global_end, 2 * 2)
  T.raises(function() m:forward(x1, sfwb.full({1, 1}, 3), sfwb.randn({1, 3, 8}), {kv_cache = kv, current_start_frame = 2}) end, "cache holds 2 frames")
  T.raises(function() m:forward(x1, sfwb.full({1, 1}, 3), sfwb.randn({1, 3, 8}), {kv_cache = kv, current_start_frame = 1024}) end, "1024")
  T.raises(function() m:forward(sfwb.randn({1, 16, 1, 4, 4}), sfwb.full({1, 1}, 3), sfwb.randn({1, 3, 8}), {kv_cache = kv, current_start_frame = 0}) end, "tokens per frame")
  T.raises(function() m:forward(x1, sfwb.full({1, 1}, 3), sfwb.randn({1, 5, 8})) end, "context")
  -- a clone is a new set of leaves: gradients of the clone never reach the source
  m:requires_grad_(true)
  local c2 = m:clone()
  local loss = c2:forward(sfwb.randn({1, 16, 2, 2, 4}), sfwb.full({1, 2}, 300), sfwb.randn({1, 3, 8})):sum()
  loss:backward()
  T.check(c2:parameters()["blocks.0.ffn.0.weight"].grad ~= nil, "clone parameters get gradients")
  T.check(m:parameters()["blocks.0.ffn.0.weight"].grad == nil, "the source gets none")
  m:load_state_dict(c2:state_dict()) -- loading into leaves that require grad is allowed
  local bidir = sfwb.wan.new({dim = 32, ffn_dim = 48, num_heads = 2, num_layers = 1, text_dim = 8, text_len = 4, freq_dim = 16})
  T.raises(function() bidir:kv_cache{frames = 2} end, "causal")
end)

os.execute("rm -rf '" .. BASE .. "'")
T.done()
