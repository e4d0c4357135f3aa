-- test_json.lua — sfwb.json (the Lua encoder over cJSON's reader): exact 64-bit integers, nulls, errors that
-- name the source, and encode/decode round trips checked against Python's json module.
local sfwb = require "sfwb"
local T = require "sfwb.testing"
local json = require "sfwb.json"

T.case("integers beyond 2^53 decode exactly; floats stay floats", function()
  local v = json.decode('{"a": -2152535657050944081, "b": 9007199254740993, "c": 1.5, "d": 2e3, "e": [1, -0]}')
  T.eq(v.a, -2152535657050944081, "a")
  T.eq(math.type(v.a), "integer", "a type")
  T.eq(v.b, 9007199254740993, "b")
  T.eq(v.c, 1.5, "c")
  T.eq(math.type(v.d), "integer", "d (2e3 is integral)")
  T.eq(v.e[1], 1, "e[1]")
  -- numbers inside strings and keys do not shift the exact-integer scan
  local w = json.decode('{"k1 -5": "x 12 \\" 34", "n": [123456789012345678, 7]}')
  T.eq(w.n[1], 123456789012345678, "n[1]")
  T.eq(w["k1 -5"], 'x 12 " 34', "string")
end)

T.case("null: absent key, hole in an array that keeps positions", function()
  local v = json.decode('{"a": null, "b": [1, null, 3]}')
  T.eq(v.a, nil, "a")
  T.eq(v.b[1], 1, "b[1]")
  T.eq(v.b[2], nil, "b[2]")
  T.eq(v.b[3], 3, "b[3]")
end)

T.case("errors name the source and the byte", function()
  local ok, err = pcall(json.decode, '{"a": [1, 2}', "metrics.jsonl")
  T.check(not ok and tostring(err):find("metrics.jsonl", 1, true) and tostring(err):find("byte", 1, true), tostring(err))
end)

T.case("round trip through Python's json", function()
  local v = {name = "it's \"q\"\n\tü", list = {1, 2.5, -3}, nested = {x = true, y = false}, big = 4611686018427387904}
  local path = T.tmpdir("json") .. "/v.json"
  json.write(path, v)
  local p = io.popen(T.python .. " -c 'import json,sys; d=json.load(open(sys.argv[1])); " ..
                     "print(json.dumps(d, sort_keys=True))' " .. path)
  local back = json.decode(p:read("a"), "python")
  p:close()
  os.remove(path)
  T.eq(back.name, v.name, "name")
  T.eq(back.list[2], 2.5, "list[2]")
  T.eq(back.nested.y, false, "nested.y")
  T.eq(back.big, v.big, "big")
end)

T.done()
