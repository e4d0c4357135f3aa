"""deps_check.py ROOT — every Python module imported by tests/, bench/ and scripts/ (.py files, and the
Python snippets inside .sh/.lua files) is either the standard library, a file of the project, or comes
from a Debian package that scripts/deps.sh installs (the owning package is asked of dpkg, not assumed)."""
import importlib.util
import os
import re
import subprocess
import sys

root = sys.argv[1]
pkgs = set(re.search(r'PKGS="([^"]*)"', open(os.path.join(root, "scripts/deps.sh")).read()).group(1).split())
line_re = re.compile(r"^\s*(?:import\s+([A-Za-z_]\w*)|from\s+([A-Za-z_]\w*)[\w.]*\s+import\b)")
local, found = set(), {}
for top in ("tests", "bench", "scripts"):
    for d, _, files in os.walk(os.path.join(root, top)):
        for f in files:
            if f.endswith(".py"):
                local.add(f[:-3])
            if not f.endswith((".py", ".sh", ".lua")):
                continue
            path = os.path.join(d, f)
            for line in open(path, encoding="utf-8", errors="replace"):
                m = line_re.match(line)
                if m:
                    found.setdefault(m.group(1) or m.group(2), path)
bad = []
for mod, where in sorted(found.items()):
    if mod in sys.stdlib_module_names or mod in local or mod == "__future__":
        continue
    spec = importlib.util.find_spec(mod)
    if spec is None or not spec.origin:
        bad.append("%s (imported by %s) is not installed here" % (mod, where))
        continue
    out = subprocess.run(["dpkg", "-S", os.path.realpath(spec.origin)], capture_output=True, text=True)
    owner = out.stdout.split(":")[0].strip() if out.returncode == 0 else None
    if owner is None:
        bad.append("%s (imported by %s, %s) belongs to no Debian package" % (mod, where, spec.origin))
    elif owner not in pkgs:
        bad.append("%s (imported by %s) comes from %s, which scripts/deps.sh does not install" % (mod, where, owner))
    else:
        print("%-14s %-22s %s" % (mod, owner, where))
if bad:
    print("\n".join(bad))
    sys.exit(1)
