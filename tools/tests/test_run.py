#!/usr/bin/env python3
"""Tests of `shmlease run` as a supervisor, its flock(1)-style options, the
descriptor-free guard for shell scripts (`acquire`, `release`, `check`), and
the demo. Real processes throughout: the command's process tree, daemons
that double-fork and call setsid(), a terminal made with a pseudo-terminal,
users made with useradd.

    test_run.py --shmlease BIN --dump BIN --helper BIN [--demo BIN] [--man-dir DIR] TEST

Exit 0 pass, 1 fail, 77 skipped. Helpers come from test_tools.py.
"""
import fcntl
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import sys
import termios
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_tools as tt  # noqa: E402
from test_tools import Fail, Skip, check, show  # noqa: E402

TOKEN_RE = re.compile(r"^shmlease:1:(\d+):(\d+):(\d+)$")

# Processes the tests started indirectly (a command's children, daemons):
# killed at the end if a test failed before they ended.
STRAYS = []


# ---- processes ---------------------------------------------------------------

def stat_fields(pid):
    """(state, ppid, pgrp, session, start time) of PID, or None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return rest[0], int(rest[1]), int(rest[2]), int(rest[3]), int(rest[19])


def identity(pid):
    st = stat_fields(pid)
    check(st is not None, f"process {pid} is already gone")
    STRAYS.append((pid, st[4]))
    return (pid, st[4])


def alive(ident):
    """True while the process (pid, start time) runs (a zombie has ended)."""
    st = stat_fields(ident[0])
    return st is not None and st[4] == ident[1] and st[0] not in ("Z", "X")


def kill_strays():
    for ident in STRAYS:
        if alive(ident):
            try:
                os.kill(ident[0], signal.SIGKILL)
            except ProcessLookupError:
                pass


def read_lines_until(fd, done, what, timeout=30.0, buf=None):
    """Reads fd (raw) until done(text so far) holds; returns the text."""
    data = buf if buf is not None else bytearray()
    end = time.monotonic() + timeout
    while not done(data.decode(errors="replace")):
        left = end - time.monotonic()
        if left <= 0:
            raise Fail(f"timed out waiting for {what}; read {bytes(data[-2000:])!r}")
        r, _, _ = select.select([fd], [], [], left)
        if r:
            chunk = os.read(fd, 65536)
            if not chunk:
                raise Fail(f"end of output before {what}; read {bytes(data[-2000:])!r}")
            data += chunk
    return data.decode(errors="replace")


def words(text, name):
    """The integer after 'NAME ' on its own line in text."""
    m = re.search(rf"^{name} (\d+)$", text, re.M)
    check(m, f"no '{name} N' line in {text!r}")
    return int(m.group(1))


def finish(c, p, timeout=60):
    out, err = c.communicate(p, timeout)
    return p.returncode, out.decode(errors="replace") if out else "", \
        err.decode(errors="replace") if err else ""


def made(c, tag):
    """A new table of this test's (a table named with -t must exist)."""
    t = c.table(tag)
    p = c.tool("create", t)
    check(p.returncode == 0, f"create {t}: {show(p)}")
    return t


def key_free(c, t, key):
    return c.dump("--key", key, t).returncode == 3


def waiters(c, t, key):
    j = c.inspect(t, key)
    return j.get("waiters", 0) if j.get("rc") == "OK" else 0


def ensure_user(name):
    """A system user made with useradd (kept: tests may run again)."""
    if os.geteuid() != 0:
        raise Skip("needs root to make users with useradd")
    if not shutil.which("useradd") or not shutil.which("setpriv"):
        raise Skip("useradd or setpriv (util-linux) not installed")
    if subprocess.run(["getent", "passwd", name], capture_output=True).returncode != 0:
        p = subprocess.run(["useradd", "--system", "--no-create-home", "--shell",
                            "/usr/sbin/nologin", "--user-group", name], capture_output=True)
        if p.returncode not in (0, 9):          # 9: made meanwhile by another test
            raise Skip(f"useradd {name} failed: {p.stderr.decode(errors='replace')}")
    p = subprocess.run(["id", "-u", name], capture_output=True)
    return int(p.stdout)


def as_user(name, *argv, caps=""):
    pre = ["setpriv", "--reuid", name, "--regid", name, "--clear-groups"]
    if caps:
        pre += ["--inh-caps", caps, "--ambient-caps", caps]
    return pre + ["--", *argv]


# ---- run: the process tree ---------------------------------------------------

TREE = ('echo cmd $$; sleep 1000 & echo bg $!; '
        '(setsid sh -c \'trap "" TERM; echo daemon $$; while :; do sleep 1; done\' &); '
        'wait')


