#!/usr/bin/python3
"""run_notebooks.py — executes notebooks headless with nbclient through the installed sfwb kernel and
checks that every cell ran without error and that the outputs hold figures (image/png).
  run_notebooks.py SFWB --setup           install the kernelspec into BUILD/jupyter (as `jupyter kernelspec
                                          install --prefix` would) and build the demo set once
  run_notebooks.py SFWB NB.ipynb [...]    execute; the executed copies go to $SFWB_TEST_TMP/notebooks/
Environment: SFWB_TEST_TMP (scratch; the demo set is cached in $SFWB_TEST_TMP/nbcache)."""
import base64, os, subprocess, sys, time

SFWB = os.path.abspath(sys.argv[1])
tmp = os.path.abspath(os.environ.get("SFWB_TEST_TMP") or "/tmp/sfwb-notebooks")
prefix = os.path.join(tmp, "jupyter-prefix")
os.environ["JUPYTER_PATH"] = os.path.join(prefix, "share", "jupyter")
os.environ["SFWB_CACHE"] = os.path.join(tmp, "nbcache")
for k in ("SFWB_WAN_DIR", "SFWB_CKPT"):  # the notebooks run on the demo set here
    os.environ.pop(k, None)

if sys.argv[2] == "--setup":
    os.makedirs(tmp, exist_ok=True)
    subprocess.run([SFWB, "--install-kernel", "--prefix", prefix], check=True)
    subprocess.run([SFWB, "-e", 'local d = require("sfwb.demo").cache_dir(); local _, built, s = '
                    'require("sfwb.tiny").build(d); print(built and ("built the demo set in %.1f s"):format(s) '
                    'or "demo set ready", d)'], check=True)
    sys.exit(0)

import nbformat  # noqa: E402
from nbclient import NotebookClient  # noqa: E402

failed = 0
outdir = os.path.join(tmp, "notebooks")
os.makedirs(outdir, exist_ok=True)
root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
for path in sys.argv[2:]:
    name = os.path.basename(path)
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata.kernelspec.name == "sfwb", "%s: kernelspec %s" % (name, nb.metadata.kernelspec)
    t0 = time.time()
    client = NotebookClient(nb, kernel_name="sfwb", timeout=240, startup_timeout=60,
                            resources={"metadata": {"path": root}})
    try:
        client.execute()
    except Exception as e:  # CellExecutionError and friends: report and go on
        failed += 1
        print("FAIL %s: %s" % (name, str(e)[:3000]))
        continue
    finally:
        nbformat.write(nb, os.path.join(outdir, name))
    pngs = htmls = 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if "image/png" in data:
                png = base64.b64decode(data["image/png"])
                assert png[:8] == b"\x89PNG\r\n\x1a\n", "%s: image/png is not a PNG" % name
                pngs += 1
            if "text/html" in data:
                htmls += 1
            assert out.get("output_type") != "error", "%s: error output %s" % (name, out)
    if pngs == 0:
        failed += 1
        print("FAIL %s: no figure (image/png) in the outputs" % name)
        continue
    print("ok   %s: %d cells, %d figures, %d html outputs, %.1f s" % (name, len(nb.cells), pngs, htmls, time.time() - t0))
sys.exit(1 if failed else 0)
