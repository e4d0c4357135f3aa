-- test_cpu_matmul.lua — the CPU GEMM paths against an f64 broadcast-multiply-sum reference: BLAS-3 split
-- across the pool (row and column blocks), one-row/one-column products (GEMV), K = 1 (rank-1), transposed
-- views; linear with the bias as the GEMM's initial C; linear backward adding into gradients accumulated
-- so far (leaf .grad on a second backward, an input shared by several linears); bf16 GEMMs (oneDNN).
local sfwb = require "sfwb"
local T = require "sfwb.testing"
sfwb.manual_seed(5)

-- a [M, K] x b [K, N] in f64 without any GEMM: sum over k of a[:, k, None] * b[None, k, :]
local function ref_mm(a, b)
  local a64, b64 = a:to("f64"), b:to("f64")
  return (a64:unsqueeze(3) * b64:unsqueeze(1)):sum(2)
end

local function operand(r, c, transposed)
  if transposed then return sfwb.randn({c, r}):transpose(1, 2) end
  return sfwb.randn({r, c})
end

T.case("matmul shapes with 1s and transposed operands match the reference", function()
  local dims = {1, 3, 17, 70}
  for _, M in ipairs(dims) do
    for _, N in ipairs(dims) do
      for _, K in ipairs({1, 5, 33}) do
        for ta = 0, 1 do
          for tb = 0, 1 do
            local a, b = operand(M, K, ta == 1), operand(K, N, tb == 1)
            T.close(sfwb.matmul(a, b), ref_mm(a, b), 1e-5, string.format("M%d N%d K%d ta%d tb%d", M, N, K, ta, tb))
          end
        end
      end
    end
  end
end)

T.case("large GEMMs split across threads (rows and columns) match the reference", function()
  -- >= 2^25 multiply-adds each: M < N splits columns, M >= N rows
  for _, s in ipairs({{300, 120, 1000}, {1000, 120, 300}, {257, 129, 1031}}) do
    local M, N, K = s[1], s[3], s[2]
    for ta = 0, 1 do
      for tb = 0, 1 do
        local a, b = operand(M, K, ta == 1), operand(K, N, tb == 1)
        T.close(sfwb.matmul(a, b), ref_mm(a, b), 1e-5, string.format("M%d N%d K%d ta%d tb%d", M, N, K, ta, tb))
      end
    end
  end
end)

T.case("bf16 GEMMs (oneDNN when built with it): layouts, batches and broadcast batches match the reference", function()
  -- operands rounded to bf16 first, so the reference multiplies the same values; the bf16 result rounds
  -- once (tolerance: half a bf16 ulp of the largest output, plus f32 summation)
  local function bf(t) return t:bf16() end
  for _, s in ipairs({{1, 5, 7}, {33, 64, 17}, {130, 96, 260}}) do
    local M, K, N = s[1], s[2], s[3]
    for ta = 0, 1 do
      for tb = 0, 1 do
        local a, b = bf(operand(M, K, ta == 1)), bf(operand(K, N, tb == 1))
        local out = sfwb.matmul(a, b)
        T.eq(out:dtype(), "bf16")
        T.close(out, ref_mm(a, b), 8e-3, string.format("bf16 M%d N%d K%d ta%d tb%d", M, N, K, ta, tb))
      end
    end
  end
  local a3, b3, w = bf(sfwb.randn({3, 20, 48})), bf(sfwb.randn({3, 48, 24})), bf(sfwb.randn({48, 24}))
  local batched, shared, left = sfwb.matmul(a3, b3), sfwb.matmul(a3, w), sfwb.matmul(w:transpose(1, 2), b3)
  for i = 1, 3 do
    T.close(batched[i], ref_mm(a3[i], b3[i]), 8e-3, "batched " .. i)
    T.close(shared[i], ref_mm(a3[i], w), 8e-3, "shared right operand " .. i)
    T.close(left[i], ref_mm(w:transpose(1, 2), b3[i]), 8e-3, "shared left operand " .. i)
  end
  -- a bf16 linear accumulates and adds its bias in f32, then rounds once: as exact as rounding allows
  local x, wl, bl = bf(sfwb.randn({2, 50, 64})), bf(sfwb.randn({40, 64})), bf(sfwb.randn({40}))
  local ref = ref_mm(x:reshape({-1, 64}), wl:transpose(1, 2)) + bl:to("f64")
  T.close(sfwb.linear(x, wl, bl):reshape({-1, 40}), ref, 4e-3, "bf16 linear")
end)

T.case("linear with bias (bias as the GEMM's initial C) matches the reference", function()
  for _, s in ipairs({{1, 7, 5}, {3, 16, 9}, {200, 64, 600}}) do
    local x, w, b = sfwb.randn({2, s[1], s[2]}), sfwb.randn({s[3], s[2]}), sfwb.randn({s[3]})
    local ref = ref_mm(x:reshape({-1, s[2]}), w:transpose(1, 2)) + b:to("f64")
    T.close(sfwb.linear(x, w, b):reshape({-1, s[3]}), ref, 1e-5, "linear " .. s[1])
    T.close(sfwb.linear(x, w):reshape({-1, s[3]}), ref_mm(x:reshape({-1, s[2]}), w:transpose(1, 2)), 1e-5)
  end
end)

T.case("linear backward accumulates into existing .grad and shared inputs", function()
  local x = sfwb.randn({37, 24}):requires_grad_()
  local w1, w2, w3 = sfwb.randn({16, 24}):requires_grad_(), sfwb.randn({16, 24}):requires_grad_(),
      sfwb.randn({16, 24}):requires_grad_()
  local g = sfwb.randn({37, 16})
  local function loss()
    -- x feeds three linears: its gradient is the sum of three products
    return ((sfwb.linear(x, w1) + sfwb.linear(x, w2) + sfwb.linear(x, w3)) * g):sum()
  end
  loss():backward()
  local gx1, gw1 = x.grad:clone(), w1.grad:clone()
  local ws = (w1 + w2 + w3):detach()
  T.close(gx1, ref_mm(g, ws), 1e-5, "dx")
  T.close(gw1, ref_mm(g:transpose(1, 2), x:detach()), 1e-5, "dw")
  loss():backward() -- second step: added into the existing gradients in place
  T.close(x.grad, gx1 * 2, 1e-5, "dx accumulated")
  T.close(w1.grad, gw1 * 2, 1e-5, "dw accumulated")
  T.close(w3.grad, gw1 * 2, 1e-5, "dw3 accumulated")
end)

T.done()
