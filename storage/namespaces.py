"""Namespaces: one ``MailboxList`` for the protocol code over a user's configured namespaces.

``namespace NAME { inbox, prefix, separator, type, location, list, subscriptions, hidden,
mailbox X { special_use, auto } }`` as Dovecot reads them: each namespace is one backend
:class:`~cote.storage.api.MailboxList` (its own ``location`` or ``mail_location``) and names
on the wire are ``prefix + name``. :class:`Namespaces` maps names to the namespace whose prefix
is the longest match (``INBOX`` always to the ``inbox = yes`` one), lists every namespace with
``list = yes`` (``list = no`` / ``hidden`` ones only for patterns that start with their prefix;
``list = children`` only when it has mailboxes), lists a prefix itself as a ``\\Noselect``
parent, and shows ``auto = create|subscribe`` mailboxes before they exist (created when first
opened, as Dovecot does; ``subscribe`` ones count as subscribed). NAMESPACE's data come from
:meth:`Namespaces.namespace_data` (hidden namespaces left out).

Shared namespaces whose prefix names another user (``type = shared``, ``prefix =
shared/%%u/``, ``location = maildir:%%h/Maildir``) are templates: a name under the prefix is
resolved through ``user_lookup`` (a callable the mail process passes: username -> that user's
userdb fields, ``home`` and ``mail``; None when there is no such user), the location is
expanded with the other user's variables, and that user's mailboxes are opened as a
namespace of their own for the rest of the session. The file system decides access (as
Dovecot without the acl plugin). As in Dovecot, LIST shows only the users accessed in this
session (there is no list of users to iterate without ``acl_shared_dict``).

The mail processes call :meth:`Namespaces.from_config` instead of ``open_storage``; it also
builds the user's quota (``mail_plugins = quota``) and keeps it in ``.quota``.
"""

from __future__ import annotations

import builtins
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from cote.storage import open_storage
from cote.storage.api import Mailbox, MailboxInfo, MailboxList, MailboxStatus, QuotaPolicy
from cote.storage.errors import InvalidName, MailboxNotFound, StorageError
from cote.storage.location import parse_location
from cote.storage.pattern import compile_pattern, normalize_inbox
from cote.storage.quota.policy import DEFAULT_BASE_DIR, Quota
from cote.variables import VariableError, expand, user_values

log = logging.getLogger("cote.storage")

CHILD_ATTRIBUTES = frozenset({"\\HasChildren", "\\HasNoChildren"})

#: username -> that user's userdb fields (``home``, ``mail``…), None for an unknown user
UserLookup = Callable[[str], Mapping[str, str] | None]


class NamespaceError(StorageError):
    def __init__(self, message: str) -> None:
        super().__init__(f"namespace: {message}", code="SERVERBUG")


@dataclass(frozen=True, slots=True)
class MailboxSettings:
    name: str
    special_use: str = ""
    auto: str = "no"  # no | create | subscribe


@dataclass(frozen=True, slots=True)
class NamespaceSettings:
    name: str
    type: str = "private"
    prefix: str = ""
    separator: str = ""
    inbox: bool = False
    hidden: bool = False
    list: str = "yes"  # yes | no | children
    subscriptions: bool = True
    location: str = ""
    mailboxes: tuple[MailboxSettings, ...] = ()
    disabled: bool = False
    ignore_on_failure: bool = False


class Namespace:
    """One namespace: its settings and its backend mailbox list."""

    def __init__(self, settings: NamespaceSettings, mailboxes: MailboxList) -> None:
        self.settings = settings
        self.list = mailboxes
        self.prefix = settings.prefix
        self.separator = settings.separator or mailboxes.separator
        self.auto = {m.name: m for m in settings.mailboxes if m.auto in ("create", "subscribe")}

    def vname(self, name: str) -> str:
        return self.prefix + name

    def is_auto(self, name: str) -> bool:
        return name in self.auto


