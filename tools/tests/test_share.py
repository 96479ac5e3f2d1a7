#!/usr/bin/env python3
"""Tables and users: sharing, choosing tables safely, non-tables.

Real users and groups, made here with groupadd/useradd and removed at the
end; the tools run as them (initgroups, setgid, setuid in the child). Needs
root: exits 77 (skipped) otherwise, or when useradd is missing.

    test_share.py --shmlease BIN --dump BIN --helper BIN --src DIR TEST

The examples of README.md and tools/shmlease.1 that show users at work
("alice$ command") are run as written, with the example's user, group and
table names mapped to the ones made here; their expected output is checked.
"""
import grp
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_tools  # noqa: E402  (its helpers: Ctx, check, show, ...)
from test_tools import SHM, LK, Fail, Skip, check, show  # noqa: E402


# ---- users and groups -----------------------------------------------------------

class Users:
    """Groups and users made for one test (names unique to this process),
    commands run as them, and their removal at the end."""

    def __init__(self, c):
        if os.geteuid() != 0:
            raise Skip("needs root to create users and groups (useradd, groupadd)")
        for tool in ("useradd", "userdel", "groupadd", "groupdel"):
            if shutil.which(tool) is None:
                raise Skip(f"{tool} is not installed")
        self.c = c
        self.tag = f"{os.getpid() % 100000:05d}"
        self.users, self.groups, self.procs = [], [], []
        # A directory every user may read: commands run there.
        self.cwd = tempfile.mkdtemp(prefix="shmlease-share-")
        os.chmod(self.cwd, 0o755)
        # PATH reaching the tools just built (their directories must be
        # searchable by the users made here).
        self.path = ":".join([os.path.dirname(os.path.abspath(c.shmlease)),
                              os.path.dirname(os.path.abspath(c.dump_bin)),
                              "/usr/bin", "/bin"])
        for d in (os.path.dirname(os.path.abspath(c.shmlease)), os.path.dirname(os.path.abspath(c.dump_bin))):
            p = d
            while p != "/":
                if not os.stat(p).st_mode & stat.S_IXOTH:
                    raise Skip(f"{p} is not searchable by other users: they cannot run the tools")
                p = os.path.dirname(p)

    @staticmethod
    def _admin(argv):
        """useradd and friends; another engineer's useradd may hold the
        passwd lock for a moment: try again (exit 10 is "cannot lock")."""
        for attempt in range(60):
            p = subprocess.run(argv, capture_output=True, timeout=60)
            if p.returncode == 0:
                return
            if p.returncode != 10 and b"lock" not in p.stderr:
                break
            time.sleep(0.5)
        raise Fail(f"{' '.join(argv)}: exit {p.returncode}: {p.stderr.decode(errors='replace')}")

    def group(self, role):
        name = f"shg{self.tag}{role}"[:32]
        self._admin(["groupadd", name])
        self.groups.append(name)
        return name

    def user(self, role, groups=()):
        name = f"shu{self.tag}{role}"[:32]
        argv = ["useradd", "-M", "-N", "-g", "nogroup" if self._has_group("nogroup") else "users",
                "-s", "/usr/sbin/nologin", "-d", "/nonexistent"]
        if groups:
            argv += ["-G", ",".join(groups)]
        self._admin(argv + [name])
        self.users.append(name)
        return name

    @staticmethod
    def _has_group(name):
        try:
            grp.getgrnam(name)
            return True
        except KeyError:
            return False

    def uid(self, user):
        return 0 if user == "root" else pwd.getpwnam(user).pw_uid

    def _preexec(self, user):
        if user == "root":
            return None
        pw = pwd.getpwnam(user)

        def become():
            os.initgroups(user, pw.pw_gid)
            os.setgid(pw.pw_gid)
            os.setuid(pw.pw_uid)
        return become

    def _env(self, user):
        home = "/root" if user == "root" else "/nonexistent"
        return {"PATH": self.path, "HOME": home, "USER": user, "LC_ALL": "C"}

    def sh(self, user, line, timeout=30):
        """Runs the shell line LINE as USER in self.cwd; stdout and stderr
        together, in the order written."""
        p = subprocess.Popen(["/bin/sh", "-c", line], cwd=self.cwd, env=self._env(user),
                             preexec_fn=self._preexec(user), stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            out, _ = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            where = test_tools.diagnose(p.pid)
            p.kill()
            p.communicate()
            raise Fail(f"as {user}: {line!r} did not finish in {timeout}s\n{where}")
        return subprocess.CompletedProcess(line, p.returncode, out.decode(errors="replace"), "")

    def spawn(self, user, line):
        """Starts the shell line LINE as USER, in the background."""
        p = subprocess.Popen(["/bin/sh", "-c", "exec " + line], cwd=self.cwd, env=self._env(user),
                             preexec_fn=self._preexec(user), stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.procs.append(p)
        return p

    def tool(self, user, *args, timeout=30):
        """shmlease ARGS as USER: CompletedProcess with text output."""
        p = subprocess.run([self.c.shmlease, *args], cwd=self.cwd, env=self._env(user),
                           preexec_fn=self._preexec(user), stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=timeout)
        return subprocess.CompletedProcess(args, p.returncode, p.stdout.decode(errors="replace"),
                                           p.stderr.decode(errors="replace"))

    def dump(self, user, *args, timeout=30):
        p = subprocess.run([self.c.dump_bin, *args], cwd=self.cwd, env=self._env(user),
                           preexec_fn=self._preexec(user), stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=timeout)
        return subprocess.CompletedProcess(args, p.returncode, p.stdout.decode(errors="replace"),
                                           p.stderr.decode(errors="replace"))

    def cleanup(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            if p.stdout is not None:
                p.stdout.close()
        for u in self.users:
            # The users' default tables, made on first use.
            try:
                uid = pwd.getpwnam(u).pw_uid
                self.c.unlink(f"user-{uid}")
            except KeyError:
                pass
        for u in self.users:
            subprocess.run(["userdel", u], capture_output=True, timeout=60)
        for g in self.groups:
            subprocess.run(["groupdel", g], capture_output=True, timeout=60)
        shutil.rmtree(self.cwd, ignore_errors=True)


def wait_held(c, table, key, timeout=20.0):
    """Waits until KEY is held in TABLE (shmlease-dump --key, as root)."""
    c.wait_until(f"{key} held in {table}",
                 lambda: subprocess.run([c.dump_bin, "--key", key, table], capture_output=True,
                                        timeout=20).returncode == 0,
                 timeout=timeout, step=0.05)


def expect(p, code, what, err=None):
    check(p.returncode == code, f"{what}: exit {p.returncode}, expected {code}\n"
                                f"stdout: {p.stdout}\nstderr: {p.stderr}")
    if err is not None:
        for e in ([err] if isinstance(err, str) else err):
            check(e in p.stderr, f"{what}: {e!r} missing from the message:\n{p.stderr}")


# ---- the examples of the README and the man page, run as written -----------------

PROMPT = re.compile(r"^(\w+)([$#])\s+(.*)$")


def example_steps(lines):
    """[(user, command, [expected output lines])] from an example whose
    commands begin with a prompt ("alice$ ", "root# ")."""
    steps = []
    for line in lines:
        m = PROMPT.match(line)
        if m:
            steps.append((m.group(1), m.group(3).rstrip(), []))
        elif steps and line.strip():
            steps[-1][2].append(line.rstrip())
    return steps


def readme_example(src):
    text = open(os.path.join(src, "README.md")).read()
    m = re.search(r"<!-- The two-user example[^>]*-->\s*```console\n(.*?)```", text, re.S)
    check(m, "README.md: the two-user example (marked, in a console block) is missing")
    return m.group(1).splitlines()


def man_examples(src):
    """The .EX blocks of tools/shmlease.1, unescaped, as lists of lines."""
    text = open(os.path.join(src, "tools", "shmlease.1")).read()
    blocks = re.findall(r"^\.EX\n(.*?)^\.EE", text, re.S | re.M)
    out = []
    for b in blocks:
        b = b.replace("\\-", "-").replace("\\(dq", '"').replace("\\e", "\\")
        out.append(b.splitlines())
    return out


def rename(text, names):
    """The example's names (alice, ops, jobs, ...) made into this test's."""
    for old, new in names.items():
        text = re.sub(rf"(?<![\w.-]){re.escape(old)}(?![\w-])", new, text)
    return text


def run_example(c, u, steps, names, strict, where):
    """Runs each step as its user; a line ending in '&' runs in the
    background, and the next step waits until its lease is held. Expected
    lines: exactly the output (STRICT), or in this order within it."""
    transcript = []
    background = []
    for user, cmd, want in steps:
        real_user = names.get(user, user)
        cmd_r, want_r = rename(cmd, names), [rename(w, names) for w in want]
        transcript.append(f"{user}$ {cmd}")
        if cmd_r.endswith("&"):
            line = cmd_r[:-1].strip()
            p = u.spawn(real_user, line)
            # "shmlease run ... -t TABLE KEY --": its lease must be held first.
            m = re.search(r"(?:-t|--table)\s+(\S+)\s+(\S+)\s+--", line)
            check(m, f"{where}: cannot tell the table and key of {line!r}")
            try:
                wait_held(c, m.group(1), m.group(2))
            except Fail:
                raise Fail(f"{where}: {line!r} as {real_user} never held its lease: "
                           f"{p.stdout.read().decode() if p.poll() is not None else 'still running'}")
            background.append(p)
            continue
        r = u.sh(real_user, cmd_r)
        got = [l for l in r.stdout.splitlines() if l.strip()]
        transcript += got
        if strict:
            check(got == want_r, f"{where}: as {real_user}: {cmd_r}\nexpected:\n" + "\n".join(want_r)
                  + "\ngot:\n" + "\n".join(got))
        else:
            flat, pos = " ".join(got), 0
            for w in want_r:
                i = flat.find(w.strip(), pos)
                check(i >= 0, f"{where}: as {real_user}: {cmd_r}\n{w!r} missing (in order) from:\n"
                              + "\n".join(got))
                pos = i + len(w.strip())
        if not want_r:
            check(r.returncode == 0, f"{where}: as {real_user}: {cmd_r}: exit {r.returncode}\n{r.stdout}")
    return background, transcript


def example_names(c, u, roles, table_tag="jobs"):
    """Users alice, bob (group ops) and carol (not in it), and table jobs."""
    ops = u.group("ops")
    names = {"ops": ops, "jobs": c.table(table_tag)}
    for role in roles:
        names[role] = u.user(role, [ops] if role != "carol" else [])
    return names


def test_share_readme(c):
    """The README's two-user example, run as written: exit codes and
    messages exactly as shown."""
    u = Users(c)
    try:
        names = example_names(c, u, ("alice", "bob", "carol"))
        steps = example_steps(readme_example(c.src))
        check(len(steps) >= 5 and {s[0] for s in steps} >= {"root", "alice", "bob", "carol"},
              f"README example: unexpected steps {steps}")
        bg, transcript = run_example(c, u, steps, names, True, "README two-user example")
        # alice's lease was in the shared table all along; bob's own table is his.
        check(all(p.poll() is None for p in bg), "alice's run ended early")
        bob_uid = u.uid(names["bob"])
        check(os.stat(SHM + f"user-{bob_uid}").st_uid == bob_uid, "bob's default table is not bob's")
        print("\n".join(transcript))
    finally:
        u.cleanup()


def test_share_man_group(c):
    """The man page's group example (create with --group, a member runs,
    root dumps and breaks), and its two-user example, run as written."""
    u = Users(c)
    try:
        blocks = [b for b in man_examples(c.src) if any(PROMPT.match(l) for l in b)]
        check(len(blocks) == 2, f"shmlease.1: expected two examples with users, found {len(blocks)}")
        group_ex, users_ex = (example_steps(b) for b in blocks)
        check("--group" in group_ex[0][1] and "break" in group_ex[-1][1],
              f"shmlease.1: the group example changed: {group_ex}")

        names = example_names(c, u, ("alice",))
        with open(os.path.join(u.cwd, "import.sh"), "w") as f:
            f.write("#!/bin/sh\necho importing\nexec sleep 600\n")
        os.chmod(os.path.join(u.cwd, "import.sh"), 0o755)
        bg, transcript = run_example(c, u, group_ex[:3], names, False, "shmlease.1 group example")
        # The files got the group before the mode; the member's lease shows.
        for path in (SHM + names["jobs"], LK + names["jobs"]):
            st = os.stat(path)
            check(st.st_gid == grp.getgrnam(names["ops"]).gr_gid and st.st_mode & 0o777 == 0o660,
                  f"{path}: group {st.st_gid}, mode {st.st_mode & 0o777:o}")
        d = u.sh("root", rename("shmlease-dump jobs", names))
        check(d.returncode == 0 and "import" in d.stdout and "alive" in d.stdout, f"dump: {d.stdout}")
        # root breaks the member's lease: her run ends with 75 (lost).
        r = u.sh("root", rename(group_ex[3][1], names))
        transcript += [f"root# {group_ex[3][1]}", r.stdout.strip()]
        check(r.returncode == 0 and "broke import" in r.stdout, f"break: {r.stdout}")
        alice_run = bg[0]
        try:
            alice_run.wait(timeout=30)
        except subprocess.TimeoutExpired:
            raise Fail("alice's run did not end after its lease was broken")
        out = alice_run.stdout.read().decode()
        check(alice_run.returncode == 75 and "lost" in out, f"alice's run: exit {alice_run.returncode}\n{out}")
        transcript.append(f"(alice's run: exit {alice_run.returncode})")

        # The second example: the README's, as the man page shows it.
        u2 = Users(c)
        try:
            u2.tag = u.tag + "b"
            names2 = example_names(c, u2, ("alice", "bob", "carol"), "jobs2")
            run_example(c, u2, users_ex, names2, False, "shmlease.1 two-user example")
        finally:
            u2.cleanup()
        print("\n".join(transcript))
    finally:
        u.cleanup()


# ---- per-user default tables -------------------------------------------------------

def test_share_default_tables(c):
    """Two users' default tables never collide: each has its own, made on
    first use, 0600; a name squatted by another user is refused (never
    used, --share or not)."""
    u = Users(c)
    try:
        alice, bob = u.user("alice"), u.user("bob")
        ua, ub = u.uid(alice), u.uid(bob)
        for who in (alice, bob):
            c.unlink(f"user-{u.uid(who)}")
        # alice holds "report" in her default table ...
        a = u.spawn(alice, f"{c.shmlease} run --ttl 60 report -- sleep 600")
        wait_held(c, f"user-{ua}", "report")
        # ... and bob runs his own "report" at the same time: no collision.
        r = u.tool(bob, "run", "-n", "report", "--", "sh", "-c", 'echo "$SHMLEASE_TABLE"')
        expect(r, 0, "bob's report while alice holds hers")
        check(r.stdout.strip() == f"user-{ub}", f"bob's table: {r.stdout!r}")
        for who, uid in ((alice, ua), (bob, ub)):
            for path in (SHM + f"user-{uid}", LK + f"user-{uid}"):
                st = os.stat(path)
                check(st.st_uid == uid and st.st_mode & 0o777 == 0o600,
                      f"{path}: owner {st.st_uid} mode {st.st_mode & 0o777:o}, expected {uid} 0600")
        # alice's own second run conflicts with herself (-n: exit 1), as before.
        r = u.tool(alice, "run", "-n", "report", "--", "true")
        expect(r, 1, "alice's second report")
        # break without -t: one's own table only.
        r = u.tool(bob, "break", "report")
        expect(r, 1, "bob breaks 'report' in his table (not held there)", "not held")
        check(a.poll() is None, "bob's break reached alice's lease")

        # bob squats the default table name of a third user, carol, before
        # carol's first use: carol's run refuses it, with or without --share.
        carol = u.user("carol")
        uc = u.uid(carol)
        c.unlink(f"user-{uc}")
        r = u.tool(bob, "create", f"user-{uc}", "--mode", "0666")
        expect(r, 0, "bob creates carol's default name")
        for extra in ((), ("--share",)):
            r = u.tool(carol, "run", *extra, "-n", "k", "--", "true")
            expect(r, 69, f"carol's run {extra} on a squatted default table",
                   [f"your default table 'user-{uc}' belongs to {bob} (mode 0666, group ",
                    "someone else made a table under the name of yours"])
            check("--share to use" not in r.stderr, "suggests --share for a squatted default table")
        print(f"alice (uid {ua}) -> user-{ua}; bob (uid {ub}) -> user-{ub}; carol refused bob's "
              f"user-{uc}:\n{r.stderr.strip()}")
    finally:
        u.cleanup()


# ---- --share, refused or allowed by mode and group -----------------------------------

def test_share_modes(c):
    """--share: refused without it whatever the mode; with it, the mode and
    the group decide; the messages name owner, mode, group and reason.
    create --group; break --share."""
    u = Users(c)
    try:
        ops = u.group("ops")
        alice, bob = u.user("alice", [ops]), u.user("bob", [ops])
        carol = u.user("carol")
        t660, t640, t600, t666 = (c.table(x) for x in ("m660", "m640", "m600", "m666"))
        expect(u.tool("root", "create", t660, "--group", ops), 0, "create --group (0660 default)")
        expect(u.tool("root", "create", t640, "--mode", "0640", "--group", ops), 0, "create 0640")
        expect(u.tool("root", "create", t600), 0, "create 0600")
        expect(u.tool("root", "create", t666, "--mode", "0666"), 0, "create 0666")
        gid = grp.getgrnam(ops).gr_gid
        for path in (SHM + t660, LK + t660):
            st = os.stat(path)
            check(st.st_gid == gid and st.st_mode & 0o777 == 0o660 and st.st_uid == 0,
                  f"{path}: uid {st.st_uid} gid {st.st_gid} mode {st.st_mode & 0o777:o}")
        check(os.stat(LK + t640).st_mode & 0o777 == 0o600, "a 0640 table's lock file is 0600")

        run = ("run", "-n", "k", "--", "true")
        expect(u.tool(alice, "run", "-t", t660, *run[1:]), 69, "member without --share",
               [f"table '{t660}' belongs to root (mode 0660, group {ops})",
                "pass --share to use another user's table", "EPERM"])
        expect(u.tool(alice, "run", "--share", "-t", t660, *run[1:]), 0, "member with --share")
        expect(u.tool(carol, "run", "--share", "-t", t660, *run[1:]), 69, "stranger with --share",
               [f"you are not in group {ops}", "EACCES"])
        expect(u.tool(carol, "run", "-t", t660, *run[1:]), 69, "stranger without --share",
               ["it is not yours, and --share would not help", f"you are not in group {ops}"])
        expect(u.tool(alice, "run", "--share", "-t", t640, *run[1:]), 69, "member, 0640",
               [f"mode 0640 gives group {ops} read only", "EACCES"])
        expect(u.dump(alice, t640), 0, "member reads the 0640 table (no --share needed)")
        expect(u.tool(alice, "run", "--share", "-t", t600, *run[1:]), 69, "member, 0600",
               ["mode 0600 lets only root read and write it", "EACCES"])
        expect(u.dump(carol, t600), 2, "stranger's dump of a 0600 table",
               [f"table '{t600}' belongs to root (mode 0600): you may not read it"])
        expect(u.tool(carol, "run", "--share", "-t", t666, *run[1:]), 0, "stranger, 0666, --share")
        expect(u.tool(carol, "run", "-t", t666, *run[1:]), 69, "stranger, 0666, no --share",
               ["pass --share"])
        # root is no exception
        expect(u.tool("root", "run", "-t", t666, *run[1:]), 0, "root, its own 0666 table")
        squat = c.table("carols")
        expect(u.tool(carol, "create", squat, "--mode", "0666"), 0, "carol's table")
        expect(u.tool("root", "run", "-t", squat, *run[1:]), 69, "root on carol's table",
               [f"belongs to {carol} (mode 0666, group ", "pass --share"])
        expect(u.tool("root", "run", "--share", "-t", squat, *run[1:]), 0, "root, --share")

        # break --share: bob (a member) ends alice's lease in the group table.
        a = u.spawn(alice, f"{c.shmlease} run --share -t {t660} --ttl 60 job -- sleep 600")
        wait_held(c, t660, "job")
        expect(u.tool(bob, "break", "-t", t660, "job"), 69, "break without --share", ["pass --share"])
        r = u.tool(bob, "break", "--share", "-t", t660, "job")
        expect(r, 0, "break --share by a member")
        a.wait(timeout=30)
        check(a.returncode == 75, f"alice's run after the break: exit {a.returncode}")

        # create --group: a member may, a stranger may not; a mode without
        # group bits or an unknown group is a usage error; nothing is left.
        mine = c.table("alices")
        expect(u.tool(alice, "create", mine, "--group", ops), 0, "a member creates with --group")
        st = os.stat(SHM + mine)
        check(st.st_uid == u.uid(alice) and st.st_gid == gid and st.st_mode & 0o777 == 0o660,
              f"alice's group table: {st}")
        expect(u.tool(bob, "run", "--share", "-t", mine, *run[1:]), 0, "bob uses alice's group table")
        no = c.table("nogroup")
        expect(u.tool(carol, "create", no, "--group", ops), 69, "a stranger's --group",
               [f"you ({carol}) are not in group {ops}"])
        expect(u.tool(alice, "create", no, "--mode", "0600", "--group", ops), 64, "--group with 0600",
               ["gives that group nothing"])
        expect(u.tool(alice, "create", no, "--group", "no-such-group-x"), 64, "unknown group",
               ["no such group"])
        check(not os.path.exists(SHM + no) and not os.path.exists(LK + no), "a refused create left files")
        # unlink of another user's table by a non-root user
        expect(u.tool(bob, "unlink", mine), 69, "bob unlinks alice's table",
               [f"belongs to {alice}", f"only {alice} or root may remove it"])
        check(os.path.exists(SHM + mine), "bob removed alice's table")
        print(u.tool(carol, "run", "--share", "-t", t660, *run[1:]).stderr.strip())
    finally:
        u.cleanup()


# ---- a table named explicitly must exist ------------------------------------------------

def test_share_typo(c):
    """'shmlease run -t 5s mytable mykey -- sleep 2' (a TTL meant): an error
    that says so, no table made; --create makes a named table."""
    u = Users(c)
    try:
        alice = u.user("alice")
        typo = next((d for d in ("5s", "6s", "7s", "8s", "9s") if not os.path.lexists(SHM + d)), None)
        if typo is None:
            raise Skip("tables 5s..9s all exist on this host")
        c.files += [SHM + typo, LK + typo]
        r = u.tool(alice, "run", "-t", typo, "mytable", "mykey", "--", "sleep", "2")
        expect(r, 69, "the typo", [f"no such table '{typo}'", "looks like a duration", "--ttl", "ENOENT"])
        check(not os.path.lexists(SHM + typo) and not os.path.lexists(LK + typo), "the typo made a table")
        print(f"alice$ shmlease run -t {typo} mytable mykey -- sleep 2\n{r.stderr.strip()}\n(exit {r.returncode})")
        named = c.table("named")
        expect(u.tool(alice, "run", "-t", named, "k", "--", "true"), 69, "a missing named table",
               [f"no such table '{named}'", "pass --create"])
        expect(u.tool(alice, "break", "-t", named, "k"), 1, "break, missing table", "no such table")
        check(not os.path.lexists(SHM + named), "a refused run made the table")
        r = u.tool(alice, "run", "--create", "-t", named, "k", "--", "sh", "-c", 'echo "$SHMLEASE_TABLE"')
        expect(r, 0, "run --create")
        st = os.stat(SHM + named)
        check(r.stdout.strip() == named and st.st_uid == u.uid(alice) and st.st_mode & 0o777 == 0o600,
              f"run --create made {st}")
        expect(u.tool(alice, "run", "-t", named, "k", "--", "true"), 0, "it exists now")
    finally:
        u.cleanup()


# ---- things that are not tables ------------------------------------------------------

def test_share_unlink_dir(c):
    """unlink of a directory, a FIFO or a text file: a clear error, nothing
    removed (never 'unknown error code (E?)')."""
    d, f, txt = c.table("dir"), c.table("fifo"), c.table("text")
    os.mkdir(SHM + d)
    os.mkfifo(SHM + f)
    with open(SHM + txt, "w") as fh:
        fh.write("not a table\n")
    for name, what, rm in ((d, "is a directory", "rmdir"), (f, "is a FIFO", "rm"),
                           (txt, "without the shmlease magic", "rm")):
        p = c.tool("unlink", name)
        err = p.stderr.decode()
        check(p.returncode == 69 and what in err and "not a shmlease table" in err and
              "nothing was removed" in err and f"{rm} {SHM}{name}" in err and "E?" not in err,
              f"unlink {what}: {show(p)}")
        check(os.path.lexists(SHM + name), f"unlink removed {name}")
        if name == d:
            print(f"$ shmlease unlink {name}\n{err.strip()}\n(exit {p.returncode})")
    check(stat.S_ISDIR(os.lstat(SHM + d).st_mode), "the directory changed")
    # run and break on them: refused the same way, nothing made
    p = c.tool("break", "-t", d, "k")
    check(p.returncode == 69 and b"is a directory" in p.stderr, f"break on a directory: {show(p)}")
    check(not os.path.lexists(LK + d), "break left a lock file beside a directory")
    p = c.tool("create", d)
    check(p.returncode == 1 and b"is a directory, not a shmlease table" in p.stderr,
          f"create over a directory: {show(p)}")


def test_share_empty_files(c):
    """An empty or zero-filled file under a table's name is never adopted:
    run, run --create, break and unlink refuse it with a message that says
    what it is, and change nothing; a table whose creator really died
    mid-initialisation (its record in the lock file) is still rebuilt."""
    empty, zeros, withlk = c.table("empty"), c.table("zeros"), c.table("emptylk")
    open(SHM + empty, "wb").close()
    with open(SHM + zeros, "wb") as fh:
        fh.write(bytes(1 << 20))
    open(SHM + withlk, "wb").close()
    open(LK + withlk, "wb").close()          # a lock file without the creator's record
    for name, what in ((empty, "is an empty file"), (zeros, f"is a file of {1 << 20} zero bytes"),
                       (withlk, "is an empty file")):
        before = open(SHM + name, "rb").read()
        lk_before = os.path.exists(LK + name)
        for args, code in ((("break", "-t", name, "k"), 69), (("run", "-t", name, "k", "--", "true"), 69),
                           (("run", "--create", "-t", name, "k", "--", "true"), 69),
                           (("unlink", name), 69)):
            p = c.tool(*args)
            err = p.stderr.decode()
            check(p.returncode == code and what in err and "not a shmlease table" in err,
                  f"{args} on a file that {what}: {show(p)}")
            check(open(SHM + name, "rb").read() == before, f"{args} changed the file that {what}")
            check(os.path.exists(LK + name) == lk_before, f"{args} made or removed a lock file")
            if name == empty and args[0] == "break":
                print(f"$ shmlease break -t {name} k\n{err.strip()}\n(exit {p.returncode})")
        p = c.dump(name)
        check(p.returncode == 2 and what.encode() in p.stderr, f"dump of a file that {what}: {show(p)}")
    # A creator killed right after sizing the segment (fault point) leaves a
    # zero file and its record: the next run builds the table in it.
    dead = c.table("deadcreator")
    env = dict(os.environ, SHMLEASE_FAULT="init.after_fallocate:kill")
    p = subprocess.run([c.helper, "hold", dead, b"k".hex(), "1000", ""], env=env, capture_output=True,
                       timeout=30, stdin=subprocess.DEVNULL)
    if p.returncode != -signal.SIGKILL:
        print(f"(the helper has no fault points here: {p.returncode}; dead-creator case not run)")
        return
    check(os.path.getsize(LK + dead) == 1, "the dead creator's record")
    check(not any(open(SHM + dead, "rb").read()), "the dead creator's segment is not all zero")
    p = c.tool("run", "-t", dead, "k", "--", "true")
    check(p.returncode == 0, f"run after a creator died mid-initialisation: {show(p)}")
    check(os.path.getsize(LK + dead) == 0, "the record was not cleared")


TESTS = {name[5:]: fn for name, fn in globals().items() if name.startswith("test_share_")}


def main():
    def configure(c, args):
        c.src = args.src
    return test_tools.run_tests(
        TESTS, configure=configure,
        add_args=lambda ap: ap.add_argument("--src", required=True,
                                            help="the project's source directory"))

if __name__ == "__main__":
    sys.exit(main())
