-- sfwb/recipes/interactive.lua — LongLive's interactive_inference.py: a config as written
-- (longlive_interactive_inference.yaml), prompts from its jsonl ({"prompts": [...]} per line, one prompt per
-- segment), switch_frame_indices ("40, 80, ..." or a list), the base checkpoint (generator_ckpt) and the LoRA
-- (lora_ckpt with the adapter's rank/alpha, merged); one long video per line with progress per block and per
-- segment (recache cost).
local sfwb = require "sfwb"
local C = require "sfwb.recipes.common"
local json = require "sfwb.json"

local M = {}

M.spec = {
  usage = "recipes/interactive.lua [options]",
  description = "Long videos with prompt switches and KV recache (LongLive's interactive_inference.py).",
  options = {
    {"--config_path", "YAML", "LongLive inference config as written (longlive_interactive_inference.yaml)"},
    {"--wan_dir", "DIR", "Wan2.1 folder (config.json, DiT safetensors, T5 .pth, tokenizer, VAE .pth); default $SFWB_WAN_DIR"},
    {"--generator_ckpt", "PT", "base checkpoint (default: the config's generator_ckpt)"},
    {"--lora_ckpt", "PT", "LoRA checkpoint (default: the config's lora_ckpt)"},
    {"--no_lora", false, "ignore the config's adapter / lora_ckpt", false},
    {"--data_path", "JSONL", "prompt segments, {\"prompts\": [...]} per line (default: the config's data_path)"},
    {"--prompt", "TEXT", "a segment prompt (repeatable; instead of --data_path)", nil},
    {"--switch_frame_indices", "LIST", "latent frames where segments 2.. start, e.g. 40,80 (default: the config's)"},
    {"--output_folder", "DIR", "where the videos go (default: the config's output_folder)"},
    {"--num_output_frames", "N", "latent frames (default: the config's num_output_frames)"},
    {"--height", "PX", "video height (latent = /8)", 480},
    {"--width", "PX", "video width (latent = /8)", 832},
    {"--seed", "N", "seed of the noise (default: the config's seed)"},
    {"--num_samples", "N", "samples per line (default: the config's num_samples)"},
    {"--device", "DEV", "cpu, emu:0, cuda:0", "cpu"},
    {"--dtype", "DT", "f32 or bf16", "f32"},
    {"--png", false, "write PNG folders instead of mp4", false},
    {"--save_latents", false, "also write the latents as .safetensors", false},
    {"--no_decode", false, "latents only (no VAE decode, no video)", false},
    {"--quiet", false, "no per-block progress", false},
  },
  epilog = "Weights: --wan_dir / $SFWB_WAN_DIR; the checkpoints as the config names them (see docs/longlive.md).",
}
for _, o in ipairs(M.spec.options) do
  if o[1] == "--prompt" then o.list = true end
  if ({["--height"] = 1, ["--width"] = 1})[o[1]] then o.number = true end
end

-- "40, 80, 120" or {40, 80} or 40 -> {40, 80, 120}, as interactive_inference.py parses it
function M.parse_switches(v)
  if v == nil then return {} end
  if type(v) == "number" then return {math.tointeger(v) or v} end
  if type(v) == "table" then
    local r = {}
    for i, x in ipairs(v) do r[i] = math.tointeger(tonumber(x)) end
    return r
  end
  local r = {}
  for part in tostring(v):gmatch("[^,]+") do
    local s = part:match("^%s*(.-)%s*$")
    if s ~= "" then
      local n = math.tointeger(tonumber(s))
      if not n then error("switch_frame_indices: not an integer: '" .. s .. "'", 0) end
      r[#r + 1] = n
    end
  end
  return r
end

-- MultiTextDataset: one {"prompts": [...]} object per non-empty line
function M.read_jsonl(path)
  local rows = {}
  local n = 0
  for line in io.lines(path) do
    n = n + 1
    if line:match("%S") then
      local ok, v = pcall(json.decode, line)
      if not ok or type(v) ~= "table" or type(v.prompts) ~= "table" or #v.prompts == 0 then
        error(string.format("%s:%d: expected {\"prompts\": [\"...\", ...]}", path, n), 0)
      end
      rows[#rows + 1] = v.prompts
    end
  end
  if #rows == 0 then error(path .. ": no prompt lines", 0) end
  return rows
end

function M.main(argv)
  local o = C.parse_args(argv, M.spec)
  if not o then return 0 end
  local t_start = sfwb.time()
  if not o.config_path then error("--config_path is required (LongLive's interactive inference config)", 0) end
  local cfg = C.load_config(o.config_path, {defaults = false}) -- OmegaConf.load: no defaults merged, as the original
  -- the outputs and counts (the config's where the command line gives none) before any weights load
  local out_dir = o.output_folder or cfg.output_folder or "videos/interactive"
  C.preflight({output_folder = out_dir, height = o.height, width = o.width, device = o.device, dtype = o.dtype,
               num_output_frames = tonumber(o.num_output_frames) or o.num_output_frames or cfg.num_output_frames,
               num_samples = o.num_samples or cfg.num_samples},
              {dir = "output_folder", size = true, frames = "num_output_frames", counts = {"num_samples"}, device = true})
  local s = C.pipeline_settings(cfg)
  local w = C.weights({wan_dir = o.wan_dir, checkpoint = o.generator_ckpt or cfg.generator_ckpt, no_checkpoint = false})
  local dev = {device = o.device, dtype = o.dtype, ema = cfg.use_ema and true or false, causal = true}
  local tl = sfwb.time()
  local m, ckinfo = C.load_generator(w, s, dev)
  local lora = C.apply_lora(m, cfg, {lora_ckpt = o.lora_ckpt, no_lora = o.no_lora})
  local t5 = C.load_text_encoder(w, dev)
  local vae = (not o.no_decode) and C.load_vae(w, dev) or nil
  local t_load = sfwb.time() - tl
  local prov = C.provenance(w, cfg.use_ema, ckinfo)
  prov.lora = lora
  print(string.format("weights  %s%s%s", w.wan_dir, w.checkpoint and ("  + " .. w.checkpoint) or "",
                      lora and string.format("  + LoRA %s (rank %d, alpha %g, merged)", lora.path, lora.rank, lora.alpha) or ""))

  local p = sfwb.pipeline.interactive{generator = m, text_encoder = t5, vae = vae,
                                      denoising_step_list = s.denoising_step_list, warp_denoising_step = s.warp_denoising_step,
                                      num_frame_per_block = s.num_frame_per_block, context_noise = s.context_noise,
                                      timestep_shift = s.timestep_shift, local_attn_size = s.local_attn_size,
                                      sink_size = s.sink_size, global_sink = cfg.global_sink or false, dtype = o.dtype}
  print(string.format("pipeline %s", tostring(p)))
  local rows
  if o.prompt then rows = {type(o.prompt) == "table" and o.prompt or {o.prompt}}
  else
    local dp = o.data_path or cfg.data_path
    if not dp then error("no prompts: give --data_path FILE.jsonl (or the config's data_path) or --prompt", 0) end
    rows = M.read_jsonl(dp)
  end
  local switches = M.parse_switches(o.switch_frame_indices or cfg.switch_frame_indices)
  local F = tonumber(o.num_output_frames or cfg.num_output_frames or 240)
  local seed = tonumber(o.seed or cfg.seed or 0)
  local ns = tonumber(o.num_samples or cfg.num_samples or 1)
  local tag = lora and "lora" or (cfg.use_ema and "ema" or "regular")
  local outputs, runs = {}, {}
  sfwb.manual_seed(seed)
  for idx, segs in ipairs(rows) do
    if #switches ~= #segs - 1 then
      error(string.format("line %d has %d prompt segments: switch_frame_indices needs %d values, has %d", idx, #segs,
                          #segs - 1, #switches), 0)
    end
    print(string.format("[%d/%d] %d segments, switches at %s", idx, #rows, #segs, table.concat(switches, ",")))
    local lists = {}
    for i, sp in ipairs(segs) do lists[i] = {sp} end
    local r = p:generate{prompts_list = lists, switch_frame_indices = switches, num_frames = F, height = o.height,
                         width = o.width, progress = not o.quiet, decode = not o.no_decode,
                         -- the noise batch is num_samples; each segment's single prompt is shared
                         noise = sfwb.randn({ns, F, 16, o.height // 8, o.width // 8}, {dtype = o.dtype, device = o.device})}
    for k = 1, ns do
      local name = cfg.save_with_index == false and string.format("%s-%d_%s", C.prompt_stem(segs[1]), k - 1, tag)
                   or string.format("rank0-%d-%d_%s", idx - 1, k - 1, tag)
      if r.video then
        local path = out_dir .. "/" .. name .. (o.png and "" or ".mp4")
        outputs[#outputs + 1] = C.write_video(path, C.sample_video(r.video, k), 16, o.png)
      end
      if o.save_latents or o.no_decode then
        local lp = out_dir .. "/" .. name .. ".latents.safetensors"
        C.save_safetensors(lp, {latents = r.latents:select(1, k)},
                           {prompts = table.concat(segs, " | "), switch_frame_indices = table.concat(switches, ","),
                            seed = seed, sample = k - 1, provenance = prov, sfwb_version = sfwb.version})
        outputs[#outputs + 1] = lp
      end
    end
    local rc = 0
    for _, x in ipairs(r.recaches) do rc = rc + x.seconds end
    print(string.format("  %d latent frames: denoise %.2fs (%.2f latent frames/s), %d recaches %.2fs, decode %.2fs, total %.2fs",
                        F, r.timings.denoise, F / math.max(r.timings.denoise, 1e-9), #r.recaches, rc,
                        r.timings.decode or 0, r.timings.total))
    runs[#runs + 1] = {prompts = segs, timings = r.timings, recaches = r.recaches, latent_frames = F}
  end
  local summary = {outputs = outputs, runs = runs, load_seconds = t_load, total_seconds = sfwb.time() - t_start,
                   provenance = prov, seed = seed, config = o.config_path, settings = s, switch_frame_indices = switches,
                   global_sink = cfg.global_sink or false, sfwb_version = sfwb.version}
  json.write(out_dir .. "/interactive.json", summary)
  for _, f in ipairs(outputs) do print("wrote    " .. f) end
  print("wrote    " .. out_dir .. "/interactive.json")
  return 0, summary
end

return M
