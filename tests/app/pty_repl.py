"""pty_repl.py — drives the `sfwb` REPL through a pseudo-terminal for the REPL tests (repl_pty.py,
repl_session.py): start it, send keys, read up to a pattern of the ANSI-stripped output, and a small
case runner that prints "N passed, N failed"."""
import os
import pty
import re
import select
import sys
import time

ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b[=>]|\r")


class Repl:
    def __init__(self, sfwb, home, env=None, timeout=10.0, forbid_traceback=False):
        """env: the child's environment (default: ours with HOME=home, TERM=dumb)"""
        env = env if env is not None else dict(os.environ, HOME=home, TERM="dumb")
        self.timeout, self.forbid_traceback = timeout, forbid_traceback
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.execve(sfwb, [sfwb], env)
        self.buf = b""

    def send(self, s):
        os.write(self.fd, s.encode() if isinstance(s, str) else s)

    def read_until(self, pattern, timeout=None):
        """everything up to and including the first match of `pattern` (regex on ANSI-stripped text)"""
        end = time.time() + (timeout if timeout is not None else self.timeout)
        while True:
            text = ANSI.sub(b"", self.buf).decode(errors="replace")
            m = re.search(pattern, text)
            if m:
                self.buf = b""
                return text[: m.end()]
            left = end - time.time()
            if left <= 0:
                raise AssertionError("timeout waiting for %r; got:\n%s" % (pattern, text[-2000:]))
            r, _, _ = select.select([self.fd], [], [], left)
            if r:
                try:
                    chunk = os.read(self.fd, 65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    raise AssertionError("sfwb exited while waiting for %r; got:\n%s" % (pattern, text[-2000:]))
                self.buf += chunk

    def eval(self, line, expect=None, timeout=None):
        """send a line, read to the next prompt; `expect` (regex) must appear in what was printed"""
        self.send(line + "\n")
        out = self.read_until(r"sfwb> $", timeout)
        if self.forbid_traceback and re.search(r"stack traceback", out):
            raise AssertionError("error after %r:\n%s" % (line, out))
        if expect and not re.search(expect, out):
            raise AssertionError("after %r expected %r in:\n%s" % (line, expect, out))
        return out


class Cases:
    def __init__(self):
        self.passed = self.failed = 0

    def case(self, name, fn):
        try:
            fn()
            self.passed += 1
            print("ok   " + name)
        except Exception as e:  # noqa: BLE001 - report every failure and go on
            self.failed += 1
            print("FAIL " + name + "\n" + str(e))

    def done(self):
        print("%d passed, %d failed" % (self.passed, self.failed))
        sys.exit(1 if self.failed else 0)
