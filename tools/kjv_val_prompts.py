#!/usr/bin/env python3
"""Writes the 20 validation prompts bench/spec_acceptance.sh measures speculation on:
the heading and the first words of 20 chapters, evenly spread over the held-out books
(kjv_corpus.VALIDATION_BOOKS), one JSON string per line."""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kjv_corpus  # noqa: E402

_, val = kjv_corpus.split_chapters(kjv_corpus.read_chapters())
picked = [val[i * len(val) // 20] for i in range(20)]
for book, chapter, verses in picked:
    words = verses[0][1].split()
    print(json.dumps("%s %d\n1 %s" % (book, chapter, " ".join(words[:8]))))
