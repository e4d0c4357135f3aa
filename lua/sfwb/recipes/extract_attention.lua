-- sfwb/recipes/extract_attention.lua — the figure workflows in ONE rollout for every requested layer:
-- frame-level attention (logits / probs / mass, self or cross, chosen steps and passes) saved with full
-- provenance to .safetensors, plus per-layer head grids, a layer mosaic and last-chunk per-head profiles.
local sfwb = require "sfwb"
local C = require "sfwb.recipes.common"
local json = require "sfwb.json"

local M = {}

M.spec = {
  usage = "recipes/extract_attention.lua [options]",
  description = "Extract frame-level attention maps of many layers from one generation, with figures.",
  options = {
    {"--config_path", "YAML", "config, merged over default_config.yaml next to it"},
    {"--wan_dir", "DIR", "Wan2.1 folder; default $SFWB_WAN_DIR"},
    {"--checkpoint_path", "PT", "Self-Forcing checkpoint; default $SFWB_CKPT"},
    {"--no_checkpoint", false, "base Wan weights only", false},
    {"--use_ema", false, "generator_ema instead of generator", false},
    {"--prompt", "TEXT", "a prompt (repeatable; default: the fork's eagle prompt)", list = true},
    {"--data_path", "TXT", "a prompt file: one rollout (all layers) per prompt, each in its own folder"},
    {"--num_frames", "N", "latent frames", 21},
    {"--height", "PX", "video height", 480},
    {"--width", "PX", "video width", 832},
    {"--seed", "N", "seed", 42},
    {"--layers", "LIST", "layer ids (0-based, as the checkpoint keys): 0,4 or 0-29 or all", "0,4"},
    {"--attn", "KIND", "self or cross", "self"},
    {"--what", "Q", "logits (mean pre-softmax QK^T/sqrt(d)), probs, or mass (probability summed per key frame)", "logits"},
    {"--reduce", "R", "frame ([heads, Fq, Fk]) or query_mean ([heads, Fk])", "frame"},
    {"--steps", "LIST", "denoising steps to keep (1 = t=1000, queries from pure noise)", "1"},
    {"--passes", "LIST", "denoise and/or refresh (the clean KV-cache pass)", "denoise"},
    {"--scale", "S", "colour scale: shared (one scale for all layers) or layer", "shared"},
    {"--cmap", "NAME", "colormap (default RdBu_r centred for logits, viridis otherwise)"},
    {"--output_dir", "DIR", "where tensors and figures go", "attention_out"},
    {"--name", "STEM", "file stem of the .safetensors (default from the weights and the EMA flag)"},
    {"--save_video", false, "also decode and write the generated video", false},
    {"--local_attn_size", "N", "long videos: attention window in latent frames (-1 = global; default from the config)"},
    {"--sink_size", "N", "long videos: sink frames the window always keeps"},
    {"--device", "DEV", "cpu, emu:0, cuda:0", "cpu"},
    {"--dtype", "DT", "f32 or bf16", "f32"},
    {"--no_figures", false, "tensors only", false},
  },
}
for _, o in ipairs(M.spec.options) do
  if ({["--num_frames"] = 1, ["--height"] = 1, ["--width"] = 1, ["--seed"] = 1})[o[1]] then o.number = true end
end

local function weights_label(w, ema)
  if not w.checkpoint then return "base" end
  local stem = w.checkpoint:match("([^/]+)$"):gsub("%.[^.]*$", "")
  return stem .. (ema and "-ema" or "-raw")
end

local function nan_finite_range(list)
  local lo, hi = math.huge, -math.huge
  for _, t in ipairs(list) do
    for _, v in ipairs(t:reshape({t:numel()}):totable()) do
      if v == v and v ~= math.huge and v ~= -math.huge then
        if v < lo then lo = v end
        if v > hi then hi = v end
      end
    end
  end
  if lo > hi then return nil end
  return lo, hi
end

