#!/usr/bin/env python3
"""Shared and counted leases through the tools: `shmlease run -s`,
`--limit N`, `shmlease acquire -s`, and what `shmlease-dump` shows of them
(MODE, one row per holder, HOLDERS, the queue of waiting processes).

Real processes throughout: each holder is a `shmlease run` whose command
blocks until the test lets it go (a file appears), so that "both run at
once" is a fact the commands themselves observe, not a timing.

    test_modes_tools.py --shmlease BIN --dump BIN --helper BIN [--man-dir DIR] TEST

Exit 0 pass, 1 fail, 77 skipped. Helpers come from test_tools.py.
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_tools as tt  # noqa: E402
from test_tools import Fail, check, parse_rows, show  # noqa: E402

DIRS = []          # temporary directories, removed at the end

# Generous: the machine is shared and loaded; waits end on conditions.
LONG = 60.0


def made(c, tag):
    t = c.table(tag)
    p = c.tool("create", t, "--capacity", "64")
    check(p.returncode == 0, f"create {t}: {show(p)}")
    return t


def tmpdir():
    d = tempfile.mkdtemp(prefix="shmlease-modes.")
    DIRS.append(d)
    return d


# A command that says it runs (a file NAME.in), waits until the file GO
# exists, and says it ended (NAME.out). It never waits for ever: after
# LONG seconds it gives up and leaves NAME.timeout, which fails the test.
BLOCKER = ('touch "$D/$N.in"; i=0; while [ ! -e "$D/$G" ]; do sleep 0.05; i=$((i+1)); '
           'if [ $i -gt 1200 ]; then touch "$D/$N.timeout"; exit 3; fi; done; '
           'touch "$D/$N.out"')


def start(c, t, key, d, name, go, *opts):
    """`shmlease run [opts] KEY` of a blocking command named NAME, released by
    the file GO in D. Its own PID is the holder's (shmlease holds the lease)."""
    env = dict(os.environ, D=d, N=name, G=go)
    return c.spawn([c.shmlease, "run", *opts, "-t", t, key, "-c", BLOCKER], env=env,
                   stdin=subprocess.DEVNULL)


def exists(d, name):
    return os.path.exists(os.path.join(d, name))


def go(d, name):
    with open(os.path.join(d, name), "w"):
        pass


def finish(c, p, what, code=0):
    out, err = c.communicate(p, LONG)
    check(p.returncode == code, f"{what}: exit {p.returncode}, expected {code}\n"
                                f"stdout {out!r}\nstderr {err!r}")


def leases(c, t, key):
    return [l for l in c.table_json(t)["leases"] if l["key"] == key]


def waiting_pids(c, t, key):
    rows = leases(c, t, key)
    return {w["pid"] for w in rows[0]["waiting"]} if rows else set()


# ---- shmlease-dump ---------------------------------------------------------------

