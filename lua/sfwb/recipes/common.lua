-- sfwb/recipes/common.lua — what every recipe shares: argument parsing with --help, loading the model
-- stack (Wan folder, Self-Forcing checkpoint with an explicit EMA choice, T5, VAE), configs, prompts,
-- provenance records (paths + sha256) and file naming.
local sfwb = require "sfwb"
local json = require "sfwb.json"

local M = {}

---------------------------------------------------------------------------------------------------
-- arguments: spec = {usage=, description=, options={{name, metavar|false, help, default}, ...}}
-- "--x v", "--x=v", flags (metavar false) and "--no-x" for flags; repeated options with list=true
function M.parse_args(argv, spec)
  local opts, pos = {}, {}
  local byname = {}
  for _, o in ipairs(spec.options) do
    byname[o[1]] = o
    local key = o[1]:gsub("^%-%-", ""):gsub("-", "_")
    o.key = key
    if o[4] ~= nil then opts[key] = o[4] end
  end
  local function usage()
    local lines = {"usage: sfwb " .. spec.usage, "", spec.description, "", "options:"}
    for _, o in ipairs(spec.options) do
      local left = "  " .. o[1] .. (o[2] and (" " .. o[2]) or "")
      local d = o[4] ~= nil and o[4] ~= false and string.format(" (default: %s)", tostring(o[4])) or ""
      lines[#lines + 1] = string.format("%-30s %s%s", left, o[3], d)
    end
    lines[#lines + 1] = "  -h, --help                   this help"
    if spec.epilog then lines[#lines + 1] = "" lines[#lines + 1] = spec.epilog end
    return table.concat(lines, "\n")
  end
  local i = 1
  argv = argv or {}
  while i <= #argv do
    local a = argv[i]
    if a == "-h" or a == "--help" then
      print(usage())
      return nil
    elseif a:sub(1, 2) == "--" then
      local name, val = a:match("^(%-%-[^=]+)=(.*)$")
      name = name or a
      local o = byname[name]
      local negated = false
      if not o and name:sub(1, 5) == "--no-" then
        o = byname["--" .. name:sub(6)]
        negated = true
      end
      if not o then error(string.format("unknown option %s (see --help)", name), 0) end
      if o[2] == false then
        opts[o.key] = not negated
      else
        if not val then
          i = i + 1
          val = argv[i]
          if val == nil then error(string.format("option %s needs a value (%s)", name, o[2]), 0) end
        end
        if o.number then
          local n = tonumber(val)
          if not n then error(string.format("option %s needs a number, got '%s'", name, val), 0) end
          val = n
        end
        if o.list then
          if type(opts[o.key]) ~= "table" or opts[o.key] == o[4] then opts[o.key] = {} end
          table.insert(opts[o.key], val)
        else
          opts[o.key] = val
        end
      end
    else
      pos[#pos + 1] = a
    end
    i = i + 1
  end
  opts._positional = pos
  opts._usage = usage
  return opts
end

-- "0,4" / "0-3,7" / "all" -> list of integers (or "all")
function M.int_list(s, all_n)
  if s == nil then return nil end
  if type(s) == "table" then return s end
  if s == "all" then
    if all_n then
      local r = {}
      for i = 0, all_n - 1 do r[#r + 1] = i end
      return r
    end
    return "all"
  end
  local r = {}
  for part in tostring(s):gmatch("[^,%s]+") do
    local a, b = part:match("^(%-?%d+)%-(%d+)$")
    if a then for i = tonumber(a), tonumber(b) do r[#r + 1] = i end
    else
      local n = tonumber(part)
      if not n then error("expected a list of integers like 0,4 or 0-29, got '" .. s .. "'", 0) end
      r[#r + 1] = math.tointeger(n) or n
    end
  end
  return r
end

function M.str_list(s)
  if type(s) == "table" then return s end
  local r = {}
  for part in tostring(s):gmatch("[^,%s]+") do r[#r + 1] = part end
  return r
end

---------------------------------------------------------------------------------------------------
-- files
function M.exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

-- folders are made in C (sfwb.fs): no path reaches a shell
function M.mkdir(path) return sfwb.fs.mkdir(path) end

-- an output folder checked before any compute: created when missing, then a writable folder or an error
-- naming the option and the path
function M.output_dir(path, option)
  local ok, err = pcall(sfwb.fs.mkdir, path)
  if not ok then error(string.format("%s %s: %s", option or "output folder", path, tostring(err):gsub("^cannot create folder [^:]*: ", "")), 0) end
  local w, why = sfwb.fs.writable(path)
  if not w then error(string.format("%s %s: not writable (%s)", option or "output folder", path, why), 0) end
  return path
end

-- the checks every recipe makes before it loads or computes anything: an unwritable output folder, a
-- bad fps, colormap, size, frame or step count fails at once, not after the rollout.
--   M.preflight(o, {dir = "output_dir", size = true, frames = "num_frames", fps = true, cmap = true, steps = true,
--                   counts = {"num_samples"}, choices = {attn = {"self", "cross"}}, lists = {passes = true},
--                   device = true, dirs = {"pt_folder"}})
function M.preflight(o, c)
  local function whole(v) return type(v) == "number" and v == math.floor(v) end
  if c.size then
    for _, k in ipairs({"height", "width"}) do
      local v = o[k]
      if v ~= nil and not (whole(v) and v > 0 and v % 16 == 0) then
        error(string.format("--%s must be a positive multiple of 16 (the VAE's 8x and the DiT's 2x2 patches), got %s",
          k, tostring(v)), 0)
      end
    end
  end
  if c.frames and o[c.frames] ~= nil and not (whole(o[c.frames]) and o[c.frames] >= 1) then
    error(string.format("--%s must be a whole number >= 1, got %s", c.frames, tostring(o[c.frames])), 0)
  end
  if c.fps and o.fps ~= nil and not (type(o.fps) == "number" and o.fps > 0 and o.fps < 1e6) then
    error("--fps must be a number > 0, got " .. tostring(o.fps), 0)
  end
  if c.cmap and o.cmap then
    local ok, err = pcall(sfwb.plot.colormap, o.cmap, 0.5)
    if not ok then error("--cmap: " .. tostring(err):gsub("^plot: ", ""), 0) end
  end
  if c.steps and o.steps ~= nil then
    local ok, list = pcall(M.int_list, o.steps)
    if not ok or type(list) ~= "table" or #list == 0 then error("--steps: a list of step numbers >= 1 expected, got " .. tostring(o.steps), 0) end
    for _, s in ipairs(list) do
      if not (whole(s) and s >= 1) then error("--steps: step numbers are >= 1, got " .. tostring(s), 0) end
    end
  end
  -- whole numbers >= 1 (sample, step and prompt counts): c.counts = {"num_samples", ...}
  for _, k in ipairs(c.counts or {}) do
    local v = o[k]
    if v ~= nil then
      local n = tonumber(v)
      if not (n and whole(n) and n >= 1) then
        error(string.format("--%s must be a whole number >= 1, got %s", k, tostring(v)), 0)
      end
    end
  end
  -- options with a fixed set of values: c.choices = {attn = {"self", "cross"}, ...}; a comma list for c.lists
  local names = {}
  for k in pairs(c.choices or {}) do names[#names + 1] = k end
  table.sort(names)
  for _, k in ipairs(names) do
    if o[k] ~= nil then
      local allowed = {}
      for _, a in ipairs(c.choices[k]) do allowed[a] = true end
      local given = (c.lists and c.lists[k]) and M.str_list(o[k]) or {o[k]}
      if #given == 0 then error(string.format("--%s: one of %s expected, got nothing", k, table.concat(c.choices[k], ", ")), 0) end
      for _, v in ipairs(given) do
        if not allowed[v] then
          error(string.format("--%s: '%s' is not one of %s", k, tostring(v), table.concat(c.choices[k], ", ")), 0)
        end
      end
    end
  end
  if c.device then
    local d = o.device
    if d ~= nil and not (d == "cpu" or d:match("^emu:%d+$") or d:match("^cuda:%d+$") or d == "emu" or d == "cuda") then
      error("--device: '" .. tostring(d) .. "' is not cpu, emu:N or cuda:N", 0)
    end
    if o.dtype ~= nil and o.dtype ~= "f32" and o.dtype ~= "bf16" then
      error("--dtype: '" .. tostring(o.dtype) .. "' is not f32 or bf16", 0)
    end
  end
  if c.dir and o[c.dir] then M.output_dir(o[c.dir], "--" .. c.dir) end
  for _, k in ipairs(c.dirs or {}) do
    if o[k] then M.output_dir(o[k], "--" .. k) end
  end
end

function M.read_lines(path)
  local f, err = io.open(path, "r")
  if not f then error("cannot read " .. path .. ": " .. tostring(err), 0) end
  local r = {}
  for line in f:lines() do
    line = line:gsub("%s+$", "")
    if line ~= "" then r[#r + 1] = line end
  end
  f:close()
  return r
end

local sha_memo = {}

local function cache_root()
  local c = os.getenv("SFWB_CACHE")
  if c and c ~= "" then return c end
  c = os.getenv("SFWB_TEST_TMP") -- tests keep their caches out of $HOME
  if c and c ~= "" then return c end
  return (os.getenv("HOME") or "/tmp") .. "/.cache/sfwb"
end

-- sha256 of a file. Real weights are GBs (~15 s to hash), so hashes are kept per process and on disk
-- in $SFWB_CACHE/sha256.json keyed by path, size and mtime: a changed file is hashed again.
function M.sha256(path)
  if not path then return nil end
  if sha_memo[path] then return sha_memo[path] end
  local info = sfwb.fs.stat(path)
  if not info or info.kind ~= "file" then return nil end
  local key = path .. "|" .. info.size .. " " .. info.mtime
  local store = cache_root() .. "/sha256.json"
  local ok, known = pcall(json.read, store)
  if not ok or type(known) ~= "table" then known = {} end
  if known[key] then
    sha_memo[path] = known[key]
    return known[key]
  end
  local okh, h = pcall(sfwb.fs.sha256, path)
  if not okh then h = nil end
  sha_memo[path] = h
  if h then
    known[key] = h
    M.mkdir(cache_root())
    pcall(json.write, store, known)
  end
  return h
end

-- the DiT weight files of a Wan folder (single file or shards)
function M.wan_weight_files(dir)
  local ok, names = pcall(sfwb.fs.listdir, dir)
  local r = {}
  for _, name in ipairs(ok and names or {}) do
    if name:match("^diffusion_pytorch_model.*%.safetensors$") then r[#r + 1] = dir .. "/" .. name end
  end
  return r
end

-- a filename-safe stem of a prompt, as inference.py names its videos (first 100 characters)
function M.prompt_stem(prompt)
  local s = prompt:sub(1, 100):gsub("[/\\%c]", "_")
  return s
end

---------------------------------------------------------------------------------------------------
-- configs: a YAML merged over default_config.yaml (next to it) as Self-Forcing's scripts do, checked
-- before anything loads (sfwb/recipes/schema.lua: typos warned with the nearest key, wrong types and
-- unsupported values refused, naming the key and the file). opts.defaults = false: no defaults merged
-- (LongLive's OmegaConf.load).
function M.load_config(path, opts)
  if not path then return {} end
  local dflt
  if not (opts and opts.defaults == false) then
    dflt = path:gsub("[^/]*$", "") .. "default_config.yaml"
    if dflt == path or not M.exists(dflt) then dflt = nil end
  end
  local cfg = sfwb.config.load(path, {defaults = dflt})
  sfwb.config.check(cfg, require("sfwb.recipes.schema").inference, {file = path})
  return cfg
end

-- the pipeline settings a config implies (Self-Forcing's keys), with explicit overrides
function M.pipeline_settings(cfg, over)
  over = over or {}
  local mk = cfg.model_kwargs or {}
  local s = {
    denoising_step_list = cfg.denoising_step_list or {1000, 750, 500, 250},
    warp_denoising_step = cfg.warp_denoising_step,
    num_frame_per_block = cfg.num_frame_per_block or mk.num_frame_per_block or 3,
    independent_first_frame = cfg.independent_first_frame or false,
    context_noise = cfg.context_noise or 0,
    timestep_shift = mk.timestep_shift or cfg.timestep_shift or 5.0,
    local_attn_size = mk.local_attn_size or -1,
    sink_size = mk.sink_size or 0,
  }
  if s.warp_denoising_step == nil then s.warp_denoising_step = true end
  for k, v in pairs(over) do s[k] = v end
  return s
end

---------------------------------------------------------------------------------------------------
-- where the weights are: --wan_dir / $SFWB_WAN_DIR (official folder layout), --checkpoint / $SFWB_CKPT
function M.weights(o)
  local dir = o.wan_dir or os.getenv("SFWB_WAN_DIR")
  if not dir then
    error("no Wan weights: pass --wan_dir DIR or set SFWB_WAN_DIR (run `make demo` for a tiny set)", 0)
  end
  local ckpt = o.checkpoint
  if ckpt == nil and not o.no_checkpoint then ckpt = os.getenv("SFWB_CKPT") end
  if ckpt == "" or o.no_checkpoint then ckpt = nil end
  return {
    wan_dir = dir, checkpoint = ckpt,
    t5 = o.t5 or (dir .. "/models_t5_umt5-xxl-enc-bf16.pth"),
    tokenizer = o.tokenizer or (dir .. "/google/umt5-xxl"),
    vae = o.vae or (dir .. "/Wan2.1_VAE.pth"),
  }
end

-- provenance of a generator: base weights, checkpoint and EMA choice, with hashes
function M.provenance(w, ema, ckinfo)
  local files = M.wan_weight_files(w.wan_dir)
  local p = {wan_dir = w.wan_dir, weights = files[1] or w.wan_dir, weights_sha256 = M.sha256(files[1]),
             checkpoint = w.checkpoint or "", ema = w.checkpoint and (ema and true or false) or false}
  if w.checkpoint then
    p.checkpoint_sha256 = M.sha256(w.checkpoint)
    p.checkpoint_key = (ckinfo and ckinfo.key) or (ema and "generator_ema" or "generator")
  end
  return p
end

-- the generator: causal Wan from the folder, then the checkpoint (an error, never a fallback)
function M.load_generator(w, s, o)
  local m = sfwb.wan.load(w.wan_dir, {causal = o.causal ~= false, dtype = o.dtype or "f32", device = o.device or "cpu",
                                      num_frame_per_block = s.num_frame_per_block,
                                      independent_first_frame = s.independent_first_frame,
                                      local_attn_size = s.local_attn_size, sink_size = s.sink_size})
  local info
  if w.checkpoint then
    if not M.exists(w.checkpoint) then error("checkpoint not found: " .. w.checkpoint, 0) end
    info = m:load_checkpoint(w.checkpoint, {ema = o.ema and true or false})
  end
  return m, info
end

-- LongLive's LoRA: with an `adapter` block in the config, the generator's attention-block linears carry
-- adapters; lora_ckpt (its generator_lora, or a raw PEFT dict) is loaded with the adapter's rank/alpha and
-- merged (numerically PEFT's unmerged forward to f32 round-off). Returns a description, or nil.
function M.apply_lora(m, cfg, o)
  o = o or {}
  local ad = cfg.adapter
  if o.no_lora or not ad then return nil end
  if ad.type and ad.type ~= "lora" then error("adapter.type " .. tostring(ad.type) .. " is not supported (only lora)", 0) end
  local path = o.lora_ckpt or cfg.lora_ckpt
  if not path or path == "" then return nil end  -- LongLive: fresh adapters (B = 0) change nothing
  if not M.exists(path) then error("lora_ckpt not found: " .. path, 0) end
  local _, info = m:load_lora(path, {rank = ad.rank, alpha = ad.alpha, dropout = ad.dropout, merge = true})
  info.path = path
  return info
end

-- LongLive's configs (adapter / global_sink keys) run under LongLive's KV rules
function M.kv_policy(cfg)
  if cfg.adapter or cfg.global_sink ~= nil or cfg.lora_ckpt then return "longlive" end
  return "self_forcing"
end

-- the context length is the DiT's config text_len (512 in every Wan config), as Wan's T5EncoderModel takes it
function M.load_text_encoder(w, o)
  local text_len
  local cj = w.wan_dir and (w.wan_dir .. "/config.json")
  if cj and M.exists(cj) then
    local ok, c = pcall(json.read, cj)
    if ok and type(c) == "table" and math.tointeger(c.text_len) then text_len = math.tointeger(c.text_len) end
  end
  return sfwb.t5.load(w.t5, {tokenizer = w.tokenizer, dtype = o.dtype, device = o.device, text_len = text_len})
end

function M.load_vae(w, o)
  return sfwb.vae.load(w.vae, {dtype = o.dtype, device = o.device})
end

-- prompts: --prompt (repeatable) and/or --data_path (a .txt file, one prompt a line)
function M.prompts(o, default)
  local r = {}
  if type(o.prompt) == "table" then for _, p in ipairs(o.prompt) do r[#r + 1] = p end
  elseif o.prompt then r[#r + 1] = o.prompt end
  if o.data_path then for _, p in ipairs(M.read_lines(o.data_path)) do r[#r + 1] = p end end
  if #r == 0 and default then r[1] = default end
  if #r == 0 then error("no prompts: give --prompt \"...\" or --data_path prompts.txt", 0) end
  return r
end

function M.now() return os.date("!%Y-%m-%dT%H:%M:%SZ") end

-- a flat string->string table for safetensors metadata (tables become JSON)
function M.metadata(t)
  local r = {}
  for k, v in pairs(t) do
    if type(v) == "table" then r[k] = json.encode(v)
    elseif v ~= nil then r[k] = tostring(v) end
  end
  return r
end

-- pixels in [-1, 1] [B, F, 3, H, W] -> one sample's [F, 3, H, W]
function M.sample_video(video, b) return video:select(1, b or 1):contiguous() end

-- writes one video: mp4 through sfwb.video (ffmpeg, spawned without a shell) or a PNG folder; returns the path
function M.write_video(path, frames, fps, png)
  return (sfwb.video.write(path, frames, {fps = fps or 16, png = png or false})) or path
end

-- a safetensors file of f32 tensors with a __metadata__ record (provenance). Written here rather than
-- through sfwb.save so the metadata is guaranteed whatever the io layer's options; temp file + rename.
function M.save_safetensors(path, tensors, meta)
  local names = {}
  for k in pairs(tensors) do names[#names + 1] = k end
  table.sort(names)
  local header, blobs, off = {}, {}, 0
  for _, k in ipairs(names) do
    local t = tensors[k]:float():cpu():contiguous()
    local n = t:numel()
    local flat = n > 0 and t:reshape({n}):totable() or {}
    local parts = {}
    for i = 1, n, 4096 do
      parts[#parts + 1] = string.pack("<" .. string.rep("f", math.min(4096, n - i + 1)),
                                      table.unpack(flat, i, math.min(n, i + 4095)))
    end
    local blob = table.concat(parts)
    header[k] = {dtype = "F32", shape = t:shape(), data_offsets = {off, off + #blob}}
    blobs[#blobs + 1] = blob
    off = off + #blob
  end
  header.__metadata__ = M.metadata(meta or {})
  local h = json.encode(header)
  h = h .. string.rep(" ", (8 - #h % 8) % 8)
  local tmp = path .. ".tmp"
  local f = assert(io.open(tmp, "wb"))
  f:write(string.pack("<I8", #h), h, table.concat(blobs))
  f:close()
  assert(os.rename(tmp, path))
  return path
end

-- the __metadata__ table of a safetensors file (values are strings, as the format says)
function M.safetensors_metadata(path)
  local f = assert(io.open(path, "rb"))
  local n = string.unpack("<I8", f:read(8))
  local h = json.decode(f:read(n))
  f:close()
  return h.__metadata__ or {}, h
end

return M
