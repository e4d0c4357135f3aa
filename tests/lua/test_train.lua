-- test_train.lua — sfwb.optim.adamw and sfwb.clip_grad_norm against torch.optim.AdamW + clip_grad_norm_
-- over 10 steps (python3-torch at test time), EMA, optimizer state round trip.
local sfwb = require "sfwb"
local T = require "sfwb.testing"

local dir = T.tmpdir("train")
local have_torch = T.have_torch

local close = T.close

T.case("adamw + clip_grad_norm match torch over 10 steps", function()
  if not have_torch then print("  (skipped: no python3-torch)") return end
  sfwb.manual_seed(11)
  local shapes = {{4, 5}, {7}, {3, 2, 2}, {6, 3}}
  local dtypes = {"f32", "f32", "f32", "bf16"}
  local cfg = {n = #shapes, steps = 10, lr = 3e-2, beta1 = 0.9, beta2 = 0.99, eps = 1e-8, wd = 0.05, max_norm = 4.0}
  local ps, input = {}, {}
  for k, v in pairs(cfg) do input[k] = v end
  for i, sh in ipairs(shapes) do
    ps[i] = sfwb.randn(sh, {dtype = dtypes[i]}):requires_grad_()
    input["p" .. (i - 1)] = ps[i]:detach():clone()
  end
  local grads = {}
  for s = 0, cfg.steps - 1 do
    grads[s] = {}
    for i, sh in ipairs(shapes) do
      if not (s == 3 and i == 2) then -- parameter 2 has no gradient at step 3: skipped by clip and AdamW
        grads[s][i] = sfwb.randn(sh) * (s % 2 == 0 and 3.0 or 0.2)
        input[("g%d_%d"):format(s, i - 1)] = grads[s][i]
      end
    end
  end
  sfwb.save(dir .. "/in.pt", input)
  T.eq(os.execute(T.python .. " tests/ref/optim_ref.py " .. dir .. "/in.pt " .. dir .. "/out.pt"), true)
  local ref = sfwb.load(dir .. "/out.pt")
  local opt = sfwb.optim.adamw(ps, {lr = cfg.lr, betas = {cfg.beta1, cfg.beta2}, eps = cfg.eps, weight_decay = cfg.wd})
  for s = 0, cfg.steps - 1 do
    opt:zero_grad()
    for i = 1, #ps do ps[i].grad = grads[s][i] and grads[s][i]:clone() or nil end
    local norm = sfwb.clip_grad_norm(ps, cfg.max_norm)
    T.near(norm, ref["norm" .. s], 1e-6, "norm at step " .. s)
    opt:step()
  end
  for i = 1, #ps do
    T.eq(ps[i]:dtype(), dtypes[i])
    close(ps[i], ref["p" .. (i - 1)], dtypes[i] == "bf16" and 8e-3 or 2e-6, "param " .. i)
    close(opt.state[i].exp_avg, ref["m" .. (i - 1)], 2e-6, "exp_avg " .. i)
    close(opt.state[i].exp_avg_sq, ref["v" .. (i - 1)], 2e-6, "exp_avg_sq " .. i)
  end
  T.eq(opt.state[2].step, 9)
  T.eq(opt.state[1].step, 10)
end)

T.case("adamw state_dict round trip continues identically", function()
  sfwb.manual_seed(3)
  local function run(split)
    sfwb.manual_seed(5)
    local p = sfwb.randn({5, 3}):requires_grad_()
    local opt = sfwb.optim.adamw({w = p}, {lr = 0.1})
    for s = 1, 6 do
      if split and s == 4 then
        local sd = opt:state_dict()
        sfwb.save(dir .. "/opt.pt", sd)
        opt = sfwb.optim.adamw({w = p}, {lr = 0.5, betas = {0.5, 0.5}})
        opt:load_state_dict(sfwb.load(dir .. "/opt.pt")) -- torch-loadable .pt, read back flattened
      end
      local loss = (p * p):sum()
      opt:zero_grad()
      loss:backward()
      opt:step()
    end
    return p
  end
  local a, b = run(false), run(true)
  T.eq((a - b):abs():max():item(), 0.0)
end)

T.case("optimizer state .pt loads in torch with torch's layout", function()
  if not have_torch then print("  (skipped: no python3-torch)") return end
  local p = sfwb.randn({3}):requires_grad_()
  local opt = sfwb.optim.adamw({p}, {lr = 0.1, betas = {0.0, 0.999}})
  p.grad = sfwb.ones({3})
  opt:step()
  sfwb.save(dir .. "/o.pt", opt:state_dict())
  T.eq(os.execute(T.python .. [[ -c "import torch,sys; d=torch.load(sys.argv[1]); g=d['param_groups'][0]; ]]
    .. [[s=d['state'][0]; assert g['betas']==[0.0,0.999] and g['lr']==0.1 and float(s['step'])==1.0; ]]
    .. [[assert torch.allclose(s['exp_avg'], torch.ones(3))" ]] .. dir .. "/o.pt"), true)
end)

T.case("clip_grad_norm leaves small gradients alone and returns the norm", function()
  local p = sfwb.zeros({3}):requires_grad_()
  p.grad = sfwb.tensor({3.0, 4.0, 0.0})
  T.near(sfwb.clip_grad_norm({p}, 10.0), 5.0, 1e-12)
  T.near(p.grad[1], 3.0, 0)
  T.near(sfwb.clip_grad_norm({p}, 1.0), 5.0, 1e-12)
  T.near(p.grad[2], 4.0 / (5.0 + 1e-6), 1e-6)
end)

T.case("ema follows shadow = d*shadow + (1-d)*param, starts late, copies back", function()
  local m = {a = sfwb.ones({2, 2}), b = sfwb.full({3}, 2.0, {dtype = "bf16"})}
  local ema = sfwb.ema(m, 0.9, {start_step = 2})
  T.eq(ema:update(), false)
  T.eq(ema:maybe_start(1), false)
  T.eq(ema:maybe_start(2), true)
  m.a:fill_(3.0)
  m.b:fill_(4.0)
  ema:update()
  T.near(ema:state_dict().a[1][1], 0.9 * 1 + 0.1 * 3, 1e-6)
  T.near(ema:state_dict().b[1], 0.9 * 2 + 0.1 * 4, 1e-6)
  T.eq(ema:state_dict().b:dtype(), "f32")
  sfwb.save(dir .. "/ema.pt", ema:state_dict()) -- {name = f32 tensor}, as Self-Forcing's generator_ema
  local e2 = sfwb.ema(m, 0.9, {start_step = 100})
  e2:load_state_dict(sfwb.load(dir .. "/ema.pt"))
  T.eq(e2.started, true)
  T.eq((e2:state_dict().a - ema:state_dict().a):abs():max():item(), 0.0)
  ema:copy_to(m)
  T.near(m.a[2][2], 1.2, 1e-6)
  T.eq(m.b:dtype(), "bf16")
end)

os.execute("rm -rf '" .. dir .. "'")
T.done()
