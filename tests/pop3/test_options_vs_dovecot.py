"""POP3 options that change UIDLs, sizes and locking, against Dovecot on the same Maildir.

Messages are written straight into ``new/`` with fixed file names (sizes in the name or not,
LF line ends, X-UIDL headers of every shape), so both servers see byte-identical stores. cote
runs as ``python -m cote.mailproc.pop3 -c <the oracle's dovecot.conf>``: the same settings.
Where a session changes the store (``pop3_save_uidl``), the Maildir is snapshotted and each
server runs the session on the same snapshot; the resulting ``dovecot-uidlist`` bytes must be
equal.
"""

from __future__ import annotations

import imaplib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pop3.test_service_vs_dovecot import Client
from tests.support.dovecot import DovecotOracle
from tests.support.env import chown_tree, mail_user

FILES = {
    "new/1700000000.M1P1.host,S=41": b"Subject: a\nX-UIDL:   spaced value  \n\nb\nc\n",
    "new/1700000001.M2P1.host": b"Subject: b\nX-UIDL: first\nx-uidl: second\n\nb\n",
    "new/1700000002.M3P1.host,S=36,W=41": b"Subject: c\nX-UIDL:\n folded\n\nb\n",
    "new/1700000003.M4P1.host": b"Subject: d\r\nX-Uidl: \r\n\r\nb\r\n",
    "new/1700000004.M5P1.host,S=43": b"Subject: e\nX-UIDLS: not this\n\nX-UIDL: body\n",
    "new/1700000005.M6P1.host,S=34,W=37": b"Subject: f\r\nFrom: x\r\n\r\nline\nline\n\n",
    "cur/1700000006.M7P1.host,S=17:2,S": b"Subject: g\n\nseen\n",
}
READS = ["STAT", "LIST", "LIST 1", "LIST 2", "RETR 1", "TOP 3 0", "RETR 6", "LIST"]


def make_store(extra_conf: str, files: dict[str, bytes] = FILES) -> DovecotOracle:
    dc = DovecotOracle(users={"popuser": "secret"}, extra_conf=extra_conf).start()
    md = dc.user_maildir("popuser")
    for sub in ("new", "cur", "tmp"):
        (md / sub).mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (md / name).write_bytes(data)
    vmail = mail_user()
    chown_tree(dc.dir / "mail", vmail.pw_uid, vmail.pw_gid)
    return dc


def store(extra_conf: str) -> Iterator[DovecotOracle]:
    dc = make_store(extra_conf)
    yield dc
    dc.cleanup()


def dovecot_pop3(dc: DovecotOracle) -> tuple[Client, bytes]:
    c = Client(socket.create_connection(("127.0.0.1", dc.ports["pop3"]), timeout=30))
    c.line()
    c.command("USER popuser")
    return c, c.command("PASS secret")


def cote_pop3(dc: DovecotOracle, mail: str | None = None, home: Path | None = None
              ) -> tuple[Client, bytes, subprocess.Popen[bytes]]:
    ours, theirs = socket.socketpair()
    vmail = mail_user()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cote.mailproc.pop3", "-u", "popuser",
         "-c", str(dc.config_path), "--mail", mail or f"maildir:{dc.user_maildir('popuser')}",
         *(["--home", str(home)] if home else []),
         "--uid", str(vmail.pw_uid), "--gid", str(vmail.pw_gid)],
        stdin=theirs, stdout=theirs, stderr=subprocess.PIPE)
    theirs.close()
    ours.settimeout(30)
    c = Client(ours)
    return c, c.line(), proc


def finish(proc: subprocess.Popen[bytes]) -> str:
    _, err = proc.communicate(timeout=20)
    return err.decode()


def end(theirs: Client, ours: Client, proc: subprocess.Popen[bytes]) -> str:
    theirs.close()
    ours.close()
    return finish(proc)


