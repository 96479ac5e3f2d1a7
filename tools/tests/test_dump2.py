#!/usr/bin/env python3
"""Tests of shmlease-dump as lslocks (holder's command, user, cgroup and
unit; -r, -J, --output-all, -H), of its Prometheus output, and of
`shmlease doctor`, driven as a user would drive them.

    test_dump2.py --shmlease BIN --dump BIN --helper BIN [--man-dir DIR] TEST

Same conventions as test_tools.py, whose helpers it uses: exit 0 pass, 1
fail, 77 skipped; tables named tt<pid>.<tag>, unlinked at the end.
"""
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_tools  # noqa: E402
from test_tools import LK, SHM, Fail, Skip, check, parse_rows, show  # noqa: E402


# ---- helpers -----------------------------------------------------------------

DIRS = []          # temporary directories, removed at the end

def proc_comm(pid):
    with open(f"/proc/{pid}/comm", "rb") as f:
        return f.read().rstrip(b"\n")


def escape(b):
    """The tools' escaping of bytes (tool_escape_text)."""
    out = []
    for x in b:
        if x == 0x5c:
            out.append("\\\\")
        elif x == 0x0a:
            out.append("\\n")
        elif x == 0x0d:
            out.append("\\r")
        elif x == 0x09:
            out.append("\\t")
        elif 0x20 <= x < 0x7f:
            out.append(chr(x))
        else:
            out.append(f"\\x{x:02x}")
    return "".join(out)


def unescape(s):
    """The inverse of escape(), with \\x20 as -r writes a space."""
    out, i = bytearray(), 0
    while i < len(s):
        if s[i] != "\\":
            out.append(ord(s[i]))
            i += 1
            continue
        n = s[i + 1]
        if n == "x":
            out.append(int(s[i + 2:i + 4], 16))
            i += 4
        else:
            out.append({"\\": 0x5c, "n": 0x0a, "r": 0x0d, "t": 0x09}[n])
            i += 2
    return bytes(out)


class Cgroup:
    """A cgroup named like a systemd unit, made for the test, with a process
    moved into it; removed at cleanup. Tries the unified hierarchy, then
    systemd's named v1 hierarchy (what /proc/PID/cgroup shows on a hybrid
    host)."""
    ROOTS = ("/sys/fs/cgroup/unified", "/sys/fs/cgroup", "/sys/fs/cgroup/systemd")

    def __init__(self, rel):
        self.rel = rel
        self.dirs = []
        self.root = None
        for root in self.ROOTS:
            if not os.path.exists(os.path.join(root, "cgroup.procs")):
                continue
            path = os.path.join(root, rel)
            try:
                os.makedirs(path)
            except OSError:
                continue
            self.root = root
            d = path
            while d != root:
                self.dirs.append(d)
                d = os.path.dirname(d)
            break

    def add(self, pid):
        with open(os.path.join(self.root, self.rel, "cgroup.procs"), "w") as f:
            f.write(str(pid))

    def cleanup(self):
        for d in self.dirs:           # deepest first
            for _ in range(50):
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)  # its last process is still exiting


# ---- the Prometheus text format ---------------------------------------------

METRIC = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def parse_labels(s, where):
    """'{a="x",b="y"}' at the start of s: (dict, rest)."""
    labels, i = {}, 1
    while True:
        if s[i] == "}":
            return labels, s[i + 1:]
        m = LABEL.match(s, i)
        check(m, f"{where}: bad label name at {s[i:]!r}")
        name = m.group()
        i = m.end()
        check(s[i:i + 2] == '="', f"{where}: expected =\" after {name}")
        i += 2
        val = []
        while s[i] != '"':
            if s[i] == "\\":
                n = s[i + 1]
                check(n in '\\"n', f"{where}: bad escape \\{n} in a label value")
                val.append({"\\": "\\", '"': '"', "n": "\n"}[n])
                i += 2
            else:
                check(s[i] != "\n", f"{where}: newline in a label value")
                val.append(s[i])
                i += 1
        i += 1
        check(name not in labels, f"{where}: label {name} twice")
        labels[name] = "".join(val)
        if s[i] == ",":
            i += 1
        else:
            check(s[i] == "}", f"{where}: expected , or }} at {s[i:]!r}")


def parse_prometheus(text):
    """A strict reader of the text exposition format (version 0.0.4): every
    sample's family has a TYPE (and a HELP) before its first sample, a
    family's samples are contiguous, names and labels are well formed,
    values are numbers, no series appears twice, counters end in _total.
    Returns {family: {"type", "help", "samples": [(labels, value)]}}."""
    check(text.endswith("\n"), "the metrics do not end with a newline")
    fams, closed, current, series = {}, set(), None, set()

    def family(name):
        f = fams.setdefault(name, {"type": None, "help": None, "samples": []})
        return f

    for n, line in enumerate(text.split("\n")[:-1], 1):
        where = f"line {n} {line!r}"
        if line == "":
            continue
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                name = parts[2]
                check(METRIC.fullmatch(name), f"{where}: bad metric name")
                check(name not in closed and (current is None or current == name or
                                              not fams.get(name, {}).get("samples")),
                      f"{where}: {parts[1]} after the family's samples")
                f = family(name)
                key = parts[1].lower()
                check(f[key] is None, f"{where}: second {parts[1]} for {name}")
                if parts[1] == "TYPE":
                    check(len(parts) == 4 and parts[3] in
                          ("counter", "gauge", "histogram", "summary", "untyped"),
                          f"{where}: bad type")
                    check(not f["samples"], f"{where}: TYPE after samples")
                f[key] = parts[3] if len(parts) == 4 else ""
                if current is not None and current != name:
                    closed.add(current)
                current = name
            continue
        m = METRIC.match(line)
        check(m, f"{where}: no metric name")
        name, rest = m.group(), line[m.end():]
        labels = {}
        if rest.startswith("{"):
            labels, rest = parse_labels(rest, where)
        check(rest.startswith(" "), f"{where}: no space before the value")
        fields = rest.split()
        check(1 <= len(fields) <= 2, f"{where}: expected a value and an optional timestamp")
        try:
            value = float(fields[0])
        except ValueError:
            raise Fail(f"{where}: value {fields[0]!r} is not a number")
        check(name in fams and fams[name]["type"] is not None,
              f"{where}: sample before its family's TYPE")
        check(name == current and name not in closed, f"{where}: family {name} not contiguous")
        ident = (name, tuple(sorted(labels.items())))
        check(ident not in series, f"{where}: series twice")
        series.add(ident)
        fams[name]["samples"].append((labels, value))
    for name, f in fams.items():
        check(f["help"], f"{name}: no HELP")
        check(f["type"], f"{name}: no TYPE")
        if f["type"] == "counter":
            check(name.endswith("_total"), f"counter {name} does not end in _total")
        check(name.startswith("shmlease_"), f"{name}: not shmlease_*")
    return fams


