#!/usr/bin/python3
"""repl_pty.py — drives `sfwb` (the REPL) through a pseudo-terminal: completion, multi-line input,
auto-print, error-then-continue, Ctrl-C interrupting a loop and at the prompt, history on disk."""
import os, re, select, signal, sys, tempfile, time

SFWB = sys.argv[1] if len(sys.argv) > 1 else "build/sfwb"
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pty_repl import Cases, Repl as _Repl  # noqa: E402

C = Cases()
case = C.case


def Repl(home):
    env = dict(os.environ, HOME=home, TERM="dumb")  # history goes to $HOME/.sfwb_history
    env.pop("SFWB_HISTORY", None)
    return _Repl(SFWB, home, env)


home = tempfile.mkdtemp(prefix="sfwb-repl-")
r = Repl(home)
case("banner and prompt", lambda: r.read_until(r"sfwb %s*.*\n.*sfwb> $" % ""))
case("statement then bare expression", lambda: (r.eval("x = 41", r"x = 41"), r.eval("x + 1", r"\n42\n")))
case("= expression", lambda: r.eval("= x", r"\n41\n"))
case("several values", lambda: r.eval("1, 'a', nil", r"\n1\ta\tnil\n"))
case("_ is the last printed value", lambda: (r.eval("6 * 7", r"\n42\n"), r.eval("_ + 1", r"\n43\n"),
                                             r.eval("y = 5", r"y = 5"), r.eval("_", r"\n43\n")))


def multiline():
    r.send("function f(a)\n")
    r.read_until(r">> $")
    r.send("  return a * 2\n")
    r.read_until(r">> $")
    r.eval("end", r"end")
    r.eval("f(21)", r"\n42\n")


case("multi-line chunk", multiline)
case("tables print their contents", lambda: (r.eval("sfwb.zeros(2, 5):shape()", r"\n\{2, 5\}\n"),
                                             r.eval("{a = 1, s = 'x', sfwb.ones(1)}", r'\n\{Tensor\[1\] f32 cpu, a = 1, s = "x"\}\n')))
case("tensor auto-print", lambda: r.eval("sfwb.ones(3)", r"\[1\., 1\., 1\.\]\n\[sfwb.Tensor f32 \[3\] cpu\]"))


def error_continue():
    r.eval("error('boom')", r"boom[\s\S]*stack traceback")
    r.eval("x", r"\n41\n")
    r.eval("sfwb.zeros(2, 3) + sfwb.zeros(4)", r"not broadcastable")
    r.eval("x", r"\n41\n")


case("error prints a traceback and the session continues", error_continue)
case("syntax error", lambda: (r.eval("x = = 1", r"unexpected symbol|syntax"), r.eval("x", r"\n41\n")))
case("complete sfwb.manu<TAB>", lambda: r.eval("type(sfwb.manu\t)", r"\nfunction\n"))
case("complete a lazy module sfwb.testi<TAB>", lambda: r.eval("type(sfwb.testi\t)", r"\ntable\n"))


def method_completion():
    r.eval("t = sfwb.zeros(2, 5)", r"")
    r.eval("t:sh\t()[2]", r"\n5\n")
    r.eval("t:num\t()", r"\n10\n")


case("complete t:sh<TAB> (Tensor methods)", method_completion)


def list_completions():
    r.send("sfwb.ze\t")
    r.read_until(r"zeros_like[\s\S]*sfwb> sfwb\.zeros$")
    r.eval("(1)", r"\(1\)\n\[0\.\]\n\[sfwb\.Tensor f32 \[1\] cpu\]\n")


case("TAB lists ambiguous sfwb.ze* candidates", list_completions)
case("complete globals", lambda: r.eval("typ\t(1)", r"\nnumber\n"))


def ctrl_c_until_prompt():
    """Ctrl-C, again if a heavily loaded machine had not started the call yet when the first one came"""
    seen = ""
    for _ in range(3):
        r.send("\x03")
        try:
            return seen + r.read_until(r"sfwb> $", 4)
        except AssertionError as e:
            seen += str(e)
    raise AssertionError("no prompt after three Ctrl-C: " + seen)


def interrupt_loop():
    r.send("while true do end\n")
    time.sleep(0.5)
    out = ctrl_c_until_prompt()
    assert "interrupted" in out, out
    r.eval("x", r"\n41\n")


case("Ctrl-C interrupts while true do end", interrupt_loop)


def interrupt_c_loop():
    # sfwb.sleep waits in C and polls sf_interrupted(): only the flag set by the handler can stop it
    t0 = time.time()
    r.send("sfwb.sleep(60)\n")
    time.sleep(0.5)
    out = ctrl_c_until_prompt()
    assert "sleep: interrupted" in out and time.time() - t0 < 15, out
    r.eval("sfwb.sleep(0.01); y = 1", r"")  # the flag is cleared for the next command
    r.eval("x", r"\n41\n")


case("Ctrl-C stops a C loop that polls sf_interrupted()", interrupt_c_loop)


def interrupt_prompt():
    r.send("abc")
    time.sleep(0.2)
    r.send("\x03")
    r.read_until(r"sfwb> $")
    r.eval("x", r"\n41\n")


case("Ctrl-C at the prompt discards the line", interrupt_prompt)


def interrupt_multiline():
    r.send("for i = 1, 3 do\n")
    r.read_until(r">> $")
    r.send("\x03")
    r.read_until(r"sfwb> $")
    r.eval("x", r"\n41\n")


case("Ctrl-C inside a multi-line chunk returns to the prompt", interrupt_multiline)


def exit_and_history():
    r.send("\x04")
    deadline = time.time() + 10
    while time.time() < deadline:
        pid, status = os.waitpid(r.pid, os.WNOHANG)
        if pid:
            break
        try:
            select.select([r.fd], [], [], 0.1)
            os.read(r.fd, 65536)
        except OSError:
            pass
    else:
        os.kill(r.pid, signal.SIGKILL)
        raise AssertionError("sfwb did not exit on Ctrl-D")
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
    hist = open(os.path.join(home, ".sfwb_history")).read()
    assert "x = 41" in hist and "f(21)" in hist, hist


case("Ctrl-D exits 0 and history is saved", exit_and_history)


def history_recall():
    r2 = Repl(home)
    r2.read_until(r"sfwb> $")
    r2.eval("x = 5", r"")  # x is not 41 any more in this fresh session
    r2.send("\x10\x10")  # Ctrl-P twice (previous-history): "x" from the previous session
    r2.send("\n")
    out = r2.read_until(r"sfwb> $")
    assert re.search(r"\n5\n", out), out
    r2.send("\x04")
    os.waitpid(r2.pid, 0)


case("history persists across sessions", history_recall)

C.done()
