"""The bench store generator is deterministic, realistic and writes Dovecot's Maildir names."""

from __future__ import annotations

import email
import email.policy
import os
import re
import statistics

from bench import store
from bench.histogram import Histogram
from tests.support.env import remove_dir, server_dir

NAME = re.compile(r"^(\d+)\.M\d+P\d+\.bench,S=(\d+),W=(\d+)(?::2,([A-Za-z]*))?$")


def test_same_seed_gives_same_messages_and_another_seed_does_not() -> None:
    first, second = store.MessageGenerator(3), store.MessageGenerator(3)
    a = [first.message(i).data for i in range(40)]
    assert [second.message(i).data for i in range(40)] == a
    other = store.MessageGenerator(4)
    assert [other.message(i).data for i in range(40)] != a


def test_sizes_follow_the_heavy_tailed_distribution() -> None:
    generator = store.MessageGenerator(1)
    sizes = [len(generator.message(i).data) for i in range(1500)]
    assert min(sizes) >= 1_000
    assert max(sizes) <= 5_400_000
    assert 3_000 < statistics.median(sizes) < 12_000
    assert statistics.mean(sizes) > 3 * statistics.median(sizes)  # attachments make the tail


def test_messages_parse_with_threads_attachments_and_search_words() -> None:
    generator = store.MessageGenerator(1)
    messages = [email.message_from_bytes(generator.message(i).data, policy=email.policy.default)
                for i in range(300)]
    ids = {m["Message-ID"] for m in messages}
    replies = [m for m in messages if m["In-Reply-To"]]
    assert len(ids) == 300
    assert len(replies) > 50
    assert all(m["In-Reply-To"] in ids and m["Subject"].startswith("Re: ") for m in replies)
    assert all(m["References"].split()[-1] == m["In-Reply-To"] for m in replies)
    kinds = {m.get_content_type() for m in messages}
    assert {"text/plain", "multipart/alternative", "multipart/mixed"} <= kinds
    attachments = [p for m in messages for p in m.iter_attachments() if m.is_multipart()]
    assert any(p.get_content_type() != "text/plain" and p.get_payload(decode=True)
               for p in attachments)
    regen = store.MessageGenerator(1)
    hits = [i for i in range(300) if store.SEARCH_BODY_WORD.encode() in regen.message(i).data]
    assert hits == [i for i in range(300) if i % 100 == store.SEARCH_TOKEN_OFFSET]


def test_maildir_files_are_named_like_dovecot_names_them() -> None:
    root = server_dir("bench-store")
    try:
        box = root / "box"
        store.write_mailbox(box, 5, 120, "realistic", os.getuid(), os.getgid())
        cur = list((box / "cur").iterdir())
        new = list((box / "new").iterdir())
        assert len(cur) + len(new) == 120 and len(new) == 1
        for path in cur + new:
            m = NAME.match(path.name)
            assert m, path.name
            data = path.read_bytes()
            assert int(m.group(2)) == len(data)
            assert int(m.group(3)) == len(data) + data.count(b"\n")
            assert int(path.stat().st_mtime) == int(m.group(1))
            assert (m.group(4) is None) == (path.parent.name == "new")
            assert m.group(4) is None or m.group(4) == "".join(sorted(m.group(4)))
        linked = root / "linked"
        assert store.link_tree(box, linked, os.getuid(), os.getgid()) == 120
        assert os.path.samefile(cur[0], linked / "cur" / cur[0].name)
    finally:
        remove_dir(root)


def test_histogram_percentiles_are_within_two_percent() -> None:
    h = Histogram()
    for i in range(1, 1001):
        h.add(i / 1000)
    other = Histogram()
    other.add(5.0)
    h.merge(other)
    assert h.count == 1001
    assert abs(h.percentile(0.5) - 0.5) / 0.5 < 0.03
    assert abs(h.percentile(0.99) - 0.99) / 0.99 < 0.03
    assert h.percentile(1.0) == 5.0
    assert Histogram().percentile(0.5) == 0.0
