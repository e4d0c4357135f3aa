-- sfwb/recipes/compare.lua — A/B of two weight sets (EMA vs raw of one checkpoint, base Wan vs a
-- checkpoint, two checkpoints) on identical noise and prompts: side-by-side frames, latent/pixel MSE and
-- PSNR per frame, attention differences per layer, a summary figure and a JSON of the numbers.
local sfwb = require "sfwb"
local C = require "sfwb.recipes.common"
local json = require "sfwb.json"
local EX = require "sfwb.recipes.extract_attention"

local M = {}

M.spec = {
  usage = "recipes/compare.lua [options]",
  description = "Compare two weight sets on the same noise and prompts (frames, metrics, attention).",
  options = {
    {"--config_path", "YAML", "config, merged over default_config.yaml next to it"},
    {"--wan_dir", "DIR", "Wan2.1 folder (the base of both sides); default $SFWB_WAN_DIR"},
    {"--a", "SPEC", "side A: base | CKPT.pt:ema | CKPT.pt:raw", "base"},
    {"--b", "SPEC", "side B: base | CKPT.pt:ema | CKPT.pt:raw (default: $SFWB_CKPT:ema)"},
    {"--ema_vs_raw", "PT", "shorthand: A = PT:raw, B = PT:ema"},
    {"--label_a", "TEXT", "name of side A in figures"},
    {"--label_b", "TEXT", "name of side B in figures"},
    {"--prompt", "TEXT", "the prompt", "A majestic eagle soaring through a cloudy sky, cinematic lighting"},
    {"--num_frames", "N", "latent frames", 21},
    {"--height", "PX", "video height", 480},
    {"--width", "PX", "video width", 832},
    {"--seed", "N", "seed (both sides get the same noise and the same per-step draws)", 42},
    {"--layers", "LIST", "layers whose attention is compared (none to skip)", "0,4"},
    {"--attn", "KIND", "self or cross", "self"},
    {"--what", "Q", "logits, probs or mass", "logits"},
    {"--steps", "LIST", "denoising steps for the attention", "1"},
    {"--passes", "LIST", "passes for the attention", "denoise"},
    {"--frames", "LIST", "video frames shown side by side (0-based; default 4 evenly spaced)"},
    {"--output_dir", "DIR", "where everything goes", "compare_out"},
    {"--device", "DEV", "cpu, emu:0, cuda:0", "cpu"},
    {"--dtype", "DT", "f32 or bf16", "f32"},
    {"--save_videos", false, "write both videos (mp4)", false},
  },
}
for _, o in ipairs(M.spec.options) do
  if ({["--num_frames"] = 1, ["--height"] = 1, ["--width"] = 1, ["--seed"] = 1})[o[1]] then o.number = true end
end

-- "base" | "path.pt" | "path.pt:ema" | "path.pt:raw" -> {checkpoint=, ema=}
local function side(spec)
  if spec == nil or spec == "base" then return {checkpoint = nil, ema = false} end
  local path, kind = spec:match("^(.*):(%a+)$")
  if not path or (kind ~= "ema" and kind ~= "raw") then path, kind = spec, "ema" end
  return {checkpoint = path, ema = kind == "ema"}
end

local function label_of(sd)
  if not sd.checkpoint then return "base" end
  return sd.checkpoint:match("([^/]+)$"):gsub("%.[^.]*$", "") .. (sd.ema and " (ema)" or " (raw)")
end

