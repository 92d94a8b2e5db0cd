"""The quota policy the storage calls on every save and expunge, and GETQUOTA(ROOT)'s data.

:class:`Quota` implements ``cote.storage.api.QuotaPolicy``: ``check`` refuses a save that
would take a quota root over its limit (Dovecot's arithmetic: the mailbox's rule, the message
limit, the grace for the last mail of a delivery), ``changed`` books the change (a
``maildirsize`` delta line, or nothing for ``count``, which sums the mailboxes) and runs the
first quota warning whose threshold the change crossed. The protocol layers read
:meth:`Quota.roots_for` (GETQUOTAROOT) and :meth:`Quota.resources` (GETQUOTA).

Backends: ``maildir`` (Maildir++ ``maildirsize`` in the mail root, physical ``S=`` sizes) and
``count`` (the sum of the mailboxes' sizes from cote's index, RFC822 sizes with
``quota_vsizes = yes``). Mailboxes with an ``ignore`` rule are neither counted nor limited.
"""

from __future__ import annotations

import logging
import os
import re
import stat
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

from cote.storage import MailboxList, MaildirList
from cote.storage.errors import QuotaExceeded, StorageError
from cote.storage.index import NAME as INDEX_NAME
from cote.storage.quota import maildirsize as mdsize
from cote.storage.quota.rules import RootSettings, merge_settings, parse_roots
from cote.storage.quota.warning import send_warning
from cote.variables import VariableError, expand

log = logging.getLogger("cote.storage")

DEFAULT_BASE_DIR = "/run/dovecot"
MAX_SIZE_MESSAGE = "Mail size is larger than the maximum size allowed by server configuration"


def wildcard_match_icase(value: str, mask: str) -> bool:
    """Dovecot's ``wildcard_match_icase``: ``*`` any run, ``?`` one character, no classes."""
    pattern = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in mask)
    return re.fullmatch(pattern, value, re.IGNORECASE | re.DOTALL) is not None


class QuotaResource(NamedTuple):
    """One GETQUOTA resource in IMAP units (``STORAGE`` in kilobytes, ``MESSAGE`` count)."""

    name: str
    usage: int
    limit: int


WarningHook = Callable[[Sequence[str]], None]


class QuotaRoot:
    """One quota root bound to a user's mailbox list: usage and bookkeeping."""

    def __init__(self, settings: RootSettings, mailboxes: MailboxList) -> None:
        self.settings = settings
        self.mailboxes = mailboxes
        self.over_flag_checked = False

    @property
    def name(self) -> str:
        return self.settings.name

    def limits(self) -> tuple[int, int]:
        return self.settings.default_limits()

    def _names(self) -> list[str]:
        return [i.name for i in self.mailboxes.list("*") if "\\Noselect" not in i.attributes
                and "\\NonExistent" not in i.attributes
                and not self.settings.is_ignored(i.name)]

    def count(self) -> tuple[int, int]:
        """Recount bytes and messages from the mailboxes themselves."""
        total = count = 0
        for name in self._names():
            with self.mailboxes.open(name, readonly=True) as box:
                if self.settings.vsizes:
                    st = box.status()
                    total += st.size
                    count += st.messages
                else:
                    for d in box.details(box.uids):
                        total += d.size
                        count += 1
        return total, count

    def usage(self) -> tuple[int, int]:
        return self.count()

    def apply(self, delta_bytes: int, delta_count: int) -> tuple[int, int]:
        """Book a change that is already on disk; returns the usage after it."""
        return self.usage()


