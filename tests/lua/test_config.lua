-- test_config.lua — sfwb.config against a Python reference (PyYAML with OmegaConf's loader changes and
-- OmegaConf.merge semantics, tests/ref/config_merge.py) on fixtures reproducing the original configs,
-- and on the originals themselves when a mirror of the repositories is present.
local sfwb = require "sfwb"
local T = require "sfwb.testing"
local config = sfwb.config

local D = "tests/data/configs/"

local function reference(files, overrides, omegaconf)
  local cmd = T.python .. " tests/ref/config_merge.py " .. (omegaconf and "--omegaconf " or "") .. table.concat(files, " ")
  if overrides and #overrides > 0 then
    local q = {}
    for i, o in ipairs(overrides) do q[i] = "'" .. o:gsub("'", "'\\''") .. "'" end
    cmd = cmd .. " -- " .. table.concat(q, " ")
  end
  local p = io.popen(cmd)
  local out = p:read("a")
  p:close()
  return sfwb._json.parse(out, "reference")
end

-- compare a config value with the typed reference: types (int vs float, null) must match too
local function same(got, ref, path)
  if type(ref) == "table" and ref.t then
    local t = ref.t
    if t == "null" then
      T.check(rawequal(got, config.null), path .. ": expected null, got " .. tostring(got))
    elseif t == "bool" then
      T.eq(got, ref.v, path)
    elseif t == "int" then
      T.eq(math.type(got), "integer", path .. " type")
      T.eq(got, math.tointeger(tonumber(ref.v)), path)
    elseif t == "float" then
      T.eq(math.type(got), "float", path .. " type")
      local want = ({inf = math.huge, ["-inf"] = -math.huge})[ref.v] or tonumber(ref.v)
      if ref.v == "nan" then T.check(got ~= got, path) else T.eq(got, want, path) end
    else
      T.eq(type(got), "string", path .. " type")
      T.eq(got, ref.v, path)
    end
    return
  end
  T.eq(type(got), "table", path)
  local n = 0
  for k, v in pairs(ref) do
    n = n + 1
    local key = k
    if math.type(k) == "integer" then key = k end
    same(got[key], v, path .. "." .. tostring(k))
  end
  local m = 0
  for _ in pairs(got) do m = m + 1 end
  T.eq(m, n, path .. " key count")
end