def test_run_tree(c):
    """The lease is broken: every process of the command's tree stops, the
    command's own group, a background child, and a daemon that double-forked
    and called setsid() (re-parented to shmlease, its subreaper) and ignores
    SIGTERM (SIGKILL after --kill-after). shmlease exits once all are gone."""
    t = made(c, "tree")
    # No controlling terminal (a new session): the command gets its own group.
    r = c.spawn([c.shmlease, "run", "-t", t, "--ttl", "3", "-k", "0.5", "k", "--",
                 "sh", "-c", TREE], start_new_session=True)
    text = read_lines_until(r.stdout.fileno(),
                            lambda s: all(f"{w} " in s for w in ("cmd", "bg", "daemon")),
                            "the command's three processes")
    cmd, bg, daemon = (identity(words(text, w)) for w in ("cmd", "bg", "daemon"))
    # The daemon's parent (the subshell) exits at once: it is re-parented to
    # shmlease, not to init.
    c.wait_until("the daemon to be re-parented to shmlease",
                 lambda: stat_fields(daemon[0])[1] == r.pid, timeout=15)
    st_cmd, st_d = stat_fields(cmd[0]), stat_fields(daemon[0])
    check(st_cmd[2] == cmd[0] and st_cmd[2] != os.getpgid(r.pid),
          f"the command must lead a process group of its own: pgrp {st_cmd[2]}, "
          f"shmlease's {os.getpgid(r.pid)}")
    check(stat_fields(bg[0])[2] == cmd[0], "the background child is in the command's group")
    check(st_d[3] == daemon[0] and st_d[2] != cmd[0],
          f"the daemon has its own session and group: {st_d}")

    p = c.tool("break", "-t", t, "k")
    check(p.returncode == 0, f"break: {show(p)}")
    code, _, err = finish(c, r)
    check(code == 75, f"lost lease: exit {code}\n{err}")
    for name, ident in (("command", cmd), ("background child", bg), ("daemon", daemon)):
        check(not alive(ident), f"the {name} {ident} still runs after shmlease exited\n{err}")
    check(f"sleep (pid {bg[0]})" in err and "sending SIGTERM" in err,
          f"SIGTERM named the processes: {err}")
    check(re.search(rf"sending SIGKILL to .*\(pid {daemon[0]}\)", err),
          f"the daemon, which ignores SIGTERM, got SIGKILL: {err}")
    check(err.find("sending SIGTERM") < err.find("sending SIGKILL"), f"TERM then KILL: {err}")
    check(key_free(c, t, "k"), "the broken key is free")


def spawn_on_terminal(c, argv):
    """Starts argv in a new session whose controlling terminal is a fresh
    pseudo-terminal. Returns the Popen and the terminal's master side."""
    master, slave = pty.openpty()

    def preexec():
        os.setsid()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    try:
        p = c.spawn(argv, preexec_fn=preexec)
    finally:
        os.close(slave)
    return p, master


def test_run_tree_terminal(c):
    """With a controlling terminal the command stays in shmlease's group (the
    terminal's job, so it can read the terminal): a lost lease still stops
    the whole tree, found through the subreaper role."""
    t = made(c, "tty")
    masters = []
    try:
        r, m = spawn_on_terminal(c, [c.shmlease, "run", "-t", t, "--ttl", "3", "-k", "0.5",
                                     "k", "--", "sh", "-c", TREE])
        masters.append(m)
        text = read_lines_until(r.stdout.fileno(),
                                lambda s: all(f"{w} " in s for w in ("cmd", "bg", "daemon")),
                                "the command's three processes")
        cmd, bg, daemon = (identity(words(text, w)) for w in ("cmd", "bg", "daemon"))
        check(stat_fields(cmd[0])[2] == os.getpgid(r.pid) == r.pid,
              f"at a terminal the command shares shmlease's group: {stat_fields(cmd[0])}")
        c.wait_until("the daemon to be re-parented to shmlease",
                     lambda: stat_fields(daemon[0])[1] == r.pid, timeout=15)
        p = c.tool("break", "-t", t, "k")
        check(p.returncode == 0, f"break: {show(p)}")
        code, _, err = finish(c, r)
        check(code == 75, f"lost lease: exit {code}\n{err}")
        for name, ident in (("command", cmd), ("background child", bg), ("daemon", daemon)):
            check(not alive(ident), f"the {name} still runs after shmlease exited\n{err}")

        # A forwarded SIGTERM reaches the command's processes in our group.
        r, m = spawn_on_terminal(c, [c.shmlease, "run", "-t", t, "k2", "--", "sh", "-c",
                                     "echo cmd $$; sleep 1000 & echo bg $!; wait"])
        masters.append(m)
        text = read_lines_until(r.stdout.fileno(), lambda s: "bg " in s, "bg")
        bg = identity(words(text, "bg"))
        r.send_signal(signal.SIGTERM)
        code, _, err = finish(c, r)
        check(code == 143 and not alive(bg), f"SIGTERM forwarded to the group: {code} {err}")
    finally:
        for m in masters:
            os.close(m)


