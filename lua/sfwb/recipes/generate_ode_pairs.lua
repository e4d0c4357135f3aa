-- sfwb/recipes/generate_ode_pairs.lua — scripts/generate_ode_pairs.py + scripts/create_lmdb_iterative.py:
-- a teacher's sampling trajectory per prompt (noise [1, 21, 16, 60, 104], guided, the states at the
-- selected steps) written straight into the original's LMDB layout (latents_<i>_data f16 [S, F, C, H, W],
-- prompts_<i>_data, latents_shape / prompts_shape), the dataset the ode trainer reads. Duplicate prompts are
-- skipped as create_lmdb_iterative.py does. Optionally the per-prompt .pt files of the original too.
local sfwb = require "sfwb"
local C = require "sfwb.recipes.common"

local M = {}

M.spec = {
  usage = "recipes/generate_ode_pairs.lua --caption_path prompts.txt --output_folder DIR [options]",
  description = "ODE pairs from a teacher (scripts/generate_ode_pairs.py) in the LMDB layout of create_lmdb_iterative.py.",
  options = {
    {"--caption_path", "TXT", "prompts, one a line"},
    {"--output_folder", "DIR", "the LMDB folder (data.mdb)"},
    {"--wan_dir", "DIR", "the teacher's Wan2.1 folder (config.json, DiT, T5, tokenizer); default $SFWB_WAN_DIR"},
    {"--guidance_scale", "G", "classifier-free guidance (on x0 with the euler solver, as the original)", 6.0},
    {"--solver", "NAME", "euler (the original: FlowMatchScheduler, shift 8, 48 steps), unipc or dpm++", "euler"},
    {"--num_steps", "N", "sampling steps", 48},
    {"--shift", "S", "sampling shift", 8.0},
    {"--keep", "LIST", "trajectory indices kept (0 = noise, N = final; negative from the end)", "0,12,24,36,-1"},
    {"--num_frames", "N", "latent frames", 21},
    {"--height", "PX", "video height (latent = /8)", 480},
    {"--width", "PX", "video width (latent = /8)", 832},
    {"--seed", "N", "seed of the noise (one draw per prompt, in order)", 0},
    {"--negative_prompt", "TEXT", "the negative prompt (default: the original's)"},
    {"--pt_folder", "DIR", "also write the original's per-prompt {prompt: [1, S, F, C, H, W]} .pt files here"},
    {"--device", "DEV", "cpu, emu:0, cuda:0", "cpu"},
    {"--quiet", false, "no progress", false},
  },
}
for _, o in ipairs(M.spec.options) do
  if ({["--guidance_scale"] = 1, ["--num_steps"] = 1, ["--shift"] = 1, ["--num_frames"] = 1, ["--height"] = 1,
       ["--width"] = 1, ["--seed"] = 1})[o[1]] then o.number = true end
end

local function keep_list(s)
  local r = {}
  for v in tostring(s):gmatch("[^,]+") do
    local n = math.tointeger(tonumber(v))
    if not n then error("--keep: '" .. v .. "' is not an integer", 0) end
    r[#r + 1] = n
  end
  if #r == 0 then error("--keep is empty", 0) end
  return r
end

function M.main(argv)
  local o = C.parse_args(argv, M.spec)
  if not o then return 0 end
  if not o.caption_path then error("--caption_path is required (see --help)", 0) end
  if not o.output_folder then error("--output_folder is required (see --help)", 0) end
  C.preflight(o, {dir = "output_folder", dirs = {"pt_folder"}, size = true, frames = "num_frames", counts = {"num_steps"},
                  choices = {solver = {"euler", "unipc", "dpm++", "dpmpp"}}, device = true})
  local keep = keep_list(o.keep)
  local prompts = C.read_lines(o.caption_path)
  local w = C.weights{wan_dir = o.wan_dir, no_checkpoint = true}
  local dev = {device = o.device, dtype = "f32", causal = false}
  local teacher = C.load_generator(w, {num_frame_per_block = 1, independent_first_frame = false,
                                       local_attn_size = -1, sink_size = 0}, dev)
  local t5 = C.load_text_encoder(w, dev)
  local p = sfwb.pipeline.bidirectional_diffusion{generator = teacher, text_encoder = t5, num_inference_steps = o.num_steps,
                                                  guidance_scale = o.guidance_scale, timestep_shift = o.shift,
                                                  solver = o.solver, negative_prompt = o.negative_prompt}
  local writer = sfwb.data.lmdb_writer(o.output_folder)
  local h, wd = o.height // 8, o.width // 8
  local C_out = (teacher.config and teacher.config.out_dim) or 16
  sfwb.manual_seed(o.seed)
  local seen, rows, t0 = {}, 0, sfwb.time()
  local neg = t5:encode({p.negative_prompt}).prompt_embeds      -- encoded once, as the original
  for i, prompt in ipairs(prompts) do
    local noise = sfwb.randn({1, o.num_frames, C_out, h, wd}, {device = o.device})
    local r = p:generate{prompts = {prompt}, noise = noise, negative_embeds = neg, trajectory_steps = keep,
                         decode = false}
    local traj = r.trajectory:cpu()                               -- [1, S, F, C, h, w]
    if o.pt_folder then
      local t = {}
      t[prompt] = traj
      sfwb.save(string.format("%s/%05d.pt", o.pt_folder, i - 1), t)
    end
    if not seen[prompt] then                                      -- create_lmdb_iterative.py deduplicates
      seen[prompt] = true
      writer:add{latents = traj:select(1, 1):contiguous(), prompts = prompt}
      rows = rows + 1
    end
    if not o.quiet then
      local el = sfwb.time() - t0
      io.stderr:write(string.format("prompt %d/%d  %.1fs  ETA %.0fs\n", i, #prompts, el, el / i * (#prompts - i)))
    end
  end
  writer:close()
  print(string.format("wrote %d ODE trajectories (%d states each) to %s", rows, #keep, o.output_folder))
  return 0, {rows = rows, path = o.output_folder}
end

return M