def sample(fams, name, **labels):
    """The value of one series, None if absent."""
    for lab, v in fams.get(name, {"samples": []})["samples"]:
        if all(lab.get(k) == v2 for k, v2 in labels.items()):
            return v
    return None


# ---- tests: shmlease-dump as lslocks -----------------------------------------

def test_dump2_holder(c):
    """COMMAND, USER, CGROUP, UNIT, UUNIT of a live holder against /proc; '-'
    for a grace period and a dead holder; the same in JSON."""
    t = c.table("holder")
    check(c.tool("create", t, "--capacity", "64").returncode == 0, "create")
    cg = Cgroup(f"shmltest{os.getpid()}.slice/shmltest-{os.getpid()}.service") \
        if os.geteuid() == 0 else None
    ucg = Cgroup(f"shmlutest{os.getpid()}.slice/user@4242.service/app.slice/"
                 f"shmltest-{os.getpid()}.service") if os.geteuid() == 0 else None
    try:
        alive, _ = c.hold(t, "alpha", 30000, b"job A")
        c.helper_json("grace", t, b"gamma".hex(), "30000", b"".hex(), "20000")
        victim, _ = c.hold(t, "bravo", 30000, b"victim")
        victim.kill()
        victim.wait()
        inuser = None
        if cg is not None and cg.root is not None:
            cg.add(alive.pid)
            if ucg.root is not None:
                inuser, _ = c.hold(t, "delta", 30000)
                ucg.add(inuser.pid)
        else:
            print("note: cannot make a cgroup here: UNIT is checked for the current cgroup only")

        cols = "KEY,COMMAND,PID,USER,CGROUP,UNIT,UUNIT,STATE"
        p = c.dump("-o", cols, "-s", t)
        check(p.returncode == 0, show(p))
        text = p.stdout.decode()
        rows = {r["KEY"]: r for r in parse_rows(text)}
        a = rows["alpha"]
        import pwd
        with open(f"/proc/{alive.pid}/cgroup") as f:
            lines = f.read().splitlines()
        v2 = [l[3:] for l in lines if l.startswith("0::")]
        v1 = [l.split(":", 2)[2] for l in lines if ":name=systemd:" in l]
        cgroup = v2[0] if v2 and not (v2[0] == "/" and v1 and v1[0] != "/") else v1[0]
        check(a["COMMAND"] == escape(proc_comm(alive.pid)), f"COMMAND {a} vs /proc\n{text}")
        check(a["USER"] == pwd.getpwuid(os.geteuid()).pw_name, f"USER {a}")
        check(a["CGROUP"] == cgroup, f"CGROUP {a} vs {cgroup}\n{text}")
        if cg is not None and cg.root is not None:
            check(a["UNIT"] == f"shmltest-{os.getpid()}.service" and a["UUNIT"] == "-",
                  f"UNIT of a process in {cg.rel}: {a}\n{text}")
        if inuser is not None:
            d = rows["delta"]
            check(d["UNIT"] == "user@4242.service" and
                  d["UUNIT"] == f"shmltest-{os.getpid()}.service",
                  f"UNIT, UUNIT of a user service: {d}\n{text}")
        for k in ("gamma", "bravo"):
            r = rows[k]
            check(all(r[x] == "-" for x in ("COMMAND", "USER", "CGROUP", "UNIT", "UUNIT")),
                  f"{k} ({r['STATE']}): no process to describe: {r}\n{text}")
        check(rows["bravo"]["STATE"] == "dead", f"bravo {rows['bravo']}")

        # The default columns: COMMAND beside PID, as lslocks has them.
        p = c.dump("-s", t)
        heads = p.stdout.decode().splitlines()[0].split()
        check(heads == ["KEY", "TOKEN", "COMMAND", "PID", "MODE", "STATE", "LEFT", "WAITERS",
                        "METADATA"], f"default columns {heads}")

        # JSON: the same facts, raw bytes, null when there is nobody.
        leases = {l["key"]: l for l in c.table_json(t)["leases"]}
        la = leases["alpha"]
        check(la["holder_command"] == proc_comm(alive.pid).decode("latin-1") and
              la["holder_uid"] == os.geteuid() and la["holder_cgroup"] == cgroup,
              f"JSON holder {la}")
        for k in ("gamma", "bravo"):
            lk = leases[k]
            check(all(lk[x] is None for x in ("holder_command", "holder_uid", "holder_user",
                                              "holder_cgroup", "holder_unit",
                                              "holder_user_unit")), f"JSON {k}: {lk}")
        if inuser is not None:
            ld = leases["delta"]
            check(ld["holder_unit"] == "user@4242.service" and
                  ld["holder_user_unit"] == f"shmltest-{os.getpid()}.service", f"JSON {ld}")
            inuser.stdin.close()
            inuser.wait(timeout=5)

        alive.stdin.close()
        alive.wait(timeout=5)

        # A command name with a space, a backslash and a control byte (the
        # name of the file executed): escaped in the text, exact in JSON.
        d = tempfile.mkdtemp(prefix="shmlease-comm.")
        DIRS.append(d)
        odd = b"job \\ x\x01"
        os.symlink(os.path.abspath(c.helper), os.path.join(d.encode(), odd))
        h = c.spawn([os.path.join(d.encode(), odd), b"hold", t.encode(), b"odd".hex().encode(),
                     b"30000", b""], stdin=subprocess.PIPE)
        check(json.loads(h.stdout.readline())["rc"] == "OK", "hold through the odd name")
        check(proc_comm(h.pid) == odd, f"comm {proc_comm(h.pid)!r}")
        p = c.dump("-r", "-n", "-o", "KEY,COMMAND", "-s", t)
        row = [l for l in p.stdout.decode().splitlines() if l.startswith("odd ")]
        check(row == ["odd job\\x20\\\\\\x20x\\x01"], f"escaped COMMAND {row}\n{show(p)}")
        check(c.lease_json(t, "odd")["holder_command"] == odd.decode("latin-1"), "JSON command")
        h.stdin.close()
        h.wait(timeout=5)

        # '?' where the holder cannot be read: another PID namespace, and a
        # /proc that hides other users' processes (hidepid), seen by nobody.
        if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("setpriv"):
            print("note: not root, or no unshare/setpriv: the '?' cases are skipped")
            return
        ro = c.table("hidden")
        check(c.tool("create", ro, "--capacity", "16", "--mode", "0644").returncode == 0, "create")
        hid, _ = c.hold(ro, "hidden-key")
        ns = c.spawn(["unshare", "--pid", "--fork", "--kill-child", c.helper, "hold", ro,
                      b"in-ns".hex(), "30000", ""], stdin=subprocess.PIPE)
        if not ns.stdout.readline():
            print("note: unshare --pid refused here: the other-namespace case is skipped")
        else:
            p = c.dump("-r", "-n", "-o", "KEY,COMMAND,USER,UNIT,STATE", "--key", "in-ns", ro)
            check(p.stdout.decode() == "in-ns ? ? ? alive\n",
                  f"holder of another PID namespace: nothing read from our /proc\n{show(p)}")
        sh = ('mount -t proc -o hidepid=invisible proc /proc || exit 99\n'
              'exec setpriv --reuid=65534 --regid=65534 --clear-groups "$@"')
        p = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", sh, "sh",
                            c.dump_bin, "-r", "-n", "-o", "KEY,COMMAND,USER,STATE", "--key",
                            "hidden-key", ro], capture_output=True, timeout=20)
        if p.returncode == 99:
            print(f"note: cannot mount a proc with hidepid here: {show(p)}")
        else:
            check(p.returncode == 0 and p.stdout == b"hidden-key ? ? alive\n",
                  f"a hidden holder, seen by nobody\n{show(p)}")
        hid.stdin.close()
        hid.wait(timeout=5)
    finally:
        for g in (cg, ucg):
            if g is not None:
                g.cleanup()