class MaildirsizeRoot(QuotaRoot):
    """Maildir++ quota: the ``maildirsize`` file in the mail root."""

    def __init__(self, settings: RootSettings, mailboxes: MaildirList) -> None:
        super().__init__(settings, mailboxes)
        self.list = mailboxes
        self.path = f"{mailboxes.loc.root.rstrip('/')}/{mdsize.NAME}"

    def _file_limits(self, m: mdsize.Maildirsize | None) -> tuple[int, int]:
        # without any "*" rule the limits written in the file (by another tool) apply
        if self.settings.default_rule() is None and m is not None:
            return m.bytes_limit, m.count_limit
        return self.limits()

    def limits(self) -> tuple[int, int]:
        if self.settings.default_rule() is None:
            m = mdsize.read(self.path)
            if m is not None:
                return m.bytes_limit, m.count_limit
        return self.settings.default_limits()

    def _mail_dirs(self) -> list[str]:
        layout = self.list.layout
        dirs = [layout.mail_dir(("INBOX",))] if not self.settings.is_ignored("INBOX") else []
        sep = self.list.separator
        for parts, selectable in layout.scan().items():
            if selectable and parts != ("INBOX",) \
                    and not self.settings.is_ignored(sep.join(parts)):
                dirs.append(layout.mail_dir(parts))
        return dirs

    def count(self) -> tuple[int, int]:
        return mdsize.count_dirs(self._mail_dirs())

    def recalculate(self, limits: tuple[int, int]) -> tuple[int, int]:
        total = self.count()
        mdsize.write(self.path, limits[0], limits[1], total[0], total[1],
                     mode=self.list.file_mode)
        return total

    def usage(self) -> tuple[int, int]:
        m = mdsize.read(self.path)
        limits = self._file_limits(m)
        if m is None or not mdsize.trustworthy(m, *limits):
            return self.recalculate(limits)
        return m.total_bytes, m.total_count

    def apply(self, delta_bytes: int, delta_count: int) -> tuple[int, int]:
        m = mdsize.read(self.path)
        limits = self._file_limits(m)
        if m is None or not mdsize.trustworthy(m, *limits) \
                or not mdsize.append(self.path, delta_bytes, delta_count):
            return self.recalculate(limits)
        return m.total_bytes + delta_bytes, m.total_count + delta_count


class DirsizeRoot(QuotaRoot):
    """Dovecot's ``dirsize``: the sum of the sizes of every file under the mail root (and an
    mbox INBOX kept elsewhere); storage only, no message count. cote's own index files are
    left out (Dovecot's ``dovecot.index*`` in the same tree are counted, as Dovecot does)."""

    def limits(self) -> tuple[int, int]:
        return self.settings.default_limits()[0], 0

    def _paths(self) -> list[str]:
        loc = getattr(self.mailboxes, "loc", None)
        root = getattr(loc, "root", None) or getattr(self.mailboxes, "root", None)
        paths = [str(root)] if root else []
        inbox = getattr(self.mailboxes, "inbox_path", None)
        if inbox and root and not str(inbox).startswith(str(root).rstrip("/") + "/"):
            paths.append(str(inbox))
        return paths

    def count(self) -> tuple[int, int]:
        total = 0
        for path in self._paths():
            if os.path.isfile(path):
                total += os.stat(path).st_size
                continue
            for top, _dirs, files in os.walk(path):
                for f in files:
                    if f.startswith(INDEX_NAME):
                        continue
                    try:
                        st = os.lstat(os.path.join(top, f))
                    except FileNotFoundError:
                        continue  # expunged or renamed meanwhile
                    if stat.S_ISREG(st.st_mode):
                        total += st.st_size
        return total, 0


