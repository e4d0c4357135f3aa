#!/usr/bin/python3
"""repl_session.py — a researcher's interactive session driven through a pseudo-terminal: build the tiny
model set, load the causal DiT, step through a rollout chunk by chunk (and stop early), capture
attention, plot it, and check the PNG on disk. Usage: repl_session.py path/to/sfwb"""
import os
import struct
import sys
import tempfile

SFWB = sys.argv[1] if len(sys.argv) > 1 else "build/sfwb"
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pty_repl import Cases, Repl as _Repl  # noqa: E402

C = Cases()
case = C.case


def Repl(home):
    env = dict(os.environ, HOME=home, TERM="dumb", SFWB_HISTORY=os.path.join(home, ".sfwb_history"))
    return _Repl(SFWB, home, env, timeout=60.0, forbid_traceback=True)


home = tempfile.mkdtemp(prefix="sfwb-session-")
work = os.environ.get("SFWB_TEST_TMP") or tempfile.mkdtemp(prefix="sfwb-session-work-")
os.makedirs(work, exist_ok=True)
work = tempfile.mkdtemp(prefix="repl_session-", dir=work)   # fresh each run: never a stale tiny set
tiny = os.path.join(work, "tiny")
png = os.path.join(work, "layer0.png")
r = Repl(home)
case("prompt", lambda: r.read_until(r"sfwb> $", 20))
case("build the tiny set and load the causal DiT", lambda: (
    r.eval('P = require("sfwb.tiny").build("%s")' % tiny),
    r.eval('m = sfwb.wan.load(P.wan_dir, {causal = true, num_frame_per_block = 3})'),
    r.eval('m.config.num_layers', r"\n4\n")))
case("a pipeline prints what it will do", lambda: (
    r.eval('p = sfwb.pipeline.causal{generator = m, num_frame_per_block = 3}'),
    r.eval('p', r"CausalPipeline\(steps=\{1000\.0, 937\.5, 833\.33\d*, 625\.0\}"),
    r.eval('p.denoising_steps', r"\[sfwb\.Tensor f32 \[4\] cpu\]")))
case("capture two layers, step through the rollout", lambda: (
    r.eval('cap = m:capture_attention{layers = {0, 1}, attn = "self", what = "logits", reduce = "frame", '
           'where = {steps = {1}, passes = {"denoise"}}}'),
    r.eval('ctx = sfwb.randn({1, 8, 32})'),
    r.eval('for c in p:rollout{prompt_embeds = ctx, num_frames = 6, latent_size = {4, 6}, seed = 1} do '
           'print("chunk", c.index, c.start, c.frames) end', r"chunk\t1\t0\t3\s+chunk\t2\t3\t3", timeout=120)))
case("results and a figure", lambda: (
    r.eval('A, meta = cap:result{layer = 0, step = 1, pass = "denoise"}'),
    r.eval('A:shape()', r"\{4, 6, 6\}"),
    r.eval('meta.timestep', r"\n1000\.?0?\n"),
    r.eval('info = sfwb.plot.head_grid(A, {path = "%s", title = "layer 0"})' % png),
    r.eval('info.width > 100 and #info.panels', r"\n4\n")))
case("early stop frees the rollout", lambda: (
    r.eval('ro = p:rollout{prompt_embeds = ctx, num_frames = 6, latent_size = {4, 6}, seed = 1}'),
    r.eval('c = ro:next(); ro:close(); print(c.index, ro.kv == nil, ro:latents():size(2))', r"\n1\ttrue\t3\n")))


def png_on_disk():
    with open(png, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    w, h = struct.unpack(">II", head[16:24])
    assert w > 100 and h > 100, (w, h)


case("the PNG is on disk", png_on_disk)
os.write(r.fd, b"\x04")
try:
    os.waitpid(r.pid, 0)
except ChildProcessError:
    pass
C.done()
