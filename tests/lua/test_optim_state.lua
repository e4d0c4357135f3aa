-- test_optim_state.lua — the AdamW state .pt is torch's layout: torch.optim.AdamW.load_state_dict takes it
-- (int parameter keys, int `params` lists) and continues identically; sfwb reads back its own file and
-- torch's; the .pt writer keeps integer dict keys as ints.
local sfwb = require "sfwb"
local T = require "sfwb.testing"

local dir = T.tmpdir("optim_state")
local have_torch = T.have_torch

local close = T.close

T.case(".pt dict keys: integers stay integers, strings stay strings, integers sort first", function()
  if not have_torch then print("  (skipped: no python3-torch)") return end
  sfwb.save(dir .. "/keys.pt", {[3] = "c", [0] = "a", [-2] = 1.5, name = {[10] = true}, [100000000000] = 7})
  T.eq(os.execute(T.python .. [[ -c "import torch,sys; d=torch.load(sys.argv[1]); ]]
    .. [[assert list(d)==[-2,0,3,100000000000,'name'], list(d); assert d[0]=='a' and d[-2]==1.5 and d['name']=={10: True}" ]]
    .. dir .. "/keys.pt"), true)
  local back = sfwb.load(dir .. "/keys.pt")
  T.eq(back["name.10"], true) -- the reader flattens nested dicts to dotted names, integer keys included
end)

T.case("torch.optim.AdamW loads sfwb's state and continues identically; sfwb loads torch's", function()
  if not have_torch then print("  (skipped: no python3-torch)") return end
  sfwb.manual_seed(21)
  local shapes = {{3, 4}, {5}, {2}}
  local ps, inp = {}, {n = #shapes}
  for i, sh in ipairs(shapes) do
    ps[i] = sfwb.randn(sh):requires_grad_()
  end
  local opt = sfwb.optim.adamw(ps, {lr = 0.1, betas = {0.8, 0.99}, eps = 1e-8, weight_decay = 0.05})
  for s = 1, 3 do -- parameter 2 gets gradients from step 2 on, parameter 3 never (no state)
    opt:zero_grad()
    ps[1].grad = sfwb.randn(shapes[1])
    if s >= 2 then ps[2].grad = sfwb.randn(shapes[2]) end
    opt:step()
  end
  sfwb.save(dir .. "/opt.pt", opt:state_dict())
  for i, sh in ipairs(shapes) do
    inp["p" .. (i - 1)] = ps[i]:detach():clone()
    inp["g" .. (i - 1)] = sfwb.randn(sh)
    local st = opt.state[i]
    if st then
      inp["m" .. (i - 1)], inp["v" .. (i - 1)], inp["step" .. (i - 1)] = st.exp_avg, st.exp_avg_sq, st.step
    end
  end
  T.eq(opt.state[1].step, 3)
  T.eq(opt.state[2].step, 2)
  T.eq(opt.state[3], nil)
  sfwb.save(dir .. "/in.pt", inp)

  -- sfwb reads back its own file into a fresh optimizer (other hyperparameters: the file's win)
  local qs = {}
  for i = 1, #ps do qs[i] = ps[i]:detach():clone():requires_grad_() end
  local own = sfwb.optim.adamw(qs, {lr = 0.7})
  own:load_state_dict(sfwb.load(dir .. "/opt.pt"))
  for i = 1, 2 do
    T.eq(own.state[i].step, opt.state[i].step)
    close(own.state[i].exp_avg, opt.state[i].exp_avg, 0, "own exp_avg " .. i)
    close(own.state[i].exp_avg_sq, opt.state[i].exp_avg_sq, 0, "own exp_avg_sq " .. i)
  end
  T.eq(own.state[3], nil)
  T.near(own.param_groups[1].lr, 0.1, 0)
  T.near(own.param_groups[1].betas[1], 0.8, 0)

  -- torch: load, check, one more step
  T.eq(os.execute(T.python .. " tests/ref/optim_state_ref.py " .. dir .. "/in.pt " .. dir .. "/opt.pt " .. dir), true)
  for i = 1, #ps do ps[i].grad = inp["g" .. (i - 1)] end
  opt:step()
  local tp = sfwb.load(dir .. "/torch_params.pt")
  for i = 1, #ps do close(ps[i], tp["p" .. (i - 1)], 2e-6, "param " .. i .. " after a step in both") end

  -- sfwb reads torch's own state dict (int keys, tuple betas, None entries) and has torch's moments
  local rs = {}
  for i = 1, #ps do rs[i] = ps[i]:detach():clone():requires_grad_() end
  local theirs = sfwb.optim.adamw(rs, {lr = 0.7})
  theirs:load_state_dict(sfwb.load(dir .. "/torch_opt.pt"))
  T.near(theirs.param_groups[1].lr, 0.1, 0)
  T.near(theirs.param_groups[1].betas[2], 0.99, 0)
  T.near(theirs.param_groups[1].weight_decay, 0.05, 0)
  for i = 1, #ps do
    T.eq(theirs.state[i].step, opt.state[i].step)
    close(theirs.state[i].exp_avg, opt.state[i].exp_avg, 2e-6, "torch exp_avg " .. i)
    close(theirs.state[i].exp_avg_sq, opt.state[i].exp_avg_sq, 2e-6, "torch exp_avg_sq " .. i)
  end
end)

T.done()
