# config_merge.py — reference for sfwb.config: PyYAML with the loader changes OmegaConf makes (floats
# without a dot such as 2e-6, no timestamps), merged as OmegaConf.merge (maps key by key, later wins,
# lists replace), then "key.sub=value" overrides typed by YAML. Prints the result as typed JSON:
# every scalar becomes {"t": "int"|"float"|"str"|"bool"|"null", "v": ...} so the Lua test can check types.
# usage: config_merge.py [--omegaconf] file1.yaml [file2.yaml ...] [-- key=value ...]
# (--omegaconf: merge with the real OmegaConf instead of the transcription)
import json
import math
import re
import sys

import yaml


def loader():
    class L(yaml.SafeLoader):
        pass
    L.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""", re.X),
        list("-+0123456789."))
    L.yaml_implicit_resolvers = {k: [(t, r) for t, r in v if t != "tag:yaml.org,2002:timestamp"]
                                 for k, v in L.yaml_implicit_resolvers.items()}
    return L


def merge(dst, src):
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            merge(dst[k], v)
        else:
            dst[k] = v
    return dst


def typed(v):
    if isinstance(v, dict):
        return {str(k): typed(x) for k, x in v.items()}
    if isinstance(v, list):
        return [typed(x) for x in v]
    if v is None:
        return {"t": "null"}
    if isinstance(v, bool):
        return {"t": "bool", "v": v}
    if isinstance(v, int):
        return {"t": "int", "v": str(v)}
    if isinstance(v, float):
        return {"t": "float", "v": "nan" if math.isnan(v) else repr(v)}
    return {"t": "str", "v": str(v)}


args = sys.argv[1:]
use_omegaconf = bool(args) and args[0] == "--omegaconf"  # the real library (Debian's python3-omegaconf)
if use_omegaconf:
    args = args[1:]
files, overrides = (args[:args.index("--")], args[args.index("--") + 1:]) if "--" in args else (args, [])
if use_omegaconf:
    from omegaconf import OmegaConf
    merged = OmegaConf.merge(*[OmegaConf.load(f) for f in files], OmegaConf.from_dotlist(overrides))
    print(json.dumps(typed(OmegaConf.to_container(merged, resolve=False)), ensure_ascii=False))
    sys.exit(0)
cfg = {}
for f in files:
    with open(f, encoding="utf-8") as fh:
        merge(cfg, yaml.load(fh, Loader=loader()) or {})
for o in overrides:
    k, v = o.split("=", 1)
    node = cfg
    parts = k.split(".")
    for p in parts[:-1]:
        if not isinstance(node.get(p), dict):
            node[p] = {}
        node = node[p]
    val = yaml.load(v, Loader=loader())
    if isinstance(val, dict) and isinstance(node.get(parts[-1]), dict):
        merge(node[parts[-1]], val)
    else:
        node[parts[-1]] = val
print(json.dumps(typed(cfg), ensure_ascii=False))
