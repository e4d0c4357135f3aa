-- demo.lua — the default job of `make demo` (a placeholder until the generation + attention demo lands):
-- builds a toy clip of frame tokens, runs block-causal attention over it with sfwb tensors, prints the
-- frame x frame attention-mass map (the figure attention capture produces for real models), times a
-- GEMM, and saves the map to <out>/attention_demo.safetensors (readable by torch / safetensors).
local S = sfwb
local out = arg[1] or os.getenv("SFWB_DEMO_OUT") or "build/demo"

S.manual_seed(42)
local F, T, D = 6, 16, 64          -- frames, tokens per frame, head dim
local N = F * T

-- tokens of one frame share a frame embedding that drifts slowly over time, plus per-token noise,
-- so nearby frames look alike and attention should favour them
local drift = S.randn(F, 1, D) * 0.35
local frame = S.randn(1, 1, D)
local frames = {}
for f = 1, F do
  frame = frame + drift[f]
  frames[f] = frame
end
local x = S.cat(frames, 1):expand(F, T, D) + S.randn(F, T, D) * 0.5   -- [F, T, D]
x = x:reshape(N, D)
local wq, wk = S.randn(D, D) / math.sqrt(D), S.randn(D, D) / math.sqrt(D)
local q, k = S.matmul(x, wq) + x, S.matmul(x, wk) + x

-- block-causal attention (a query frame sees itself and earlier frames), as causal Wan does per chunk
local logits = S.matmul(q, k:t()) / math.sqrt(D)                     -- [N, N]
local fid = (S.arange(N):float() / T):floor()                          -- frame id of each token
local visible = fid:view(1, N):le(fid:view(N, 1))                      -- [N, N] bool
local probs = S.where(visible, logits, -math.huge):softmax(2)

-- attention mass per (query frame, key frame): sum over key tokens, mean over query tokens
local mass = probs:view(F, T, F, T):sum(4):mean(2)                     -- [F, F], rows sum to 1
print(string.format("sfwb %s demo: block-causal attention over %d frames x %d tokens (dim %d)\n", S.version, F, T, D))
print("attention mass, query frame (rows) x key frame (columns); future frames get 0:")
print(mass)
local rows = mass:sum(2)
assert(S.allclose(rows, S.ones(F), {atol = 1e-5}), "every row of the map sums to 1")
local diag = {}
for f = 1, F do diag[f] = string.format("%.2f", mass[f][f]) end
print("self-attention share per frame: " .. table.concat(diag, "  "))

-- a GEMM timing: the CPU path ends in OpenBLAS
local n = 512
local a, b = S.randn(n, n), S.randn(n, n)
S.matmul(a, b)
local t0, reps = S.time(), 5
for _ = 1, reps do S.matmul(a, b) end
S.sync()
local dt = (S.time() - t0) / reps
print(string.format("\nGEMM %dx%dx%d f32: %.2f ms, %.1f GFLOP/s", n, n, n, dt * 1e3, 2 * n ^ 3 / dt / 1e9))

os.execute("mkdir -p '" .. out .. "'")
local path = out .. "/attention_demo.safetensors"
S.save(path, {mass = mass, logits = logits, visible = visible})
local back = S.load(path)
assert(S.allclose(back.mass, mass, {rtol = 0, atol = 0}), "saved map reads back identically")
print("saved " .. path .. " (mass [F, F], logits [N, N], visible [N, N])")
