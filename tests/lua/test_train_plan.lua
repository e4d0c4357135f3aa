-- test_train_plan.lua — sfwb.train.plan: parameter counts from the shapes against real models and
-- Wan2.1's published sizes, the activation formula against what sfwb's autograd keeps, and the verdicts.
local T = require "sfwb.testing"
local Plan = require "sfwb.train.plan"

T.case("parameter counts", function()
  -- Wan2.1-T2V-1.3B and -14B as their checkpoints hold them
  T.eq(Plan.wan_params(Plan.SHAPES["1.3B"]), 1418996800)
  T.eq(Plan.wan_params(Plan.SHAPES["14B"]), 14288491584)
  for _, c in ipairs({{32, 48, 2}, {64, 96, 3}}) do
    local cfg = {dim = c[1], ffn_dim = c[2], num_heads = 2, num_layers = c[3], in_dim = 16, out_dim = 16,
                 text_dim = 8, text_len = 4, freq_dim = 16}
    local n = 0
    for _, v in pairs(sfwb.wan.new(cfg, {causal = false}):parameters()) do n = n + v:numel() end
    T.eq(Plan.wan_params(cfg), n, "the formula counts what sfwb.wan.new builds")
  end
end)

-- bytes a forward with gradient keeps alive (the graph), on the cpu allocator
local function graph_bytes(dim, ffn, layers)
  local cfg = {dim = dim, ffn_dim = ffn, num_heads = 2, num_layers = layers, in_dim = 16, out_dim = 16,
               text_dim = 8, text_len = 4, freq_dim = 16}
  sfwb.manual_seed(1)
  local m = sfwb.wan.new(cfg, {causal = false})
  m:requires_grad_(true)
  local x, ctx, t = sfwb.randn({1, 16, 3, 16, 16}), sfwb.randn({1, 4, 8}), sfwb.tensor({500.0})
  collectgarbage(); collectgarbage()
  local a0 = sfwb.cpu_memory().allocated
  local y = m:forward(x, t, ctx)
  collectgarbage(); collectgarbage()
  local b = sfwb.cpu_memory().allocated - a0
  T.check(y ~= nil)
  return b
end

T.case("activations per block: the formula against the autograd graph", function()
  local L = 3 * 8 * 8
  for _, c in ipairs({{64, 128}, {64, 512}, {128, 128}}) do
    local per_block = (graph_bytes(c[1], c[2], 6) - graph_bytes(c[1], c[2], 3)) / 3 / 4 -- f32 elements
    local want = Plan.block_activation_elems(L, c[1], c[2])
    T.check(math.abs(per_block - want) <= 0.05 * want, ("d=%d f=%d: measured %d elements per block, formula %d")
      :format(c[1], c[2], per_block, want))
  end
end)

T.case("verdicts for Self-Forcing's shipped config", function()
  local sf = {real_name = "Wan2.1-T2V-14B", mixed_precision = true, sharding_strategy = "hybrid_full",
              gradient_checkpointing = true, image_or_video_shape = {1, 21, 16, 60, 104}}
  local one = sfwb.train.plan(sf, {gpus = 1, gpu_memory_gb = 80})
  T.eq(one.sharded, false)
  T.eq(one.fits, false, "generator + critic + 14B teacher + T5 do not fit one 80 GB GPU replicated")
  T.eq(one.tokens, 21 * 30 * 52)
  local eight = sfwb.train.plan(sf, {gpus = 8, gpu_memory_gb = 80})
  T.eq(eight.sharded, true)
  T.check(eight.weights < one.weights / 7.9 and eight.optimizer < one.optimizer / 7.9, "states / 8")
  T.eq(eight.fits, true, eight:report())
  local blk = sfwb.train.plan(sf, {gpus = 8, gpu_memory_gb = 80, gather = "block"})
  T.check(blk.gathered < eight.gathered / 10, "per-block gathering holds two blocks, not whole models")
  -- the optimizer of two trained 1.3B nets in mixed precision: (8 + 4) bytes per parameter
  T.eq(one.optimizer, 2 * 12 * Plan.wan_params(Plan.SHAPES["1.3B"]))
  T.check(one.activations_checkpointed < one.activations / 5, "checkpointing keeps block inputs only")
  T.raises(function() sfwb.train.plan(sf, {gpus = 0}) end, "gpus must be an integer")
end)

T.done()