def test_dump2_raw(c):
    """-r: one line per lease, cells split by exactly one space, spaces and
    backslashes inside cells escaped, headings once across tables (-n: none);
    TABLE column; -J is --json; --output-all; -H lists the columns."""
    t1, t2 = c.table("raw1"), c.table("raw2")
    for t in (t1, t2):
        check(c.tool("create", t, "--capacity", "16").returncode == 0, "create")
    key = b"a key\\with \x01 bytes"
    meta = b"meta with  two spaces"
    h1, tok1 = c.hold(t1, key, 30000, meta)
    h2, tok2 = c.hold(t2, "plain", 30000, b"")
    cols = ["TABLE", "KEY", "TOKEN", "PID", "COMMAND", "METADATA", "WAITERS"]
    p = c.dump("-r", "-o", ",".join(cols), t1, t2)
    check(p.returncode == 0, show(p))
    lines = p.stdout.decode().split("\n")
    check(lines[-1] == "" and lines[0] == " ".join(cols), f"raw headings\n{show(p)}")
    body = [l.split(" ") for l in lines[1:-1]]
    check(len(body) == 2 and all(len(r) == len(cols) for r in body),
          f"raw rows must split into {len(cols)} cells\n{show(p)}")
    r1, r2 = ({k: v for k, v in zip(cols, r)} for r in body)
    check(r1["TABLE"] == t1 and unescape(r1["KEY"]) == key and r1["TOKEN"] == str(tok1) and
          r1["PID"] == str(h1.pid) and unescape(r1["METADATA"]) == meta and
          unescape(r1["COMMAND"]) == proc_comm(h1.pid), f"raw row {r1}")
    check(r2["TABLE"] == t2 and r2["KEY"] == "plain" and r2["METADATA"] == "",
          f"raw row with empty metadata {r2}")
    check(b"table:" not in p.stdout and b"dead:" not in p.stdout, "raw printed a summary")
    p = c.dump("-r", "-n", "-o", "key", t1, t2)
    check(p.stdout.decode().split("\n") == [escape(key).replace(" ", "\\x20"), "plain", ""],
          f"raw -n\n{show(p)}")
    # --list -r: one table per line, split by one space.
    p = c.dump("--list", "-r")
    lines = p.stdout.decode().splitlines()
    n = len(lines[0].split(" "))
    mine = [l.split(" ") for l in lines[1:] if l.split(" ")[0] in (t1, t2)]
    check(len(mine) == 2 and all(len(r) == n for r in mine), f"list -r\n{show(p)}")

    # -J is --json.
    p = c.dump("-J", t1)
    doc = json.loads(p.stdout)
    check(doc["tables"][0]["leases"][0]["fencing_token"] == tok1, f"-J\n{show(p)}")
    # --output-all: every column -H lists, in that order.
    p = c.dump("-H")
    names = [l.split()[0] for l in p.stdout.decode().splitlines()]
    check(p.returncode == 0 and {"COMMAND", "USER", "CGROUP", "UNIT", "UUNIT", "TABLE"} <= set(names),
          f"-H\n{show(p)}")
    p = c.dump("--output-all", "-r", t2)
    check(p.stdout.decode().splitlines()[0].split(" ") == names, f"--output-all\n{show(p)}")
    # Outputs exclude each other.
    for args in (("-r", "-J"), ("--prometheus", "-r"), ("--prometheus", "--list")):
        p = c.dump(*args, t1)
        check(p.returncode == 64, f"{args}: usage error expected\n{show(p)}")
    h1.stdin.close()
    h2.stdin.close()
    h1.wait(timeout=5)
    h2.wait(timeout=5)


# ---- tests: --prometheus -------------------------------------------------------

def metrics(c, *args, expect=0):
    p = c.dump("--prometheus", *args)
    check(p.returncode == expect, f"--prometheus {args}: exit {expect} expected\n{show(p)}")
    return parse_prometheus(p.stdout.decode()), p


