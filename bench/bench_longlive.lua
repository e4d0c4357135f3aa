-- bench_longlive.lua — a windowed long rollout (LongLive's interactive pipeline) of a real-width 2-block DiT
-- (dim 1536, 12 heads, ffn 8960, text 512) on the CPU: 3-frame blocks, 4 steps, window 12 frames with a
-- 3-frame sink, two prompts switched at frame 12 (one recache over 12 frames). Latent ARG1 x ARG2 per frame,
-- ARG3 latent frames. Prints "key value" lines for bench_longlive.sh.
local h, w, F = tonumber(arg[1] or "16"), tonumber(arg[2] or "26"), tonumber(arg[3] or "18")
sfwb.manual_seed(0)
local m = sfwb.wan.new({dim = 1536, ffn_dim = 8960, num_heads = 12, num_layers = 2, text_len = 512, text_dim = 4096,
                        freq_dim = 256}, {causal = true, num_frame_per_block = 3})
local ctx1, ctx2 = sfwb.randn({1, 512, 4096}), sfwb.randn({1, 512, 4096})
local noise = sfwb.randn({1, F, 16, h, w})
local p = sfwb.pipeline.interactive{generator = m, num_frame_per_block = 3, local_attn_size = 12, sink_size = 3,
                                    global_sink = true}
local times = {}
local t0 = sfwb.time()
local r = p:generate{noise = noise, prompt_embeds_list = {ctx1, ctx2}, switch_frame_indices = {12},
                     on_block = function(i, _, rec) times[i] = rec.seconds end}
local total = sfwb.time() - t0
-- steady state: the blocks after the window has filled (block 5 on), the recache excluded
local s, n = 0, 0
for i = 5, #times do s, n = s + times[i], n + 3 end
print(string.format("steady_fps %.4f", n / s))
print(string.format("recache_s %.4f", r.recaches[1].seconds))
print(string.format("total_s %.4f", total))
print(string.format("first_block_s %.4f", times[1]))
