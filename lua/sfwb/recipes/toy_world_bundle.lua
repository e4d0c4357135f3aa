-- sfwb/recipes/toy_world_bundle.lua — the trained toy world laid out as the originals' users keep their
-- files, so every recipe (generate, extract_attention, compare, interactive) takes it unchanged and
-- `make demo` runs on it:
--   wan_models/Wan2.1-T2V-toy/   config.json, diffusion_pytorch_model.safetensors (the teacher: the base model),
--                                models_t5_umt5-xxl-enc-bf16.pth, Wan2.1_VAE.pth, google/umt5-xxl/ (tokenizer)
--   checkpoints/self_forcing_dmd.pt   {generator, generator_ema} with "model." keys, as Self-Forcing's release
--   configs/self_forcing_toy.yaml     the student's inference settings (steps, shift, blocks, rolling window)
--   prompts.txt                       the held-out evaluation prompts
-- DiT weights are stored in bf16 (as the released checkpoints are), so the bundle is small enough to ship.
local sfwb = require "sfwb"
local C = require "sfwb.recipes.common"
local json = require "sfwb.json"

local M = {}

M.wan_name = "Wan2.1-T2V-toy"

local function copy_file(src, dst)
  local fi = io.open(src, "rb")
  if not fi then error("bundle: cannot read " .. src, 0) end
  local data = fi:read("a")
  fi:close()
  local tmp = dst .. ".tmp"
  local fo = assert(io.open(tmp, "wb"))
  fo:write(data)
  fo:close()
  os.rename(tmp, dst)
end

local function bf16(sd)
  local out = {}
  for k, v in pairs(sd) do out[k] = v:dtype() == "f32" and v:to("bf16") or v end
  return out
end

-- a flat "generator.model.x" table (sfwb.load of a .pt) -> the subtree under prefix, keys kept after it
local function subtree(flat, prefix)
  local out, n = {}, 0
  for k, v in pairs(flat) do
    if k:sub(1, #prefix + 1) == prefix .. "." then
      out[k:sub(#prefix + 2)] = v
      n = n + 1
    end
  end
  return n > 0 and out or nil
end

-- o = {src = the recipe's --out folder, dst = where to write, shift =, num_frame_per_block =, local_attn_size =,
--      sink_size =, prompts = {...}}; returns the paths {wan_dir, checkpoint, config, prompts}
function M.write(o)
  local src, dst = o.src, o.dst
  local tmpdir = dst .. ".tmp"
  if C.exists(tmpdir) then sfwb.fs.rmtree(tmpdir) end
  local wan = tmpdir .. "/wan_models/" .. M.wan_name
  for _, d in ipairs({tmpdir, tmpdir .. "/wan_models", wan, wan .. "/google", wan .. "/google/umt5-xxl",
                      tmpdir .. "/checkpoints", tmpdir .. "/configs"}) do C.mkdir(d) end
  json.write(wan .. "/config.json", json.read(src .. "/checkpoints/teacher/model/config.json"))
  sfwb.save(wan .. "/diffusion_pytorch_model.safetensors",
            bf16(sfwb.load(src .. "/checkpoints/teacher/model/diffusion_pytorch_model.safetensors")))
  copy_file(src .. "/checkpoints/text/models_t5_umt5-xxl-enc-bf16.pth", wan .. "/models_t5_umt5-xxl-enc-bf16.pth")
  for _, f in ipairs({"spiece.model", "special_tokens_map.json", "tokenizer_config.json"}) do
    copy_file(src .. "/checkpoints/text/google/umt5-xxl/" .. f, wan .. "/google/umt5-xxl/" .. f)
  end
  copy_file(src .. "/checkpoints/vae/Wan2.1_VAE.pth", wan .. "/Wan2.1_VAE.pth")
  -- the Self-Forcing checkpoint: generator and generator_ema only (the critic is a training-time network)
  local flat = sfwb.load(src .. "/checkpoints/self_forcing/last/model.pt")
  local gen, ema = subtree(flat, "generator"), subtree(flat, "generator_ema")
  if not gen then error("bundle: " .. src .. "/checkpoints/self_forcing/last/model.pt has no generator", 0) end
  sfwb.save(tmpdir .. "/checkpoints/self_forcing_dmd.pt", {generator = bf16(gen), generator_ema = ema and bf16(ema) or nil})
  local yaml = {
    "# the toy world's Self-Forcing student (written by recipes/toy_world.lua; keys as Self-Forcing's configs)",
    "denoising_step_list: [1000, 750, 500, 250]",
    "warp_denoising_step: true",
    string.format("timestep_shift: %s", tostring(o.shift)),
    string.format("num_frame_per_block: %d", o.num_frame_per_block),
    "independent_first_frame: false",
    "negative_prompt: ''",
    "model_kwargs:",
    string.format("  timestep_shift: %s", tostring(o.shift)),
  }
  local f = assert(io.open(tmpdir .. "/configs/self_forcing_toy.yaml", "w"))
  f:write(table.concat(yaml, "\n"), "\n")
  f:close()
  -- the long-video variant: a rolling KV window of the training length plus a sink (LongLive's keys)
  local long = {}
  for i, l in ipairs(yaml) do long[i] = l end
  long[#long + 1] = string.format("  local_attn_size: %d", o.local_attn_size)
  long[#long + 1] = string.format("  sink_size: %d", o.sink_size)
  f = assert(io.open(tmpdir .. "/configs/self_forcing_toy_long.yaml", "w"))
  f:write(table.concat(long, "\n"), "\n")
  f:close()
  f = assert(io.open(tmpdir .. "/prompts.txt", "w"))
  f:write(table.concat(o.prompts, "\n"), "\n")
  f:close()
  if C.exists(dst) then sfwb.fs.rmtree(dst) end
  os.rename(tmpdir, dst)
  return M.paths(dst)
end

function M.paths(dir)
  return {wan_dir = dir .. "/wan_models/" .. M.wan_name, checkpoint = dir .. "/checkpoints/self_forcing_dmd.pt",
          config = dir .. "/configs/self_forcing_toy.yaml", long_config = dir .. "/configs/self_forcing_toy_long.yaml",
          prompts = dir .. "/prompts.txt"}
end

return M
