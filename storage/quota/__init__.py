"""Quota (Dovecot's quota plugin): ``maildir`` (Maildir++ ``maildirsize``) and ``count`` roots.

Use::

    quota = Quota.from_settings(cfg.plugin(), userdb_fields,
                                mail_plugins=str(cfg.get("mail_plugins")),
                                base_dir=str(cfg.get("base_dir")))
    mailboxes = open_storage(location, home=home, quota=quota)
    if quota is not None:
        quota.attach(mailboxes)            # LMTP/LDA: pass quota.for_delivery() instead
    quota.roots_for("INBOX")               # GETQUOTAROOT: ["User quota"]
    quota.resources("User quota")          # GETQUOTA: [QuotaResource("STORAGE", 3, 10), …]

Saves beyond the limit raise ``QuotaExceeded`` ("Quota exceeded (mailbox for user is full)",
code OVERQUOTA). See ``docs/storage.md``.
"""

from cote.storage.quota.policy import Quota, QuotaResource, QuotaRoot
from cote.storage.quota.rules import QuotaConfigError, RootSettings, parse_roots
from cote.storage.quota.warning import send_warning

__all__ = ["Quota", "QuotaConfigError", "QuotaResource", "QuotaRoot", "RootSettings",
           "parse_roots", "send_warning"]