class SharedTemplate:
    """A ``type = shared`` namespace whose prefix holds ``%u``: one namespace per other user,
    opened when a name under its prefix is first used."""

    def __init__(self, settings: NamespaceSettings, prefix: str, location: str,
                 open_user: Callable[[NamespaceSettings, str], MailboxList | None]) -> None:
        self.settings = settings
        self.prefix = prefix  # with %u etc. still in it: "shared/%u/"
        self.location = location
        self.separator = settings.separator or "/"
        self.static = prefix.split("%", 1)[0]  # "shared/"
        self._open_user = open_user
        self.users: dict[str, Namespace | None] = {}  # None: looked up and not found

    def user_of(self, vname: str) -> str | None:
        if not vname.startswith(self.static):
            return None
        user = vname[len(self.static):].split(self.separator, 1)[0]
        return user or None

    def namespace(self, user: str) -> Namespace | None:
        if user not in self.users:
            prefix = expand(self.prefix, {"user": user, **_user_part(user)})
            settings = replace(self.settings, prefix=prefix)
            backend = self._open_user(settings, user)
            self.users[user] = Namespace(settings, backend) if backend is not None else None
        return self.users[user]


def _user_part(user: str) -> dict[str, str | None]:
    values = user_values(user)
    return {"username": values["username"], "domain": values["domain"]}


def _shared_opener(location: str, *, home: str | None,
                   config: Callable[[str], object] | None,
                   lookup: UserLookup | None
                   ) -> Callable[[NamespaceSettings, str], MailboxList | None]:
    """How a shared template opens another user's mailboxes (None: no such user/store)."""

    def open_user(settings: NamespaceSettings, user: str) -> MailboxList | None:
        fields = lookup(user) if lookup is not None else None
        if fields is None:
            return None
        values: dict[str, str | None] = user_values(user)
        values["home"] = fields.get("home")
        try:
            expanded = expand(location, values)
            root = parse_location(expanded, home).root
            if not os.path.isdir(root):
                return None  # never create another user's store
            return open_storage(expanded, home=home, separator=settings.separator or None,
                                config=config, create_inbox=False, user=user)
        except (VariableError, StorageError, OSError) as e:
            log.warning("shared namespace %s: user %s: %s", settings.name, user, e)
            return None

    return open_user


def _bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("yes", "y", "1", "true")


def settings_from_config(cfg: object) -> list[NamespaceSettings]:
    """The ``namespace`` sections of a parsed config (``cote.config.Config``); without any,
    Dovecot's implicit ``inbox = yes`` namespace."""
    sections = getattr(cfg, "sections")("namespace")  # noqa: B009 - duck-typed Config
    out = []
    for sec in sections:
        boxes = tuple(MailboxSettings(mb.name, str(mb.get("special_use") or ""),
                                      str(mb.get("auto") or "no"))
                      for mb in sec.sections("mailbox"))
        out.append(NamespaceSettings(
            name=sec.name, type=str(sec.get("type") or "private"),
            prefix=str(sec.get("prefix") or ""), separator=str(sec.get("separator") or ""),
            inbox=_bool(sec.get("inbox")), hidden=_bool(sec.get("hidden")),
            list=str(sec.get("list") or "yes"), subscriptions=_bool(sec.get("subscriptions")),
            location=str(sec.get("location") or ""), mailboxes=boxes,
            disabled=_bool(sec.get("disabled")),
            ignore_on_failure=_bool(sec.get("ignore_on_failure"))))
    if not out:
        out.append(NamespaceSettings(name="inbox", inbox=True))
    return out


