#!/usr/bin/python3
"""cli_args.py — `sfwb` command-line handling: script + arg table, -e, -i, --version, exit status, stdin."""
import os, subprocess, sys, tempfile

SFWB = sys.argv[1] if len(sys.argv) > 1 else "build/sfwb"
passed = failed = 0


def run(args, stdin=None):
    p = subprocess.run([SFWB] + args, input=stdin, capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout, p.stderr


def case(name, fn):
    global passed, failed
    try:
        fn()
        passed += 1
        print("ok   " + name)
    except Exception as e:  # noqa: BLE001
        failed += 1
        print("FAIL %s\n%r" % (name, e))


def check(cond, what):
    if not cond:
        raise AssertionError(what)


tmp = tempfile.mkdtemp(prefix="sfwb-cli-")
script = os.path.join(tmp, "s.lua")
with open(script, "w") as f:
    f.write("print(arg[0], arg[1], arg[2], #arg, select('#', ...), ...)\nprint(type(sfwb), type(sfwb.zeros))\n")
bad = os.path.join(tmp, "bad.lua")
with open(bad, "w") as f:
    f.write("local x = 1\nerror('kaputt')\n")


def t_script():
    rc, out, err = run([script, "a", "b"])
    check(rc == 0, (rc, err))
    check(out.splitlines()[0] == "%s\ta\tb\t2\t2\ta\tb" % script, out)
    check(out.splitlines()[1] == "table\tfunction", out)


def t_e():
    rc, out, err = run(["-e", "print(1 + 1)", "-e", "print(sfwb.version)"])
    check(rc == 0 and out.splitlines()[0] == "2" and out.splitlines()[1], (rc, out, err))
    rc, out, err = run(["-eprint(7)"])
    check(rc == 0 and out.strip() == "7", (rc, out, err))


def t_e_then_script():
    rc, out, err = run(["-e", "X = 5", script, "z"])
    check(rc == 0 and "\tz\t" in out, (rc, out, err))


def t_version():
    rc, out, err = run(["--version"])
    check(rc == 0 and out.startswith("sfwb "), (rc, out))


def t_errors():
    rc, out, err = run([bad])
    check(rc != 0 and "kaputt" in err and "bad.lua:2" in err and "traceback" in err, (rc, err))
    rc, out, err = run(["-e", "error('x1')"])
    check(rc != 0 and "x1" in err, (rc, err))
    rc, out, err = run(["-e", "syntax error here"])
    check(rc != 0, (rc, err))
    rc, out, err = run([os.path.join(tmp, "missing.lua")])
    check(rc != 0 and "missing.lua" in err, (rc, err))
    rc, out, err = run(["--bogus"])
    check(rc != 0 and "bogus" in err, (rc, err))
    rc, out, err = run(["-e", "os.exit(3)"])
    check(rc == 3, rc)


def t_stdin():
    rc, out, err = run([], stdin="print(6 * 7)\n")
    check(rc == 0 and out.strip() == "42", (rc, out, err))
    rc, out, err = run(["-"], stdin="print(arg[0])\n")
    check(rc == 0 and out.strip() == "-", (rc, out, err))


def t_interactive():
    # -i after -e enters the REPL (stdin is a pipe here: plain line reading, prompts on stdout)
    rc, out, err = run(["-e", "y = 3", "-i"], stdin="y * 2\nfunction g()\nreturn 9 end\ng()\nerror('e1')\ny\n")
    check(rc == 0, (rc, out, err))
    check("6" in out.split() and "9" in out.split() and "3" in out.split(), out)
    check("e1" in err, err)


def t_require_anywhere():
    rc, out, err = subprocess.run([os.path.abspath(SFWB), "-e", "print(require('sfwb.testing') ~= nil)"],
                                  capture_output=True, text=True, cwd=tmp).returncode, None, None
    check(rc == 0, rc)


for name, fn in [("script with arg table", t_script), ("-e code (twice, and -ecode)", t_e),
                 ("-e then script", t_e_then_script), ("--version", t_version),
                 ("errors give a traceback and non-zero exit", t_errors), ("stdin as a script", t_stdin),
                 ("-i enters the REPL after -e", t_interactive), ("require works from any folder", t_require_anywhere)]:
    case(name, fn)
print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