def test_run_leftovers(c):
    """The command exits and leaves a process running: the lease stays held
    (and renewed) until it ends, and run exits with the command's status; -o
    releases at once and leaves it running; a lease lost meanwhile stops it;
    a forwarded signal reaches the command's whole group."""
    t = made(c, "left")
    r = c.spawn([c.shmlease, "run", "-v", "-t", t, "--ttl", "2", "k", "--", "sh", "-c",
                 "echo cmd $$; sleep 1000 & echo bg $!; exit 3"], start_new_session=True)
    text = read_lines_until(r.stdout.fileno(), lambda s: "bg " in s, "bg")
    cmd, bg = words(text, "cmd"), identity(words(text, "bg"))
    # Said once shmlease has reaped the command, and goes on supervising.
    err = read_lines_until(r.stderr.fileno(), lambda s: "stays held until" in s,
                           "the note about the process left running")
    check(f"sh (pid {cmd}) exited with 3" in err, f"the command's end: {err}")
    check(f"sleep (pid {bg[0]})" in err or f"sh (pid {bg[0]})" in err, f"names it: {err}")
    check(r.poll() is None, "the command ended, shmlease did not")
    token = c.lease_json(t, "k")["fencing_token"]
    # Two and a half TTLs later the lease is still held by shmlease: it is
    # renewed while only the leftover runs.
    time.sleep(5)
    l = c.lease_json(t, "k")
    check(l and l["holder_pid"] == r.pid and l["state"] == "alive" and
          l["fencing_token"] == token, f"held while the leftover runs: {l}")
    p = c.tool("run", "-n", "-t", t, "k", "--", "true")
    check(p.returncode == 1, f"nobody else gets it meanwhile: {show(p)}")
    os.kill(bg[0], signal.SIGTERM)
    code, _, err = finish(c, r)
    check(code == 3, f"the command's own status, not the leftover's: {code} {err}")
    check(key_free(c, t, "k"), "released once the leftover ended")

    # -o: released when the command ends; the leftover runs on.
    # (The leftover does not keep our pipes open: shmlease's end is its exit.)
    r = c.spawn([c.shmlease, "run", "-o", "-t", t, "ko", "--", "sh", "-c",
                 "sleep 1000 >/dev/null 2>&1 & echo bg $!; exit 4"], start_new_session=True)
    bg = identity(words(read_lines_until(r.stdout.fileno(), lambda s: "bg " in s, "bg"), "bg"))
    try:
        code = r.wait(timeout=60)
    except subprocess.TimeoutExpired:
        raise Fail(f"-o: shmlease did not exit when the command did\n{tt.diagnose(r.pid)}")
    check(code == 4 and key_free(c, t, "ko"), f"-o: exit {code}, and the key released")
    check(alive(bg), "-o leaves the process the command started running")
    os.kill(bg[0], signal.SIGKILL)

    # The lease is lost while only the leftover runs: it is stopped, exit 75.
    r = c.spawn([c.shmlease, "run", "-v", "-t", t, "kl", "--", "sh", "-c",
                 "sleep 1000 & echo bg $!; exit 0"], start_new_session=True)
    bg = identity(words(read_lines_until(r.stdout.fileno(), lambda s: "bg " in s, "bg"), "bg"))
    read_lines_until(r.stderr.fileno(), lambda s: "stays held until" in s, "the note")
    check(c.tool("break", "-q", "-t", t, "kl").returncode == 0, "break kl")
    code, _, err = finish(c, r)
    check(code == 75 and not alive(bg), f"lost with a leftover: exit {code}, {err}")
    check("what the command left running" in err, f"says what it stops: {err}")

    # SIGTERM to shmlease goes to the command's group: the shell and its
    # background child both end, and shmlease with them (143).
    r = c.spawn([c.shmlease, "run", "-t", t, "ks", "--", "sh", "-c",
                 "sleep 1000 & echo bg $!; wait"], start_new_session=True)
    bg = identity(words(read_lines_until(r.stdout.fileno(), lambda s: "bg " in s, "bg"), "bg"))
    r.send_signal(signal.SIGTERM)
    code, _, err = finish(c, r)
    check(code == 143 and not alive(bg), f"forwarded to the group: {code} {err}")


