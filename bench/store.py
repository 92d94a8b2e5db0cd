"""Deterministic generated mail stores in Dovecot's Maildir format, shared by both servers.

A seeded generator writes realistic messages (1 KB–5 MB with a heavy tail, multipart/
alternative, base64 attachments, threads through References/In-Reply-To, varied headers) as
Maildir files named the way Dovecot names them (``<secs>.M<usecs>P<pid>.<host>,S=,W=:2,<flags>``).
A template is generated once per spec into a cache directory and hard-linked into each
server's mail root per user, so every server of a run starts from byte-identical mail while
the disk holds one copy. Neither server's index exists beforehand: both build their own.
"""

from __future__ import annotations

import base64
import math
import os
import random
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

# Bump when the generator's output changes so cached templates are rebuilt.
GENERATOR_VERSION = 1
CACHE_ROOT = Path("/tmp/cote-bench/cache")
HOSTNAME = "bench"
BASE_EPOCH = 1_704_067_200  # 2024-01-01T00:00:00Z

# (probability, low bytes, high bytes): log-uniform within a band. Median ≈ 6 KB, mean ≈ 130 KB.
SIZE_BANDS: tuple[tuple[float, int, int], ...] = (
    (0.55, 1_024, 8_192),
    (0.25, 8_192, 65_536),
    (0.14, 65_536, 524_288),
    (0.05, 524_288, 2_097_152),
    (0.01, 2_097_152, 5_242_880),
)
# Every 100th message (index % 100 == SEARCH_TOKEN_EVERY_OFFSET) carries this word in its body,
# and every 50th has SEARCH_SUBJECT_WORD in its subject: known hit counts for `search`.
SEARCH_BODY_WORD = "zephyrine"
SEARCH_SUBJECT_WORD = "Quarterly"
SEARCH_TOKEN_OFFSET = 7


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


_COMMON = _words(
    "the of and to in is that for it as was with be by on not he this are or his from at which "
    "but have an they you were her she there been one all we their has would when if so no will "
    "more can about what up out them into only some could time these two may then do first any my "
    "now such like our over man me even most made after also did many before must through back "
    "years where much your way well down should because each just those people how too little "
    "state good very make world still own see men work long get here between both life being "
    "under never day same another know while last might us great old year off come since against "
    "go came right used take three meeting report budget project invoice review draft schedule "
    "release server mailbox account deadline attached please thanks regards update team customer "
    "order shipping contract proposal agenda minutes "
)
_FIRST = _words(
    "Anna Ben Carla David Eva Frank Grace Hugo Ines Jonas Karin Lukas Maria Nils Olga Paul Rosa "
    "Stefan Tina Ulf Vera Walter Yara Zoe Ahmed Bianca Chen Dmitri Elif Fatima "
)
_LAST = _words(
    "Meyer Schmidt Novak Rossi Garcia Dubois Jensen Kowalski Silva Nakamura Okafor Larsen Berg "
    "Costa Horvat Ivanova Murphy Nguyen Papadopoulos Quinn "
)
_DOMAINS = ("example.com", "example.org", "mail.example.net", "corp.example", "lists.example.org",
            "university.example.edu", "shop.example", "bench.test")
_MAILERS = ("X-Mailer: Microsoft Outlook 16.0", "User-Agent: Mozilla Thunderbird 115.6.0",
            "X-Mailer: Apple Mail (2.3774.300.61.1.2)", "User-Agent: Mutt/2.2.9 (2022-11-12)",
            "X-Mailer: PHPMailer 6.8.1 (https://github.com/PHPMailer/PHPMailer)",
            "User-Agent: Roundcube Webmail/1.6.5", "X-Mailer: Evolution 3.46.4-2")