def test_dump2_prometheus(c):
    """The metrics parse, carry each table's counters, and move with real
    acquires, contention, waits, dead holders; per-key series with --key;
    every table with no NAME, an unusable one as shmlease_up 0."""
    t = c.table("prom")
    check(c.tool("create", t, "--capacity", "64").returncode == 0, "create")
    fams, _ = metrics(c, t)
    st = c.helper_json("stats", t)
    for name, key in (("acquisitions", "acquisitions"), ("contended", "contended"),
                      ("waits", "waits"), ("busy", "busy"), ("timeouts", "timeouts"),
                      ("expirations", "expirations"), ("reclaimed_dead", "reclaimed_dead"),
                      ("renewals", "renewals"), ("lost", "lost"), ("broken", "broken"),
                      ("recoveries", "recoveries")):
        check(fams[f"shmlease_{name}_total"]["type"] == "counter" and
              sample(fams, f"shmlease_{name}_total", table=t) == st[key],
              f"shmlease_{name}_total vs the library's {key}={st[key]}")
    check(sample(fams, "shmlease_up", table=t) == 1, "shmlease_up")
    check(sample(fams, "shmlease_capacity_keys", table=t) == 64, "capacity")
    check(sample(fams, "shmlease_held_leases", table=t) == 0, "held")
    a0 = sample(fams, "shmlease_acquisitions_total", table=t)

    # Three real runs: three acquisitions.
    for _ in range(3):
        p = c.tool("run", "-t", t, "job", "--", "true")
        check(p.returncode == 0, f"run: {show(p)}")
    fams, _ = metrics(c, t)
    check(sample(fams, "shmlease_acquisitions_total", table=t) == a0 + 3,
          f"acquisitions after 3 runs: {sample(fams, 'shmlease_acquisitions_total', table=t)} "
          f"vs {a0} + 3")

    # Held by a live process; a refused try (busy, contended); a waiter.
    holder, tok = c.hold(t, "job", 120000, b"held")
    p = c.tool("run", "-n", "-t", t, "job", "--", "true")
    check(p.returncode == 1, f"run -n on a held key: {show(p)}")
    waiter = c.spawn([c.shmlease, "run", "-w", "60", "-t", t, "job", "--", "true"])
    c.wait_until("the waiter to sleep on job",
                 lambda: sample(metrics(c, t)[0], "shmlease_waiters", table=t) == 1, timeout=20)
    fams, _ = metrics(c, t, "--key", "job")
    check(sample(fams, "shmlease_busy_total", table=t) == 1 and
          sample(fams, "shmlease_contended_total", table=t) >= 2,
          f"busy/contended after a refused try and a waiter: "
          f"{sample(fams, 'shmlease_busy_total', table=t)}, "
          f"{sample(fams, 'shmlease_contended_total', table=t)}")
    check(sample(fams, "shmlease_held_leases", table=t) == 1 and
          sample(fams, "shmlease_leases", table=t, state="alive") == 1, "held gauges")
    check(sample(fams, "shmlease_lease_held", table=t, key="job") == 1 and
          sample(fams, "shmlease_lease_waiters", table=t, key="job") == 1 and
          sample(fams, "shmlease_lease_fencing_token", table=t, key="job") == tok and
          sample(fams, "shmlease_lease_state", table=t, key="job", state="alive") == 1 and
          sample(fams, "shmlease_lease_state", table=t, key="job", state="dead") == 0 and
          60 < sample(fams, "shmlease_lease_remaining_seconds", table=t, key="job") <= 120,
          f"per-key series: {[(n, f['samples']) for n, f in fams.items() if 'lease_' in n]}")
    holder.stdin.close()
    holder.wait(timeout=5)
    out, err = c.communicate(waiter, 20)
    check(waiter.returncode == 0, f"waiter: {out!r} {err!r}")
    fams, _ = metrics(c, t, "--key", "job")
    check(sample(fams, "shmlease_waits_total", table=t) >= 1, "waits_total after a wait")
    check(sample(fams, "shmlease_lease_held", table=t, key="job") == 0 and
          sample(fams, "shmlease_lease_waiters", table=t, key="job") is None,
          "a free key: held 0 and no other per-key series")
    check(sample(fams, "shmlease_waiters", table=t) == 0, "no waiter left")

    # A SIGKILLed holder: a dead lease; then a key with a quote and a
    # backslash, as a label.
    victim, _ = c.hold(t, 'q"uo\\te', 60000)
    victim.kill()
    victim.wait()
    fams, p = metrics(c, t, "--key", 'q"uo\\te')
    check(sample(fams, "shmlease_leases", table=t, state="dead") == 1, "dead gauge")
    check(sample(fams, "shmlease_lease_held", table=t, key='q"uo\\\\te') == 1,
          f"escaped key label\n{p.stdout.decode()}")
    check(b'key="q\\"uo\\\\\\\\te"' in p.stdout, f"label escaping\n{p.stdout.decode()}")

    # No NAME: every table; a corrupt one is shmlease_up 0, exit 0.
    bad = c.table("promcorrupt")
    with open(SHM + bad, "wb") as f:
        f.write(b"\x00garbage\xff" * 500)
    fams, _ = metrics(c)
    check(sample(fams, "shmlease_up", table=t) == 1 and sample(fams, "shmlease_up", table=bad) == 0,
          f"no NAME: shmlease_up {fams['shmlease_up']['samples']}")
    check(sample(fams, "shmlease_acquisitions_total", table=bad) is None,
          "an unusable table has no counters")
    # Named, the corrupt table is an error (exit 2), the metrics still printed.
    fams, p = metrics(c, t, bad, expect=2)
    check(sample(fams, "shmlease_up", table=bad) == 0 and b"EPROTO" in p.stderr, show(p))