-- per-frame MSE over [F, ...] tensors (dims after the first averaged)
local function per_frame_mse(a, b)
  local d = (a:float() - b:float())
  local F = d:size(1)
  local r = (d * d):reshape({F, d:numel() // F}):mean(2)
  return r:totable()
end

local function psnr(mse) -- pixels mapped to [0, 1]
  if mse <= 0 then return math.huge end
  return 10 * math.log(1 / mse, 10)
end

function M.main(argv)
  local o = C.parse_args(argv, M.spec)
  if not o then return 0 end
  local t0 = sfwb.time()
  C.preflight(o, {dir = "output_dir", size = true, frames = "num_frames", steps = true, device = true,
                  choices = {attn = {"self", "cross"}, what = {"logits", "probs", "mass"},
                             passes = {"denoise", "refresh"}}, lists = {passes = true}})
  local A, B
  if o.ema_vs_raw then
    A, B = side(o.ema_vs_raw .. ":raw"), side(o.ema_vs_raw .. ":ema")
  else
    A = side(o.a)
    local b = o.b or (os.getenv("SFWB_CKPT") and (os.getenv("SFWB_CKPT") .. ":ema"))
    if not b then error("give --b SPEC (or --ema_vs_raw PT, or set SFWB_CKPT)", 0) end
    B = side(b)
  end
  A.label, B.label = o.label_a or label_of(A), o.label_b or label_of(B)
  if A.label == B.label then A.label, B.label = A.label .. " [A]", B.label .. " [B]" end
  local cfg = C.load_config(o.config_path)
  local s = C.pipeline_settings(cfg)
  local dev = {device = o.device, dtype = o.dtype}
  local w = C.weights({wan_dir = o.wan_dir, no_checkpoint = true})
  local t5 = C.load_text_encoder(w, dev)
  local vae = C.load_vae(w, dev)
  -- embeddings once: both sides see exactly the same conditioning
  local ctx = t5:encode({o.prompt}).prompt_embeds
  local layers = o.layers ~= "none" and o.layers or nil

  local function run(sd)
    local ws = {wan_dir = w.wan_dir, checkpoint = sd.checkpoint}
    local m, info = C.load_generator(ws, s, {device = o.device, dtype = o.dtype, ema = sd.ema})
    sd.provenance = C.provenance(ws, sd.ema, info)
    local p = sfwb.pipeline.causal{generator = m, vae = vae, denoising_step_list = s.denoising_step_list,
                                   warp_denoising_step = s.warp_denoising_step,
                                   num_frame_per_block = s.num_frame_per_block,
                                   independent_first_frame = s.independent_first_frame,
                                   context_noise = s.context_noise, timestep_shift = s.timestep_shift,
                                   local_attn_size = s.local_attn_size, sink_size = s.sink_size, dtype = o.dtype}
    local cap, spec
    if layers then
      spec = EX.capture_spec({layers = layers, attn = o.attn, what = o.what, reduce = "frame", steps = o.steps,
                              passes = o.passes}, m.config.num_layers, #p._steps)
      cap = EX.capture(m, spec)
    end
    print(string.format("side %s", sd.label))
    -- the same seed before each side: identical noise and identical per-step draws
    local r = p:generate{prompt_embeds = ctx, num_frames = o.num_frames, height = o.height, width = o.width,
                         seed = o.seed, progress = true}
    local att
    if cap then
      local _, _, by = EX.collect(cap, spec, r.chunk_sizes, o.num_frames)
      att = by
      cap:remove()
    end
    m = nil
    collectgarbage()
    return r, att
  end

  local ra, attA = run(A)
  local rb, attB = run(B)
  C.mkdir(o.output_dir)
  local files = {}

  -- numbers
  local lat_mse = per_frame_mse(ra.latents:select(1, 1), rb.latents:select(1, 1))
  local va, vb = ra.video:select(1, 1), rb.video:select(1, 1)
  local pix = per_frame_mse((va + 1) * 0.5, (vb + 1) * 0.5)
  local frames = {}
  local sum_l, sum_p = 0, 0
  for i, v in ipairs(lat_mse) do sum_l = sum_l + v end
  for i, v in ipairs(pix) do
    sum_p = sum_p + v
    frames[i] = {frame = i - 1, pixel_mse = v, psnr = psnr(v)}
  end
  local lat_frames = {}
  for i, v in ipairs(lat_mse) do lat_frames[i] = {latent_frame = i - 1, latent_mse = v} end
  local pix_mse = sum_p / #pix
  local summary = {
    a = {label = A.label, provenance = A.provenance}, b = {label = B.label, provenance = B.provenance},
    prompt = o.prompt, seed = o.seed, num_frames = o.num_frames, config = o.config_path or "", settings = s,
    latent_mse = sum_l / #lat_mse, pixel_mse = pix_mse, psnr = psnr(pix_mse),
    latent_frames = lat_frames, video_frames = frames,
    identical = (sum_l == 0 and sum_p == 0), sfwb_version = sfwb.version, created = C.now(),
  }
  -- attention differences per layer (B - A)
  local diffs, attn_rows = {}, {}
  if attA then
    for i, ea in ipairs(attA) do
      local eb = attB[i]
      local d = eb.A - ea.A
      local vals = d:reshape({d:numel()}):totable()
      local sa, mx, n = 0, 0, 0
      for _, v in ipairs(vals) do
        if v == v then n = n + 1; sa = sa + math.abs(v); if math.abs(v) > mx then mx = math.abs(v) end end
      end
      attn_rows[#attn_rows + 1] = {layer = ea.layer, step = ea.step, pass = ea.pass,
                                   mean_abs_diff = n > 0 and sa / n or 0, max_abs_diff = mx, cells = n}
      diffs[#diffs + 1] = {d:mean(1), title = string.format("layer %d", ea.layer)}
    end
    summary.attention = {attn = o.attn, what = o.what, layers = attn_rows}
  end
  local jpath = o.output_dir .. "/compare.json"
  json.write(jpath, summary)
  files[#files + 1] = jpath

  -- figures: side-by-side frames with PSNR captions (the summary figure), per-frame metrics, attention diffs
  local nvf = va:size(1)
  local show = o.frames and C.int_list(o.frames) or nil
  if not show then
    show = {}
    local k = math.min(4, nvf)
    for i = 0, k - 1 do show[#show + 1] = k == 1 and 0 or math.floor(i * (nvf - 1) / (k - 1) + 0.5) end
  end
  local captions = {}
  for r, f in ipairs(show) do
    local ps = frames[f + 1].psnr
    captions[r] = {"", "", ps == math.huge and "identical" or string.format("PSNR %.2f dB", ps)}
  end
  local title = string.format("%s vs %s · PSNR %s · latent MSE %.3g", A.label, B.label,
                              summary.identical and "inf (identical)" or string.format("%.2f dB", summary.psnr),
                              summary.latent_mse)
  files[#files + 1] = sfwb.plot.compare({va, vb}, {path = o.output_dir .. "/summary.png", labels = {A.label, B.label},
    frames = show, captions = captions, title = title}).path
  local ps_series, ms_series = {}, {}
  for i, fr in ipairs(frames) do ps_series[i] = fr.psnr == math.huge and 0 / 0 or fr.psnr end
  for i, v in ipairs(lat_mse) do ms_series[i] = v end
  files[#files + 1] = sfwb.plot.lines({{y = ps_series, label = "PSNR (dB), video frames"}},
    {path = o.output_dir .. "/psnr_per_frame.png", title = "PSNR per frame · " .. A.label .. " vs " .. B.label,
     xlabel = "video frame", ylabel = "PSNR (dB)", markers = true}).path
  files[#files + 1] = sfwb.plot.lines({{y = ms_series, label = "latent MSE"}},
    {path = o.output_dir .. "/latent_mse_per_frame.png", title = "latent MSE per frame", xlabel = "latent frame",
     ylabel = "MSE", markers = true}).path
  if #diffs > 0 then
    files[#files + 1] = sfwb.plot.mosaic(diffs, {path = o.output_dir .. "/attention_diff.png", cmap = "RdBu_r",
      center = true, title = string.format("head-mean %s-attn %s: %s minus %s", o.attn, o.what, B.label, A.label),
      xlabel = "key frame", ylabel = "query frame", cbar_label = "difference"}).path
  end
  if o.save_videos then
    files[#files + 1] = C.write_video(o.output_dir .. "/A.mp4", va, 16)
    files[#files + 1] = C.write_video(o.output_dir .. "/B.mp4", vb, 16)
  end
  print(string.format("%s vs %s: latent MSE %.4g, pixel MSE %.4g, PSNR %s%s", A.label, B.label, summary.latent_mse,
                      pix_mse, summary.identical and "inf" or string.format("%.2f dB", summary.psnr),
                      summary.identical and " (identical)" or ""))
  for _, row in ipairs(attn_rows) do
    print(string.format("  layer %d step %d %s: mean |dA| %.4g, max |dA| %.4g", row.layer, row.step, row.pass,
                        row.mean_abs_diff, row.max_abs_diff))
  end
  print(string.format("done in %.2fs", sfwb.time() - t0))
  for _, f in ipairs(files) do print("wrote    " .. f) end
  return 0, summary
end

return M