def test_run_unstoppable(c):
    """A process of the tree that shmlease may not signal (it runs as another
    user): shmlease names it and exits 75 instead of waiting for ever."""
    ensure_user("shmlrun-a")
    ensure_user("shmlrun-b")
    t = c.table("unstop")
    p = c.run(as_user("shmlrun-a", c.shmlease, "create", t))     # shmlrun-a's own table
    check(p.returncode == 0, f"create as shmlrun-a: {show(p)}")
    argv = as_user("shmlrun-a", c.shmlease, "run", "-t", t, "-k", "0.2", "k", "--", "sh", "-c",
                   "echo cmd $$; setpriv --reuid shmlrun-b --regid shmlrun-b --clear-groups "
                   "-- sleep 1000 >/dev/null 2>&1 & echo other $!; wait", caps="+setuid,+setgid")
    r = c.spawn(argv, start_new_session=True)
    text = read_lines_until(r.stdout.fileno(), lambda s: "other " in s, "the other user's process")
    other = identity(words(text, "other"))
    c.wait_until("the process to run as the other user",
                 lambda: os.stat(f"/proc/{other[0]}").st_uid != os.stat(f"/proc/{r.pid}").st_uid,
                 timeout=15)
    p = c.run(as_user("shmlrun-a", c.shmlease, "break", "-t", t, "k"))
    check(p.returncode == 0, f"break: {show(p)}")
    code, _, err = finish(c, r, timeout=90)
    try:
        check(code == 75, f"exit {code}: {err}")
        check(f"(pid {other[0]}): it runs as another user (EPERM)" in err,
              f"the refused signal is reported: {err}")
        check(re.search(rf"could not stop 1 process.*\n.*\(pid {other[0]}\).*EPERM", err),
              f"the survivor is named: {err}")
        check(alive(other), "the other user's process is still there (as reported)")
    finally:
        if alive(other):
            os.kill(other[0], signal.SIGKILL)


# ---- run: waiting --------------------------------------------------------------

def test_run_wait_signals(c):
    """SIGTERM, SIGINT, SIGHUP while waiting for the key: shmlease dies of
    that signal at once, is no longer a waiter, and the key goes to a third
    process as soon as the holder lets go. A signal ignored by whoever
    started shmlease stays ignored."""
    t = made(c, "wsig")
    holder, _ = c.hold(t, "k")
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        w = c.spawn([c.shmlease, "run", "-v", "-t", t, "k", "--", "true"],
                    preexec_fn=default_signals)
        c.wait_until("the waiter to wait", lambda: waiters(c, t, "k") == 1, timeout=15)
        w.send_signal(sig)
        code, _, err = finish(c, w, timeout=15)
        check(code == -sig, f"{sig.name}: died of it expected, got {code}: {err}")
        check(f"{sig.name} while waiting for k: giving up, holding nothing" in err, err)
        c.wait_until("no waiter left", lambda: waiters(c, t, "k") == 0, timeout=15)
        l = c.lease_json(t, "k")
        check(l and l["holder_pid"] == holder.pid, f"the holder still holds k: {l}")
    # SIGHUP ignored by the parent (nohup): it stays ignored; SIGTERM sent
    # after it ends the wait. A SIGHUP wrongly taken would be read first.
    def nohup():
        default_signals()
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    w = c.spawn([c.shmlease, "run", "-t", t, "k", "--", "true"], preexec_fn=nohup)
    c.wait_until("the waiter to wait", lambda: waiters(c, t, "k") == 1, timeout=15)
    w.send_signal(signal.SIGHUP)
    w.send_signal(signal.SIGTERM)
    code, _, err = finish(c, w, timeout=15)
    check(code == -signal.SIGTERM, f"an ignored SIGHUP must stay ignored: {code} {err}")
    # The same for acquire: it dies of the signal and its keeper gives up.
    a = c.spawn([c.shmlease, "acquire", "-t", t, "--pid", str(os.getpid()), "k"],
                preexec_fn=default_signals)
    c.wait_until("acquire's keeper to wait", lambda: waiters(c, t, "k") == 1, timeout=15)
    a.send_signal(signal.SIGTERM)
    code, out, err = finish(c, a, timeout=15)
    check(code == -signal.SIGTERM and out == "", f"acquire died of SIGTERM: {code} {out} {err}")
    c.wait_until("no waiter left", lambda: waiters(c, t, "k") == 0, timeout=15)
    c.wait_until("the keeper to end", lambda: not keepers_of(t), timeout=15)
    # The holder lets go: a third process gets the key at once.
    holder.stdin.close()
    holder.wait(timeout=10)
    p = c.tool("run", "-n", "-t", t, "k", "--", "true")
    check(p.returncode == 0, f"nothing left holding k: {show(p)}")


