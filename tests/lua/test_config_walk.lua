-- test_config_walk.lua — every shipped config of Self-Forcing, Self-Forcing-Plus and LongLive v1.0 (their key
-- sets in tests/data/configs/, merged over their default_config.yaml as train.py does) either builds the trainer
-- it names, with tiny models, or is refused with a sentence naming what is missing — never trained as another
-- objective. Plus the dispatch's own refusals of unknown values.
local sfwb = require "sfwb"
local T = require "sfwb.testing"

local ROOT = "tests/data/configs"

-- what each shipped config must do in sfwb (facts from the originals' train.py dispatch)
local EXPECT = {
  ["self_forcing/self_forcing_dmd.yaml"] = {builds = "dmd"},
  -- shipped with distribution_loss: dmd (sid_alpha unused): the original trains DMD with it
  ["self_forcing/self_forcing_sid.yaml"] = {builds = "dmd"},
  ["self_forcing_plus/self_forcing_dmd.yaml"] = {builds = "dmd"},
  ["self_forcing_plus/self_forcing_sid.yaml"] = {builds = "dmd"},
  ["self_forcing_plus/self_forcing_14b_dmd.yaml"] = {builds = "dmd"},          -- bidirectional generator
  ["self_forcing_plus/self_forcing_14b_i2v_dmd.yaml"] = {builds = "dmd"},      -- bidirectional, I2V
  ["longlive_v1.0/longlive_train_init.yaml"] = {builds = "dmd"},
  ["longlive_v1.0/longlive_train_long.yaml"] = {builds = "dmd_switch"},  -- streaming long tuning + prompt switches
  ["longlive_v1.0/longlive_inference.yaml"] = {refused = "no 'trainer' key"},
  ["longlive_v1.0/longlive_inference_infinity.yaml"] = {refused = "no 'trainer' key"},
  ["longlive_v1.0/longlive_interactive_inference.yaml"] = {refused = "no 'trainer' key"},
}

local TINY = {model_type = "t2v", dim = 32, ffn_dim = 48, num_heads = 2, num_layers = 1, in_dim = 16, out_dim = 16,
              text_dim = 8, text_len = 4, freq_dim = 16, eps = 1e-6}

local function parts(cfg)
  local mk = cfg.model_kwargs or {}
  local causal = cfg.generator_type ~= "bidirectional"
  return {
    generator = sfwb.wan.new(TINY, {causal = causal, num_frame_per_block = cfg.num_frame_per_block or 1,
                                    independent_first_frame = cfg.independent_first_frame or false,
                                    local_attn_size = mk.local_attn_size or -1, sink_size = mk.sink_size or 0}),
    real_score = sfwb.wan.new(TINY), fake_score = sfwb.wan.new(TINY),
    text_encoder = function(p) return sfwb.zeros({#p, 4, 8}) end,
    dataset = {"a prompt"},
    -- i2v: true reads images through these (stand-ins: building the trainer runs no model)
    image_encoder = {encode_image = function() error("not run") end},
    vae = {i2v_condition = function() error("not run") end},
  }
end

local seen = 0
for _, repo in ipairs({"self_forcing", "self_forcing_plus", "longlive_v1.0"}) do
  local dir = ROOT .. "/" .. repo
  for file in io.popen("ls '" .. dir .. "'"):lines() do
    if file:match("%.yaml$") and file ~= "default_config.yaml" then
      local key = repo .. "/" .. file
      local want = EXPECT[key]
      T.case(key, function()
        assert(want, key .. ": a shipped config without an expectation in this test")
        seen = seen + 1
        local cfg = sfwb.config.load(dir .. "/" .. file, {defaults = dir .. "/default_config.yaml"})
        cfg.wan_models_dir = "/nonexistent" -- every network comes from parts: nothing may be loaded from disk
        if want.builds then
          T.eq(sfwb.train.objective(cfg), want.builds, "objective")
          local tr = sfwb.train.new(cfg, parts(cfg))
          T.check(type(tr.generator_loss) == "function" and tr.generator, "a trainer with generator_loss")
        else
          local err = T.raises(function() sfwb.train.new(cfg, parts(cfg)) end, want.refused)
          T.check(#tostring(err) > 30, "a sentence, not a code: " .. tostring(err))
        end
      end)
    end
  end
end

-- no original ships a `trainer: gan` config: the Self-Forcing DMD config switched to it (the keys model/gan.py and
-- trainer/gan.py read added) builds the GAN trainer; without them it is refused naming the missing key
T.case("trainer: gan builds the GAN trainer; a config without its keys is refused by name", function()
  local dir = ROOT .. "/self_forcing"
  local function cfg_of(extra)
    local cfg = sfwb.config.load(dir .. "/self_forcing_dmd.yaml", {defaults = dir .. "/default_config.yaml",
                                                                     overrides = extra})
    cfg.wan_models_dir = "/nonexistent"
    return cfg
  end
  local cfg = cfg_of({trainer = "gan", gen_lr = 1e-6, critic_lr = 2e-6, num_class = 1, gan_feature_blocks = {0, 0, 0}})
  T.eq(sfwb.train.objective(cfg), "gan")
  local tr = sfwb.train.new(cfg, parts(cfg))
  T.eq(tr.objective, "gan")
  T.check(tr.critic:parameters()["_cls_pred_branch.0.weight"] ~= nil, "the discriminator heads are on the critic")
  local err = T.raises(function() local c = cfg_of({trainer = "gan"}); sfwb.train.new(c, parts(c)) end, "gen_lr")
  T.check(#tostring(err) > 30, "a sentence: " .. tostring(err))
  T.raises(function()
    local c = cfg_of({trainer = "gan", gen_lr = 1e-6, critic_lr = 2e-6, num_class = 1})
    sfwb.train.new(c, parts(c))
  end, "gan_feature_blocks")  -- a 1-block critic cannot hold the original's blocks 13, 21, 29
end)

T.case("every expectation was walked", function()
  local n = 0
  for _ in pairs(EXPECT) do n = n + 1 end
  T.eq(seen, n)
end)

T.done()
