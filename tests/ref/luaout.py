# luaout.py — writes Python values as a Lua chunk (`return {...}`) so tests can dofile() fixtures.
import math


def lua_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "(0/0)"
        if math.isinf(v):
            return "math.huge" if v > 0 else "-math.huge"
        return repr(v)
    if isinstance(v, str):
        # decimal escapes for every byte outside printable ASCII (and for quote/backslash)
        b = v.encode("utf-8")
        return '"' + "".join(chr(c) if 32 <= c < 127 and c not in (34, 92) else "\\%03d" % c for c in b) + '"'
    if isinstance(v, bytes):
        return '"' + "".join(chr(c) if 32 <= c < 127 and c not in (34, 92) else "\\%03d" % c for c in v) + '"' 
    if isinstance(v, dict):
        return "{" + ",".join("[%s]=%s" % (lua_value(k), lua_value(x)) for k, x in v.items()) + "}"
    if isinstance(v, (list, tuple)):
        return "{" + ",".join(lua_value(x) for x in v) + "}"
    if hasattr(v, "tolist"):
        return lua_value(v.tolist())
    raise TypeError(type(v))


def write_lua(path, value):
    with open(path + ".tmp", "w") as f:
        f.write("return " + lua_value(value) + "\n")
    import os
    os.replace(path + ".tmp", path)