def default_signals():
    """For preexec_fn: what a shell gives a foreground command, whatever the
    test runner ignores."""
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)


def keepers_of(table):
    """PIDs of keeper processes whose command line names TABLE."""
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/comm") as f:
                comm = f.read().strip()
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmdline = f.read().split(b"\0")
        except OSError:
            continue
        if comm == "shmlease-keeper" and table.encode() in cmdline:
            found.append(int(d))
    return found


def test_run_ttl(c):
    """A TTL shorter than renewal can keep is a usage error before anything is
    acquired or created; the minimum (0.1 s) is accepted."""
    t = c.table("ttl")
    for cmd in (["run", "-t", t, "--ttl", "0.0001", "k", "--", "true"],
                ["run", "-t", t, "-T", "99ms", "k", "--", "true"],
                ["acquire", "-t", t, "--ttl", "0.05", "k"]):
        p = c.tool(*cmd)
        check(p.returncode == 64 and b"too short: at least 100ms" in p.stderr,
              f"{cmd}: {show(p)}")
        check(not os.path.exists(tt.SHM + t), f"{cmd} created the table")
    holder, _ = c.hold(t, "k")
    # Accepted: the -n conflict (1), not a usage error (64). (Whether 0.1 s
    # holds depends on the scheduler; its acceptance does not.)
    p = c.tool("run", "-n", "-t", t, "--ttl", "0.1", "k", "--", "true")
    check(p.returncode == 1, f"--ttl 0.1 accepted: {show(p)}")
    holder.stdin.close()
    holder.wait(timeout=10)


def test_run_verbose(c):
    """-v says whom it waits for (pid, command name, token), how long it
    waited, a dead holder's lease taken over, an expired one taken over, and
    who holds the key when the wait runs out."""
    t = made(c, "verb")
    holder, tok = c.hold(t, "k")
    w = c.spawn([c.shmlease, "run", "-v", "-t", t, "k", "--", "true"])
    err = read_lines_until(w.stderr.fileno(), lambda s: "waiting for k" in s, "waiting line")
    check(re.search(rf"waiting for k on table {re.escape(t)}: held by pid {holder.pid} "
                    rf"\(shmlease-tool-h\), alive, token {tok}, ", err), f"waiting: {err}")
    c.wait_until("the waiter to sleep on k", lambda: waiters(c, t, "k") == 1, timeout=15)
    holder.kill()
    holder.wait()
    code, _, rest = finish(c, w)
    err += rest
    check(code == 0, f"exit {code}: {err}")
    check(re.search(r"acquired k on table .*, token \d+, ttl 30000ms, after waiting \d+\.\d{3}s",
                    err), f"acquired after how long: {err}")
    check(f"took k over from pid {holder.pid} (shmlease-tool-h), token {tok}, which died "
          "without releasing it" in err, f"reclaimed from a dead holder: {err}")

    # The holder changes while it waits (here: a grace period replaces the
    # lease): said, once, on the next look (every second).
    h = c.spawn([c.shmlease, "run", "-t", t, "--grace", "5", "kg", "--", "sh", "-c",
                 "echo ready; read x"], stdin=subprocess.PIPE, start_new_session=True)
    check(h.stdout.readline() == b"ready\n", "holder of kg")
    w = c.spawn([c.shmlease, "run", "-v", "-t", t, "kg", "--", "true"])
    read_lines_until(w.stderr.fileno(), lambda s: "waiting for kg" in s, "waiting for kg")
    h.stdin.write(b"end\n")
    h.stdin.close()
    check(h.wait(timeout=60) == 0, "the holder of kg ends, leaving a grace period")
    code, _, err = finish(c, w)
    check(code == 0 and re.search(r"still waiting for kg on table .*: now in a grace period "
                                  r"\(token \d+, ", err), f"new holder while waiting: {code} {err}")

    # A stopped holder's lease runs out: taken over, and said so.
    h = c.spawn([c.shmlease, "run", "-t", t, "--ttl", "2", "ke", "--", "sh", "-c",
                 "echo ready; exec sleep 1000"], start_new_session=True)
    check(h.stdout.readline() == b"ready\n", "holder of ke")
    w = c.spawn([c.shmlease, "run", "-v", "-t", t, "ke", "--", "true"])
    c.wait_until("the waiter to sleep on ke", lambda: waiters(c, t, "ke") == 1, timeout=15)
    h.send_signal(signal.SIGSTOP)
    code, _, err = finish(c, w)
    h.send_signal(signal.SIGCONT)
    check(code == 0 and f"took ke over from pid {h.pid} (shmlease)" in err and
          "whose lease ran out" in err, f"expired holder: {code} {err}")
    check(finish(c, h)[0] == 75, "the stopped holder finds its lease lost")

    # -w runs out: who holds it, after how long.
    holder, tok = c.hold(t, "kw")
    p = c.tool("run", "-v", "-w", "0.3", "-t", t, "kw", "--", "true")
    m = re.search(rf"kw is held by pid {holder.pid} \(shmlease-tool-h\), alive, token {tok}, "
                  r".* left after (\d+\.\d{3})s", p.stderr.decode())
    check(p.returncode == 1 and m and float(m.group(1)) >= 0.3, f"-w: {show(p)}")
    holder.stdin.close()
    holder.wait(timeout=10)