def snapshot(dc: DovecotOracle) -> Path:
    md = dc.user_maildir("popuser")
    copy = dc.dir / "snapshot"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(md, copy, symlinks=True)
    return copy


def restore(dc: DovecotOracle, copy: Path) -> None:
    md = dc.user_maildir("popuser")
    shutil.rmtree(md)
    shutil.copytree(copy, md, symlinks=True)
    vmail = mail_user()
    chown_tree(md, vmail.pw_uid, vmail.pw_gid)


def uidlist(dc: DovecotOracle) -> bytes:
    return (dc.user_maildir("popuser") / "dovecot-uidlist").read_bytes()


def log_line(dc: DovecotOracle, needle: str) -> str:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = [x for x in dc.log_path.read_text().splitlines() if needle in x]
        if found:
            return found[-1]
        time.sleep(0.05)
    raise AssertionError(f"Dovecot logged no {needle!r}")


def logouts(dc: DovecotOracle) -> int:
    return sum(1 for x in dc.log_path.read_text().splitlines()
               if "pop3(" in x and "Disconnected:" in x)


def wait_for_logouts(dc: DovecotOracle, count: int) -> None:
    """Until ``count`` pop3 sessions logged out and their processes are gone: Dovecot logs
    the logout before it commits the session's changes, so the log alone is too early."""
    deadline = time.monotonic() + 10
    while logouts(dc) < count:
        if time.monotonic() > deadline:
            raise AssertionError("Dovecot's pop3 did not log out")
        time.sleep(0.05)
    pids = re.findall(r"pop3-login: Info: Login: .*mpid=(\d+)", dc.log_path.read_text())
    for pid in pids:
        while time.monotonic() < deadline:
            try:
                if "State:\tZ" in Path(f"/proc/{pid}/status").read_text():
                    break
            except (FileNotFoundError, ProcessLookupError):  # gone (ESRCH while exiting)
                break
            time.sleep(0.05)


def error_lines(text: str) -> list[str]:
    return [x.split(": Error: ", 1)[1] for x in text.splitlines() if ": Error: " in x]


@pytest.fixture(scope="module")
def xuidl_store() -> Iterator[DovecotOracle]:
    yield from store("pop3_reuse_xuidl = yes\npop3_fast_size_lookups = yes\n")


@pytest.mark.oracle
def test_reuse_xuidl_and_fast_sizes_answer_like_dovecot(xuidl_store: DovecotOracle) -> None:
    ours, hello, proc = cote_pop3(xuidl_store)  # cote first: it sees the store before Dovecot
    assert hello == b"+OK Logged in.\r\n", finish(proc)
    theirs, ok = dovecot_pop3(xuidl_store)
    assert ok == b"+OK Logged in.\r\n"
    for command in ["UIDL", "UIDL 3", "UIDL 4", *READS]:
        assert ours.command(command) == theirs.command(command), command
    listing = theirs.command("LIST")
    assert b"\r\n1 41\r\n" in listing  # S= without W=: the physical size, LF line ends and all
    uidls = theirs.command("UIDL")
    assert b"\r\n1 spaced value  \r\n" in uidls and b"\r\n2 first\r\n" in uidls
    end(theirs, ours, proc)


@pytest.mark.oracle
def test_message_gone_during_the_session() -> None:
    """A file removed behind both servers' backs after login: UIDL falls back from X-UIDL to
    the format, RETR and TOP answer the same error."""
    dc = make_store("pop3_reuse_xuidl = yes\n")
    try:
        theirs, _ = dovecot_pop3(dc)
        ours, _, proc = cote_pop3(dc)
        assert ours.command("STAT") == theirs.command("STAT")
        cur = dc.user_maildir("popuser") / "cur"
        gone = [cur / n for n in os.listdir(cur) if n.startswith("1700000001.")]
        assert len(gone) == 1  # message 2, X-UIDL: first
        gone[0].unlink()
        for command in ["UIDL", "UIDL 2", "RETR 2", "TOP 2 0", "RETR 2", "LIST 2", "RETR 3"]:
            assert ours.command(command) == theirs.command(command), command
        end(theirs, ours, proc)
    finally:
        dc.cleanup()


