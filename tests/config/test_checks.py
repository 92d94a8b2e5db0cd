"""Whole-config value checks (word lists, facilities, formats) accept and reject what doveconf
does: one-line configs, good and bad values, compared on exit status and error text."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.config.conftest import coteconf, doveconf

CASES = [
    "imap_client_workarounds = delay-newmail tb-extra-mailbox-sep tb-lsub-flags",
    "imap_client_workarounds = Delay-Newmail,tb-lsub-flags",
    "imap_client_workarounds = delay-newmail tb-idle-bug",
    "pop3_client_workarounds = outlook-no-nuls oe-ns-eoh",
    "pop3_client_workarounds = outlook-no-nulls",
    "lmtp_client_workarounds = whitespace-before-path mailbox-for-path",
    "submission_client_workarounds = implicit-auth-external",
    "submission_client_workarounds = implicit-auth",
    "managesieve_client_workarounds = anything",
    "ssl_options = no_compression No_Ticket",
    "ssl_options = no_sslv2",
    "imapc_features = RFC822.SIZE fetch-headers throttle:1:2:3 modseq",
    "imapc_features = condstore",
    "pop3c_features = No-Pipelining",
    "dsync_features = empty-header-workaround",
    "dsync_features = no-header-hashes",
    "mail_attachment_detection_options = add-flags content-type=text/plain exclude-inlined",
    "mail_attachment_detection_options = Add-Flags",
    "mail_attachment_detection_options = add-flags,exclude-inlined",
    "syslog_facility = local7",
    "syslog_facility = local8",
    "pop3_uidl_format = %08Xu%08Xv",
    "pop3_uidl_format = static",
    "protocols = imap doveadm",
    "default_internal_user = root",
    "default_internal_user = cote-no-such-user",
]


@pytest.mark.parametrize("line", CASES)
def test_value_checks_like_doveconf(tree: Path, line: str) -> None:
    conf = tree / f"check-{CASES.index(line)}.conf"
    conf.write_text(line + "\n")
    dove = doveconf(tree, "-c", conf.name, "-n")
    cote = coteconf(tree, "-c", conf.name, "-n")
    assert cote.rc == dove.rc
    assert cote.fatal == dove.fatal
    assert cote.body == dove.body
