#!/usr/bin/env python3
"""The King James Bible from Debian's bible-kjv packages, as chapters of verses.

Reads the text through the `bible` command (package bible-kjv, data in
bible-kjv-text), so nothing is downloaded. The split into training and validation
text is by book: whole books are held out, so validation measures how well a model
generalises to text it has never seen, not how well it remembers neighbouring verses.
"""
import re
import subprocess

# Held-out books: a spread of law, history, prophecy, letters.
VALIDATION_BOOKS = ("Deuteronomy", "Nehemiah", "Daniel", "Zechariah", "Ephesians", "1 Peter")

_HEADER = re.compile(r"^([1-3]?\s?[A-Za-z ]+?) (\d+)$")
_VERSE = re.compile(r"^\s*(\d+) (.*)$")


def read_chapters():
    """Returns [(book, chapter, [(verse_number, text), ...]), ...] in canonical order."""
    out = subprocess.run(["bible", "-l100000", "Gen1:1-Rev22:21"], check=True,
                         capture_output=True, text=True).stdout
    chapters = []
    for line in out.splitlines():
        if not line.strip():
            continue
        m = _HEADER.match(line)
        if m and not line.startswith(" "):
            chapters.append((m.group(1), int(m.group(2)), []))
            continue
        v = _VERSE.match(line)
        if v is None or not chapters:
            raise ValueError("bible output: unexpected line %r" % line)
        chapters[-1][2].append((int(v.group(1)), v.group(2).strip()))
    if len(chapters) != 1189:
        raise ValueError("expected 1189 chapters, read %d" % len(chapters))
    return chapters


def chapter_text(book, chapter, verses):
    """One chapter as a training document: a heading, then one verse per line."""
    lines = ["%s %d" % (book, chapter)]
    lines += ["%d %s" % (n, t) for n, t in verses]
    return "\n".join(lines) + "\n"


def split_chapters(chapters):
    train = [c for c in chapters if c[0] not in VALIDATION_BOOKS]
    val = [c for c in chapters if c[0] in VALIDATION_BOOKS]
    return train, val


if __name__ == "__main__":
    ch = read_chapters()
    tr, va = split_chapters(ch)
    nv = sum(len(c[2]) for c in ch)
    print("chapters %d (train %d, validation %d), verses %d, books %d" %
          (len(ch), len(tr), len(va), nv, len({c[0] for c in ch})))
    print(chapter_text(*ch[0])[:200])