class Namespaces(MailboxList):
    """Every namespace of a user behind one ``MailboxList`` (names carry the prefixes)."""

    def __init__(self, namespaces: Sequence[Namespace],
                 shared: Sequence[SharedTemplate] = ()) -> None:
        self.namespaces = [ns for ns in namespaces if not ns.settings.disabled]
        self.shared = list(shared)
        if not self.namespaces:
            raise NamespaceError("no namespaces")
        inbox = [ns for ns in self.namespaces if ns.settings.inbox]
        if len(inbox) > 1:
            raise NamespaceError("more than one namespace has inbox=yes")
        self.inbox_ns = inbox[0] if inbox else None
        self.separator = (self.inbox_ns or self.namespaces[0]).separator
        #: the user's quota when ``from_config`` built it (GETQUOTA/GETQUOTAROOT data)
        self.quota: Quota | None = None
        # longest prefix first
        self._by_prefix = sorted(self.namespaces, key=lambda n: -len(n.prefix))

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def from_settings(cls, settings: Sequence[NamespaceSettings], *, mail_location: str,
                      home: str | None, variables: Mapping[str, str | None] | None = None,
                      config: Callable[[str], object] | None = None,
                      quota: QuotaPolicy | None = None,
                      user: str | None = None,
                      user_lookup: UserLookup | None = None) -> Namespaces:
        namespaces = []
        shared = []
        for s in settings:
            if s.disabled:
                continue
            if s.type == "shared" and "%" in s.prefix:
                try:
                    prefix = expand(s.prefix, dict(variables or {}))
                    location = expand(s.location or mail_location, dict(variables or {}))
                except VariableError as e:
                    raise NamespaceError(f"{s.name}: {e}") from e
                if "%" in prefix:
                    shared.append(SharedTemplate(s, prefix, location, _shared_opener(
                        location, home=home, config=config, lookup=user_lookup)))
                    continue
            location = mail_location
            if s.location:
                try:
                    location = expand(s.location, dict(variables or {}))
                except VariableError as e:
                    raise NamespaceError(f"{s.name}: location: {e}") from e
            special = {m.name: m.special_use for m in s.mailboxes if m.special_use}
            try:
                backend = open_storage(location, home=home, separator=s.separator or None,
                                       config=config, quota=quota if s.inbox else None,
                                       special_use=special, create_inbox=s.inbox,
                                       user=user)
            except StorageError:
                if s.ignore_on_failure:
                    continue
                raise
            namespaces.append(Namespace(s, backend))
            attach = getattr(quota, "attach", None) if s.inbox else None
            if attach is not None:
                attach(backend)
        return cls(namespaces, shared)

    @classmethod
    def from_config(cls, cfg: object, user_fields: Mapping[str, str] | None = None, *,
                    user: str, mail_location: str, home: str | None,
                    quota: QuotaPolicy | None = None, with_quota: bool = True,
                    delivery: bool = False, service: str = "imap",
                    user_lookup: UserLookup | None = None) -> Namespaces:
        """What a mail process opens for a logged-in user (``mail_location`` expanded; pass
        the protocol's config view). With ``with_quota`` and ``mail_plugins`` naming
        ``quota``, the user's :class:`~cote.storage.quota.Quota` (``plugin { }`` overridden
        by ``user_fields``; ``delivery`` for LMTP/LDA's grace) is built, attached and kept in
        ``.quota`` for GETQUOTA/GETQUOTAROOT. Raises ``StorageError`` (``QuotaConfigError``
        and ``NamespaceError`` included) on bad settings."""
        values: dict[str, str | None] = user_values(user)
        values.update({"home": home, "service": service})
        getter = getattr(cfg, "get")  # noqa: B009 - duck-typed Config
        built: Quota | None = None
        if quota is None and with_quota:
            plugin = getattr(cfg, "plugin")()  # noqa: B009
            built = Quota.from_settings(plugin, user_fields,
                                        mail_plugins=str(getter("mail_plugins") or ""),
                                        base_dir=str(getter("base_dir") or DEFAULT_BASE_DIR),
                                        delivery=delivery, variables=values)
            quota = built
        ns = cls.from_settings(settings_from_config(cfg), mail_location=mail_location,
                               home=home, variables=values, config=getter, quota=quota,
                               user=user, user_lookup=user_lookup)
        ns.quota = built
        return ns

    # -- names ----------------------------------------------------------------------------
    def find(self, vname: str) -> tuple[Namespace, str]:
        """The namespace of a name and the name inside it."""
        for t in self.shared:
            other = t.user_of(vname)
            if other is None:
                continue
            uns = t.namespace(other)
            if uns is None:
                raise MailboxNotFound(vname)
            rest = vname[len(uns.prefix):] if vname.startswith(uns.prefix) else ""
            if not rest:
                raise InvalidName("Namespace prefix is not a mailbox")
            return uns, normalize_inbox(rest, uns.separator)
        ns = self.inbox_ns
        if ns is not None:
            n = normalize_inbox(vname, ns.separator)
            if n == "INBOX":
                return ns, "INBOX"
            if ns.prefix and normalize_inbox(vname[len(ns.prefix):], ns.separator) == "INBOX" \
                    and vname.startswith(ns.prefix):
                return ns, "INBOX"
        for ns in self._by_prefix:
            if vname.startswith(ns.prefix):
                rest = vname[len(ns.prefix):]
                if not rest:
                    raise InvalidName("Namespace prefix is not a mailbox")
                if ns.settings.inbox:
                    rest = normalize_inbox(rest, ns.separator)
                elif normalize_inbox(rest, ns.separator) == "INBOX":
                    raise MailboxNotFound(vname)
                return ns, rest
        raise MailboxNotFound(vname)

    def separator_of(self, vname: str) -> str:
        try:
            return self.find(vname)[0].separator
        except StorageError:
            return self.separator

    def namespace_data(self) -> tuple[list[tuple[str, str]], list[tuple[str, str]],
                                      list[tuple[str, str]]]:
        """NAMESPACE response: (personal, other users', shared) as (prefix, separator)."""
        groups: dict[str, list[tuple[str, str]]] = {"private": [], "shared": [], "public": []}
        for ns in self.namespaces:
            if not ns.settings.hidden:
                groups.setdefault(ns.settings.type, []).append((ns.prefix, ns.separator))
        for t in self.shared:
            if not t.settings.hidden:
                groups["shared"].append((t.static, t.separator))
        return groups["private"], groups["shared"], groups["public"]

    # -- list -----------------------------------------------------------------------------
    @staticmethod
    def _listed(settings: NamespaceSettings, prefix: str, pattern: str) -> bool:
        if settings.list in ("yes", "children") and not settings.hidden:
            return True
        # unlisted namespaces answer only patterns that spell out their prefix
        return bool(prefix) and pattern.startswith(prefix)

    def list(self, pattern: str = "*", *, subscribed: bool = False
             ) -> builtins.list[MailboxInfo]:
        out: builtins.list[MailboxInfo] = []
        for ns in self.namespaces:
            if not self._listed(ns.settings, ns.prefix, pattern):
                continue
            match = compile_pattern(pattern, ns.separator)
            rows = ns.list.list("*", subscribed=subscribed)
            if not ns.settings.inbox:
                rows = [r for r in rows if r.name != "INBOX"]
            names = {r.name for r in rows}
            if subscribed:
                # auto = subscribe mailboxes are subscribed before they exist
                missing = [n for n in self._auto_subscribed(ns) if n not in names]
                existing = {r.name: r.attributes for r in ns.list.list("*")} if missing else {}
                for n in missing:
                    attrs = {"\\Subscribed", *ns.auto[n].special_use.split()}
                    attrs |= existing.get(n, frozenset({"\\HasNoChildren"})) & CHILD_ATTRIBUTES
                    rows.append(MailboxInfo(n, frozenset(attrs)))
            else:
                for name, mb in ns.auto.items():
                    if name not in names:
                        attrs = {"\\HasNoChildren", *mb.special_use.split()}
                        rows.append(MailboxInfo(name, frozenset(attrs)))
            if ns.settings.list == "children" and not rows:
                continue
            if ns.prefix and not subscribed:
                top = ns.prefix[: -len(ns.separator)] if ns.prefix.endswith(ns.separator) \
                    else ns.prefix
                if match(top):
                    kids = "\\HasChildren" if rows else "\\HasNoChildren"
                    out.append(MailboxInfo(top, frozenset({"\\Noselect", kids})))
            for r in rows:
                v = ns.vname(r.name)
                if match(v):
                    out.append(MailboxInfo(v, r.attributes))
        if not subscribed:  # shared namespaces keep no subscriptions of their own
            for t in self.shared:
                if self._listed(t.settings, t.static, pattern):
                    out += self._list_shared(t, pattern)
        return out

    def _list_shared(self, t: SharedTemplate, pattern: str) -> builtins.list[MailboxInfo]:
        """The users opened in this session, as Dovecot lists them: ``shared`` as a
        \\Noselect parent, each user's prefix (its INBOX) and the user's other mailboxes;
        a user that was asked for and not found as a \\Noselect leaf."""
        if not t.users:
            return []
        match = compile_pattern(pattern, t.separator)
        top = t.static[: -len(t.separator)] if t.static.endswith(t.separator) else t.static
        out = [MailboxInfo(top, frozenset({"\\Noselect", "\\HasChildren"}))] \
            if top and match(top) else []
        for user, ns in t.users.items():
            if ns is None:
                name = t.static + user
                if match(name):
                    out.append(MailboxInfo(name, frozenset({"\\Noselect",
                                                            "\\HasNoChildren"})))
                continue
            rows = [r for r in ns.list.list("*") if r.name != "INBOX"]
            name = ns.prefix[: -len(ns.separator)]
            if match(name):
                kids = "\\HasChildren" if rows else "\\HasNoChildren"
                out.append(MailboxInfo(name, frozenset({kids})))
            out += [MailboxInfo(ns.vname(r.name), r.attributes) for r in rows
                    if match(ns.vname(r.name))]
        return out

    def _auto_subscribed(self, ns: Namespace) -> builtins.list[str]:
        return [n for n, m in ns.auto.items() if m.auto == "subscribe"]

    # -- mailbox operations ---------------------------------------------------------------
    def _autocreate(self, ns: Namespace, name: str) -> None:
        if ns.is_auto(name) and not ns.list.exists(name):
            ns.list.create(name)
            if ns.auto[name].auto == "subscribe":
                ns.list.subscribe(name)

    def exists(self, name: str) -> bool:
        try:
            ns, inner = self.find(name)
        except StorageError:
            return False
        return ns.is_auto(inner) or ns.list.exists(inner)

    def create(self, name: str) -> None:
        ns, inner = self.find(name)
        ns.list.create(inner)

    def delete(self, name: str) -> None:
        ns, inner = self.find(name)
        ns.list.delete(inner)

    def rename(self, old: str, new: str) -> None:
        ns, a = self.find(old)
        ns2, b = self.find(new)
        if ns is not ns2:
            raise StorageError("Can't rename mailboxes across namespaces.", code="CANNOT")
        ns.list.rename(a, b)

    def subscribe(self, name: str) -> None:
        ns, inner = self.find(name)
        self._autocreate(ns, inner)
        ns.list.subscribe(inner)

    def unsubscribe(self, name: str) -> None:
        ns, inner = self.find(name)
        ns.list.unsubscribe(inner)

    def subscriptions(self) -> builtins.list[str]:
        out: builtins.list[str] = []
        for ns in self.namespaces:
            names = ns.list.subscriptions()
            names += [n for n in self._auto_subscribed(ns) if n not in names]
            out += [ns.vname(n) for n in names]
        return out

    def open(self, name: str, *, readonly: bool = False) -> Mailbox:
        ns, inner = self.find(name)
        self._autocreate(ns, inner)
        box = ns.list.open(inner, readonly=readonly)
        box.name = name
        return box

    def status(self, name: str) -> MailboxStatus:
        ns, inner = self.find(name)
        self._autocreate(ns, inner)
        return ns.list.status(inner)

    def open_for_saving(self, name: str) -> Mailbox:
        return self._open_with(name, lambda mlist, inner: mlist.open_for_saving(inner))

    def open_for_append(self, name: str) -> Mailbox:
        return self._open_with(name, lambda mlist, inner: mlist.open_for_append(inner))

    def _open_with(self, name: str, how: Callable[[MailboxList, str], Mailbox]) -> Mailbox:
        """``how`` opens the box in the namespace's own list; the box keeps the full name."""
        ns, inner = self.find(name)
        self._autocreate(ns, inner)
        box = how(ns.list, inner)
        box.name = name
        return box

    def close(self) -> None:
        for ns in self.namespaces:
            ns.list.close()
        for t in self.shared:
            for uns in t.users.values():
                if uns is not None:
                    uns.list.close()