def test_modes_dump(c):
    """Two shared holders of one key: two rows, each with its holder's PID,
    MODE shared, HOLDERS 2, their own tokens. An exclusive acquirer that
    comes next reserves the key: its row (excl), the note, and the queue
    (WAITPIDS, JSON waiting) name it; a shared acquirer after it waits in the
    queue too (writer preference). Prometheus counts holders by mode. Then
    the readers leave, the writer runs, then the last reader."""
    t = made(c, "dump")
    d = tmpdir()
    r1 = start(c, t, "k", d, "r1", "go-readers", "-s", "-m", "reader one")
    r2 = start(c, t, "k", d, "r2", "go-readers", "-s", "-m", "reader two")
    c.wait_until("both readers running", lambda: exists(d, "r1.in") and exists(d, "r2.in"),
                 timeout=LONG)
    rows = leases(c, t, "k")
    check(len(rows) == 2, f"two rows for two shared holders: {rows}")
    check({l["holder_pid"] for l in rows} == {r1.pid, r2.pid}, f"holder PIDs {rows}")
    check(all(l["mode"] == "shared" and l["limit"] is None and l["holders"] == 2 and
              l["state"] == "alive" and not l["reserved"] and l["waiting"] == []
              for l in rows), f"shared rows {rows}")
    check(len({l["fencing_token"] for l in rows}) == 2, f"one token each: {rows}")
    check({l["metadata"] for l in rows} == {"reader one", "reader two"}, f"metadata {rows}")
    p = c.dump("-s", "-o", "KEY,PID,MODE,HOLDERS,WAITERS,WAITPIDS", t)
    check(p.returncode == 0, show(p))
    text = parse_rows(p.stdout.decode())
    check(sorted(int(r["PID"]) for r in text) == sorted([r1.pid, r2.pid]) and
          all(r["KEY"] == "k" and r["MODE"] == "shared" and r["HOLDERS"] == "2" and
              r["WAITERS"] == "0" and r["WAITPIDS"] == "-" for r in text), f"text rows {text}")

    # The writer: reserves the key and waits for both readers.
    w = start(c, t, "k", d, "w", "go-writer")
    c.wait_until("the writer in the queue", lambda: w.pid in waiting_pids(c, t, "k"),
                 timeout=LONG)
    # A reader that comes now waits behind the writer.
    r3 = start(c, t, "k", d, "r3", "go-readers", "-s")
    c.wait_until("the late reader in the queue", lambda: r3.pid in waiting_pids(c, t, "k"),
                 timeout=LONG)
    check(not exists(d, "w.in") and not exists(d, "r3.in"),
          "the writer or the late reader ran while the readers held the key")
    rows = leases(c, t, "k")
    excl = [l for l in rows if l["mode"] == "exclusive"]
    shared = [l for l in rows if l["mode"] == "shared"]
    check(len(excl) == 1 and excl[0]["holder_pid"] == w.pid and excl[0]["reserved"],
          f"the writer's reserving row: {rows}")
    check(len(shared) == 2 and all(l["holders"] == 2 and not l["reserved"] for l in shared),
          f"the readers' rows while the writer waits: {rows}")
    queue = rows[0]["waiting"]
    check(all(l["waiting"] == queue for l in rows), f"one queue per key: {rows}")
    check(queue[0]["pid"] == w.pid and queue[0]["reserved"] and
          any(q["pid"] == r3.pid and not q["reserved"] for q in queue) and
          all(q["threads"] >= 1 for q in queue), f"queue {queue}")
    check(all(l["waiters"] == sum(q["threads"] for q in queue) for l in rows),
          f"WAITERS is the queue's threads: {rows}")
    p = c.dump("-s", "-o", "+HOLDERS,WAITPIDS", t)
    out = p.stdout.decode()
    text = parse_rows(out)
    check(len(text) == 3 and {r["MODE"] for r in text} == {"excl", "shared"}, f"rows\n{out}")
    pids = text[0]["WAITPIDS"].split(",")
    check(all(r["WAITPIDS"] == text[0]["WAITPIDS"] for r in text) and
          re.sub(r"\(\d+\)$", "", pids[0]) == str(w.pid) and
          any(re.sub(r"\(\d+\)$", "", x) == str(r3.pid) for x in pids), f"WAITPIDS\n{out}")
    check(re.search(rf"^reserved: k: pid {w.pid} \(excl\) waits for 2 shared holders to leave\.$",
                    out, re.M), f"the reservation note\n{out}")
    p = c.dump("--prometheus", t)
    prom = p.stdout.decode()
    check(f'shmlease_holders{{table="{t}",mode="shared"}} 2' in prom and
          f'shmlease_holders{{table="{t}",mode="exclusive"}} 1' in prom, f"holders\n{prom}")
    m = re.search(rf'^shmlease_waiters{{table="{t}"}} (\d+)$', prom, re.M)
    check(m and int(m.group(1)) >= 2, f"waiters: the writer and the late reader\n{prom}")
    # --key: every holder of the key, not one.
    p = c.dump("-s", "--key", "k", "-o", "KEY,PID,MODE", t)
    check(p.returncode == 0 and len(parse_rows(p.stdout.decode())) == 3, f"--key\n{show(p)}")

    # The readers leave; the writer runs alone; then the late reader.
    go(d, "go-readers")
    finish(c, r1, "reader 1")
    finish(c, r2, "reader 2")
    c.wait_until("the writer running", lambda: exists(d, "w.in"), timeout=LONG)
    check(not exists(d, "r3.in"), "the late reader ran beside the writer")
    rows = leases(c, t, "k")
    check(len(rows) == 1 and rows[0]["mode"] == "exclusive" and rows[0]["holder_pid"] == w.pid
          and not rows[0]["reserved"] and rows[0]["fencing_token"] > 0 and
          [q["pid"] for q in rows[0]["waiting"]] == [r3.pid], f"the writer holds: {rows}")
    go(d, "go-writer")
    finish(c, w, "writer")
    finish(c, r3, "late reader")
    check(not any(n.endswith(".timeout") for n in os.listdir(d)), f"a command gave up: {os.listdir(d)}")