@pytest.fixture(scope="module")
def names_store() -> Iterator[DovecotOracle]:
    yield from store("pop3_uidl_format = %f_%08Xv_%g_%u\n")


@pytest.mark.oracle
def test_file_name_and_guid_uidls_after_dovecot_saw_the_store(names_store: DovecotOracle) -> None:
    theirs, _ = dovecot_pop3(names_store)  # Dovecot first: it builds the uidlist
    their_uidls = theirs.command("UIDL")
    theirs.command("QUIT")
    theirs.close()
    wait_for_logouts(names_store, 1)  # its last uidlist write (W= sizes) is done
    assert b" 1700000002.M3P1.host,S=36,W=41_" in their_uidls
    # A GUID stored in the uidlist (as dsync writes it) wins over the file name for %g.
    path = names_store.user_maildir("popuser") / "dovecot-uidlist"
    lines = path.read_text().splitlines()
    head, _, name = lines[2].partition(" :")
    lines[2] = f"{head} G0123456789abcdef0123456789abcdef :{name}"
    path.write_text("\n".join(lines) + "\n")
    theirs, _ = dovecot_pop3(names_store)
    ours, _, proc = cote_pop3(names_store)
    for command in ["UIDL", "UIDL 2", "UIDL 7", *READS]:
        assert ours.command(command) == theirs.command(command), command
    assert b"_0123456789abcdef0123456789abcdef_2\r\n" in ours.command("UIDL")
    end(theirs, ours, proc)


@pytest.fixture(scope="module")
def md5_store() -> Iterator[DovecotOracle]:
    yield from store("pop3_uidl_format = %u-%m\n")


@pytest.mark.oracle
@pytest.mark.parametrize("command", ["UIDL", "UIDL 2"])
def test_header_md5_fails_on_maildir_as_in_dovecot(md5_store: DovecotOracle,
                                                   command: str) -> None:
    """Dovecot keeps header MD5s only for mbox: on Maildir, %m hangs up at UIDL."""
    theirs, _ = dovecot_pop3(md5_store)
    ours, _, proc = cote_pop3(md5_store)
    assert ours.command("STAT") == theirs.command("STAT")
    reply = theirs.command(command)
    assert ours.command(command) == reply
    assert reply in (b"+OK\r\n", b"")
    assert ours.line() == theirs.line() == b""  # both closed the connection
    err = finish(proc)
    theirs.close()
    ours.close()
    log_line(md5_store, "couldn't be listed")
    assert error_lines(err) == error_lines(md5_store.log_path.read_text())[-1:]
    assert "Disconnected: POP3 UIDLs couldn't be listed top=0/0" in err


@pytest.fixture(scope="module")
def save_store() -> Iterator[DovecotOracle]:
    dc = make_store("pop3_save_uidl = yes\npop3_reuse_xuidl = yes\n")
    theirs, _ = dovecot_pop3(dc)  # the uidlist exists before the snapshots
    theirs.command("QUIT")
    theirs.close()
    wait_for_logouts(dc, 1)
    yield dc
    dc.cleanup()


SAVE_SESSIONS = [
    ["UIDL 2", "UIDL 5", "QUIT"],
    ["UIDL", "RETR 1", "QUIT"],
    ["UIDL 3", "DELE 4", "UIDL", "QUIT"],
    ["UIDL", "NOOP"],  # no QUIT: nothing is saved
]