def test_run_flock(c):
    """flock(1)'s options: -c, -x/-e/--exclusive, -s/--shared, --nb,
    --timeout, -E; and the usage errors around them."""
    t = made(c, "flock")
    p = c.tool("run", "-t", t, "k", "-c", 'echo "$0 $SHMLEASE_KEY"; exit 5')
    check(p.returncode == 5 and p.stdout == b"/bin/sh k\n", f"-c: {show(p)}")
    p = c.tool("run", "-c", "echo before-key", "-t", t, "k")
    check(p.returncode == 0 and p.stdout == b"before-key\n", f"-c before KEY: {show(p)}")
    for x in ("-x", "-e", "--exclusive"):
        p = c.tool("run", x, "-t", t, "k", "--", "true")
        check(p.returncode == 0, f"{x}: {show(p)}")
    for s in (["-s"], ["--shared"]):
        p = c.tool("run", *s, "-t", t, "k", "-c", 'echo "$SHMLEASE_KEY"')
        check(p.returncode == 0 and p.stdout == b"k\n", f"{s}: {show(p)}")
        p = c.tool("run", *s, "-t", t + "x", "k", "--", "true")
        check(p.returncode == 69, f"{s} on a missing table: {show(p)}")
        p = c.tool("acquire", *s, "-t", t + "x", "k")
        check(p.returncode == 69, f"acquire {s} on a missing table: {show(p)}")
    check(not os.path.exists(tt.SHM + t + "x"), "-s created a table")
    for bad in (["run", "-t", t, "k", "-c", "true", "extra"], ["run", "-t", t, "k"],
                ["run", "-t", t, "-c"]):
        p = c.tool(*bad)
        check(p.returncode == 64, f"usage error for {bad}: {show(p)}")
    holder, _ = c.hold(t, "k")
    p = c.tool("run", "--nb", "-E", "9", "-t", t, "k", "--", "true")
    check(p.returncode == 9, f"--nb -E 9: {show(p)}")
    p = c.tool("run", "--timeout", "0.2", "--conflict-exit-code", "8", "-t", t, "k", "-c", "true")
    check(p.returncode == 8, f"--timeout: {show(p)}")
    holder.stdin.close()
    holder.wait(timeout=10)


# ---- acquire / release / check -------------------------------------------------

GUARD = ('tok=$("$SHM" acquire -t "$T" --pid $$ "$K") || exit 9; echo "$tok"; read x; '
         '"$SHM" release "$tok"; echo "rel=$?"; read y || true')


def guard(c, t, key, *extra_env):
    env = dict(os.environ, SHM=c.shmlease, T=t, K=key)
    p = c.spawn(["sh", "-c", GUARD], stdin=subprocess.PIPE, env=env)
    return p


def guard_token(p):
    line = p.stdout.readline().decode().strip()
    m = TOKEN_RE.match(line)
    if not m:
        p.kill()
        raise Fail(f"acquire printed {line!r}, not a token; exit {p.wait()}, "
                   f"stderr {p.stderr.read()!r}")
    return line, int(m.group(1)), int(m.group(2)), int(m.group(3))