def test_modes_dump_threads(c):
    """Three threads of one process waiting for a key: WAITERS 3, WAITPIDS
    'PID(3)', JSON threads 3; they all get it once the holder lets go."""
    t = made(c, "threads")
    h, _ = c.hold(t, "k")
    w = c.spawn([c.helper, "threads", t, b"k".hex(), "30000", "3"], stdin=subprocess.DEVNULL)
    line = w.stdout.readline()
    check(line.startswith(b"{\"pid\":"), f"threads helper: {line!r}")

    def three():
        rows = leases(c, t, "k")
        return rows and rows[0]["waiting"] == [dict(rows[0]["waiting"][0], pid=w.pid, threads=3)]
    c.wait_until("three threads in the queue", three, timeout=LONG)
    rows = leases(c, t, "k")
    check(rows[0]["waiters"] == 3 and not rows[0]["waiting"][0]["reserved"], f"{rows}")
    p = c.dump("-s", "-o", "KEY,WAITERS,WAITPIDS", t)
    text = parse_rows(p.stdout.decode())
    check(text == [{"KEY": "k", "WAITERS": "3", "WAITPIDS": f"{w.pid}(3)"}], f"text\n{show(p)}")
    p = c.dump("-s", "-r", "-n", "-o", "WAITPIDS", t)
    check(p.stdout.decode() == f"{w.pid}(3)\n", show(p))
    h.stdin.close()
    h.wait(timeout=LONG)
    out, err = c.communicate(w, LONG)
    check(w.returncode == 0 and b'"rc":"OK"' in out, f"the three threads: {out!r} {err!r}")


def test_modes_dump_counted(c):
    """A counted key (--limit 3): MODE shared/3, JSON limit 3, HOLDERS."""
    t = made(c, "counted")
    d = tmpdir()
    hs = [start(c, t, "pool", d, f"h{i}", "go", "--limit", "3") for i in range(2)]
    c.wait_until("two holders", lambda: exists(d, "h0.in") and exists(d, "h1.in"), timeout=LONG)
    rows = leases(c, t, "pool")
    check(len(rows) == 2 and all(l["mode"] == "shared" and l["limit"] == 3 and
                                 l["holders"] == 2 for l in rows), f"counted rows {rows}")
    p = c.dump("-s", "-r", "-n", "-o", "KEY,MODE,HOLDERS", t)
    check(p.stdout.decode().splitlines() == ["pool shared/3 2"] * 2, show(p))
    p = c.dump("--prometheus", "--key", "pool", t)
    check(f'shmlease_lease_holders{{table="{t}",key="pool",mode="shared"}} 2' in
          p.stdout.decode(), show(p))
    go(d, "go")
    for i, h in enumerate(hs):
        finish(c, h, f"holder {i}")


# ---- shmlease run -s, --limit ------------------------------------------------------