@pytest.mark.oracle
@pytest.mark.parametrize("commands", SAVE_SESSIONS, ids=lambda c: "+".join(c))
def test_save_uidl_writes_the_uidlist_dovecot_writes(save_store: DovecotOracle,
                                                     commands: list[str]) -> None:
    before = snapshot(save_store)
    done = logouts(save_store)
    theirs, _ = dovecot_pop3(save_store)
    their_replies = [theirs.command(c) for c in commands]
    theirs.close()
    wait_for_logouts(save_store, done + 1)
    their_uidlist = uidlist(save_store)
    their_files = sorted(os.listdir(save_store.user_maildir("popuser") / "cur"))
    restore(save_store, before)
    ours, _, proc = cote_pop3(save_store)
    our_replies = [ours.command(c) for c in commands]
    ours.close()
    finish(proc)
    assert our_replies == their_replies
    assert uidlist(save_store) == their_uidlist
    assert sorted(os.listdir(save_store.user_maildir("popuser") / "cur")) == their_files
    if commands[-1] == "QUIT":
        assert b" P" in their_uidlist
    restore(save_store, before)


@pytest.mark.oracle
def test_save_uidl_waits_for_the_session_end(save_store: DovecotOracle) -> None:
    """Dovecot commits an idle session's transaction every 10 s, but the P fields reach
    dovecot-uidlist only when the session ends; cote the same. Side by side on two copies."""
    before = snapshot(save_store)
    copy = save_store.dir / "mail" / "copy"
    shutil.copytree(before, copy, symlinks=True)
    vmail = mail_user()
    chown_tree(copy, vmail.pw_uid, vmail.pw_gid)
    try:
        theirs, _ = dovecot_pop3(save_store)
        ours, _, proc = cote_pop3(save_store, mail=f"maildir:{copy}")
        assert ours.command("UIDL 2") == theirs.command("UIDL 2")
        time.sleep(11.5)  # past Dovecot's 10 s commit timeout
        their_uidlist = uidlist(save_store)
        assert b" P" not in their_uidlist
        assert (copy / "dovecot-uidlist").read_bytes() == their_uidlist
        done = logouts(save_store)
        end(theirs, ours, proc)
        wait_for_logouts(save_store, done + 1)
        assert b"2 W48 Pfirst :" in uidlist(save_store)
        assert (copy / "dovecot-uidlist").read_bytes() == uidlist(save_store)
    finally:
        shutil.rmtree(copy, ignore_errors=True)
        wait_for_logouts(save_store, logouts(save_store))
        restore(save_store, before)


def reconfigure(dc: DovecotOracle, extra_conf: str) -> None:
    dc.extra_conf = extra_conf
    dc.write_config()
    dc.doveadm("reload")


@pytest.mark.oracle
def test_saved_uidls_survive_a_format_change(save_store: DovecotOracle) -> None:
    before = snapshot(save_store)
    try:
        reconfigure(save_store, "pop3_save_uidl = yes\n")
        ours, _, proc = cote_pop3(save_store)
        sent = ours.command("UIDL")
        ours.command("QUIT")
        ours.close()
        finish(proc)
        assert b" 00000007" in sent
        reconfigure(save_store, "pop3_save_uidl = yes\npop3_uidl_format = %f\n")
        done = logouts(save_store)
        theirs, _ = dovecot_pop3(save_store)
        ours, _, proc = cote_pop3(save_store)
        assert ours.command("UIDL") == theirs.command("UIDL") == sent
        theirs.close()
        wait_for_logouts(save_store, done + 1)
        ours.close()
        finish(proc)
    finally:
        reconfigure(save_store, "pop3_save_uidl = yes\npop3_reuse_xuidl = yes\n")
        restore(save_store, before)


@pytest.fixture(scope="module")
def lock_store() -> Iterator[DovecotOracle]:
    yield from store("pop3_lock_session = yes\n")


def in_thread(fn: object) -> tuple[threading.Thread, list[object]]:
    out: list[object] = []
    assert callable(fn)
    t = threading.Thread(target=lambda: out.append(fn()))
    t.start()
    return t, out