-- extraction as a function so other recipes (compare) can reuse it on a loaded model. The refresh
-- (clean context) pass is the chunk's forward number K+1 for K denoising steps: requesting it adds
-- that step to the filter, and its results are keyed by it.
function M.capture_spec(o, nlayers, nsteps)
  local steps = C.int_list(o.steps)
  local passes = C.str_list(o.passes)
  local wsteps, combos = {}, {}
  local seen = {}
  local function add(s) if not seen[s] then seen[s] = true wsteps[#wsteps + 1] = s end end
  for _, ps in ipairs(passes) do
    if ps == "refresh" then
      add((nsteps or 4) + 1)
      combos[#combos + 1] = {step = (nsteps or 4) + 1, pass = ps}
    elseif ps == "denoise" then
      for _, s in ipairs(steps) do add(s) combos[#combos + 1] = {step = s, pass = ps} end
    else
      error("unknown pass '" .. ps .. "' (denoise or refresh)", 0)
    end
  end
  return {
    layers = C.int_list(o.layers, nlayers),
    attn = o.attn, what = o.what, reduce = o.reduce,
    where = {steps = wsteps, passes = passes, chunks = "all"},
    combos = combos,
  }
end

-- registers the capture a spec describes on model m
function M.capture(m, spec)
  return m:capture_attention{layers = spec.layers, attn = spec.attn, what = spec.what, reduce = spec.reduce,
                             where = spec.where}
end

-- results of a capture as a table name -> tensor, plus per-entry metadata
function M.collect(cap, spec, chunk_sizes, F)
  local tensors, metas, by_layer = {}, {}, {}
  for _, L in ipairs(spec.layers) do
    for _, cb in ipairs(spec.combos) do
      do
        local s, ps = cb.step, cb.pass
        local A, meta = cap:result{layer = L, step = s, pass = ps}
        local key = string.format("layer%d.step%d.%s", L, s, ps)
        tensors["attn." .. key] = A
        metas[key] = meta
        local last
        if spec.reduce == "frame" then
          local cs = chunk_sizes[#chunk_sizes]
          last = A:narrow(2, A:size(2) - cs + 1, cs):mean(2)
          tensors["last_chunk." .. key] = last
        else
          last = A
        end
        by_layer[#by_layer + 1] = {layer = L, step = s, pass = ps, key = key, A = A, last = last, meta = meta}
      end
    end
  end
  return tensors, metas, by_layer
end

-- the numbers the fork's notebooks printed, per layer and head, from the last chunk's profile over key
-- frames: first (the "sink" frame), mean of the middle frames, last, sink = first - middle; and the
-- diagonal / first-column means of the head-mean frame map. NaN (unseen) cells are left out.
function M.stats(by_layer)
  local function fin(v) return v == v and v ~= math.huge and v ~= -math.huge end
  local rows = {}
  for _, e in ipairs(by_layer) do
    local last = e.last:float():totable()
    local heads = {}
    local acc = {first = 0, middle = 0, last = 0, sink = 0}
    for h, prof in ipairs(last) do
      local n = #prof
      local mid, cnt = 0, 0
      for k = 2, n - 1 do if fin(prof[k]) then mid = mid + prof[k]; cnt = cnt + 1 end end
      mid = cnt > 0 and mid / cnt or 0 / 0
      local st = {head = h - 1, first = prof[1], middle = mid, last = prof[n], sink = prof[1] - mid}
      heads[h] = st
      for k in pairs(acc) do acc[k] = acc[k] + st[k] / #last end
    end
    local row = {layer = e.layer, step = e.step, pass = e.pass, heads = heads, head_mean = acc}
    if e.A:dim() == 3 then
      local m = e.A:mean(1):totable()
      local d, nd, c, nc = 0, 0, 0, 0
      for i = 1, #m do
        if fin(m[i][i]) then d = d + m[i][i]; nd = nd + 1 end
        if i > 1 and fin(m[i][1]) then c = c + m[i][1]; nc = nc + 1 end
      end
      row.diag_mean = nd > 0 and d / nd or nil
      row.first_column_mean = nc > 0 and c / nc or nil
    end
    rows[#rows + 1] = row
  end
  return rows
end

function M.figures(by_layer, o, out, label, what)
  local files = {}
  local cmap = o.cmap or (what == "logits" and "RdBu_r" or "viridis")
  local center = cmap == "RdBu_r" or cmap == "RdBu"
  local shared = o.scale ~= "layer"
  local lo, hi
  if shared then
    local all = {}
    for _, e in ipairs(by_layer) do all[#all + 1] = e.A end
    lo, hi = nan_finite_range(all)
    if center and lo then local mx = math.max(math.abs(lo), math.abs(hi)) lo, hi = -mx, mx end
  end
  local qty = ({logits = "mean logit", probs = "mean probability", mass = "attention mass"})[what] or what
  local xlabel = o.attn == "cross" and "text token" or "key frame"
  local mosaic = {}
  local multi = false
  for _, e in ipairs(by_layer) do
    if e.step ~= by_layer[1].step or e.pass ~= by_layer[1].pass then multi = true end
  end
  for _, e in ipairs(by_layer) do
    local t = e.meta and e.meta.timestep
    local ttl = string.format("layer %d · %s-attn %s · step %d%s · %s · %s", e.layer, o.attn, what, e.step,
                              t and string.format(" (t=%g)", t) or "", e.pass, label)
    local base = string.format("%s/layer%d_step%d_%s", out, e.layer, e.step, e.pass)
    if e.A:dim() == 3 then
      files[#files + 1] = sfwb.plot.head_grid(e.A, {path = base .. "_heads.png", title = ttl, cmap = cmap,
        cols = o.attn == "cross" and 2 or nil,
        center = center, vmin = lo, vmax = hi, xlabel = xlabel, ylabel = "query frame", cbar_label = qty}).path
      mosaic[#mosaic + 1] = {e.A:mean(1), title = multi and string.format("layer %d · %s@%d", e.layer, e.pass, e.step)
                                                   or string.format("layer %d", e.layer)}
    else -- query_mean [heads, Fk]: heads x key frames
      files[#files + 1] = sfwb.plot.heatmap(e.A, {path = base .. "_heads.png", title = ttl, cmap = cmap,
        center = center, vmin = lo, vmax = hi, xlabel = xlabel, ylabel = "head", cbar_label = qty}).path
    end
    local H = e.last:size(1)
    local series = {}
    for h = 1, H do series[h] = {y = e.last:select(1, h), label = "head " .. (h - 1)} end
    files[#files + 1] = sfwb.plot.lines(series, {path = base .. "_last_chunk.png",
      title = string.format("layer %d · last chunk, per head · %s", e.layer, label), xlabel = xlabel,
      ylabel = qty, markers = true}).path
  end
  if #mosaic > 1 then
    files[#files + 1] = sfwb.plot.mosaic(mosaic, {path = out .. "/layers_mosaic.png", cmap = cmap, center = center,
      vmin = lo, vmax = hi, shared = shared,
      title = string.format("head-mean %s-attn %s per layer · %s", o.attn, what, label),
      xlabel = xlabel, ylabel = "query frame", cbar_label = qty}).path
  end
  -- head-mean profile of the last chunk per layer, with the spread over heads as a band
  local prof = {}
  for _, e in ipairs(by_layer) do
    prof[#prof + 1] = {y = e.last:mean(1), band = e.last:size(1) > 1 and e.last:std(1) or nil,
                       label = string.format("layer %d s%d %s", e.layer, e.step, e.pass)}
  end
  files[#files + 1] = sfwb.plot.lines(prof, {path = out .. "/layers_profile.png",
    title = "last chunk, head mean ± std · " .. label, xlabel = xlabel, ylabel = qty}).path
  return files
end

function M.main(argv)
  local o = C.parse_args(argv, M.spec)
  if not o then return 0 end
  local t0 = sfwb.time()
  C.preflight(o, {dir = "output_dir", size = true, frames = "num_frames", cmap = true, steps = true, device = true,
                  choices = {attn = {"self", "cross"}, what = {"logits", "probs", "mass"},
                             reduce = {"frame", "query_mean", "none"}, scale = {"shared", "layer"},
                             passes = {"denoise", "refresh"}}, lists = {passes = true}})
  o.checkpoint = o.checkpoint_path
  local w = C.weights(o)
  local cfg = C.load_config(o.config_path)
  local s = C.pipeline_settings(cfg, {local_attn_size = tonumber(o.local_attn_size), sink_size = tonumber(o.sink_size)})
  local dev = {device = o.device, dtype = o.dtype, ema = o.use_ema}
  local m, ckinfo = C.load_generator(w, s, dev)
  local t5 = C.load_text_encoder(w, dev)
  local vae = o.save_video and C.load_vae(w, dev) or nil
  local prov = C.provenance(w, o.use_ema, ckinfo)
  local label = weights_label(w, o.use_ema)
  local p = sfwb.pipeline.causal{generator = m, text_encoder = t5, vae = vae,
                                 denoising_step_list = s.denoising_step_list, warp_denoising_step = s.warp_denoising_step,
                                 num_frame_per_block = s.num_frame_per_block,
                                 independent_first_frame = s.independent_first_frame, context_noise = s.context_noise,
                                 timestep_shift = s.timestep_shift, local_attn_size = s.local_attn_size,
                                 sink_size = s.sink_size, dtype = o.dtype}
  local spec = M.capture_spec(o, m.config.num_layers, #p._steps)
  local prompts = C.prompts(o, M.default_prompt)
  if #prompts == 1 then return M.run_one(o, p, m, spec, prompts[1], o.output_dir, prov, s, label, t0) end
  -- several prompts: one rollout each (every layer at once), one folder each, an index of them all
  local runs, index = {}, {}
  for i, prompt in ipairs(prompts) do
    local dir = string.format("%s/%02d-%s", o.output_dir, i - 1, C.prompt_stem(prompt):gsub("[^%w]+", "_"):sub(1, 40))
    print(string.format("[%d/%d] %s", i, #prompts, prompt))
    local _, r = M.run_one(o, p, m, spec, prompt, dir, prov, s, label, sfwb.time())
    runs[i] = r
    index[i] = {prompt = prompt, path = r.path, folder = dir}
  end
  json.write(o.output_dir .. "/index.json", {runs = index, weights = label, provenance = prov})
  print("wrote    " .. o.output_dir .. "/index.json")
  return 0, {runs = runs, index = o.output_dir .. "/index.json"}
end

M.default_prompt = "A majestic eagle soaring through a cloudy sky, cinematic lighting"

-- one prompt: generate with the captures on, save tensors + provenance, figures, statistics
function M.run_one(o, p, m, spec, prompt, out_dir, prov, s, label, t0)
  o = setmetatable({prompt = prompt, output_dir = out_dir}, {__index = o})
  local cap = M.capture(m, spec)
  local what = {}
  for _, cb in ipairs(spec.combos) do what[#what + 1] = cb.pass .. "@" .. cb.step end
  print(string.format("capturing %s-attn %s (%s) of layers {%s} at {%s} in one rollout",
                      o.attn, o.what, o.reduce, table.concat(spec.layers, ","), table.concat(what, ", ")))
  local r = p:generate{prompts = {o.prompt}, num_frames = o.num_frames, height = o.height, width = o.width,
                       seed = o.seed, decode = o.save_video, progress = true}
  local chunk_sizes = r.chunk_sizes
  local tensors, metas, by_layer = M.collect(cap, spec, chunk_sizes, o.num_frames)
  cap:remove()
  C.mkdir(o.output_dir)
  local stem = o.name or string.format("attention_%s_%s_%s", label, o.attn, o.what)
  local path = o.output_dir .. "/" .. stem .. ".safetensors"
  local meta = {
    provenance = prov, weights = prov.weights, weights_sha256 = prov.weights_sha256, checkpoint = prov.checkpoint,
    checkpoint_sha256 = prov.checkpoint_sha256, ema = prov.ema, config = o.config_path or "",
    config_values = s, seed = o.seed, prompt = o.prompt, num_frames = o.num_frames,
    chunk_sizes = chunk_sizes, layers = spec.layers, attn = o.attn, what = o.what, reduce = o.reduce,
    steps = spec.where.steps, passes = spec.where.passes, captured = spec.combos, denoising_steps = p.denoising_steps:totable(),
    capture = metas, sfwb_version = sfwb.version, created = C.now(),
  }
  C.save_safetensors(path, tensors, meta)
  local files = {path}
  if o.save_video then
    files[#files + 1] = C.write_video(o.output_dir .. "/" .. stem .. ".mp4", C.sample_video(r.video, 1), 16)
  end
  if not o.no_figures then
    for _, f in ipairs(M.figures(by_layer, o, o.output_dir, label, o.what)) do files[#files + 1] = f end
  end
  local stats = M.stats(by_layer)
  print(string.format("last chunk, head mean of %s-attn %s (sink = first - middle key frames):", o.attn, o.what))
  for _, row in ipairs(stats) do
    local hm = row.head_mean
    print(string.format("  layer %2d %s@%d  first %8.4f  middle %8.4f  last %8.4f  sink %+8.4f%s", row.layer, row.pass,
                        row.step, hm.first, hm.middle, hm.last, hm.sink,
                        row.diag_mean and string.format("  diag %8.4f  first col %8.4f", row.diag_mean,
                                                        row.first_column_mean or 0 / 0) or ""))
  end
  local spath = o.output_dir .. "/" .. stem .. ".stats.json"
  json.write(spath, {layers = stats, meta = {prompt = o.prompt, seed = o.seed, weights = label, what = o.what,
                                             attn = o.attn, reduce = o.reduce}})
  files[#files + 1] = spath
  print(string.format("done in %.2fs (generation %.2fs, %d model calls)", sfwb.time() - t0, r.timings.total, r.calls))
  for _, f in ipairs(files) do print("wrote    " .. f) end
  return 0, {files = files, path = path, tensors = tensors, meta = meta, stats = stats}
end

return M