def test_acquire(c):
    """A script's guard: the token, the keeper in the dump, check, release,
    a stale token, a released key; two scripts exclude each other; a killed
    script's lease is freed; a lost lease is reported by check and release."""
    t = made(c, "acq")
    a = guard(c, t, "k")
    tok, kpid, kstart, fencing = guard_token(a)
    l = c.lease_json(t, "k")
    check(l and l["holder_pid"] == kpid and l["fencing_token"] == fencing and
          l["state"] == "alive", f"the keeper holds k: {l}")
    check(l["metadata"].startswith(f"for pid {a.pid}: sh -c"), f"metadata {l['metadata']!r}")
    check(stat_fields(kpid)[4] == kstart, "the token names the keeper's start time")
    with open(f"/proc/{kpid}/comm") as f:
        check(f.read().strip() == "shmlease-keeper", "the keeper's name")
    check(c.tool("check", tok).returncode == 0, "check: held")

    # Another script: -n conflicts, -w waits; it gets k once the first releases.
    p = c.tool("acquire", "-n", "-t", t, "--pid", str(os.getpid()), "k")
    check(p.returncode == 1 and p.stdout == b"", f"acquire -n on a held key: {show(p)}")
    b = guard(c, t, "k")
    c.wait_until("the second script to wait", lambda: waiters(c, t, "k") == 1, timeout=15)
    check(b.poll() is None, "the second script waits")
    a.stdin.write(b"go\n")
    a.stdin.flush()
    check(a.stdout.readline() == b"rel=0\n", "release of the first script")
    tok_b, kpid_b, _, fencing_b = guard_token(b)
    keeper_b = identity(kpid_b)
    check(fencing_b > fencing and kpid_b != kpid, "the second script's lease is a new one")
    p = c.tool("release", tok)
    check(p.returncode == 1 and b"stale token" in p.stderr, f"release twice: {show(p)}")
    p = c.tool("check", tok)
    check(p.returncode == 1 and b"stale token" in p.stderr, f"check after release: {show(p)}")
    a.stdin.close()
    check(a.wait(timeout=10) == 0, "first script")

    # The second script is killed: its keeper releases k; a third gets it.
    b.kill()
    b.wait()
    c.wait_until("the killed script's lease to be released", lambda: key_free(c, t, "k"),
                 timeout=15)
    c.wait_until("the keeper to end with its script", lambda: not alive(keeper_b), timeout=15)
    p = c.tool("run", "-n", "-t", t, "k", "--", "true")
    check(p.returncode == 0, f"a third process gets k at once: {show(p)}")

    # A lease broken by an operator: check and release say it was lost (75).
    a = guard(c, t, "k")
    tok, kpid, kstart, fencing = guard_token(a)
    # A token with this keeper's identity but another fencing token is not
    # its lease: refused, and the lease is untouched.
    forged = f"shmlease:1:{kpid}:{kstart}:{fencing + 1000}"
    p = c.tool("release", forged)
    check(p.returncode == 1 and b"another fencing token" in p.stderr, f"forged: {show(p)}")
    check(c.lease_json(t, "k")["fencing_token"] == fencing, "a forged release changed nothing")
    check(c.tool("break", "-q", "-t", t, "k").returncode == 0, "break")
    p = c.tool("check", tok)
    check(p.returncode == 75 and b"lost" in p.stderr, f"check a broken lease: {show(p)}")
    a.stdin.write(b"go\n")
    a.stdin.flush()
    check(a.stdout.readline() == b"rel=75\n", "release of a broken lease: 75")
    a.stdin.close()
    a.wait(timeout=10)
    err = a.stderr.read()
    check(b"the lease was lost before this release (ESTALE)" in err, f"says why: {err!r}")

    # An operator stops a keeper with SIGTERM: it releases the lease.
    a = guard(c, t, "k")
    tok, kpid, kstart, _ = guard_token(a)
    os.kill(kpid, signal.SIGTERM)
    c.wait_until("the keeper to release k on SIGTERM", lambda: key_free(c, t, "k"), timeout=15)
    c.wait_until("the keeper to end", lambda: not alive((kpid, kstart)), timeout=15)
    a.stdin.write(b"go\n")
    a.stdin.flush()
    check(a.stdout.readline() == b"rel=1\n", "release after the keeper ended: stale (1)")
    a.stdin.close()
    a.wait(timeout=10)

    # Bad input: a malformed token, a PID that is not there.
    for bad in ("nonsense", "shmlease:1:0:1:2", "shmlease:1:12:x:3", "shmlease:2:1:2:3", ""):
        p = c.tool("release", bad)
        check(p.returncode == 64 and b"not a token" in p.stderr, f"release {bad!r}: {show(p)}")
    gone = subprocess.Popen(["true"])
    gone.wait()
    p = c.tool("acquire", "-t", t, "--pid", str(gone.pid), "k2")
    check(p.returncode == 64 and b"no such process" in p.stderr, f"--pid of nobody: {show(p)}")
    check(key_free(c, t, "k2"), "nothing acquired for a missing process")


