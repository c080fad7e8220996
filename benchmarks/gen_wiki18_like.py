"""Write a seeded corpus with wiki-18's shape: N passages of ~100 words in Search-R1's JSONL layout.

Each line is ``{"id": "1", "contents": "\\"Title\\"\\ntext"}``, as Search-R1's ``wiki-18.jsonl``
(21,015,324 passages of 100 words cut from the 2018 English Wikipedia). Words are drawn from a
Zipfian vocabulary (``p(rank) ~ 1 / rank ** --zipf``; a word's spelling is its rank in base 26,
at least four letters), which gives wiki-like statistics: a few words in nearly every
passage (their idf falls below 0 and takes rank_bm25's epsilon floor) and a long tail of rare
ones. Passages are streamed to disk a batch at a time, so 21M passages need no more memory than
1k. The same ``--seed`` and ``--passages`` give the same file, byte for byte.

    python benchmarks/gen_wiki18_like.py --passages 100000 --out /tmp/wiki18-100k.jsonl
"""

from __future__ import annotations

import argparse
import json
import string
import time
from pathlib import Path

import numpy as np

DEFAULT_VOCABULARY = 2_000_000
"""Word types to draw from (wiki-18 has a few million distinct lowercase tokens)."""
DEFAULT_ZIPF = 1.07
"""Zipf exponent of word frequencies (English text: about 1)."""
WORDS_MEAN = 100
"""Words per passage on average (wiki-18 cuts passages at 100 words)."""
WORDS_SPREAD = 10
TITLE_WORDS = (1, 4)
MIN_LETTERS = 4
"""Shortest word, so a passage takes about as many bytes as a wiki-18 one (~600)."""
BATCH = 10_000
"""Passages generated and written at a time."""


def spell(rank: int) -> str:
    """A word for a frequency rank: the rank in base 26, at least MIN_LETTERS letters (0 -> 'aaaa')."""
    letters = string.ascii_lowercase
    word = ""
    while rank or len(word) < MIN_LETTERS:
        word = letters[rank % 26] + word
        rank //= 26
    return word


def generate(out: Path, passages: int, seed: int, vocabulary: int, zipf: float) -> None:
    """Stream ``passages`` rows to ``out``."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, vocabulary + 1, dtype=np.float64) ** zipf
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    words = [spell(rank) for rank in range(vocabulary)]
    start = time.perf_counter()
    with out.open("w", encoding="utf-8") as handle:
        for lo in range(0, passages, BATCH):
            n = min(BATCH, passages - lo)
            lengths = np.clip(rng.normal(WORDS_MEAN, WORDS_SPREAD, n).round().astype(np.int64), 1, None)
            title_lengths = rng.integers(TITLE_WORDS[0], TITLE_WORDS[1] + 1, n)
            ranks = np.searchsorted(cdf, rng.random(int(lengths.sum() + title_lengths.sum())))
            np.minimum(ranks, vocabulary - 1, out=ranks)
            tokens = [words[rank] for rank in ranks.tolist()]
            position = 0
            lines = []
            for i in range(n):
                title_end = position + int(title_lengths[i])
                end = title_end + int(lengths[i])
                title = " ".join(tokens[position:title_end]).title()
                text = " ".join(tokens[title_end:end])
                contents = f'"{title}"\n{text}'
                lines.append(json.dumps({"id": str(lo + i + 1), "contents": contents}) + "\n")
                position = end
            handle.write("".join(lines))
    elapsed = time.perf_counter() - start
    print(f"wrote {out}: {passages} passages, {out.stat().st_size / 1e9:.2f} GB, {elapsed:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--passages", type=int, required=True, help="how many passages (wiki-18: 21015324)")
    parser.add_argument("--out", type=Path, required=True, help="the JSONL file to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vocabulary", type=int, default=DEFAULT_VOCABULARY)
    parser.add_argument("--zipf", type=float, default=DEFAULT_ZIPF)
    args = parser.parse_args()
    generate(args.out, args.passages, args.seed, args.vocabulary, args.zipf)


if __name__ == "__main__":
    main()