local function check(files, overrides, omegaconf)
  local opts = {keep_null = true, overrides = overrides}
  if #files > 1 then
    opts.defaults = {}
    for i = 1, #files - 1 do opts.defaults[i] = files[i] end
  end
  local got = config.load(files[#files], opts)
  same(got, reference(files, overrides, omegaconf), "cfg")
  return got
end

T.case("YAML typing matches PyYAML + OmegaConf's loader", function()
  local c = check({D .. "typing.yaml"})
  T.eq(c.ints[10], 90)
  T.eq(c.anchors.derived.x, 1)
  T.eq(c.anchors.derived.y[1], 3)
  T.eq(c.block, "line one\nline two\n")
end)

T.case("Self-Forcing default + self_forcing_dmd merge", function()
  local c = check({D .. "sf_default_config.yaml", D .. "sf_self_forcing_dmd.yaml"})
  T.eq(c.warp_denoising_step, true) -- the later file wins
  T.eq(c.weight_decay, 0.01)        -- kept from the defaults
  T.eq(c.lr, 2e-6)
  T.eq(c.model_kwargs.timestep_shift, 5.0)
end)

T.case("Self-Forcing-Plus 14B and I2V configs", function()
  check({D .. "sf_default_config.yaml", D .. "sfp_self_forcing_14b_dmd.yaml"})
  local c = check({D .. "sf_default_config.yaml", D .. "sfp_self_forcing_14b_i2v_dmd.yaml"})
  T.eq(c.i2v, true)
end)

T.case("LongLive 1.0 and 2.0 configs", function()
  check({D .. "sf_default_config.yaml", D .. "ll1_longlive_train_long.yaml"})
  check({D .. "ll1_longlive_inference.yaml"})
  local c = check({D .. "ll2_train_i2v_dmd.yaml"})
  T.check(rawequal(c.checkpoints.generator_ckpt, config.null))
end)

T.case("the real OmegaConf.merge gives the same values and types", function()
  local ok = os.execute(T.python .. " -c 'import omegaconf' 2>/dev/null")
  T.check(ok, "python3-omegaconf is missing (scripts/deps.sh installs it)")
  check({D .. "sf_default_config.yaml", D .. "sf_self_forcing_dmd.yaml"}, nil, true)
  check({D .. "sf_default_config.yaml", D .. "sfp_self_forcing_14b_dmd.yaml"}, nil, true)
  check({D .. "sf_default_config.yaml", D .. "sfp_self_forcing_14b_i2v_dmd.yaml"}, nil, true)
  check({D .. "sf_default_config.yaml", D .. "ll1_longlive_train_long.yaml"}, nil, true)
  check({D .. "ll2_train_i2v_dmd.yaml"}, nil, true)
  check({D .. "sf_default_config.yaml", D .. "sf_self_forcing_dmd.yaml"}, {"lr=4e-6", "model_kwargs.timestep_shift=8"}, true)
end)

T.case("maps merge key by key, lists replace, null overrides; CLI overrides", function()
  local files = {D .. "sf_default_config.yaml", D .. "sf_self_forcing_dmd.yaml", D .. "override.yaml"}
  local ov = {"lr=4e-6", "model_kwargs.timestep_shift=8", "new.deep.key=[1, 2]", "gc_interval=", "seed=yes",
    "negative_prompt='quoted text'"}
  local c = check(files, ov)
  T.eq(#c.denoising_step_list, 2)
  T.eq(c.model_kwargs.sink_size, 3)
  T.eq(c.model_kwargs.timestep_shift, 8)
  -- without keep_null, null keys are absent
  local d = config.load(files[3], {defaults = {files[1], files[2]}, overrides = ov})
  T.eq(d.generator_ckpt, nil)
  T.eq(d.gc_interval, nil)
  T.eq(d.lr, 4e-6)
  -- table overrides, dotted keys
  local e = config.load(files[2], {defaults = files[1], overrides = {lr = 1e-5, ["model_kwargs.sink_size"] = 2}})
  T.eq(e.lr, 1e-5)
  T.eq(e.model_kwargs.sink_size, 2)
  T.eq(e.model_kwargs.timestep_shift, 5.0)
end)

T.case("the original config texts (when a mirror is present)", function()
  local mirrors = {
    {"/work/.mirror/guandeh17+Self-Forcing/repo", {{"configs/default_config.yaml", "configs/self_forcing_dmd.yaml"},
      {"configs/default_config.yaml", "configs/self_forcing_sid.yaml"}}},
    {"/work/.mirror/GoatWu+Self-Forcing-Plus/repo", {{"configs/default_config.yaml", "configs/self_forcing_14b_dmd.yaml"},
      {"configs/default_config.yaml", "configs/self_forcing_14b_i2v_dmd.yaml"}}},
    {"/work/.mirror/NVlabs+LongLive/repo", {{"configs/train_dmd.yaml"}, {"configs/train_i2v_dmd.yaml"}, {"configs/inference.yaml"}}},
  }
  local tmp = T.tmpdir("cfg")
  local ran = 0
  for _, m in ipairs(mirrors) do
    local git, sets = m[1], m[2]
    for _, set in ipairs(sets) do
      local files = {}
      for i, f in ipairs(set) do
        local out = tmp .. "/" .. f:gsub("/", "_")
        if os.execute("git --git-dir='" .. git .. "' show HEAD:" .. f .. " > '" .. out .. "' 2>/dev/null") == true then
          files[i] = out
        end
      end
      if #files == #set then
        check(files)
        ran = ran + 1
      end
    end
  end
  os.execute("rm -rf '" .. tmp .. "'")
  if ran == 0 then print("     (skipped: no mirror of the original repositories here)") end
end)

T.case("interpolation and errors", function()
  local c = config.load({a = {b = 3}, s = "${a.b}", t = "x-${a.b}-y", e = "${oc.env:SFWB_NOPE,dflt}"})
  T.eq(c.s, 3)
  T.eq(c.t, "x-3-y")
  T.eq(c.e, "dflt")
  T.raises(function() config.load({s = "${missing.key}"}) end, "missing.key")
  T.raises(function() config.load("tests/data/configs/nope.yaml") end, "nope.yaml")
  T.raises(function() config.parse("a: [1, 2", "bad.yaml") end, "bad.yaml")
  T.raises(function() config.load(nil, {overrides = {"novalue"}}) end, "key.sub=value")
end)

T.case("config.json of a Wan model folder", function()
  local dir = T.tmpdir("wanjson")
  local f = io.open(dir .. "/config.json", "w")
  f:write('{"_class_name":"WanModel","_diffusers_version":"0.30.0","model_type":"t2v","dim":1536,"ffn_dim":8960,' ..
    '"freq_dim":256,"in_dim":16,"out_dim":16,"num_heads":12,"num_layers":30,"eps":1e-06,"text_len":512,"x":null}')
  f:close()
  local c = config.json(dir)
  T.eq(c.dim, 1536)
  T.eq(math.type(c.dim), "integer")
  T.eq(c.eps, 1e-6)
  T.eq(c.model_type, "t2v")
  T.eq(c.x, nil)
  T.eq(config.json(dir .. "/config.json").num_layers, 30)
  os.execute("rm -rf '" .. dir .. "'")
end)

T.case("to_yaml round trips through the parser", function()
  local c = config.load(D .. "sf_self_forcing_dmd.yaml", {defaults = D .. "sf_default_config.yaml"})
  local back = config.parse(config.to_yaml(c))
  local function eqdeep(a, b, p)
    T.eq(type(a), type(b), p)
    if type(a) == "table" then
      for k, v in pairs(a) do eqdeep(v, b[k], p .. "." .. tostring(k)) end
      for k in pairs(b) do T.check(a[k] ~= nil, p .. "." .. tostring(k) .. " extra") end
    else
      T.eq(math.type(a), math.type(b), p)
      T.eq(a, b, p)
    end
  end
  eqdeep(back, c, "cfg")
end)

T.done()
