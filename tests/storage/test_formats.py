"""Dovecot's on-disk formats as byte strings: uidlist, keywords, subscriptions, file names."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cote.storage import flags as F
from cote.storage import subscriptions as subs
from cote.storage.dotlock import Dotlock, LockTimeout, replace_file
from cote.storage.location import LocationError, parse_location
from cote.storage.maildir import filename as fn
from cote.storage.maildir import keywords as kw
from cote.storage.maildir import uidlist as ul
from cote.storage.maildir.uidvalidity import next_uidvalidity
from cote.storage.pattern import compile_pattern

# Exactly what Dovecot 2.3 wrote in the oracle run (header, then appended records).
DOVECOT_V3 = (b"3 V1795308185 N3 Gf5e00f1e993a026bd439000083ecc375\n"
              b"1 :1795308185.M502540P14804.vm,S=14,W=17\n"
              b"2 :1795308185.M506246P14804.vm,S=16,W=18\n"
              b"3 :1795308185.M508421P14804.vm,S=14,W=17\n")


def test_uidlist_v3_parses_and_round_trips_byte_exact() -> None:
    parsed = ul.parse(DOVECOT_V3)
    assert (parsed.version, parsed.uidvalidity, parsed.next_uid) == (3, 1795308185, 3)
    assert parsed.guid == "f5e00f1e993a026bd439000083ecc375"
    assert list(parsed.uids) == [1, 2, 3]
    assert parsed.bases[1] == "1795308185.M506246P14804.vm,S=16,W=18"
    # N3 with a record for UID 3 appended after it: the next UID is 4, and a rewrite says so
    assert parsed.real_next_uid == 4
    assert ul.format(parsed) == DOVECOT_V3.replace(b" N3 ", b" N4 ")


def test_uidlist_keeps_extension_fields_and_unknown_header_fields() -> None:
    data = (b"3 V42 N10 Gabcdef X7\n"
            b"5 W1234 P0000ab :base5\n"
            b"7 G0123456789abcdef0123456789abcdef :base7,S=3\n")
    parsed = ul.parse(data)
    assert parsed.header_extra == ["X7"]
    assert parsed.exts == ["W1234 P0000ab", "G0123456789abcdef0123456789abcdef"]
    assert ul.format(parsed) == data


def test_uidlist_next_uid_never_below_last_record_plus_one() -> None:
    parsed = ul.parse(b"3 V1 N2\n1 :a\n2 :b\n9 :c\n")
    assert parsed.real_next_uid == 10
    assert ul.format(parsed).startswith(b"3 V1 N10\n")
    higher = ul.parse(b"3 V1 N50\n1 :a\n")
    assert higher.real_next_uid == 50


def test_uidlist_v1_is_read() -> None:
    parsed = ul.parse(b"1 1000000 17\n3 1035478339.27041_1.host:2,S\n16 1035478340.1.host\n")
    assert (parsed.version, parsed.uidvalidity, parsed.next_uid) == (1, 1000000, 17)
    assert list(parsed.uids) == [3, 16]
    assert parsed.bases == ["1035478339.27041_1.host", "1035478340.1.host"]
    assert ul.format(parsed).startswith(b"3 V1000000 N17\n3 :1035478339.27041_1.host\n")


def test_uidlist_skips_out_of_order_and_torn_records() -> None:
    parsed = ul.parse(b"3 V5 N1\n2 :b\n1 :a\n4 :d\nxx :junk\n6 W5")
    assert list(parsed.uids) == [2, 4]


def test_uidlist_without_uidvalidity_is_an_error() -> None:
    with pytest.raises(ul.UidlistError):
        ul.parse(b"3 N5\n")
    with pytest.raises(ul.UidlistError):
        ul.parse(b"")


def test_keywords_file() -> None:
    slots = kw.parse(b"0 $Forwarded\n1 foo\n2 bar\n")
    assert slots[:4] == ["$Forwarded", "foo", "bar", None]
    assert kw.format(slots) == b"0 $Forwarded\n1 foo\n2 bar\n"
    sparse = kw.parse(b"3 later\n25 last\n30 ignored\nbroken\n")
    assert sparse[3] == "later" and sparse[25] == "last" and sparse.count(None) == 24
    assert kw.format(sparse) == b"3 later\n25 last\n"
    assert kw.letter(0) == "a" and kw.letter(25) == "z" and kw.index_of_letter("c") == 2


def test_subscriptions_v2_with_tab_escaping() -> None:
    # what Dovecot wrote for INBOX and A.B.C in the oracle run
    assert subs.parse(b"V\t2\n\nINBOX\nA\tB\tC\n", ".") == [("INBOX",), ("A", "B", "C")]
    names = [("INBOX",), ("we\tird", "x\x01y"), ("new\nline",)]
    data = subs.format(names)
    assert data == b"V\t2\n\nINBOX\nwe\x01tird\tx\x011y\nnew\x01nline\n"
    assert subs.parse(data, ".") == names


def test_subscriptions_v1_is_read() -> None:
    assert subs.parse(b"INBOX\nWork.Projects\nWork.Projects\n", ".") == [
        ("INBOX",), ("Work", "Projects")]
    assert subs.parse(b"a/b\n", "/") == [("a", "b")]


def test_filenames_flags_and_sizes() -> None:
    name = "1795308185.M506246P14804.vm,S=16,W=18:2,FSab"
    base, letters = fn.split(name)
    assert base == "1795308185.M506246P14804.vm,S=16,W=18" and letters == "FSab"
    assert fn.sizes(base) == (16, 18)
    bits, keyword_letters, other = fn.parse_flags("DFRSTabzX")
    assert bits == F.DRAFT | F.FLAGGED | F.ANSWERED | F.SEEN | F.DELETED
    assert keyword_letters == "abz" and other == "X"
    # ASCII order (uppercase first), unknown letters preserved
    assert fn.format_flags(F.SEEN | F.FLAGGED, "ba", "X") == "FSXab"
    assert fn.split("1.M2P3.host") == ("1.M2P3.host", None)
    assert fn.sizes("1.M2P3.host") == (None, None)
    assert fn.base_of("x:2,S") == "x"


def test_new_base_names_are_unique_and_well_formed() -> None:
    names = [fn.new_base() for _ in range(1000)]
    assert len(set(names)) == 1000
    secs, rest = names[0].split(".M", 1)
    assert secs.isdigit() and f"P{os.getpid()}." in rest


def test_location_parsing() -> None:
    loc = parse_location("maildir:~/Maildir:INDEX=/var/idx/u:CONTROL=~/ctl:LAYOUT=fs:"
                         "DIRNAME=mAildir:UTF-8:VOLATILEDIR=/tmp/v", home="/home/u")
    assert loc.root == "/home/u/Maildir" and loc.index == "/var/idx/u"
    assert loc.control == "/home/u/ctl" and loc.layout == "fs" and loc.dirname == "mAildir"
    assert loc.utf8 and loc.extra == {"VOLATILEDIR": "/tmp/v"}
    assert loc.index_root == "/var/idx/u"
    plain = parse_location("maildir:/srv/mail/a::b")
    assert plain.root == "/srv/mail/a:b" and plain.layout == "maildir++"
    assert plain.index_root == plain.root
    for bad in ("maildir", "sdbox:/x", "maildir:/x:LAYOUT=index", "maildir:~/M"):
        with pytest.raises(LocationError):
            parse_location(bad)


def test_list_patterns() -> None:
    star, pct = compile_pattern("*", "."), compile_pattern("Work.%", ".")
    assert star("a.b.c") and pct("Work.x") and not pct("Work.x.y") and not pct("Work")
    assert compile_pattern("inbox", ".")("INBOX")
    assert compile_pattern("Inbox.%", ".")("INBOX.sub")
    assert not compile_pattern("inbox", ".")("inbox2")


def test_uidvalidity_file_and_markers(tmp_path: Path) -> None:
    first = next_uidvalidity(str(tmp_path))
    assert abs(first - time.time()) < 5
    second = next_uidvalidity(str(tmp_path))
    assert second == first + 1
    assert (tmp_path / "dovecot-uidvalidity").read_bytes() == f"{second:08x}".encode()
    markers = [p.name for p in tmp_path.iterdir() if p.name.startswith("dovecot-uidvalidity.")]
    assert markers == [f"dovecot-uidvalidity.{second:08x}"]
    (tmp_path / "dovecot-uidvalidity").write_bytes(b"garbage!")
    assert next_uidvalidity(str(tmp_path)) == second + 1  # rescanned from the marker


def test_dotlock_holds_pid_and_host_and_excludes(tmp_path: Path) -> None:
    target = str(tmp_path / "dovecot-uidlist")
    with Dotlock(target):
        content = Path(target + ".lock").read_text()
        assert content == f"{os.getpid()}:{os.uname().nodename}"
        with pytest.raises(LockTimeout):
            Dotlock(target, timeout=0.05).acquire()
    assert not os.path.exists(target + ".lock")


def test_dotlock_of_a_dead_process_is_stale_at_once(tmp_path: Path) -> None:
    target = str(tmp_path / "dovecot-uidlist")
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)
    Path(target + ".lock").write_text(f"{child.stdout.strip()}:{os.uname().nodename}")
    t0 = time.monotonic()
    with Dotlock(target, timeout=5):
        assert time.monotonic() - t0 < 1


def test_dotlock_older_than_stale_timeout_is_overridden(tmp_path: Path) -> None:
    target = str(tmp_path / "dovecot-uidlist")
    lock = Path(target + ".lock")
    lock.write_text("3 V1 N1\n")  # a content lock: no pid to check
    with pytest.raises(LockTimeout):
        Dotlock(target, timeout=0.05).acquire()
    old = time.time() - 121
    os.utime(lock, (old, old))
    with Dotlock(target, timeout=1):
        pass


def test_replace_file_goes_through_the_lock(tmp_path: Path) -> None:
    target = tmp_path / "subscriptions"
    target.write_bytes(b"old")
    replace_file(str(target), b"V\t2\n\nINBOX\n")
    assert target.read_bytes() == b"V\t2\n\nINBOX\n"
    assert not (tmp_path / "subscriptions.lock").exists()