@pytest.mark.oracle
def test_lock_session_refuses_like_dovecot_both_ways(lock_store: DovecotOracle) -> None:
    """The two servers share Dovecot's lock file: each refuses while the other holds it."""
    holder, _ = dovecot_pop3(lock_store)
    lock = lock_store.user_maildir("popuser") / "dovecot-pop3-session.lock"
    assert lock.exists()
    # Both wait Dovecot's 10 s for the lock, so the two refusals run side by side.
    t1, theirs = in_thread(lambda: dovecot_pop3(lock_store))
    t2, ours = in_thread(lambda: cote_pop3(lock_store))
    t1.join(30)
    t2.join(30)
    (their_client, their_reply), = theirs  # type: ignore[misc]
    (our_client, our_reply, proc), = ours  # type: ignore[misc]
    assert their_reply == b"-ERR [IN-USE] Mailbox is locked by another POP3 session.\r\n"
    assert our_reply == their_reply
    err = finish(proc)
    their_log = log_line(lock_store, "Couldn't lock POP3 session")
    our_log = [x for x in err.splitlines() if "Disconnected:" in x][-1]
    assert our_log.split("Disconnected: ")[1] == their_log.split("Disconnected: ")[1]
    their_client.close()
    our_client.close()
    holder.command("QUIT")
    holder.close()

    ours_holder, hello, proc = cote_pop3(lock_store)
    assert hello == b"+OK Logged in.\r\n"
    assert lock.read_text() == f"{proc.pid}:{socket.gethostname()}"
    _, reply = dovecot_pop3(lock_store)
    assert reply == b"-ERR [IN-USE] Mailbox is locked by another POP3 session.\r\n"
    ours_holder.command("QUIT")
    ours_holder.close()
    finish(proc)
    assert not lock.exists()


@pytest.mark.oracle
def test_lock_is_released_when_the_session_process_is_killed(lock_store: DovecotOracle) -> None:
    ours, hello, proc = cote_pop3(lock_store)
    assert hello == b"+OK Logged in.\r\n"
    assert ours.command("STAT").startswith(b"+OK 7 ")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    lock = lock_store.user_maildir("popuser") / "dovecot-pop3-session.lock"
    assert lock.exists()  # left behind, but its process is gone: stale at once
    theirs, reply = dovecot_pop3(lock_store)
    assert reply == b"+OK Logged in.\r\n"
    theirs.command("QUIT")
    theirs.close()
    # Dovecot's session killed the same way: cote takes over at once too.
    holder, reply = dovecot_pop3(lock_store)
    assert reply == b"+OK Logged in.\r\n"
    owner = int(lock.read_text().split(":")[0])
    os.kill(owner, signal.SIGKILL)
    holder.close()
    ours, hello, proc = cote_pop3(lock_store)
    assert hello == b"+OK Logged in.\r\n"
    ours.command("QUIT")
    ours.close()
    finish(proc)


MBOX = b"".join(b"From a@b Mon Jan  1 00:00:00 2024\n" + m + b"\n" for m in [
    b"Received: from x\n\tby y; Mon, 1 Jan 2024\nDate: Mon, 1 Jan 2024\nMessage-ID: <1@x>\n"
    b"Subject: one\n\nbody\n",
    b"Date:   Tue, 2 Jan 2024  \nMessage-ID: <2@x>\nDelivered-To: u@x\n\nbody2\n",
    b"Subject: three\nX-Delivery-ID: abc\nreceived: first\nReceived: second\ndate: later\n\nb\n",
    b"Date:\tTabbed\nMessage-ID:<nospace@x>\nDelivered-To: a@x\nDelivered-To: b@x\n\nb\n",
    b"Subject: nothing hashed\n\nb\n",
    b"Received: crlf\r\n one\r\nDate: d\r\nMessage-id: <6@x>\r\n\r\nb\r\n",
    b"Date:\nMessage-ID: <7@x>\n folded\n\nb\n",
])