def test_modes_run_shared(c):
    """`run -s` twice: both commands run at once (each sees the other's
    start before it may end). An exclusive `run` waits until both have
    ended; `run -n` exclusive fails at once (exit 1) while they hold, and
    `run -s -n` succeeds. The same two commands without -s cannot both run:
    the second `run -n` is refused."""
    t = made(c, "run")
    d = tmpdir()
    a = start(c, t, "k", d, "a", "go", "-s")
    b = start(c, t, "k", d, "b", "go", "-s")
    c.wait_until("both shared commands running at once",
                 lambda: exists(d, "a.in") and exists(d, "b.in"), timeout=LONG)
    p = c.tool("run", "-n", "-t", t, "k", "--", "true")
    check(p.returncode == 1, f"exclusive -n while shared holders hold: {show(p)}")
    p = c.tool("run", "-s", "-n", "-v", "-t", t, "k", "-c", "echo third")
    check(p.returncode == 0 and p.stdout == b"third\n" and
          f"acquired k (shared) on table {t}".encode() in p.stderr, f"a third shared -n: {show(p)}")
    p = c.tool("run", "-n", "-v", "-t", t, "k", "--", "true")
    check(p.returncode == 1 and b"k is held in shared mode (2 holders), one by pid " in p.stderr,
          f"-v names the mode of a busy key: {show(p)}")
    # The exclusive command checks that both shared commands have ended.
    x = c.spawn([c.shmlease, "run", "-t", t, "k", "-c",
                 f'[ -e "{d}/a.out" ] && [ -e "{d}/b.out" ] && touch "{d}/x.ran"'],
                stdin=subprocess.DEVNULL)
    c.wait_until("the exclusive run waiting", lambda: x.pid in waiting_pids(c, t, "k"),
                 timeout=LONG)
    check(x.poll() is None and not exists(d, "x.ran"), "the exclusive run did not wait")
    go(d, "go")
    finish(c, a, "shared a")
    finish(c, b, "shared b")
    finish(c, x, "exclusive run after the shared ones")
    check(exists(d, "x.ran"), "the exclusive command ran before both shared ones had ended")

    # Control: without -s the second one is refused while the first runs.
    e = start(c, t, "k2", d, "e", "go2")
    c.wait_until("the exclusive holder running", lambda: exists(d, "e.in"), timeout=LONG)
    p = c.tool("run", "-n", "-t", t, "k2", "--", "true")
    check(p.returncode == 1, f"a second exclusive -n: {show(p)}")
    p = c.tool("run", "-s", "-n", "-t", t, "k2", "--", "true")
    check(p.returncode == 1, f"shared -n on an exclusively held key: {show(p)}")
    go(d, "go2")
    finish(c, e, "exclusive holder")
    # -x after -s: the last wins (flock's rule): exclusive.
    s1 = start(c, t, "k3", d, "s1", "go3", "-s")
    c.wait_until("a shared holder", lambda: exists(d, "s1.in"), timeout=LONG)
    p = c.tool("run", "-s", "-x", "-n", "-t", t, "k3", "--", "true")
    check(p.returncode == 1, f"-s -x is exclusive: {show(p)}")
    p = c.tool("run", "-x", "-s", "-n", "-t", t, "k3", "--", "true")
    check(p.returncode == 0, f"-x -s is shared: {show(p)}")
    go(d, "go3")
    finish(c, s1, "shared holder")
    # --grace with -s keeps the shared place: exclusive out, shared in.
    p = c.tool("run", "-s", "-g", "60", "-t", t, "k4", "--", "true")
    check(p.returncode == 0, f"-s -g 60: {show(p)}")
    rows = leases(c, t, "k4")
    check(len(rows) == 1 and rows[0]["mode"] == "shared" and rows[0]["state"] == "grace",
          f"a shared grace period: {rows}")
    p = c.tool("run", "-n", "-t", t, "k4", "--", "true")
    check(p.returncode == 1, f"exclusive -n during a shared grace period: {show(p)}")
    p = c.tool("run", "-s", "-n", "-t", t, "k4", "--", "true")
    check(p.returncode == 0, f"shared -n during a shared grace period: {show(p)}")


def test_modes_run_limit(c):
    """`--limit 2`: two holders run at once, a third with -n is refused
    (exit 1, its command never runs), a third that waits is in the queue
    and runs once one leaves. Another limit, or -s without one, is refused
    with the holders' limit named (exit 64); so are --limit with -x and a
    limit out of range, which change nothing."""
    t = made(c, "limit")
    d = tmpdir()
    h1 = start(c, t, "pool", d, "h1", "go1", "--limit", "2")
    h2 = start(c, t, "pool", d, "h2", "go2", "--limit", "2")
    c.wait_until("two holders running", lambda: exists(d, "h1.in") and exists(d, "h2.in"),
                 timeout=LONG)
    p = c.tool("run", "--limit", "2", "-n", "-v", "-t", t, "pool", "-c", f'touch "{d}/never"')
    check(p.returncode == 1 and not exists(d, "never") and
          b"pool is held in shared mode (2 of at most 2 holders)" in p.stderr,
          f"a third with -n: {show(p)}")
    p = c.tool("run", "--limit", "2", "-w", "0.3", "-E", "7", "-t", t, "pool", "--", "true")
    check(p.returncode == 7, f"a third with -w 0.3 -E 7: {show(p)}")
    h3 = start(c, t, "pool", d, "h3", "go3", "--limit", "2")
    c.wait_until("the third in the queue", lambda: h3.pid in waiting_pids(c, t, "pool"),
                 timeout=LONG)
    check(not exists(d, "h3.in"), "a third holder ran beside two with --limit 2")
    for bad, why in ((["--limit", "3"], b"--limit 2"), (["-s"], b"--limit 2")):
        p = c.tool("run", *bad, "-n", "-t", t, "pool", "-c", f'touch "{d}/never"')
        check(p.returncode == 64 and b"EDOM" in p.stderr and why in p.stderr and
              not exists(d, "never"), f"{bad} on a --limit 2 key: {show(p)}")
    p = c.tool("acquire", "--limit", "5", "-n", "-t", t, "pool")
    check(p.returncode == 64 and b"EDOM" in p.stderr and p.stdout == b"",
          f"acquire --limit 5: {show(p)}")
    before = leases(c, t, "pool")
    for bad in (["--limit", "2", "-x"], ["-e", "--limit", "2"], ["--limit", "0"],
                ["--limit", "1024"], ["--limit", "two"]):
        p = c.tool("run", *bad, "-t", t, "pool", "-c", f'touch "{d}/never"')
        check(p.returncode == 64 and b"--limit" in p.stderr and not exists(d, "never"),
              f"{bad}: {show(p)}")
    p = c.tool("run", "-s", "--limit", "2", "-t", t + "-missing", "pool", "--", "true")
    check(p.returncode == 69 and not os.path.exists(tt.SHM + t + "-missing"),
          f"--limit on a missing table: {show(p)}")
    after = leases(c, t, "pool")
    check(sorted(l["fencing_token"] for l in after) == sorted(l["fencing_token"] for l in before),
          f"a refused call changed the holders: {before} -> {after}")
    go(d, "go1")
    finish(c, h1, "holder 1")
    c.wait_until("the third running once one left", lambda: exists(d, "h3.in"), timeout=LONG)
    check(len(leases(c, t, "pool")) == 2, "two holders after the hand-over")
    go(d, "go2")
    go(d, "go3")
    finish(c, h2, "holder 2")
    finish(c, h3, "holder 3")


