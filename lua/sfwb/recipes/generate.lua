-- sfwb/recipes/generate.lua — inference.py's job: config + weights (+ checkpoint, explicit EMA choice),
-- prompts from a file or the command line, frames, seed; videos as mp4 (or PNG folders), with progress
-- per block and the real timings at the end.
local sfwb = require "sfwb"
local C = require "sfwb.recipes.common"
local json = require "sfwb.json"

local M = {}

M.spec = {
  usage = "recipes/generate.lua [options]",
  description = "Generate videos with the causal Self-Forcing pipeline (as Self-Forcing's inference.py).",
  options = {
    {"--config_path", "YAML", "config, merged over default_config.yaml next to it (denoising steps, blocks, shift)"},
    {"--wan_dir", "DIR", "Wan2.1 folder (config.json, DiT safetensors, T5 .pth, tokenizer, VAE .pth); default $SFWB_WAN_DIR"},
    {"--checkpoint_path", "PT", "Self-Forcing checkpoint (.pt with generator / generator_ema); default $SFWB_CKPT"},
    {"--no_checkpoint", false, "use the base Wan weights even when $SFWB_CKPT is set", false},
    {"--use_ema", false, "load generator_ema instead of generator (an error if the key is missing)", false},
    {"--prompt", "TEXT", "a prompt (repeatable)", nil},
    {"--data_path", "TXT", "a prompt file, one prompt a line"},
    {"--extended_prompt_path", "TXT", "extended prompts, one a line, as many as the prompts: the model sees these, files keep the short prompt's name (inference.py)"},
    {"--num_inference_steps", "N", "multi-step sampling (a config without denoising_step_list): steps (the original: 50)", 50},
    {"--solver", "NAME", "multi-step sampling: unipc or dpm++ (the original: unipc)", "unipc"},
    {"--guidance_scale", "G", "multi-step sampling: classifier-free guidance scale (default: the config's guidance_scale)"},
    {"--output_folder", "DIR", "where the videos go", "outputs"},
    {"--num_output_frames", "N", "latent frames of noise (21 -> 81 video frames)", 21},
    {"--height", "PX", "video height (latent = /8)", 480},
    {"--width", "PX", "video width (latent = /8)", 832},
    {"--seed", "N", "seed of the noise", 0},
    {"--num_samples", "N", "samples per prompt (one batch)", 1},
    {"--save_with_index", false, "name files {idx}-{k}_{regular|ema}.mp4 instead of by prompt", false},
    {"--png", false, "write PNG folders instead of mp4", false},
    {"--fps", "N", "frames per second of the written videos", 16},
    {"--local_attn_size", "N", "long videos: attention window in latent frames (-1 = global; default from the config)"},
    {"--sink_size", "N", "long videos: sink frames the window always keeps"},
    {"--device", "DEV", "cpu, emu:0, cuda:0", "cpu"},
    {"--dtype", "DT", "f32 or bf16", "f32"},
    {"--save_latents", false, "also write the latents as .safetensors", false},
    {"--image", "PNG", "I2V (inference.py --i2v): the first frame (PNG; another size is resized bicubic to --height x --width, as upstream Wan's image2video); it is VAE-encoded into one latent frame and the noise gets num_output_frames - 1 frames"},
    {"--independent_first_frame", false, "override the config: the first frame is its own block (I2V models)", false},
    {"--bidirectional", false, "joint few-step denoising with a bidirectional Wan (Self-Forcing-Plus generator_type: bidirectional)", false},
    {"--stream_decode", false, "decode each block as it is generated (streaming VAE cache)", false},
    {"--quiet", false, "no per-block progress", false},
    {"--kv_policy", "NAME", "self_forcing or longlive (default: longlive for LongLive configs: adapter / global_sink keys)"},
    {"--no_lora", false, "ignore a LongLive config's adapter / lora_ckpt", false},
  },
  epilog = "Weights: --wan_dir / $SFWB_WAN_DIR and --checkpoint_path / $SFWB_CKPT (see README, `make demo`).",
}
for _, o in ipairs(M.spec.options) do
  if o[1] == "--prompt" then o.list = true end
  if ({["--num_output_frames"] = 1, ["--height"] = 1, ["--width"] = 1, ["--seed"] = 1, ["--num_samples"] = 1,
       ["--fps"] = 1, ["--num_inference_steps"] = 1})[o[1]] then o.number = true end