class Quota:
    """A user's quota roots (``QuotaPolicy`` for the storage; data for GETQUOTA/ROOT)."""

    def __init__(self, roots: Sequence[RootSettings], *, base_dir: str = DEFAULT_BASE_DIR,
                 delivery: bool = False, on_warning: WarningHook | None = None,
                 variables: Mapping[str, str | None] | None = None) -> None:
        self.root_settings = list(roots)
        self.base_dir = base_dir
        self.delivery = delivery
        self.variables = dict(variables) if variables is not None else None
        self.on_warning: WarningHook = on_warning or self._send
        self.roots: list[QuotaRoot] = []

    @classmethod
    def from_settings(cls, plugin: Mapping[str, str],
                      user_fields: Mapping[str, str] | None = None, *,
                      mail_plugins: str | None = None, base_dir: str = DEFAULT_BASE_DIR,
                      delivery: bool = False, on_warning: WarningHook | None = None,
                      variables: Mapping[str, str | None] | None = None) -> Quota | None:
        """The quota for a user, or None when quota is off (``mail_plugins`` without
        ``quota`` when given, or no ``quota`` root). ``plugin`` are the ``plugin { }``
        settings, ``user_fields`` the userdb's (they override). Raises QuotaConfigError."""
        if mail_plugins is not None and "quota" not in mail_plugins.split():
            return None
        roots = parse_roots(merge_settings(plugin, user_fields))
        if not roots:
            return None
        return cls(roots, base_dir=base_dir, delivery=delivery, on_warning=on_warning,
                   variables=variables)

    def attach(self, mailboxes: MailboxList) -> None:
        """Bind to the user's mailbox list (open it with ``quota=this``)."""
        self.roots = []
        for s in self.root_settings:
            if s.backend == "maildir" and isinstance(mailboxes, MaildirList):
                root = MaildirsizeRoot(s, mailboxes)
                if not os.path.exists(root.path):
                    # Dovecot writes the file when the user first logs in
                    root.recalculate(root.limits())
                self.roots.append(root)
            elif s.backend == "dirsize":
                self.roots.append(DirsizeRoot(s, mailboxes))
            else:
                self.roots.append(QuotaRoot(s, mailboxes))
        for each in self.roots:
            if not each.settings.over_flag_lazy:
                self.check_over_flag(each)

    def for_delivery(self) -> Quota:
        """The same quota with LDA/LMTP's grace for the last mail."""
        q = Quota(self.root_settings, base_dir=self.base_dir, delivery=True,
                  on_warning=self.on_warning, variables=self.variables)
        q.roots = self.roots
        return q

    @staticmethod
    def _limits(root: QuotaRoot, mailbox: str) -> tuple[int, int]:
        if root.settings.default_rule() is None and isinstance(root, MaildirsizeRoot):
            return root.limits()  # the limits written in an existing maildirsize
        limits = root.settings.limits_for(mailbox)
        return (limits[0], 0) if isinstance(root, DirsizeRoot) else limits

    # -- QuotaPolicy ----------------------------------------------------------------------
    def check(self, mailbox: str, add_bytes: int, add_count: int) -> None:
        for root in self.roots:
            s = root.settings
            if not s.enforcing or s.is_ignored(mailbox):
                continue
            if s.max_mail_size and add_count == 1 and add_bytes > s.max_mail_size:
                raise StorageError(MAX_SIZE_MESSAGE, code="LIMIT")
            b_lim, c_lim = self._limits(root, mailbox)
            if not b_lim and not c_lim:
                continue
            cur_b, cur_c = root.usage()
            if c_lim and add_count > max(c_lim - cur_c, 0):
                raise QuotaExceeded(s.exceeded_message)
            if b_lim:
                grace = s.grace_bytes() if self.delivery else 0
                ceil = b_lim - cur_b + grace if cur_b < b_lim else 0
                if add_bytes > ceil:
                    raise QuotaExceeded(s.exceeded_message)

    def is_over(self, mailbox: str = "INBOX") -> bool:
        """Whether the user is already at or over a limit for ``mailbox`` (LMTP's
        ``lmtp_rcpt_check_quota`` answers RCPT TO with it before any data is sent)."""
        for root in self.roots:
            s = root.settings
            if not s.enforcing or s.is_ignored(mailbox):
                continue
            b_lim, c_lim = self._limits(root, mailbox)
            if not b_lim and not c_lim:
                continue
            used_b, used_c = root.usage()
            if (b_lim and used_b >= b_lim) or (c_lim and used_c >= c_lim):
                return True
        return False

    def changed(self, mailbox: str, delta_bytes: int, delta_count: int) -> None:
        if not delta_bytes and not delta_count:
            return
        for root in self.roots:
            s = root.settings
            if s.is_ignored(mailbox):
                continue
            try:
                after = root.apply(delta_bytes, delta_count)
            except OSError as e:
                log.error("quota: %s: %s", root.name, e)
                continue
            before = (after[0] - delta_bytes, after[1] - delta_count)
            self._warn(root, before, after)

    # -- warnings -------------------------------------------------------------------------
    def _warn(self, root: QuotaRoot, before: tuple[int, int], after: tuple[int, int]) -> None:
        s = root.settings
        for w in s.warnings:
            b_lim, c_lim = s.warning_limits(w)
            lo, hi = (after, before) if w.reverse else (before, after)
            crossed = ((b_lim and lo[0] < b_lim <= hi[0])
                       or (c_lim and lo[1] < c_lim <= hi[1]))
            if crossed:
                self.on_warning(self._expand(w.command))
                return

    def _expand(self, command: Sequence[str]) -> list[str]:
        if self.variables is None:
            return list(command)
        out = []
        for word in command:
            try:
                out.append(expand(word, self.variables))
            except VariableError as e:  # a bad template only loses the warning
                log.error("quota: warning %r: %s", word, e)
                out.append(word)
        return out

    def _send(self, command: Sequence[str]) -> None:
        send_warning(command, self.base_dir)

    # -- quota_over_flag ------------------------------------------------------------------
    def check_over_flag(self, root: QuotaRoot) -> None:
        """Dovecot's ``quota_over_flag`` check, once per session and root: when the userdb's
        flag (matched against ``quota_over_flag_value``, a case-insensitive wildcard) says
        "over" and the usage is under every limit, or the other way round, run
        ``quota_over_script`` with the flag's value appended. Done when the namespaces are
        opened, or with ``quota_over_flag_lazy_check`` when the usage is first asked for."""
        s = root.settings
        if not s.over_script or s.over_flag_value is None or root.over_flag_checked:
            return
        root.over_flag_checked = True
        flagged = s.over_flag is not None and wildcard_match_icase(s.over_flag,
                                                                   s.over_flag_value)
        b_lim, c_lim = root.limits()
        try:
            used_b, used_c = root.usage() if b_lim or c_lim else (0, 0)
        except OSError as e:
            log.error("quota: Quota lookup failed - can't verify quota_over_flag: %s", e)
            return
        over = bool((b_lim and used_b >= b_lim) or (c_lim and used_c >= c_lim))
        if over != flagged:
            command = self._expand(s.over_script)
            self.on_warning(command + ([s.over_flag] if s.over_flag is not None else []))

    # -- GETQUOTAROOT / GETQUOTA ----------------------------------------------------------
    def _visible(self, root: QuotaRoot) -> bool:
        if "hidden" in root.settings.args:
            return False
        b, c = root.limits()
        return bool(b or c)

    def roots_for(self, mailbox: str) -> list[str]:
        """Quota root names for GETQUOTAROOT (roots without any limit are not shown)."""
        return [r.name for r in self.roots if self._visible(r)]

    def resources(self, root_name: str) -> list[QuotaResource] | None:
        """GETQUOTA data for a root (None: no such root)."""
        for r in self.roots:
            if r.name == root_name and self._visible(r):
                self.check_over_flag(r)
                b_lim, c_lim = r.limits()
                used_b, used_c = r.usage()
                out = []
                if b_lim:
                    out.append(QuotaResource("STORAGE", (used_b + 1023) // 1024,
                                             (b_lim + 1023) // 1024))
                if c_lim:
                    out.append(QuotaResource("MESSAGE", used_c, c_lim))
                return out
        return None

