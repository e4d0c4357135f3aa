-- streams.lua — host <-> device transfers and their overlap with compute, as a generation server or a data
-- loader feeds the GPU: pageable vs pinned upload bandwidth (GB/s), pinned download, and whether an upload
-- on its own stream runs under a GEMM stream (overlap = (t_copy + t_compute) / t_both: 2 is full overlap,
-- 1 none). The H100's PCIe 5 x16 link gives ~25 GB/s pinned (about half of that pageable); on emu every
-- stream runs at issue, so overlap is 1 there and the figures say nothing of speed.
local timing = dofile(GPU_CHECK_DIR .. "timing.lua")

return function(s, dev)
  local n = s.copy_mb * 2 ^ 20 // 4
  local bytes = n * 4
  local host = sfwb.randn({n})
  local pinned = host:pin_memory()
  local back = sfwb.zeros({n}):pin_memory()
  local d = sfwb.empty({n}, {device = dev})
  local gbs = function(ms) return bytes / (ms * 1e6) end
  local pageable_ms = timing.ms(dev, function() return host:to(dev) end, s.reps)
  local h2d_ms = timing.ms(dev, function() sfwb.cuda.copy_async(d, pinned) end, s.reps)
  local d2h_ms = timing.ms(dev, function() sfwb.cuda.copy_async(back, d) end, s.reps)
  sfwb.cuda.synchronize(dev)
  if (back - host):abs():max():item() ~= 0 then error("streams: the pinned round trip changed the data") end

  -- overlap: a run of the DiT's FFN GEMM on the own stream while the upload runs on a copy stream
  local o = {dtype = "bf16", device = dev}
  local x, w = sfwb.randn({s.gemm_rows[1], s.dim}, o), sfwb.randn({s.dim, s.ffn_dim}, o)
  local copy_stream = sfwb.cuda.stream(dev)
  local function compute() for _ = 1, s.overlap_gemms do sfwb.matmul(x, w) end end
  local function upload() sfwb.cuda.copy_async(d, pinned, copy_stream) end
  local function wall(fn)
    sfwb.cuda.synchronize(dev)
    local t0 = sfwb.time()
    fn()
    sfwb.cuda.synchronize(dev) -- every stream of the device
    return sfwb.time() - t0
  end
  compute(); upload() -- warm-up
  local t_compute, t_copy = wall(compute), wall(upload)
  local t_both = wall(function() upload() compute() end)
  return {h2d_pageable_gbs = gbs(pageable_ms), h2d_pinned_gbs = gbs(h2d_ms), d2h_pinned_gbs = gbs(d2h_ms),
          copy_compute_overlap = (t_compute + t_copy) / t_both, copy_mb = s.copy_mb,
          overlap_compute_ms = t_compute * 1e3, overlap_copy_ms = t_copy * 1e3, overlap_both_ms = t_both * 1e3}
end
