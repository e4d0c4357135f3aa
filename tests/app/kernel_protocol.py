#!/usr/bin/python3
"""kernel_protocol.py — drives `sfwb --kernel` through jupyter_client over the real sockets: kernel_info,
execute (values, streams, errors with tracebacks, rich display), complete, inspect, is_complete,
interrupt by SIGINT and by interrupt_request on the control channel (the session survives), messages
with a bad signature dropped, restart and shutdown. The kernelspec comes from `sfwb --install-kernel
--prefix` in a temp folder, found through JUPYTER_PATH as Jupyter finds any kernel."""
import base64, os, subprocess, sys, tempfile, time

SFWB = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build/sfwb")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pty_repl import Cases  # noqa: E402

prefix = tempfile.mkdtemp(prefix="sfwb-kernelspec-", dir=os.environ.get("SFWB_TEST_TMP") or None)
subprocess.run([SFWB, "--install-kernel", "--prefix", prefix], check=True, stdout=subprocess.DEVNULL)
os.environ["JUPYTER_PATH"] = os.path.join(prefix, "share", "jupyter")

from jupyter_client.manager import start_new_kernel  # noqa: E402
from jupyter_client.session import Session  # noqa: E402

C = Cases()
case = C.case
km, kc = start_new_kernel(kernel_name="sfwb", startup_timeout=60)


def run(code, timeout=30):
    """(reply content, [(msg_type, content), ...] of the iopub messages)"""
    out = []
    r = kc.execute_interactive(code, timeout=timeout, output_hook=lambda m: out.append((m["msg_type"], m["content"])))
    return r["content"], out


def only(out, t):
    return [c for m, c in out if m == t]


def result_text(code):
    r, out = run(code)
    assert r["status"] == "ok", r
    res = only(out, "execute_result")
    assert len(res) == 1, out
    return res[0]["data"]["text/plain"]


def kernelspec():
    import json
    spec = json.load(open(os.path.join(prefix, "share/jupyter/kernels/sfwb/kernel.json")))
    assert spec["argv"] == [os.path.realpath(SFWB), "--kernel", "{connection_file}"], spec
    assert spec["language"] == "lua"
    for s in (32, 64):
        png = open(os.path.join(prefix, "share/jupyter/kernels/sfwb/logo-%dx%d.png" % (s, s)), "rb").read()
        assert png[:8] == b"\x89PNG\r\n\x1a\n"


def kernel_info():
    c = kc.kernel_info(reply=True)["content"]
    assert c["status"] == "ok" and c["protocol_version"] == "5.3", c
    assert c["language_info"]["name"] == "lua" and c["implementation"] == "sfwb", c


def values():
    r, out = run("x = 41")
    assert r["status"] == "ok" and not only(out, "execute_result"), out
    assert result_text("x + 1") == "42"
    assert result_text("= x") == "41"
    assert result_text("1, 'a', nil") == "1\ta\tnil"
    assert result_text("local a = 2\nlocal b = 3\na * b") == "6", "last line of a cell shows"
    r, out = run("local a = 2\na * 7;")
    assert not only(out, "execute_result"), "a trailing ; keeps the last line quiet"
    assert result_text("_") == "6", "`_` is the last shown value"
    assert result_text("sfwb.zeros(2, 5):shape()") == "{2, 5}"
    # an expression over several lines after statements; `return` never lands inside a block
    assert result_text("local k = 3\n{a = k,\n b = k + 1}") == "{a = 3, b = 4}"
    r, out = run("s = 0\nfor i = 1, 3 do\n  s = s + i\nend")
    assert r["status"] == "ok" and not only(out, "execute_result"), out
    assert result_text("s") == "6", "the loop ran to the end"


def streams():
    r, out = run("print('hello', 1)\nio.stderr:write('warn\\n')\nio.write('no newline')")
    assert r["status"] == "ok", r
    so = "".join(c["text"] for c in only(out, "stream") if c["name"] == "stdout")
    se = "".join(c["text"] for c in only(out, "stream") if c["name"] == "stderr")
    assert so == "hello\t1\nno newline", repr(so)
    r, out = run("os.execute('echo from a child process')")  # fd 1 of the process, not only Lua's print
    assert "from a child process\n" in "".join(c["text"] for c in only(out, "stream")), out
    assert se == "warn\n", repr(se)
    # output comes before the result of the same cell
    r, out = run("print('first')\n42")
    kinds = [m for m, _ in out if m in ("stream", "execute_result")]
    assert kinds == ["stream", "execute_result"], kinds


def errors():
    r, out = run("local function f() error('boom') end\nlocal y = f()")
    assert r["status"] == "error" and r["ename"] == "LuaError", r
    assert "boom" in r["evalue"] and "[cell" in r["evalue"], r
    tb = "\n".join(r["traceback"])
    assert "stack traceback:" in tb and "in local 'f'" in tb and ":2: in main chunk" in tb, tb
    assert only(out, "error"), out
    r, _ = run("x = = 1")
    assert r["status"] == "error" and r["ename"] == "SyntaxError", r
    assert result_text("x") == "41", "the state survives errors"


def complete():
    c = kc.complete("y = sfwb.ze", 11, reply=True)["content"]
    assert "sfwb.zeros" in c["matches"] and c["cursor_start"] == 4 and c["cursor_end"] == 11, c
    c = kc.complete("t = sfwb.zeros(2); t:sh", 23, reply=True)["content"]
    run("t = sfwb.zeros(2)")
    c = kc.complete("t:sh", 4, reply=True)["content"]
    assert "t:shape" in c["matches"], c
    c = kc.complete("sfwb.plo", 8, reply=True)["content"]
    assert "sfwb.plot" in c["matches"], c
    c = kc.complete("é = sfwb.ze", 11, reply=True)["content"]  # cursor positions count code points
    assert c["cursor_start"] == 4, c


