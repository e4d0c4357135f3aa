-- report.lua — gpu_check's table: each measured figure beside what the arithmetic expects of sfwb's kernels
-- on an H100 (flops.lua: FLOP counts at the assumed kernel rates) and the published reference points.
local M = {}

local function f(v, fmt) return v and string.format(fmt or "%.1f", v) or "-" end

function M.print(R)
  local A, ref = R.assumed, R.reference
  local st = R.stages
  local function peak(name) return st[name] and st[name].peak_memory_gb end
  print(string.format("\ngpu_check on %s (%s)%s", R.device, R.name, R.tiny and "  [tiny sizes: figures say nothing of speed]" or ""))
  local t = R.tests or {}
  print(string.format("device tests: %s", t.run and string.format("%d passed, %d failed", t.passed, t.failed) or "not run"))
  local nf, nb = R.sizes.frames, R.sizes.block
  local rows = {
    {string.format("attention fwd, %d vs %d frames KV (TFLOP/s)", nb, nf), f(R.attention_fwd_tflops), f(A.attn_fwd_tflops, "%.0f"),
     string.format("FA3 ~%d, FA2 ~%d", ref.fa3_fwd_tflops, ref.fa2_fwd_tflops_h100), f(peak("attention"), "%.2f")},
    {string.format("attention fwd, block-causal %d fr (TFLOP/s)", nf), f(R.attention_fwd_tflops_block_causal), f(A.attn_fwd_tflops, "%.0f"), "", ""},
    {string.format("attention bwd, block-causal %d fr (TFLOP/s)", nf), f(R.attention_bwd_tflops), f(A.attn_bwd_tflops, "%.0f"), "", ""},
    {"GEMM bf16 + bias, chunk block mix (TFLOP/s)", f(R.gemm_bf16_tflops), f(A.gemm_tflops, "%.0f"),
     string.format("H100 peak %d", R.h100.bf16_tflops), f(peak("gemm"), "%.2f")},
    {string.format("GEMM bf16 + bias, %d-frame mix (TFLOP/s)", nf), f(R.gemm_bf16_tflops_train), f(A.gemm_tflops, "%.0f"), "", ""},
    {"upload, pageable / pinned (GB/s)", string.format("%s / %s", f(R.h2d_pageable_gbs), f(R.h2d_pinned_gbs)),
     "", "PCIe5 x16 ~25 pinned", f(peak("streams"), "%.2f")},
    {"download pinned (GB/s)", f(R.d2h_pinned_gbs), "", "", ""},
    {"upload under GEMMs, overlap (2 = full)", f(R.copy_compute_overlap, "%.2f"), "2.0", "", ""},
    {string.format("DiT forward, %d fr vs %d-fr cache (ms)", nb, nf), f(R.dit_forward_ms), f(R.dit_forward_expected_ms),
     string.format("floor %s", f(R.dit_forward_floor_ms)), f(peak("dit_forward"), "%.2f")},
    {"chunk-wise generation incl. VAE (FPS)", f(R.fps_chunkwise, "%.2f"), "", string.format("Self-Forcing %.1f", ref.self_forcing_fps),
     f(peak("generation"), "%.2f")},
    {"  DiT only (FPS)", f(R.fps_dit_only, "%.2f"), f(R.fps_expected_no_vae, "%.1f"), string.format("floor %s", f(R.fps_floor_no_vae)), ""},
    {"first chunk latency (s)", f(R.first_chunk_latency_s, "%.3f"), "",
     string.format("Self-Forcing %.2f", ref.self_forcing_first_chunk_latency_s), ""},
    {"DMD step, generator + critic (s)", f(R.dmd_step_s, "%.2f"), "", "", f(peak("dmd_step"), "%.2f")},
    {"DMD step, critic only (s)", f(R.dmd_critic_step_s, "%.2f"), "", "", ""},
  }
  local w = {44, 10, 10, 22, 9}
  local function line(r)
    print(string.format("%-" .. w[1] .. "s %" .. w[2] .. "s %" .. w[3] .. "s  %-" .. w[4] .. "s %" .. w[5] .. "s",
                        r[1], r[2], r[3], r[4], r[5]))
  end
  line({"", "measured", "expected", "reference", "peak GB"})
  for _, r in ipairs(rows) do line(r) end
  print(string.format("peak memory (max over stages) %.2f GB; wall %.0f s of a %d s budget", R.peak_memory_gb or 0,
                      R.total_s or 0, R.budget_s))
  for _, sk in ipairs(R.skipped) do print("skipped: " .. sk) end
  for _, e in ipairs(R.errors) do print("ERROR: " .. e) end
end

return M
