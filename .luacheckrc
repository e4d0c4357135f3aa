-- luacheck (Debian lua-check) over lua/ and recipes/, run by `make test` (tests/cmake/lint.cmake).
-- What it must catch: undefined and accidental globals, unused locals, shadowing, unreachable code.
std = "lua54"
read_globals = {"sfwb"}           -- the program's global API table
globals = {"arg"}                 -- lua(1)'s script arguments, set by the program
max_line_length = false
ignore = {
  "212",   -- unused argument: method signatures keep the contract's parameter names
  "213",   -- unused loop variable: `for i, v in ipairs` kept readable
  "311",   -- value assigned and unused: `m = nil` before collectgarbage() releases a model on purpose
  "512",   -- loop executed at most once: `for k in pairs(t) do return k end` (first key)
  "581",   -- `not (x <= y)`: the NaN-aware comparison of lua/sfwb/testing.lua is intended
  "61.",   -- whitespace style
}