end

function M.main(argv)
  local o = C.parse_args(argv, M.spec)
  if not o then return 0 end
  local t_start = sfwb.time()
  C.preflight(o, {dir = "output_folder", size = true, frames = "num_output_frames", fps = true, device = true,
                  counts = {"num_samples", "num_inference_steps"},
                  choices = {solver = {"unipc", "dpm++", "dpmpp", "euler"}, kv_policy = {"self_forcing", "longlive"}}})
  o.checkpoint = o.checkpoint_path
  local w = C.weights(o)
  local cfg = C.load_config(o.config_path)
  local s = C.pipeline_settings(cfg, {local_attn_size = tonumber(o.local_attn_size), sink_size = tonumber(o.sink_size),
                                      independent_first_frame = o.independent_first_frame or nil})
  local bidir = o.bidirectional or cfg.generator_type == "bidirectional"
  local dev = {device = o.device, dtype = o.dtype, ema = o.use_ema, causal = not bidir}

  local tl = sfwb.time()
  local m, ckinfo = C.load_generator(w, s, dev)
  local lora = (not bidir) and C.apply_lora(m, cfg, {no_lora = o.no_lora}) or nil
  local t5 = C.load_text_encoder(w, dev)
  local vae = C.load_vae(w, dev)
  local t_load = sfwb.time() - tl
  local prov = C.provenance(w, o.use_ema, ckinfo)
  prov.lora = lora
  if lora then print(string.format("lora     %s (rank %d, alpha %g, merged)", lora.path, lora.rank, lora.alpha)) end
  print(string.format("weights  %s%s", w.wan_dir, w.checkpoint and string.format("  + %s [%s]", w.checkpoint,
        prov.checkpoint_key) or "  (base, no checkpoint)"))

  -- inference.py: a config without denoising_step_list selects the multi-step diffusion sampler
  local multistep = o.config_path ~= nil and cfg.denoising_step_list == nil
  local p
  if multistep then
    local g = tonumber(o.guidance_scale) or cfg.guidance_scale
    if type(g) ~= "number" then
      error(string.format("%s has no denoising_step_list, so it selects the multi-step sampler, which needs "
                          .. "guidance_scale: set it in the config or pass --guidance_scale", o.config_path), 0)
    end
    local ctor = bidir and sfwb.pipeline.bidirectional_diffusion or sfwb.pipeline.causal_diffusion
    p = ctor{generator = m, text_encoder = t5, vae = vae, num_inference_steps = o.num_inference_steps,
             guidance_scale = g, solver = o.solver, negative_prompt = cfg.negative_prompt,
             -- the causal sampler reads the config's timestep_shift; the bidirectional one fixes 8.0
             timestep_shift = (not bidir) and (cfg.timestep_shift or s.timestep_shift) or nil,
             num_frame_per_block = s.num_frame_per_block, independent_first_frame = s.independent_first_frame,
             local_attn_size = s.local_attn_size, sink_size = s.sink_size, dtype = o.dtype}
    if o.stream_decode then error("--stream_decode is for the few-step causal pipeline", 0) end
  end
  p = p or bidir and sfwb.pipeline.bidirectional{generator = m, text_encoder = t5, vae = vae,
                                 denoising_step_list = s.denoising_step_list, warp_denoising_step = s.warp_denoising_step,
                                 timestep_shift = s.timestep_shift, dtype = o.dtype}
            or sfwb.pipeline.causal{generator = m, text_encoder = t5, vae = vae,
                                 denoising_step_list = s.denoising_step_list, warp_denoising_step = s.warp_denoising_step,
                                 num_frame_per_block = s.num_frame_per_block,
                                 independent_first_frame = s.independent_first_frame, context_noise = s.context_noise,
                                 timestep_shift = s.timestep_shift, local_attn_size = s.local_attn_size,
                                 sink_size = s.sink_size, dtype = o.dtype, kv_policy = o.kv_policy or C.kv_policy(cfg)}
  print(string.format("pipeline %s", tostring(p)))
  local prompts = C.prompts(o)
  local extended
  if o.extended_prompt_path then
    extended = C.read_lines(o.extended_prompt_path)
    if #extended ~= #prompts then
      error(string.format("--extended_prompt_path %s has %d lines for %d prompts (they must match line for line)",
                          o.extended_prompt_path, #extended, #prompts), 0)
    end
  end
  C.mkdir(o.output_folder)
  local outputs, runs = {}, {}
  local tag = o.use_ema and "ema" or "regular"
  -- I2V: the image as one clean latent frame that pre-fills the KV cache (Self-Forcing's causal I2V)
  local image_latent
  if o.image then
    if bidir then error("--image needs the causal pipeline", 0) end
    local img = sfwb.image.read(o.image)                                  -- u8 [H, W, 3]
    local x = (img:float() / 127.5 - 1):permute({3, 1, 2}):contiguous()  -- [3, H, W] in [-1, 1]
    if img:size(1) ~= o.height or img:size(2) ~= o.width then
      -- upstream Wan's image2video rule: bicubic (align_corners=False, no antialias) to the target size
      if not o.quiet then
        print(string.format("--image %s: %dx%d resized (bicubic) to %dx%d", o.image, img:size(2), img:size(1), o.width, o.height))
      end
      x = sfwb.clip.resize_bicubic(x, o.height, o.width)
    end
    x = x:view({1, 3, 1, o.height, o.width})
    image_latent = vae:encode(x)                                            -- [1, 1, 16, h, w]
  end
  sfwb.manual_seed(o.seed) -- one seed for the run; noise is drawn per prompt in order, as inference.py
  for idx, prompt in ipairs(prompts) do
    local batch = {}
    local seen = extended and extended[idx] or prompt
    for _ = 1, o.num_samples do batch[#batch + 1] = seen end
    print(string.format("[%d/%d] %s", idx, #prompts, prompt))
    local init
    if image_latent then
      local sh = image_latent:shape()
      init = image_latent:expand({#batch, sh[2], sh[3], sh[4], sh[5]}):contiguous()
    end
    local r = p:generate{prompts = batch, num_frames = o.num_output_frames - (init and 1 or 0), height = o.height,
                         width = o.width, initial_latent = init,
                         progress = not o.quiet, decode = o.stream_decode and "block" or true}
    local nvf = r.video:size(2)
    for k = 1, o.num_samples do
      local name = o.save_with_index and string.format("%d-%d_%s", idx - 1, k - 1, tag)
                   or string.format("%s-%d", C.prompt_stem(prompt), k - 1)
      local path = o.output_folder .. "/" .. name .. (o.png and "" or ".mp4")
      outputs[#outputs + 1] = C.write_video(path, C.sample_video(r.video, k), o.fps, o.png)
      if o.save_latents then
        local lp = o.output_folder .. "/" .. name .. ".latents.safetensors"
        C.save_safetensors(lp, {latents = r.latents:select(1, k)},
                           {prompt = prompt, seed = o.seed, sample = k - 1, provenance = prov,
                            sfwb_version = sfwb.version})
        outputs[#outputs + 1] = lp
      end
    end
    local tm = r.timings
    if not tm.denoise then -- the bidirectional and multi-step pipelines time their steps / blocks
      tm.denoise = 0
      for _, t in ipairs(tm.steps or tm.blocks or {}) do tm.denoise = tm.denoise + t end
    end
    print(string.format("  %d latent frames -> %d video frames: text %.2fs, denoise %.2fs (%.2f latent frames/s), decode %.2fs, total %.2fs",
                        r.latents:size(2), nvf, tm.text or 0, tm.denoise, r.latents:size(2) / math.max(tm.denoise, 1e-9),
                        tm.decode or 0, tm.total))
    runs[#runs + 1] = {prompt = prompt, model_prompt = seen, timings = tm, latent_frames = r.latents:size(2), video_frames = nvf}
  end
  local total = sfwb.time() - t_start
  local summary = {sampler = multistep and tostring(p) or nil, extended_prompt_path = o.extended_prompt_path,
                   image = o.image, outputs = outputs, runs = runs, load_seconds = t_load, total_seconds = total, provenance = prov,
                   seed = o.seed, config = o.config_path, settings = s, sfwb_version = sfwb.version}
  json.write(o.output_folder .. "/generate.json", summary)
  print(string.format("timings  load %.2fs, total %.2fs for %d prompt(s)", t_load, total, #prompts))
  for _, f in ipairs(outputs) do print("wrote    " .. f) end
  print("wrote    " .. o.output_folder .. "/generate.json")
  return 0, summary
end

return M