@pytest.fixture(scope="module")
def mbox_store() -> Iterator[DovecotOracle]:
    vmail = mail_user()
    dc = DovecotOracle(users={"popuser": "secret"},
                       mail_location="mbox:%h/mail:INBOX=%h/inbox")
    home = dc.dir / "home" / "popuser"
    (home / "mail").mkdir(parents=True)
    (home / "inbox").write_bytes(MBOX)
    chown_tree(dc.dir / "home", vmail.pw_uid, vmail.pw_gid)
    dc.start()
    yield dc
    dc.cleanup()


@pytest.mark.oracle
@pytest.mark.parametrize("fmt", ["%m", "%u-%m", "%g", "%f"])
def test_mbox_header_md5_and_guid_uidls(mbox_store: DovecotOracle, fmt: str) -> None:
    """On mbox, Dovecot's %m is its sync's header MD5 (and %g the same value); %f has no
    file name and hangs up. cote second, on the mbox Dovecot has rewritten."""
    reconfigure(mbox_store, f"pop3_uidl_format = {fmt}\n")
    home = mbox_store.dir / "home" / "popuser"
    commands = ["LIST", "UIDL"] if fmt == "%f" else ["LIST", "UIDL 3", "UIDL"]  # %f hangs up
    # One after the other: Dovecot keeps an mbox locked for a whole POP3 session.
    done = logouts(mbox_store)
    theirs, _ = dovecot_pop3(mbox_store)
    their_replies = [theirs.command(c) for c in commands]
    theirs.close()
    wait_for_logouts(mbox_store, done + 1)
    ours, hello, proc = cote_pop3(mbox_store, mail=f"mbox:{home}/mail:INBOX={home}/inbox",
                                  home=home)
    assert hello == b"+OK Logged in.\r\n"
    assert [ours.command(c) for c in commands] == their_replies
    if fmt != "%f":
        assert b"d41d8cd98f00b204e9800998ecf8427e\r\n6 " in their_replies[-1]  # 5: no hash
    ours.close()
    finish(proc)


@pytest.mark.oracle
def test_session_lock_lives_in_the_index_root() -> None:
    """With INDEX= and CONTROL= elsewhere, both servers lock in the index root (else they
    would not exclude each other)."""
    vmail = mail_user()
    dc = DovecotOracle(users={"popuser": "secret"}, extra_conf="pop3_lock_session = yes\n",
                       mail_location="maildir:%h/Maildir:INDEX=%h/idx:CONTROL=%h/ctl")
    home = dc.dir / "home" / "popuser"
    (home / "Maildir" / "cur").mkdir(parents=True)
    chown_tree(dc.dir / "home", vmail.pw_uid, vmail.pw_gid)
    dc.start()
    try:
        theirs, _ = dovecot_pop3(dc)
        their_locks = sorted(home.rglob("dovecot-pop3-session.lock"))
        theirs.command("QUIT")
        theirs.close()
        wait_for_logouts(dc, 1)
        ours, hello, proc = cote_pop3(
            dc, mail=f"maildir:{home}/Maildir:INDEX={home}/idx:CONTROL={home}/ctl", home=home)
        assert hello == b"+OK Logged in.\r\n"
        assert sorted(home.rglob("dovecot-pop3-session.lock")) == their_locks == \
            [home / "idx" / "dovecot-pop3-session.lock"]
        ours.command("QUIT")
        ours.close()
        finish(proc)
    finally:
        dc.cleanup()


DUPLICATES = {f"new/17000001{i:02d}.M{i}P1.host": b"Subject: %d\nX-UIDL: %s\n\nbody\n" % (
    i, b"same" if i in (1, 3, 4) else b"own-%d" % i) for i in range(6)}
DUPLICATES["new/1700000199.M99P1.host"] = b"Subject: no X-UIDL\n\nbody\n"
UIDL_CHANGE_SESSIONS = [
    ["STAT", "QUIT"],  # no UIDL: %u is empty
    ["UIDL 2", "RETR 3", "DELE 3", "DELE 5", "QUIT"],
    ["UIDL", "RETR 4", "RETR 2", "RSET", "QUIT"],
    ["UIDL", "LIST"],  # dropped
]