def test_dump2_prometheus_file(c):
    """--prometheus=FILE replaces FILE atomically: a reader never sees a
    partial file while --watch rewrites it; the mode follows the umask; no
    temporary file is left; a directory that cannot be written leaves the
    old file and exits 2."""
    t = c.table("promfile")
    check(c.tool("create", t, "--capacity", "256", "--mode", "0644").returncode == 0, "create")
    holders = [c.hold(t, f"key-{i}", 60000)[0] for i in range(40)]
    d = tempfile.mkdtemp(prefix="shmlease-prom.")
    DIRS.append(d)
    path = os.path.join(d, "shmlease.prom")
    p = subprocess.run([c.dump_bin, f"--prometheus={path}", t], capture_output=True,
                       timeout=20, preexec_fn=lambda: os.umask(0o022))
    check(p.returncode == 0 and p.stdout == b"", f"--prometheus=FILE\n{show(p)}")
    check(os.stat(path).st_mode & 0o777 == 0o644, f"mode {oct(os.stat(path).st_mode)}")
    with open(path) as f:
        fams = parse_prometheus(f.read())
    check(sample(fams, "shmlease_held_leases", table=t) == 40, "held in the file")
    ino = os.stat(path).st_ino

    # A writer every 10 ms, a reader as fast as it can: every read complete.
    w = c.spawn([c.dump_bin, "--watch", "0.01", f"--prometheus={path}", t])
    reads, inodes, end = 0, set(), time.monotonic() + 3
    while time.monotonic() < end or len(inodes) < 5:
        check(time.monotonic() < end + 30, "the file was not replaced 5 times in 30 s")
        with open(path) as f:
            inodes.add(os.fstat(f.fileno()).st_ino)
            text = f.read()
        fams = parse_prometheus(text)          # fails on a partial file
        check(sample(fams, "shmlease_held_leases", table=t) == 40, f"read {reads}: {text[-200:]}")
        reads += 1
    w.terminate()
    c.communicate(w, 10)
    check(w.returncode == 0, f"--watch --prometheus=FILE ended with {w.returncode}")
    left = [f for f in os.listdir(d) if f != "shmlease.prom"]
    check(left == [], f"temporary files left: {left}")

    # A directory it may not write: exit 2, a message, the old file intact.
    if os.geteuid() == 0:
        os.chmod(d, 0o755)
        before = open(path).read()
        p = subprocess.run([c.dump_bin, f"--prometheus={path}", t], capture_output=True,
                           timeout=20, preexec_fn=test_tools.as_nobody)
        check(p.returncode == 2 and b"cannot create a temporary file" in p.stderr and
              b"Permission denied" in p.stderr, f"unwritable directory\n{show(p)}")
        check(open(path).read() == before, "the old file changed")
    p = c.dump(f"--prometheus={d}/missing-dir/x.prom", t)
    check(p.returncode == 2 and b"No such file or directory" in p.stderr, show(p))
    for h in holders:
        h.stdin.close()
    for h in holders:
        h.wait(timeout=5)


# ---- tests: shmlease doctor ---------------------------------------------------

def doctor(c, *args, user=None, timeout=60, expect=None):
    """Runs `shmlease doctor ARGS` (as USER, a (uid, gid) pair): (exit, lines
    as (level, text) pairs, the whole text)."""
    pre = None
    if user is not None:
        def pre():
            os.setgroups([])
            os.setgid(user[1])
            os.setuid(user[0])
    p = subprocess.run([c.shmlease, "doctor", *args], capture_output=True, timeout=timeout,
                       preexec_fn=pre)
    text = p.stdout.decode()
    lines = [(m.group(1), m.group(2)) for m in
             re.finditer(r"^  (OK  |INFO|WARN|FAIL)  (.*)$", text, re.M)]
    if expect is not None:
        check(p.returncode == expect, f"doctor {args}: exit {expect} expected\n{show(p)}")
    check(re.search(r"^\d+ failures?, \d+ warnings?\.$", text, re.M),
          f"doctor {args}: no summary line\n{show(p)}")
    return p.returncode, [(lv.strip(), tx) for lv, tx in lines], text


def section(lines_text, name):
    """The finding lines of one section ("host:" or "table NAME:")."""
    out, on = [], False
    for line in lines_text.splitlines():
        if not line.startswith("  "):
            on = line == name
            continue
        if on:
            m = re.match(r"^  (OK  |INFO|WARN|FAIL)  (.*)$", line)
            if m:
                out.append((m.group(1).strip(), m.group(2)))
    return out


def has(lines, level, pattern):
    return any(lv == level and re.search(pattern, tx) for lv, tx in lines)


class Users:
    """Users made for a test with useradd, removed with userdel at the end."""
    def __init__(self):
        self.names = []

    def add(self, name, system=False):
        if os.geteuid() != 0 or not shutil.which("useradd"):
            raise Skip("needs root and useradd to make users")
        subprocess.run(["userdel", name], capture_output=True)
        p = subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin"] +
                           (["--system"] if system else []) + [name], capture_output=True)
        if p.returncode != 0:
            raise Skip(f"useradd {name} failed: {p.stderr.decode().strip()}")
        self.names.append(name)
        import pwd
        pw = pwd.getpwnam(name)
        return pw.pw_uid, pw.pw_gid

    def cleanup(self):
        for n in self.names:
            subprocess.run(["userdel", n], capture_output=True)


def as_user(uid_gid):
    def pre():
        os.setgroups([])
        os.setgid(uid_gid[1])
        os.setuid(uid_gid[0])
    return pre


