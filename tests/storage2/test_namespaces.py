"""Namespaces against Dovecot: the same config gives the same NAMESPACE and LIST answers."""

from __future__ import annotations

import imaplib
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from cote.config import load
from cote.storage import InvalidName, MailboxNotFound
from cote.storage.namespaces import Namespaces
from tests.storage2.conftest import as_vmail, message
from tests.support.dovecot import DovecotOracle, dovecot_available
from tests.support.env import chown_tree, mail_user, remove_dir, server_dir

NAMESPACES = r"""
namespace inbox {
  inbox = yes
  separator = /
  mailbox Drafts {
    special_use = \Drafts
    auto = subscribe
  }
  mailbox Junk {
    special_use = \Junk
    auto = create
  }
  mailbox Trash {
    special_use = \Trash
  }
  mailbox Sent {
    special_use = \Sent
  }
  mailbox "Sent Messages" {
    special_use = \Sent
  }
}
namespace archive {
  prefix = Archive/
  separator = /
  location = maildir:%h/archive
}
namespace hiddenns {
  prefix = Hidden/
  separator = /
  location = maildir:%h/hidden
  hidden = yes
  list = no
}
namespace pub {
  type = public
  prefix = Public/
  separator = /
  location = maildir:%h/public
  subscriptions = no
  list = children
}
"""

CHILDREN = frozenset({"\\HasChildren", "\\HasNoChildren"})
LIST_RE = re.compile(rb'\(([^)]*)\) "(.)" (.*)')


def parse_list(lines: list[object]) -> dict[str, frozenset[str]]:
    out = {}
    for line in lines:
        if not isinstance(line, bytes):
            continue
        m = LIST_RE.match(line)
        assert m, line
        out[m.group(3).decode().strip('"')] = frozenset(m.group(1).decode().split())
    return out


@pytest.fixture(scope="module")
def ns_dovecot() -> Iterator[DovecotOracle]:
    if not dovecot_available():
        pytest.skip("Dovecot is not installed")
    dc = DovecotOracle(users={"user1": "pw"}, extra_conf=NAMESPACES,
                       mail_location="maildir:~/Maildir")
    dc.start()
    try:
        yield dc
    finally:
        dc.cleanup()


@pytest.fixture
def cote_ns(ns_dovecot: DovecotOracle) -> Iterator[Namespaces]:
    home = server_dir("ns-home")
    vm = mail_user()
    chown_tree(home, vm.pw_uid, vm.pw_gid)
    cfg = load(str(ns_dovecot.config_path))
    with as_vmail():
        ns = Namespaces.from_config(cfg, {}, user="user1", home=str(home),
                                    mail_location=f"maildir:{home}/Maildir")
        try:
            yield ns
        finally:
            ns.close()
    remove_dir(home)


def dovecot_answers(dc: DovecotOracle, m: imaplib.IMAP4) -> dict[str, object]:
    ans: dict[str, object] = {"namespace": m.namespace()[1][0]}
    for pattern in ("*", "%", "Archive/*", "Hidden/*", "Public/*"):
        ans[f"list {pattern}"] = parse_list(m.list('""', pattern)[1])
    ans["lsub"] = {k: v - CHILDREN for k, v in parse_list(m.lsub('""', "*")[1]).items()}
    return ans


def cote_answers(ns: Namespaces) -> dict[str, object]:
    personal, other, shared = ns.namespace_data()

    def group(g: list[tuple[str, str]]) -> str:
        return "(" + "".join(f'("{p}" "{s}")' for p, s in g) + ")" if g else "NIL"

    ans: dict[str, object] = {"namespace": f"{group(personal)} {group(other)} "
                                           f"{group(shared)}".encode()}
    for pattern in ("*", "%", "Archive/*", "Hidden/*", "Public/*"):
        ans[f"list {pattern}"] = {i.name: i.attributes for i in ns.list(pattern)}
    # LSUB's children attributes are the IMAP layer's business (LSUB vs LIST (SUBSCRIBED))
    ans["lsub"] = {i.name: i.attributes - {"\\Subscribed"} - CHILDREN
                   for i in ns.list("*", subscribed=True)}
    return ans


def test_namespace_and_list_like_dovecot(ns_dovecot: DovecotOracle, cote_ns: Namespaces
                                         ) -> None:
    m = imaplib.IMAP4("127.0.0.1", ns_dovecot.ports["imap"])
    m.login("user1", "pw")
    first = dovecot_answers(ns_dovecot, m)
    assert cote_answers(cote_ns) == first
    assert "Junk" in first["list *"] and "Hidden/x" not in first["list *"]  # type: ignore
    for name in ("Sent", "Archive/2020", "Archive/2020/Q1", "Hidden/x", "Public/news"):
        assert m.create(name)[0] == "OK"
        cote_ns.create(name)
    m.subscribe("Archive/2020")
    cote_ns.subscribe("Archive/2020")
    after = dovecot_answers(ns_dovecot, m)
    ours = cote_answers(cote_ns)
    for key in after:
        assert (key, ours[key]) == (key, after[key])
    m.logout()


def test_auto_create_on_open_and_name_mapping(cote_ns: Namespaces) -> None:
    assert cote_ns.exists("Drafts") and cote_ns.exists("inbox")
    with cote_ns.open("Drafts") as box:
        uid = box.append(message(100))
        assert box.name == "Drafts" and uid == 1
    assert "Drafts" in cote_ns.subscriptions()
    with cote_ns.open_for_append("Junk") as box:  # auto = create: created for a delivery too
        assert box.append(message(80)) == 1 and box.name == "Junk"
    assert cote_ns.status("Junk").messages == 1
    cote_ns.create("Archive/old")
    with cote_ns.open("Archive/old") as box:
        box.append(message(50))
    assert cote_ns.status("Archive/old").messages == 1
    ns, inner = cote_ns.find("Archive/old")
    assert ns.prefix == "Archive/" and inner == "old"
    assert os.path.isdir(Path(ns.list.loc.root) / ".old")  # type: ignore[attr-defined]
    with pytest.raises(InvalidName):
        cote_ns.open("Archive/")
    with pytest.raises(MailboxNotFound):
        cote_ns.open("Archive/INBOX")
    with pytest.raises(Exception) as e:
        cote_ns.rename("Archive/old", "Other")
    assert getattr(e.value, "code", None) == "CANNOT"
