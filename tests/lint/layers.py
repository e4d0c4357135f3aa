#!/usr/bin/env python3
"""layers.py — no upward include: each source file under src/ and kernels/ may include only headers of its own
layer and of the layers below it (docs/architecture.md). The order, lowest first:
  core < backend (src/backend, kernels) < autograd, io < ops < models, dist < lua < app
Siblings on one level (autograd/io, models/dist) do not include each other. Exit 1 listing every violation."""
import os, re, sys

RANK = {"core": 0, "backend": 1, "kernels": 1, "autograd": 2, "io": 2, "ops": 3, "models": 4, "dist": 4, "lua": 5,
        "app": 6}
GROUP = {"kernels": "backend"}  # kernels/ is the device half of the backend layer


def layer_of_path(rel):
    parts = rel.split("/")
    if parts[0] == "kernels":
        return "kernels"
    if parts[0] == "src" and len(parts) > 2 and parts[1] in RANK:
        return parts[1]
    return None


def layer_of_include(inc, src_layer):
    top = inc.split("/")[0]
    if top in RANK and "/" in inc:
        return top
    if top == "emu" or inc.startswith("sf_"):
        return "kernels"  # kernels/ headers (sf_kernels.h, sf_launch.h, emu/emu.h) resolve through its include dir
    return src_layer  # a file beside the includer


def main(root):
    bad = []
    for d in ("src", "kernels"):
        for dirpath, _, files in os.walk(os.path.join(root, d)):
            for f in files:
                if not f.endswith((".c", ".h", ".cc", ".cu", ".cuh")):
                    continue
                path = os.path.join(dirpath, f)
                rel = os.path.relpath(path, root)
                me = layer_of_path(rel)
                if me is None:
                    continue
                for n, line in enumerate(open(path, errors="replace"), 1):
                    m = re.match(r'\s*#\s*include\s+"([^"]+)"', line)
                    if not m:
                        continue
                    inc = m.group(1)
                    if inc.startswith(("/", "..")) or inc.endswith(".cu"):
                        continue  # generated emu wrappers include kernel sources by absolute path
                    other = layer_of_include(inc, me)
                    g_me, g_other = GROUP.get(me, me), GROUP.get(other, other)
                    if RANK[other] > RANK[me] or (RANK[other] == RANK[me] and g_other != g_me):
                        bad.append(f"{rel}:{n}: {me} includes {inc} ({other})")
    for b in bad:
        print("upward include:", b)
    print(f"{len(bad)} upward include(s)")
    return 1 if bad else 0


def selftest():
    """the check must be able to fail: a synthetic tree with one upward and one sibling include"""
    import tempfile
    with tempfile.TemporaryDirectory() as t:
        for rel, text in {"src/core/tensor.c": '#include "core/tensor.h"\n#include "ops/ops.h"\n',
                          "src/io/x.c": '#include "autograd/autograd.h"\n',
                          "src/models/ok.c": '#include "ops/ops.h"\n#include "backend/cpu/cpu_pool.h"\n'}.items():
            os.makedirs(os.path.dirname(os.path.join(t, rel)), exist_ok=True)
            open(os.path.join(t, rel), "w").write(text)
        import contextlib, io
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            rc = main(t)
        assert rc == 1 and "2 upward include(s)" in out.getvalue(), out.getvalue()
    print("selftest: a synthetic upward and sibling include are caught")


if __name__ == "__main__":
    selftest()
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "."))