def test_modes_acquire_shared(c):
    """`shmlease acquire -s` for a script: two tokens held at once by their
    keepers (MODE shared in the dump); an exclusive acquire -n is refused;
    after both releases it succeeds."""
    t = made(c, "acq")
    toks = []
    for i in range(2):
        p = c.tool("acquire", "-s", "--pid", str(os.getpid()), "-n", "-t", t, "k")
        check(p.returncode == 0, f"acquire -s #{i}: {show(p)}")
        toks.append(p.stdout.decode().strip())
    rows = leases(c, t, "k")
    keepers = {int(tok.split(":")[2]) for tok in toks}
    check(len(rows) == 2 and {l["holder_pid"] for l in rows} == keepers and
          all(l["mode"] == "shared" for l in rows), f"two keepers hold it shared: {rows}")
    p = c.tool("acquire", "--pid", str(os.getpid()), "-n", "-t", t, "k")
    check(p.returncode == 1, f"exclusive acquire -n: {show(p)}")
    for tok in toks:
        p = c.tool("check", tok)
        check(p.returncode == 0, f"check {tok}: {show(p)}")
        p = c.tool("release", tok)
        check(p.returncode == 0, f"release {tok}: {show(p)}")
    p = c.tool("acquire", "--pid", str(os.getpid()), "-n", "-t", t, "k")
    check(p.returncode == 0, f"exclusive acquire after the releases: {show(p)}")
    p = c.tool("release", p.stdout.decode().strip())
    check(p.returncode == 0, show(p))


def test_modes_dead_holder(c):
    """A SIGKILLed shared holder: its row shows dead until the next acquirer
    takes its place; the other holder's row is untouched."""
    t = made(c, "dead")
    d = tmpdir()
    a = start(c, t, "k", d, "a", "go", "--limit", "2")
    b = start(c, t, "k", d, "b", "go", "--limit", "2")
    c.wait_until("two holders", lambda: exists(d, "a.in") and exists(d, "b.in"), timeout=LONG)
    os.kill(a.pid, signal.SIGKILL)
    a.wait(timeout=LONG)
    c.wait_until("the killed holder's row dead",
                 lambda: {l["holder_pid"]: l["state"] for l in leases(c, t, "k")}.get(a.pid)
                 == "dead", timeout=LONG)
    rows = {l["holder_pid"]: l for l in leases(c, t, "k")}
    check(rows[b.pid]["state"] == "alive" and rows[b.pid]["mode"] == "shared", f"{rows}")
    # The dead holder's place is free at once: a new holder with -n.
    p = c.tool("run", "--limit", "2", "-n", "-t", t, "k", "--", "true")
    check(p.returncode == 0, f"the dead holder's place: {show(p)}")
    go(d, "go")
    finish(c, b, "holder b")


TESTS = {name[5:]: fn for name, fn in globals().items()
         if name.startswith("test_") and callable(fn)}


def main():
    def remove_dirs():
        for d in DIRS:
            shutil.rmtree(d, ignore_errors=True)
    return tt.run_tests(TESTS, after=remove_dirs)


if __name__ == "__main__":
    sys.exit(main())