_ATTACHMENTS = (("application/pdf", "report.pdf"), ("image/jpeg", "IMG_2041.jpg"),
                ("image/png", "screenshot.png"), ("application/zip", "archive.zip"),
                ("application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                 "minutes.docx"), ("text/csv", "export.csv"))


def _vocabulary() -> list[str]:
    """A fixed word list: common English words followed by synthetic rarer words."""
    rng = random.Random(0x5EED)
    syllables = _words(
        "ka lo mi ne ra su te vo zi an el or ut is ba de fi gu ho ju "
    )
    words = list(_COMMON)
    while len(words) < 3000:
        word = "".join(rng.choice(syllables) for _ in range(rng.randint(2, 4)))
        if word not in words and word != SEARCH_BODY_WORD:
            words.append(word)
    return words


def _text_lines(vocab: list[str]) -> list[str]:
    """Pre-built wrapped text lines (Zipf-like word choice): bodies are made by picking lines."""
    rng = random.Random(0x7E47)
    lines = []
    n = len(vocab)
    for _ in range(4000):
        words: list[str] = []
        length = 0
        limit = rng.randint(40, 76)
        while length < limit:
            word = vocab[int(n * rng.random() ** 3)]
            words.append(word)
            length += len(word) + 1
        line = " ".join(words)
        lines.append(line[0].upper() + line[1:] + ("." if rng.random() < 0.3 else ""))
    for i in range(0, len(lines), 9):
        lines[i] = ""  # paragraph breaks
    return lines


@dataclass(frozen=True)
class StoreSpec:
    """What a template mailbox holds; equal specs give byte-identical stores."""

    name: str
    count: int
    seed: int = 1
    profile: str = "realistic"  # "realistic" (1 KB–5 MB) or "small" (1–4 KB text only)
    folders: bool = True  # also .Sent and .Trash

    @property
    def key(self) -> str:
        return f"{self.name}-g{GENERATOR_VERSION}-s{self.seed}-n{self.count}-{self.profile}"


@dataclass(frozen=True)
class Message:
    data: bytes
    date: int
    flags: str  # Maildir flag letters in ASCII order ("" = unseen)


class MessageGenerator:
    """Seeded message factory: ``message(i)`` is the same bytes for the same seed and index."""

    _vocab = _vocabulary()
    _lines = _text_lines(_vocab)

    def __init__(self, seed: int, profile: str = "realistic") -> None:
        self.seed = seed
        self.profile = profile
        self._subjects: list[str] = []
        self._ids: list[str] = []
        self._refs: list[str] = []

    # -- pieces ------------------------------------------------------------------------
    def _person(self, rng: random.Random) -> tuple[str, str]:
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        return f"{first} {last}", f"{first.lower()}.{last.lower()}@{rng.choice(_DOMAINS)}"

    def _size(self, rng: random.Random) -> int:
        if self.profile == "small":
            return rng.randint(1_024, 4_096)
        u = rng.random()
        for probability, low, high in SIZE_BANDS:
            if u < probability:
                return int(math.exp(rng.uniform(math.log(low), math.log(high))))
            u -= probability
        return SIZE_BANDS[-1][2]

    def _text(self, rng: random.Random, size: int, index: int) -> str:
        lines = self._lines
        out: list[str] = []
        length = 0
        while length < size:
            line = lines[rng.randrange(len(lines))]
            out.append(line)
            length += len(line) + 1
        if index % 100 == SEARCH_TOKEN_OFFSET:
            out.insert(len(out) // 2, f"See the {SEARCH_BODY_WORD} notes for details.")
        return "\n".join(out) + "\n"

    def _subject(self, rng: random.Random, index: int) -> str:
        vocab = self._vocab
        words = [vocab[int(len(vocab) * rng.random() ** 2)] for _ in range(rng.randint(2, 7))]
        subject = " ".join(words).capitalize()
        if index % 50 == SEARCH_TOKEN_OFFSET:
            subject = f"{SEARCH_SUBJECT_WORD} {subject}"
        return subject

    # -- message -----------------------------------------------------------------------
    def message(self, index: int, size: int | None = None) -> Message:
        """The index-th message of this seed's mailbox (call in index order for threads);
        ``size`` forces an approximate total size instead of drawing one."""
        rng = random.Random(self.seed * 1_000_003 + index)
        date = BASE_EPOCH + index * 3_600 + rng.randrange(3_600)
        drawn = self._size(rng)
        size = drawn if size is None else size
        from_name, from_addr = self._person(rng)
        to = [self._person(rng) for _ in range(1 + (rng.random() < 0.3) + (rng.random() < 0.1))]
        message_id = f"{rng.getrandbits(64):016x}.{index}@{from_addr.split('@')[1]}"
        parent = rng.randrange(len(self._ids)) if self._ids and rng.random() < 0.35 else -1
        if parent >= 0:
            subject = "Re: " + self._subjects[parent].removeprefix("Re: ")
            refs = (self._refs[parent] + " " + self._ids[parent]).strip().split()[-10:]
            references = " ".join(f"<{r}>" for r in refs)
        else:
            subject = self._subject(rng, index)
            refs, references = [], ""
        self._subjects.append(subject)
        self._ids.append(message_id)
        self._refs.append(" ".join(refs))
        when = format_datetime(datetime.fromtimestamp(date, UTC))

        headers = [f"Return-Path: <{from_addr}>"]
        for hop in range(rng.randint(1, 4)):
            headers.append(
                f"Received: from mx{hop}.{rng.choice(_DOMAINS)} "
                f"(mx{hop}.example [192.0.2.{rng.randrange(1, 255)}])\n"
                f"\tby mail.bench.test (Postfix) with ESMTPS id {rng.getrandbits(40):010X}\n"
                f"\tfor <{to[0][1]}>; {when}")
        if rng.random() < 0.3:
            sig = base64.b64encode(rng.randbytes(192)).decode()
            headers.append("DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d="
                           f"{from_addr.split('@')[1]}; s=sel1;\n"
                           "\th=from:to:subject:date:message-id;\n"
                           f"\tbh={base64.b64encode(rng.randbytes(32)).decode()};\n"
                           f"\tb={sig[:64]}\n\t {sig[64:]}")
        headers += [
            f"Date: {when}",
            f'From: "{from_name}" <{from_addr}>',
            "To: " + ",\n\t".join(f'"{n}" <{a}>' for n, a in to),
        ]
        if rng.random() < 0.2:
            cc_name, cc_addr = self._person(rng)
            headers.append(f"Cc: {cc_name} <{cc_addr}>")
        headers.append(f"Subject: {subject}")
        headers.append(f"Message-ID: <{message_id}>")
        if parent >= 0:
            headers.append(f"In-Reply-To: <{self._ids[parent]}>")
            headers.append(f"References: {references}")
        headers.append(rng.choice(_MAILERS))
        if rng.random() < 0.15:
            headers.append("List-Id: Project discussion <project.lists.example.org>")
            headers.append("List-Unsubscribe: <mailto:project-leave@lists.example.org>")
        headers.append("MIME-Version: 1.0")

        body = self._body(rng, size - sum(len(h) + 1 for h in headers), index)
        data = ("\n".join(headers) + "\n" + body).encode()
        flags = ""
        if rng.random() < 0.05:
            flags = "F"
        if rng.random() < 0.75:
            flags += "RS" if rng.random() < 0.15 else "S"
        return Message(data, date, flags)

    def _body(self, rng: random.Random, size: int, index: int) -> str:
        boundary = f"=_bench_{rng.getrandbits(48):012x}"
        text_size = max(200, min(size, rng.randint(600, 12_000)))
        if size <= 12_000 or self.profile == "small":
            if rng.random() < 0.6:
                return ("Content-Type: text/plain; charset=utf-8; format=flowed\n"
                        "Content-Transfer-Encoding: 8bit\n\n"
                        + self._text(rng, max(size, 200), index))
            half = max(200, size // 2)
            text = self._text(rng, half, index)
            html = "<html><body>\n" + "".join(
                f"<p>{line}</p>\n" for line in self._text(rng, half - 60, index).splitlines()
            ) + "</body></html>\n"
            return (f'Content-Type: multipart/alternative; boundary="{boundary}"\n\n'
                    f"--{boundary}\nContent-Type: text/plain; charset=utf-8\n"
                    f"Content-Transfer-Encoding: quoted-printable\n\n{text}\n"
                    f"--{boundary}\nContent-Type: text/html; charset=utf-8\n"
                    f"Content-Transfer-Encoding: quoted-printable\n\n{html}\n--{boundary}--\n")
        parts = [f'Content-Type: multipart/mixed; boundary="{boundary}"\n\n'
                 "This is a multi-part message in MIME format.\n\n"
                 f"--{boundary}\nContent-Type: text/plain; charset=utf-8\n"
                 f"Content-Transfer-Encoding: 8bit\n\n{self._text(rng, text_size, index)}\n"]
        remaining = size - text_size
        attachments = 1 + (remaining > 200_000 and rng.random() < 0.4)
        for n in range(attachments):
            ctype, filename = rng.choice(_ATTACHMENTS)
            raw = max(64, (remaining // attachments) * 3 // 4 - 200)
            encoded = base64.encodebytes(rng.randbytes(raw)).decode()
            parts.append(f"--{boundary}\nContent-Type: {ctype}; name=\"{n}-{filename}\"\n"
                         f"Content-Disposition: attachment; filename=\"{n}-{filename}\"\n"
                         f"Content-Transfer-Encoding: base64\n\n{encoded}\n")
        parts.append(f"--{boundary}--\n")
        return "".join(parts)


def maildir_name(index: int, date: int, data: bytes, flags: str | None) -> str:
    """Dovecot's Maildir file name: S= bytes on disk, W= RFC822.SIZE (CRLF line ends)."""
    vsize = len(data) + data.count(b"\n")
    base = f"{date}.M{index % 1_000_000:06d}P{index}.{HOSTNAME},S={len(data)},W={vsize}"
    return base if flags is None else f"{base}:2,{flags}"


def _make_maildir(path: Path, uid: int, gid: int) -> None:
    for sub in ("", "cur", "new", "tmp"):
        d = path / sub
        d.mkdir(mode=0o700, exist_ok=True)
        os.chown(d, uid, gid)


def write_mailbox(path: Path, spec_seed: int, count: int, profile: str, uid: int, gid: int,
                  new_fraction: float = 0.01) -> None:
    """Write ``count`` generated messages into the Maildir at ``path`` (the last ones to new/)."""
    _make_maildir(path, uid, gid)
    generator = MessageGenerator(spec_seed, profile)
    first_new = count - int(count * new_fraction)
    for index in range(count):
        message = generator.message(index)
        in_new = index >= first_new
        name = maildir_name(index, message.date, message.data, None if in_new else message.flags)
        file = path / ("new" if in_new else "cur") / name
        fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, message.data)
            os.fchown(fd, uid, gid)
        finally:
            os.close(fd)
        os.utime(file, (message.date, message.date))


def template(spec: StoreSpec, uid: int, gid: int) -> Path:
    """The cached template Maildir for ``spec`` (built on first use, atomically)."""
    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    final = CACHE_ROOT / spec.key
    if (final / ".complete").exists():
        return final
    building = CACHE_ROOT / f".{spec.key}.{os.getpid()}"
    shutil.rmtree(building, ignore_errors=True)
    write_mailbox(building, spec.seed, spec.count, spec.profile, uid, gid)
    if spec.folders:
        sent = building / ".Sent"
        write_mailbox(sent, spec.seed + 7_919, max(1, spec.count // 20), spec.profile, uid, gid,
                      new_fraction=0.0)
        _make_maildir(building / ".Trash", uid, gid)
        for folder in (sent, building / ".Trash"):
            (folder / "maildirfolder").touch()
            os.chown(folder / "maildirfolder", uid, gid)
    (building / ".complete").touch()
    try:
        os.rename(building, final)
    except OSError:  # another process built it first
        shutil.rmtree(building, ignore_errors=True)
    return final


def link_tree(source: Path, target: Path, uid: int, gid: int) -> int:
    """Hard-link a template Maildir into ``target`` (new dirs owned by uid:gid); files linked."""
    linked = 0
    os.mkdir(target, 0o700)
    os.chown(target, uid, gid)
    with os.scandir(source) as entries:
        for entry in entries:
            if entry.name == ".complete":
                continue
            dest = target / entry.name
            if entry.is_dir(follow_symlinks=False):
                linked += link_tree(Path(entry.path), dest, uid, gid)
            else:
                os.link(entry.path, dest)
                linked += 1
    return linked