@pytest.mark.oracle
@pytest.mark.parametrize("commands", UIDL_CHANGE_SESSIONS, ids=lambda c: "+".join(c))
def test_uidl_change_and_renamed_duplicates(commands: list[str]) -> None:
    """pop3_uidl_duplicates = rename and %u (uidl_change) in the logout line: every UIDL is
    computed at the first UIDL command, duplicates get -2, -3..., and the logout line carries
    Dovecot's CRC32 hashes; saved UIDLs (all of them) end up in the same uidlist bytes."""
    dc = make_store("pop3_reuse_xuidl = yes\npop3_uidl_duplicates = rename\n"
                    "pop3_save_uidl = yes\n"
                    "pop3_logout_format = del=%d/%m, uidl=%u, long=%{uidl_change}\n",
                    files=DUPLICATES)
    try:
        primer, _ = dovecot_pop3(dc)  # the uidlist exists before the snapshot
        primer.command("QUIT")
        primer.close()
        wait_for_logouts(dc, 1)
        before = snapshot(dc)
        theirs, _ = dovecot_pop3(dc)
        their_replies = [theirs.command(c) for c in commands]
        theirs.close()
        wait_for_logouts(dc, 2)
        their_logout = log_line(dc, "Disconnected:")
        their_uidlist = uidlist(dc)
        restore(dc, before)
        ours, _, proc = cote_pop3(dc)
        our_replies = [ours.command(c) for c in commands]
        ours.close()
        err = finish(proc)
        assert our_replies == their_replies
        assert logout_text(err) == logout_text(their_logout)
        assert uidlist(dc) == their_uidlist
        if "UIDL" in commands:
            assert b" same-2\r\n" in their_replies[commands.index("UIDL")]
    finally:
        dc.cleanup()


def logout_text(log: str) -> str:
    return [x for x in log.splitlines() if "Disconnected:" in x][-1].split("Disconnected: ")[1]


def same_session_same_files(dc: DovecotOracle, commands: list[str]) -> tuple[list[bytes],
                                                                             list[str]]:
    """Run ``commands`` on Dovecot, put the store back, run them on cote: the replies and
    the names in ``cur/`` afterwards (flags included) must be the same. Returns Dovecot's."""
    before = snapshot(dc)
    theirs, _ = dovecot_pop3(dc)
    their_replies = [theirs.command(c) for c in commands]
    theirs.close()
    wait_for_logouts(dc, 1)
    their_files = sorted(os.listdir(dc.user_maildir("popuser") / "cur"))
    restore(dc, before)
    ours, _, proc = cote_pop3(dc)
    assert [ours.command(c) for c in commands] == their_replies
    ours.close()
    finish(proc)
    assert sorted(os.listdir(dc.user_maildir("popuser") / "cur")) == their_files
    return their_replies, their_files


@pytest.mark.oracle
def test_pop3_order_from_the_uidlist() -> None:
    """A migration's POP3 order (O fields in dovecot-uidlist): those messages first, by
    order, the rest after them by UID; DELE n deletes the message at that place."""
    names = [f"170000030{i}.M{i}P1.host,S=19,W=21" for i in range(5)]
    dc = make_store("", files={f"cur/{n}:2,": b"Subject: %d\n\nbody\n" % i
                               for i, n in enumerate(names)})
    try:
        orders = ["O3 ", "", "O1 ", "O2 ", ""]
        (dc.user_maildir("popuser") / "dovecot-uidlist").write_text(
            "3 V1000 N6 G0123456789abcdef0123456789abcdef\n" +
            "".join(f"{i + 1} {o}:{n}\n" for i, (n, o) in enumerate(zip(names, orders, strict=True))))
        vmail = mail_user()
        chown_tree(dc.dir / "mail", vmail.pw_uid, vmail.pw_gid)
        their_replies, their_files = same_session_same_files(
            dc, ["UIDL", "LIST", "TOP 1 0", "TOP 3 0", "RETR 5", "UIDL 2", "DELE 1", "DELE 4",
                 "QUIT"])
        assert their_replies[0].startswith(b"+OK\r\n1 00000003000003e8\r\n2 00000004")
        assert len(their_files) == 3
    finally:
        dc.cleanup()