def test_acquire_ends(c):
    """The process a lease is for ends while its keeper waits: nothing is
    acquired (exit 1). A silent client does not stall the keeper. A release
    from another user is refused (69)."""
    t = made(c, "acqend")
    holder, _ = c.hold(t, "k")
    victim = c.spawn(["sleep", "1000"])
    a = c.spawn([c.shmlease, "acquire", "-t", t, "--pid", str(victim.pid), "k"])
    c.wait_until("the keeper to wait", lambda: waiters(c, t, "k") == 1, timeout=15)
    victim.kill()
    victim.wait()
    code, out, err = finish(c, a)
    check(code == 1 and out == "" and f"pid {victim.pid}, which the lease was for, ended" in err,
          f"the tied process ended while waiting: {code} {out!r} {err}")
    c.wait_until("no waiter left", lambda: waiters(c, t, "k") == 0, timeout=15)
    holder.stdin.close()
    holder.wait(timeout=10)

    # A client that connects and says nothing does not stop the keeper from
    # renewing (a 2 s TTL, 4.5 s of silence) or from answering others.
    import socket
    env = dict(os.environ, SHM=c.shmlease, T=t, K="ks")
    a = c.spawn(["sh", "-c", GUARD.replace("acquire", "acquire --ttl 2")], stdin=subprocess.PIPE,
                env=env)
    tok, kpid, kstart, _ = guard_token(a)
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    silent.connect(f"\0shmlease/keeper/{kpid}/{kstart}")
    time.sleep(4.5)
    p = c.tool("check", tok)
    silent.close()
    check(p.returncode == 0, f"the keeper kept renewing and answered: {show(p)}")
    a.stdin.write(b"go\n")
    a.stdin.close()
    check(a.wait(timeout=15) == 0, "the script")

    ensure_user("shmlrun-a")
    a = guard(c, t, "k")
    tok = guard_token(a)[0]
    p = c.run(as_user("shmlrun-a", c.shmlease, "release", tok))
    check(p.returncode == 69 and b"another user" in p.stderr, f"another user's release: {show(p)}")
    check(c.tool("check", tok).returncode == 0, "still held after the refused release")
    a.stdin.write(b"go\n")
    a.stdin.close()
    check(a.wait(timeout=15) == 0, "the script")


# ---- the demo ------------------------------------------------------------------

def test_demo(c):
    """The demo kills the holder only once its waiter is asleep on the key,
    and every promise it checks holds."""
    if not c.demo:
        raise Skip("no --demo given")
    t = c.table("demo")
    p = c.run([c.demo, t], timeout=120)
    out = p.stdout.decode()
    check(p.returncode == 0 and "demo: all promises held" in out, f"demo: {show(p)}")
    m = re.search(r"SIGKILL worker \d .* \((\d+) waiter", out)
    check(m and int(m.group(1)) >= 1, f"the kill came once a waiter slept on the key: {out}")
    check(re.search(r"taken over \d+\.\d ms after SIGKILL", out), f"takeover time: {out}")


# ---- help and man page in step ---------------------------------------------------

def test_run_help_man(c):
    """Every long option that run, acquire, release and check --help list is
    in shmlease.1, and the man page says what the supervisor promises."""
    if not c.man_dir or not shutil.which("groff"):
        raise Skip("groff not installed")
    p = c.run(["groff", "-man", "-Tutf8", "-rLL=80n", "-P-cbou",
               os.path.join(c.man_dir, "shmlease.1")], env=dict(os.environ, LC_ALL="C.UTF-8"))
    page = p.stdout.decode().replace("\u2010", "-").replace("\u2212", "-").replace("\u2019", "'")
    page = re.sub(r"-\n\s*", "-", page)
    for cmd in ("run", "acquire", "release", "check"):
        h = c.tool(cmd, "--help")
        check(h.returncode == 0 and b"Exit status" in h.stdout, f"{cmd} --help: {show(h)}")
        for opt in sorted(set(re.findall(r"(?<![\w-])--[a-z][a-z-]+", h.stdout.decode()))):
            check(opt in page, f"{cmd} --help lists {opt}, shmlease.1 does not")
    for must in ("PR_SET_CHILD_SUBREAPER", "process group", "--close", "A shared lease, as flock -s",
                 "at least 0.1", "shmlease:1:", "shmlease acquire", "shmlease release",
                 "shmlease check", "128+"):
        check(must in page or must in re.sub(r"\s+", " ", page), f"shmlease.1 does not say {must!r}")


TESTS = {name[5:]: fn for name, fn in globals().items() if name.startswith("test_")}


def main():
    def configure(c, args):
        c.demo = args.demo
    return tt.run_tests(TESTS, add_args=lambda ap: ap.add_argument("--demo"),
                        configure=configure, after=kill_strays)

if __name__ == "__main__":
    sys.exit(main())