def inspect():
    c = kc.inspect("sfwb.plot.heatmap(", 18, reply=True)["content"]
    assert c["found"] and "sfwb.plot.heatmap(t2d" in c["data"]["text/plain"], c
    c = kc.inspect("sfwb.tiny.build", 12, reply=True)["content"]
    assert c["found"] and "function M.build" in c["data"]["text/plain"], c
    c = kc.inspect("sfwb.display", 5, reply=True)["content"]
    assert c["found"] and "rich display" in c["data"]["text/plain"], c
    c = kc.inspect("no_such_name", 3, reply=True)["content"]
    assert not c["found"], c


def is_complete():
    def st(code):
        kc.is_complete(code)
        return kc.get_shell_msg(timeout=10)["content"]
    assert st("x = 1")["status"] == "complete"
    c = st("function f()")
    assert c["status"] == "incomplete" and "indent" in c, c
    assert st("x = = 1")["status"] == "invalid"


def rich_display():
    r, out = run("sfwb.plot.heatmap(sfwb.randn(4, 6), {title = 'inline'})")
    dd = only(out, "display_data")
    assert len(dd) == 1 and not only(out, "execute_result"), out
    png = base64.b64decode(dd[0]["data"]["image/png"])
    assert png[:4] == b"\x89PNG", png[:8]
    assert dd[0]["data"]["text/plain"].startswith("<figure ")
    r, out = run("sfwb.randn(2, 3)")
    d = only(out, "execute_result")[0]["data"]
    assert "<b>Tensor</b> f32 [2, 3] cpu" in d["text/html"] and "[sfwb.Tensor f32 [2, 3] cpu]" in d["text/plain"], d
    d = only(run("{{1, 2}, {3, 4.5}}")[1], "execute_result")[0]["data"]
    assert "<table" in d["text/html"] and "<td>4.5</td>" in d["text/html"], d
    d = only(run("setmetatable({}, {__html = function() return '<i>mine</i>' end})")[1], "execute_result")[0]["data"]
    assert d["text/html"] == "<i>mine</i>", d
    d = only(run("sfwb.display.table({{1, 2.5}}, {columns = {'a', 'b'}})")[1], "execute_result")[0]["data"]
    assert "<th>a</th><th>b</th>" in d["text/html"] and "<td>2.5</td>" in d["text/html"], d
    r, out = run("sfwb.display('a', {id = 'p'})\nsfwb.display('b', {id = 'p', update = true})")
    assert [m for m, _ in out if m.endswith("display_data")] == ["display_data", "update_display_data"], out
    assert only(out, "update_display_data")[0]["transient"]["display_id"] == "p"


def start_loop():
    msg_id = kc.execute("n = 0\nwhile true do n = n + 1 end")
    time.sleep(1.0)
    return msg_id


def wait_reply(msg_id, timeout=20):
    end = time.time() + timeout
    while time.time() < end:
        m = kc.get_shell_msg(timeout=end - time.time())
        if m["parent_header"].get("msg_id") == msg_id:
            return m["content"]
    raise AssertionError("no reply")


def interrupt_signal():
    msg_id = start_loop()
    km.interrupt_kernel()  # interrupt_mode "signal": SIGINT
    r = wait_reply(msg_id)
    assert r["status"] == "error" and r["ename"] == "Interrupted", r
    assert int(result_text("n")) > 0 and result_text("x") == "41", "the session survives"


def interrupt_message():
    msg_id = start_loop()
    msg = kc.session.msg("interrupt_request", {})
    kc.control_channel.send(msg)
    rep = kc.get_control_msg(timeout=10)
    assert rep["msg_type"] == "interrupt_reply" and rep["content"]["status"] == "ok", rep
    r = wait_reply(msg_id)
    assert r["status"] == "error" and r["ename"] == "Interrupted", r
    assert result_text("x") == "41"


def bad_signature():
    while True:  # nothing left over from earlier cases
        try:
            kc.get_shell_msg(timeout=0.2)
        except Exception:
            break
    bad = Session(key=b"not-the-key", session=kc.session.session)
    bad.send(kc.shell_channel.socket, "kernel_info_request", {})
    try:
        m = kc.get_shell_msg(timeout=1.5)
        raise AssertionError("a badly signed message was answered: %r" % (m,))
    except Exception as e:  # queue.Empty
        if isinstance(e, AssertionError):
            raise
    kernel_info()


def heartbeat():
    assert kc.hb_channel.is_beating(), "heartbeat"


def restart_and_shutdown():
    km.restart_kernel(now=False)
    kc.wait_for_ready(timeout=60)
    assert result_text("x == nil") == "true", "a restart starts a fresh state"
    kc.stop_channels()
    km.shutdown_kernel(now=False)
    assert not km.is_alive(), "the kernel exits on shutdown_request"


case("kernelspec", kernelspec)
case("kernel_info", kernel_info)
case("execute: values and the last expression", values)
case("execute: stdout/stderr streams", streams)
case("execute: errors with tracebacks", errors)
case("complete", complete)
case("inspect", inspect)
case("is_complete", is_complete)
case("rich display", rich_display)
case("interrupt by SIGINT", interrupt_signal)
case("interrupt by interrupt_request", interrupt_message)
case("bad signature dropped", bad_signature)
case("heartbeat", heartbeat)
case("restart and shutdown", restart_and_shutdown)
if km.is_alive():
    km.shutdown_kernel(now=True)
C.done()
