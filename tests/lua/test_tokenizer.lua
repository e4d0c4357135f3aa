-- test_tokenizer.lua — sfwb.tokenizer against python3-sentencepiece on a 241-line multilingual corpus
-- with a model trained at test time by spm_train (tests/ref/tokenizer_ref.py): cleaning, ids, EOS,
-- padding/truncation to 512 (and 16), attention masks.
local sfwb = require "sfwb"
local T = require "sfwb.testing"

local dir = T.tmpdir("tokenizer")
assert(os.execute(string.format("cd tests/ref && %s tokenizer_ref.py '%s'", T.python, dir)), "reference script failed")
local R = dofile(dir .. "/expected.lua")

local tok = sfwb.tokenizer.load(dir)

T.case("special ids and vocabulary", function()
  T.eq(tok.pad_id, 0); T.eq(tok.eos_id, 1); T.eq(tok.seq_len, 512)
  T.eq(tok.vocab_size, R.vocab_size)
  T.check(tostring(tok):find("Tokenizer", 1, true))
end)

T.case("text cleaning identical to the Python transcription", function()
  T.check(#R.texts >= 200, "corpus too small")
  for i, text in ipairs(R.texts) do
    T.eq(tok:clean(text), R.cleaned[i], "line " .. i)
  end
end)

T.case("raw ids identical to python3-sentencepiece", function()
  for i, c in ipairs(R.cleaned) do
    local got = tok:ids(c)
    T.eq(#got, #R.raw_ids[i], "length of line " .. i)
    for j = 1, #got do T.eq(got[j], R.raw_ids[i][j], "line " .. i .. " id " .. j) end
  end
end)

local function check_rows(ids, mask, exp, expmask, L)
  T.eq(ids:dtype(), "i64")
  T.eq(ids:size(1), #exp); T.eq(ids:size(2), L)
  local t = ids:totable()
  local m = mask and mask:totable()
  for i = 1, #exp do
    for j = 1, L do
      if t[i][j] ~= exp[i][j] then error(string.format("row %d pos %d: got %d, expected %d", i, j, t[i][j], exp[i][j])) end
      if m then
        local em = expmask and expmask[i][j] or (j == 1 or exp[i][j] ~= 0) and 1 or 0
        if m[i][j] ~= em then error(string.format("mask row %d pos %d: got %d, expected %d", i, j, m[i][j], em)) end
      end
    end
  end
end

T.case("batch encode: EOS, padding and truncation to 512, mask", function()
  local ids, mask = tok:encode(R.texts)
  check_rows(ids, mask, R.ids, R.mask, 512)
  -- the last line is longer than 512 tokens: 511 text ids + EOS, no padding
  local last = ids:totable()[#R.texts]
  T.eq(last[512], 1)
  T.eq(mask:sum():item(), (function() local s = 0 for _, r in ipairs(R.mask) do for _, v in ipairs(r) do s = s + v end end return s end)())
end)

T.case("max_length 16 and __call", function()
  local ids = tok(R.texts, {max_length = 16})
  check_rows(ids, nil, R.ids16, nil, 16)
  local one, m1 = tok:encode(R.texts[1])
  T.eq(one:size(1), 1); T.eq(one:size(2), 512)
  T.eq(m1:sum():item(), #R.raw_ids[1] + 1)
end)

T.case("decode drops padding and EOS", function()
  local ids = tok:encode({R.cleaned[1]})
  T.eq(tok:decode(ids:select(1, 1)), R.cleaned[1])
end)

T.case("errors", function()
  T.raises(function() sfwb.tokenizer.load(dir .. "/missing") end, "missing")
  T.raises(function() tok:encode({}) end, "empty")
  T.raises(function() tok:encode({"a", 3}, {max_length = 0}) end, "max_length")
end)

T.done()
