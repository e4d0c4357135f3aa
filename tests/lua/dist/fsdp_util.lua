-- fsdp_util.lua — what the sharded-training tests (train_fsdp, fsdp_blocks, fsdp_resize) compare:
-- a trainer's full parameters (gathered when sharded) and the largest difference between two such sets.
--   local U = dofile((arg[0]:match("^(.*)/[^/]*$") or ".") .. "/fsdp_util.lua")
local T = require "sfwb.testing"

local U = {}

-- {"<model>.<name>" = f32 cpu copy} of the named models (default generator and critic), full even when sharded
function U.full_state(tr, models)
  local function grab()
    local out = {}
    for _, m in ipairs(models or {"generator", "critic"}) do
      for k, v in pairs(tr[m]:parameters()) do out[m .. "." .. k] = v:float():cpu():clone() end
    end
    return out
  end
  return tr.with_full_params and tr:with_full_params(grab) or grab()
end

-- max |a - b| over every tensor of a (each must be in b), and how many tensors were compared
function U.max_diff(a, b)
  local worst, n = 0, 0
  for k, v in pairs(a) do
    T.check(b[k] ~= nil, "missing " .. k)
    worst = math.max(worst, (v - b[k]):abs():max():item())
    n = n + 1
  end
  return worst, n
end

return U