@pytest.mark.oracle
def test_logout_line_user_variables() -> None:
    """The logout format sees the mail user's variables too; POP3's own win a clash (%u is
    uidl_change, %s the size, %p the TOP bytes, %i the input bytes)."""
    dc = make_store("pop3_logout_format = n=%n d=%d h=%h user=%{user} "
                    "service=%{service} u=%u s=%s p=%p i=%i m=%m\n")
    try:
        theirs, _ = dovecot_pop3(dc)
        ours, _, proc = cote_pop3(dc, home=dc.dir / "home" / "popuser")
        for command in ("TOP 1 0", "QUIT"):
            assert ours.command(command) == theirs.command(command)
        theirs.close()
        wait_for_logouts(dc, 1)
        ours.close()
        err = finish(proc)
        assert logout_text(err) == logout_text(log_line(dc, "Disconnected:"))
        assert f"h={dc.dir}/home/popuser user=popuser service=pop3 u= s=" in logout_text(err)
    finally:
        dc.cleanup()


@pytest.mark.oracle
def test_seen_at_quit_only_for_retr_since_the_last_rset() -> None:
    """Dovecot marks \\Seen at QUIT what RETR sent since login or the last RSET, and never
    what TOP sent, even a whole message: the same files end up renamed the same way."""
    files = {f"cur/170000040{i}.M{i}P1.host:2,": b"Subject: %d\n\nbody\n" % i
             for i in range(4)}
    dc = make_store("", files=files)
    try:
        _, names = same_session_same_files(
            dc, ["RETR 1", "TOP 2 100", "RSET", "RETR 3", "TOP 4 100", "QUIT"])
        assert [n.endswith(":2,S") for n in names] == [False, False, True, False]
    finally:
        dc.cleanup()


@pytest.mark.oracle
def test_rset_with_enable_last_clears_every_seen_at_once() -> None:
    """pop3_enable_last: RSET takes \\Seen off every message at once, kept without QUIT too;
    a RETR after it marks its message again at QUIT."""
    files = {f"cur/170000050{i}.M{i}P1.host:2,S": b"Subject: %d\n\nbody\n" % i
             for i in range(3)}
    dc = make_store("pop3_enable_last = yes\n", files=files)
    try:
        _, names = same_session_same_files(dc, ["RETR 1", "LAST", "RSET", "LAST", "RETR 3",
                                                "LAST", "QUIT"])
        assert [n.endswith(":2,S") for n in names] == [False, False, True]
        # no QUIT: the RSET is kept all the same (Dovecot renames the files later, at a sync:
        # what its IMAP shows is compared)
        before = snapshot(dc)
        flags = []
        for server in ("dovecot", "cote"):
            if server == "dovecot":
                client, _ = dovecot_pop3(dc)
                assert client.command("RSET") == b"+OK\r\n"
                client.close()
                wait_for_logouts(dc, 2)
            else:
                client, _, proc = cote_pop3(dc)
                assert client.command("RSET") == b"+OK\r\n"
                client.close()
                finish(proc)
            imap = imaplib.IMAP4("127.0.0.1", dc.ports["imap"])
            imap.login("popuser", "secret")
            imap.select("INBOX")
            flags.append(imap.fetch("1:*", "FLAGS")[1])
            imap.logout()
            restore(dc, before)
        assert flags[0] == flags[1] == [b"1 (FLAGS ())", b"2 (FLAGS ())", b"3 (FLAGS ())"]
    finally:
        dc.cleanup()
