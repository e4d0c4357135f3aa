-- sfwb/recipes/toy_world_ode.lua — the toy world's ODE stages: pairs from the teacher's multi-step sampler
-- with CFG (scripts/generate_ode_pairs.py's job: states kept at evenly spaced sampler steps, written as
-- create_lmdb_iterative.py does), and the ODE initialisation of a causal student (sfwb.train.ode).
-- The original keeps the states at steps 0, 12, 24, 36 and the end of a 48-step sampler and trains with
-- denoising_step_list [1000, 750, 500, 250] + the clean row, whatever timesteps those states really sit at
-- on the shifted grid; this stage does the same with `steps` sampler steps (kept: 0, steps/4, steps/2,
-- 3 steps/4, the end).
local sfwb = require "sfwb"

local M = {}

M.denoising_step_list = {1000, 750, 500, 250, 0}

function M.keep(steps)
  return {0, steps // 4, steps // 2, (3 * steps) // 4, steps}
end

-- writes the pairs of `prompts` (the training prompts, duplicates skipped; `per_prompt` noises each, default
-- 1) to path; returns the row count
function M.pairs(o)
  local p = sfwb.pipeline.bidirectional_diffusion({generator = o.teacher, text_encoder = o.text_encoder,
    num_inference_steps = o.steps, guidance_scale = o.guidance_scale or 3.0, timestep_shift = o.shift or 5.0,
    negative_prompt = ""})
  local neg = o.text_encoder:encode({""}).prompt_embeds
  local w = sfwb.data.lmdb_writer(o.path, {shards = 1})
  local seen, rows, t0 = {}, 0, sfwb.time()
  sfwb.manual_seed(o.seed)
  for i, prompt in ipairs(o.prompts) do
    if not seen[prompt] then
      seen[prompt] = true
      for _ = 1, o.per_prompt or 1 do
        local noise = sfwb.randn({1, o.frames, 16, o.h, o.w})
        local r = p:generate({prompts = {prompt}, noise = noise, negative_embeds = neg,
          trajectory_steps = M.keep(o.steps), decode = false})
        w:add({latents = r.trajectory:select(1, 1):contiguous(), prompts = prompt})
        rows = rows + 1
      end
      if rows % 8 == 0 or i == #o.prompts then
        local el = sfwb.time() - t0
        io.write(string.format("ode_pairs          prompt %d/%d  %d pairs  %.1f s/pair\n", i, #o.prompts, rows, el / rows))
        io.flush()
      end
    end
  end
  w:close()
  return rows, sfwb.time() - t0
end

function M.init_config(ctx_seed, p, shift)
  return {lr = p.lr, batch_size = p.batch, weight_decay = 0, seed = ctx_seed + 13, data_seed = ctx_seed,
    num_frame_per_block = 3, independent_first_frame = false, model_kwargs = {timestep_shift = shift or 5.0},
    denoising_step_list = M.denoising_step_list, warp_denoising_step = false}
end

return M