def test_doctor_shm(c):
    """A tiny /dev/shm in a private mount namespace: FAIL (no room for a
    table, with the free space), WARN (not PID 1's /dev/shm); a small one:
    WARN nearly full, exit 0; then a table made there checks OK."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        raise Skip("needs root and unshare(1) for a private mount namespace")
    script = ("mount -t tmpfs -o size={size} tmpfs /dev/shm || exit 99\n"
              "exec \"$@\"")
    def in_ns(size, *args):
        p = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                            script.format(size=size), "sh", c.shmlease, *args],
                           capture_output=True, timeout=60)
        if p.returncode == 99:
            raise Skip(f"cannot mount a tmpfs here: {show(p)}")
        return p
    p = in_ns("1m", "doctor")
    text = p.stdout.decode()
    host = section(text, "host:")
    check(p.returncode == 1, f"a full /dev/shm must fail\n{show(p)}")
    check(has(host, "FAIL", r"/dev/shm is full or too small: 1\.0MiB free of 1\.0MiB.*ENOSPC"),
          f"no FAIL for the full /dev/shm\n{text}")
    check(has(host, "WARN", r"sees another /dev/shm .* than PID 1"),
          f"no WARN for a /dev/shm not shared with PID 1\n{text}")
    check(not any(f.startswith("shmlease.doctor-probe") for f in os.listdir("/dev/shm")),
          "the probe table leaked into the real /dev/shm")

    # 5 MiB: a table fits (about 1.8 MiB), not four: WARN only, exit 0.
    p = in_ns("5m", "doctor")
    text = p.stdout.decode()
    host = section(text, "host:")
    check(has(host, "WARN", r"/dev/shm is nearly full: .* free of 5\.0MiB, room for [0-3] more"),
          f"no WARN for a nearly full /dev/shm\n{text}")
    check(not has(host, "FAIL", "."), f"a small /dev/shm is no failure\n{text}")
    sh = ("mount -t tmpfs -o size=64m tmpfs /dev/shm || exit 99\n"
          '"$1" create ns-table --capacity 16 >/dev/null && exec "$1" doctor ns-table')
    p = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", sh, "sh",
                        c.shmlease], capture_output=True, timeout=60)
    t = section(p.stdout.decode(), "table ns-table:")
    check(has(t, "OK", r"format \d+, capacity 16 keys") and
          has(t, "OK", r"a read-write attach works") and not has(t, "FAIL", "."),
          f"a good table in the namespace\n{show(p)}")


def write_root(root, files):
    for rel, text in files.items():
        path = os.path.join(root, rel.lstrip("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)


def test_doctor_logind(c):
    """RemoveIPC= read as logind reads it (main file, drop-ins in name order,
    /etc over /usr/lib, the last assignment wins, a bad value ignored) from
    a root given with --root; a regular user's table is WARNed about, a
    system user's, root's and a lingering user's are not; the regular user
    running doctor is told about their own tables."""
    users = Users()
    try:
        reg = users.add(f"shmlr{os.getpid() % 100000}")
        sysu = users.add(f"shmls{os.getpid() % 100000}", system=True)
        import pwd
        rname, sname = pwd.getpwuid(reg[0]).pw_name, pwd.getpwuid(sys_uid := sysu[0]).pw_name
        tr, ts = c.table("logind-reg"), c.table("logind-sys")
        for t, u in ((tr, reg), (ts, sysu)):
            p = subprocess.run([c.shmlease, "create", t], capture_output=True, timeout=20,
                               preexec_fn=as_user(u))
            check(p.returncode == 0 and os.stat(SHM + t).st_uid == u[0], f"create as {u}: {show(p)}")
        root = tempfile.mkdtemp(prefix="shmlease-root.")
        DIRS.append(root)
        os.chmod(root, 0o755)          # the regular user reads it too

        # No systemd here: nothing to say but that.
        _, lines, text = doctor(c, "--root", root, tr, expect=0)
        check(has(section(text, "host:"), "OK", r"systemd is not running here") and
              not has(lines, "WARN", "RemoveIPC"), f"no systemd\n{text}")

        # systemd, logind.conf with the line commented out: the default, yes.
        write_root(root, {"/run/systemd/system/.keep": "",
                          "/etc/systemd/logind.conf": "[Login]\n#RemoveIPC=yes\n"})
        _, lines, text = doctor(c, "--root", root, tr, ts, expect=0)
        host = section(text, "host:")
        check(has(host, "OK", r"RemoveIPC=yes \(logind's default.*you \(root, uid 0\) are a "
                              r"system user.*exempt"), f"root is exempt\n{text}")
        check(has(section(text, f"table {tr}:"), "WARN",
                  rf"belongs to {rname} \(uid {reg[0]}\), a regular user: systemd-logind "
                  rf"deletes it when {rname}'s last login session ends"),
              f"no WARN for a regular user's table\n{text}")
        check(not has(section(text, f"table {ts}:"), "WARN", "logind"),
              f"a system user's ({sname}, uid {sys_uid}) table is exempt\n{text}")

        # The regular user runs it: told about their own tables.
        _, lines, text = doctor(c, "--root", root, tr, user=reg, expect=0)
        check(has(section(text, "host:"), "WARN",
                  rf"the tables you \({rname}, uid {reg[0]}\) create are deleted when your "
                  r"last login session ends.*loginctl enable-linger"),
              f"the user is not warned\n{text}")

        # Lingering: exempt.
        write_root(root, {f"/var/lib/systemd/linger/{rname}": ""})
        _, lines, text = doctor(c, "--root", root, tr, user=reg, expect=0)
        check(has(lines, "OK", rf"lingering is enabled for {rname}") and
              not has(lines, "WARN", "RemoveIPC"), f"lingering\n{text}")
        os.unlink(os.path.join(root, f"var/lib/systemd/linger/{rname}"))

        # A drop-in says no.
        write_root(root, {"/etc/systemd/logind.conf.d/50-shm.conf":
                          "# keep shared memory\n[Login]\nRemoveIPC = no\n"})
        _, lines, text = doctor(c, "--root", root, tr, expect=0)
        check(has(lines, "OK", r"RemoveIPC=no \(set in /etc/systemd/logind\.conf\.d/50-shm\.conf:3\)")
              and not has(lines, "WARN", "logind"), f"drop-in RemoveIPC=no\n{text}")

        # A vendor drop-in later in name order says yes: it wins...
        write_root(root, {"/usr/lib/systemd/logind.conf.d/60-vendor.conf":
                          "[Login]\nRemoveIPC=yes\n"})
        _, lines, text = doctor(c, "--root", root, tr, expect=0)
        check(has(lines, "OK", r"RemoveIPC=yes \(set in /usr/lib/systemd/logind\.conf\.d/60-vendor\.conf:2\)")
              and has(lines, "WARN", "systemd-logind deletes it"), f"later drop-in wins\n{text}")
        # ... unless /etc has a file of the same name, which replaces it.
        write_root(root, {"/etc/systemd/logind.conf.d/60-vendor.conf":
                          "[Login]\nRemoveIPC=maybe\n"})
        _, lines, text = doctor(c, "--root", root, tr, expect=0)
        check(has(lines, "WARN", r"60-vendor\.conf:2: RemoveIPC=maybe is not a boolean") and
              has(lines, "OK", r"RemoveIPC=no \(set in /etc/systemd/logind\.conf\.d/50-shm\.conf:3\)"),
              f"/etc overrides /usr/lib; a bad value is ignored\n{text}")
        # A RemoveIPC= outside [Login] is not logind's.
        write_root(root, {"/etc/systemd/logind.conf.d/60-vendor.conf":
                          "[Other]\nRemoveIPC=yes\n"})
        _, lines, text = doctor(c, "--root", root, tr, expect=0)
        check(has(lines, "OK", r"RemoveIPC=no"), f"[Other] section\n{text}")

        p = subprocess.run([c.shmlease, "doctor", "--root", "/nonexistent/dir"], capture_output=True)
        check(p.returncode == 64 and b"not a directory" in p.stderr, show(p))
    finally:
        users.cleanup()


def test_doctor_tables(c):
    """Each table problem that can be made here: another format version,
    another program's file, all zeros, truncated, lock file missing or with
    the wrong mode, world-writable, no access for the caller, read-only for
    the caller, another time namespace, holders dead or in another PID
    namespace; the exit status says whether anything failed."""
    good = c.table("good")
    check(c.tool("create", good, "--capacity", "16").returncode == 0, "create")
    code, lines, text = doctor(c, good, expect=0)
    t = section(text, f"table {good}:")
    check(has(t, "OK", r"owner root, group root, mode 0600") and
          has(t, "OK", r"made in this time namespace and boot") and
          has(t, "OK", r"format \d+, capacity 16 keys: 0 held") and
          has(t, "OK", r"a read-write attach works"), f"a good table\n{text}")
    with open(SHM + good, "rb") as f:
        head = f.read(16)
    fmt = head[15]

    # Another format version: the magic, and the format word's version byte.
    other = c.table("format")
    with open(SHM + other, "wb") as f:
        f.write(head[:15] + bytes([fmt - 1]) + b"\0" * 8176)
    code, lines, text = doctor(c, other, expect=1)
    check(has(section(text, f"table {other}:"), "FAIL",
              rf"a shmlease table of format {fmt - 1}, and this library reads format {fmt}: "
              r"made by an older version"), f"other format\n{text}")
    # Another program's file, and one of zeros.
    junk, zeros = c.table("junk"), c.table("zeros")
    with open(SHM + junk, "wb") as f:
        f.write(b"\x7fELF" + b"x" * 4000)
    with open(SHM + zeros, "wb") as f:
        f.write(b"\0" * 65536)
    code, lines, text = doctor(c, junk, zeros, expect=1)
    check(has(section(text, f"table {junk}:"), "FAIL", r"another program's file") and
          has(section(text, f"table {zeros}:"), "FAIL", r"its header is all zero"),
          f"foreign files\n{text}")

    # Truncated by one byte.
    trunc = c.table("trunc")
    check(c.tool("create", trunc, "--capacity", "16").returncode == 0, "create")
    size = os.stat(SHM + trunc).st_size
    os.truncate(SHM + trunc, size - 1)
    code, lines, text = doctor(c, trunc, expect=1)
    check(has(section(text, f"table {trunc}:"), "FAIL",
              rf"truncated: {size - 1} bytes of the {size}"), f"truncated\n{text}")

    # The lock file: missing; then with a mode that shuts out the group.
    nolk, lkmode = c.table("nolock"), c.table("lockmode")
    check(c.tool("create", nolk, "--capacity", "16").returncode == 0, "create")
    os.unlink(LK + nolk)
    check(c.tool("create", lkmode, "--capacity", "16", "--mode", "0660").returncode == 0, "create")
    os.chmod(LK + lkmode, 0o600)
    code, lines, text = doctor(c, nolk, lkmode, expect=1)
    check(has(section(text, f"table {nolk}:"), "FAIL", r"its lock file .* is missing"),
          f"missing lock file\n{text}")
    check(has(section(text, f"table {lkmode}:"), "FAIL",
              r"its lock file has mode 0600 where the segment has 0660.*chmod 0660"),
          f"lock file mode\n{text}")

    # Replaced (another inode), and owned by another user than the segment.
    repl = c.table("lockrepl")
    check(c.tool("create", repl, "--capacity", "16").returncode == 0, "create")
    os.unlink(LK + repl)
    open(LK + repl, "w").close()
    os.chmod(LK + repl, 0o600)
    code, lines, text = doctor(c, repl, expect=1)
    check(has(section(text, f"table {repl}:"), "FAIL",
              r"its lock file .* is not the one it was made with"), f"replaced lock file\n{text}")
    lkown = c.table("lockowner")
    check(c.tool("create", lkown, "--capacity", "16").returncode == 0, "create")
    os.chown(LK + lkown, 65534, -1)
    code, lines, text = doctor(c, lkown, expect=1)
    check(has(section(text, f"table {lkown}:"), "FAIL",
              r"its lock file belongs to nobody:root and the segment to root:root"),
          f"lock file owner\n{text}")

    # The header, patched: the other byte order; not initialised; made
    # during another boot (the bytes of docs/file-format.md, section 2.1).
    def patched(tag, off, data):
        t = c.table(tag)
        check(c.tool("create", t, "--capacity", "16").returncode == 0, "create")
        with open(SHM + t, "r+b") as f:
            f.seek(off)
            f.write(data)
        return t
    swapped = patched("swapped", 0, head[:8][::-1])
    uninit = patched("uninit", 136, b"\0\0\0\0")
    boot = patched("boot", 96, bytes(16 * [0x5a]))
    code, lines, text = doctor(c, swapped, uninit, boot, expect=1)
    check(has(section(text, f"table {swapped}:"), "FAIL", r"of the other byte order"),
          f"swapped magic\n{text}")
    check(has(section(text, f"table {uninit}:"), "WARN", r"not initialised"),
          f"not initialised\n{text}")
    check(has(section(text, f"table {boot}:"), "FAIL", r"made during another boot"),
          f"another boot\n{text}")

    # A full table: every key in use.
    full = c.table("full")
    check(c.tool("create", full, "--capacity", "1").returncode == 0, "create")
    fh, _ = c.hold(full, "only")
    code, lines, text = doctor(c, full, expect=0)
    check(has(section(text, f"table {full}:"), "WARN", r"full: its 1 key is in use"),
          f"full table\n{text}")
    fh.stdin.close()
    fh.wait(timeout=5)

    # World-writable: a warning, and no failure.
    ww = c.table("world")
    check(c.tool("create", ww, "--capacity", "16", "--mode", "0666").returncode == 0, "create")
    code, lines, text = doctor(c, ww, expect=0)
    check(has(section(text, f"table {ww}:"), "WARN", r"any user of this host may write it"),
          f"world-writable\n{text}")

    # Another time namespace (a monotonic clock 100000 s ahead).
    tns = c.table("timens")
    p = subprocess.run(["unshare", "--time", "--fork", "--monotonic", "100000", c.shmlease,
                        "create", tns, "--capacity", "16"], capture_output=True, timeout=20)
    if p.returncode != 0:
        print(f"note: no time namespace here ({p.stderr.decode().strip()}): that case is skipped")
    else:
        code, lines, text = doctor(c, tns, expect=1)
        t = section(text, f"table {tns}:")
        check(has(t, "FAIL", r"made in another time namespace") and
              has(t, "FAIL", r"a read-write attach fails \(EXDEV\)"), f"time namespace\n{text}")
        # The doctor itself in another time namespace than PID 1, where
        # PID 1's namespace can be read (it takes the right to trace PID 1).
        p = subprocess.run(["unshare", "--time", "--fork", "--monotonic", "100000", c.shmlease,
                            "doctor", tns], capture_output=True, timeout=60)
        host = section(p.stdout.decode(), "host:")
        try:
            os.stat("/proc/1/ns/time")
            check(has(host, "WARN", r"another time namespace than PID 1"), show(p))
            p = subprocess.run(["unshare", "--pid", "--fork", c.shmlease, "doctor", tns],
                               capture_output=True, timeout=60)
            check(has(section(p.stdout.decode(), "host:"), "WARN",
                      r"another PID namespace than the /proc it sees"), show(p))
        except PermissionError:
            print("note: PID 1's time namespace cannot be read here: the host-level "
                  "time-namespace case is skipped")

    # Holders: a dead one (OK, free at once) and one of another PID namespace.
    hold = c.table("holders")
    check(c.tool("create", hold, "--capacity", "16").returncode == 0, "create")
    victim, _ = c.hold(hold, "gone")
    victim.kill()
    victim.wait()
    ns = None
    if shutil.which("unshare"):
        ns = c.spawn(["unshare", "--pid", "--fork", "--kill-child", c.helper, "hold", hold,
                      b"in-ns".hex(), "30000", ""], stdin=subprocess.PIPE)
        line = ns.stdout.readline()
        ns = ns if line else None
    code, lines, text = doctor(c, hold)
    t = section(text, f"table {hold}:")
    check(has(t, "OK", r"1 lease held by exited processes: free for the next acquirer"),
          f"dead holder\n{text}")
    if ns is not None:
        check(has(t, "WARN", r"1 lease is held by processes of another PID namespace \(key in-ns"),
              f"other PID namespace\n{text}")
        ns.kill()
        ns.wait()

    # Other users: no access at all (FAIL), read-only (WARN).
    users = Users()
    try:
        u = users.add(f"shmlt{os.getpid() % 100000}")
        ro = c.table("readonly")
        check(c.tool("create", ro, "--capacity", "16", "--mode", "0644").returncode == 0, "create")
        code, lines, text = doctor(c, good, ro, user=u, expect=1)
        check(has(section(text, f"table {good}:"), "FAIL",
                  r"you \(shmlt\d+\) may not read it \(owner root, group root, mode 0600\)"),
              f"no access\n{text}")
        check(has(section(text, f"table {ro}:"), "WARN",
                  r"you \(shmlt\d+\) may inspect it but not take leases in it"),
              f"read-only\n{text}")
        # Not named, another user's private table is no failure of theirs.
        _, lines, text = doctor(c, user=u)
        check(has(section(text, f"table {good}:"), "OK", r"not shared with you"),
              f"scan as another user\n{text}")
    finally:
        users.cleanup()

    # Usage.
    p = subprocess.run([c.shmlease, "doctor", "bad/name"], capture_output=True)
    check(p.returncode == 64 and b"invalid table name" in p.stderr, show(p))
    p = subprocess.run([c.shmlease, "doctor", f"tt{os.getpid()}.absent"], capture_output=True)
    check(p.returncode == 1 and b"no such table" in p.stdout, show(p))


# ---- man pages ------------------------------------------------------------------

def rendered(c, page):
    p = c.run(["groff", "-man", "-ww", "-z", os.path.join(c.man_dir, page)])
    check(p.returncode == 0 and not p.stderr.strip(), f"groff warnings for {page}: {show(p)}")
    p = c.run(["groff", "-man", "-Tutf8", "-rLL=80n", "-P-cbou", os.path.join(c.man_dir, page)],
              env=dict(os.environ, LC_ALL="C.UTF-8"))
    text = p.stdout.decode()
    for a, b in (("\u2010", "-"), ("\u2212", "-"), ("\u2019", "'")):
        text = text.replace(a, b)
    check(all(len(l) <= 80 for l in text.splitlines()), f"{page}: lines wider than 80")
    # Words hyphenated at the end of a line, joined again.
    return re.sub(r"(\w)-\n\s+", r"\1", text)


def test_dump2_man(c):
    """The man pages name every option of shmlease-dump's and doctor's
    --help, every column -H lists and every metric --prometheus writes."""
    if not c.man_dir or not shutil.which("groff"):
        raise Skip("groff not installed")
    dump_page = rendered(c, "shmlease-dump.1")
    tool_page = rendered(c, "shmlease.1")
    flat = re.sub(r"\s+", " ", dump_page)
    help_text = c.dump("--help").stdout.decode()
    for opt in set(re.findall(r"(?<![\w-])(--[a-z][a-z-]+|-[A-Za-z])\b", help_text)):
        check(opt in flat, f"shmlease-dump.1 does not document {opt}")
    for name in (l.split()[0] for l in c.dump("-H").stdout.decode().splitlines()):
        check(re.search(rf"\b{name}\b", dump_page), f"shmlease-dump.1 lacks column {name}")
    t = c.table("man")
    check(c.tool("create", t, "--capacity", "4").returncode == 0, "create")
    h, _ = c.hold(t, "k")
    fams, _ = metrics(c, t, "--key", "k")
    for name in fams:
        check(name in flat.replace(", ", " ").replace(" ", "") or name in flat,
              f"shmlease-dump.1 lacks metric {name}")
    h.stdin.close()
    h.wait(timeout=5)
    p = c.tool("doctor", "--help")
    check(p.returncode == 0, show(p))
    flat = re.sub(r"\s+", " ", tool_page)
    for opt in set(re.findall(r"(?<![\w-])(--[a-z][a-z-]+)\b", p.stdout.decode())):
        check(opt in flat, f"shmlease.1 does not document doctor's {opt}")
    for must in ("shmlease doctor", "RemoveIPC=", "logind.conf.d", "SYS_UID_MAX",
                 "lingering", "mountinfo", "EXDEV", "INFO", "WARN", "FAIL"):
        check(must in flat, f"shmlease.1: '{must}' missing from the DOCTOR section")
    check("doctor" in c.tool("--help").stdout.decode(), "shmlease --help does not list doctor")


TESTS = {name[5:]: fn for name, fn in globals().items()
         if name.startswith("test_") and callable(fn)}


def main():
    def remove_dirs():
        for d in DIRS:
            shutil.rmtree(d, ignore_errors=True)
    return test_tools.run_tests(TESTS, after=remove_dirs)

if __name__ == "__main__":
    sys.exit(main())
