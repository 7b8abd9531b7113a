"""Word-level corpora for the language model: WikiText-2 directories and the default corpus.

Two sources give the same :class:`Corpus` (a vocabulary and three id tensors):

* a directory in the WikiText-2 format -- ``train.txt``, ``valid.txt`` and
  ``test.txt``, one line per paragraph, tokens separated by whitespace; every
  line (an empty one too) ends with the token ``<eos>``. The vocabulary is the
  training split's; a valid/test word absent from it becomes ``<unk>``.
* the default: the **World English Bible** (2020 stable edition, public
  domain), read from the Debian package ``sword-text-web`` (install it with
  ``apt-get install sword-text-web``; nothing is downloaded at run time). Its
  SWORD "zText" module is decoded here (zlib blocks plus a verse index), the
  OSIS markup is removed (footnotes and headings with their text), and each
  verse becomes one line, tokenized into words, numbers and single punctuation
  marks. As in WikiText-2, words seen fewer than 3 times in the whole text are
  replaced by ``<unk>``. The split is deterministic: consecutive verses are
  cut into blocks of 100 and block ``j`` goes to validation if ``j % 10 == 8``,
  to test if ``j % 10 == 9`` and to training otherwise (about 80/10/10, every
  part of the Bible in every split). Measured sizes are in ``docs/results_lm.md``.
"""

from __future__ import annotations

import os
import re
import struct
import zlib
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import Tensor

__all__ = [
    "Corpus", "EOS", "UNK", "DEFAULT_SWORD_MODULE", "SWORD_PACKAGE", "tokenize_lines", "build_corpus",
    "read_wikitext", "read_sword_ztext", "osis_to_text", "tokenize_english", "default_corpus_splits",
    "load_corpus", "batchify",
]

EOS, UNK = "<eos>", "<unk>"
SWORD_PACKAGE = "sword-text-web"
DEFAULT_SWORD_MODULE = Path("/usr/share/sword/modules/texts/ztext/engWEB2015eb")
_SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class Corpus:
    """Token ids of the three splits and the vocabulary.

    Attributes
    ----------
    vocab : tuple of str
        ``vocab[i]`` is the word of id ``i``.
    train, valid, test : Tensor, shape=[n_tokens], dtype=int64
    source : str
        Where the text came from.
    """

    vocab: tuple
    train: Tensor
    valid: Tensor
    test: Tensor
    source: str

    @property
    def n_tokens(self) -> dict:
        return {s: int(getattr(self, s).numel()) for s in _SPLITS}

    def decode(self, ids) -> list[str]:
        """Words of a sequence of ids."""
        return [self.vocab[int(i)] for i in ids]


def tokenize_lines(lines: Sequence[str]) -> list[str]:
    """WikiText convention: whitespace tokens of every line, each line closed by ``<eos>``."""
    out: list[str] = []
    for line in lines:
        out.extend(line.split())
        out.append(EOS)
    return out


def build_corpus(train: Sequence[str], valid: Sequence[str], test: Sequence[str], *, max_vocab: int = 0,
                 source: str = "") -> Corpus:
    """A :class:`Corpus` from the lines of the three splits.

    Parameters
    ----------
    train, valid, test : sequence of str
        Lines of whitespace-separated tokens.
    max_vocab : int
        Keep only the ``max_vocab`` most frequent training words (ties: first
        seen first), mapping the rest to ``<unk>``; 0 keeps every word.
    source : str

    Examples
    --------
    >>> c = build_corpus(["a b a"], ["a c"], ["b"])
    >>> c.vocab
    ('a', 'b', '<eos>', '<unk>')
    >>> c.decode(c.valid)
    ['a', '<unk>', '<eos>']
    """
    if isinstance(max_vocab, bool) or not isinstance(max_vocab, int) or max_vocab < 0:
        raise ValueError(f"max_vocab must be a non-negative int (0: no limit), got {max_vocab!r}")
    toks = {"train": tokenize_lines(train), "valid": tokenize_lines(valid), "test": tokenize_lines(test)}
    if len(toks["train"]) < 2:
        raise ValueError("the training split must hold at least 2 tokens")
    counts = Counter(toks["train"])
    order = {w: i for i, w in enumerate(dict.fromkeys(toks["train"]))}
    words = sorted(counts, key=lambda w: (-counts[w], order[w]))
    if max_vocab:
        if max_vocab < 2:
            raise ValueError(f"max_vocab must be 0 or at least 2 (a word and <unk>), got {max_vocab}")
        words = words[: max_vocab - 1] if UNK not in words[:max_vocab] else words[:max_vocab]
    needs_unk = (
        len(words) < len(counts)
        or any(w not in counts for s in ("valid", "test") for w in set(toks[s]))
    )
    if needs_unk and UNK not in words:
        words.append(UNK)
    index = {w: i for i, w in enumerate(words)}
    unk = index.get(UNK, -1)

    def ids(seq):
        return torch.tensor([index.get(w, unk) for w in seq], dtype=torch.long)

    return Corpus(tuple(words), ids(toks["train"]), ids(toks["valid"]), ids(toks["test"]), source)


def read_wikitext(path, *, max_vocab: int = 0) -> Corpus:
    """Read a WikiText-format directory (``train.txt``, ``valid.txt``, ``test.txt``).

    Raises
    ------
    FileNotFoundError
        If ``path`` is not a directory or a split file is missing.
    """
    path = Path(path).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"data must be a directory holding train.txt, valid.txt and test.txt; {path} is not a directory")
    missing = [f"{s}.txt" for s in _SPLITS if not (path / f"{s}.txt").is_file()]
    if missing:
        raise FileNotFoundError(f"data directory {path} lacks {missing} (expected train.txt, valid.txt, test.txt)")
    lines = {s: (path / f"{s}.txt").read_text(encoding="utf-8").splitlines() for s in _SPLITS}
    return build_corpus(lines["train"], lines["valid"], lines["test"], max_vocab=max_vocab, source=str(path))


# ----------------------------------------------------------------------------- SWORD zText

def read_sword_ztext(module_dir) -> list[str]:
    """The entries (verses) of a SWORD zText module, markup included.

    A zText module stores each testament as three files: ``*.bzz``, zlib
    streams concatenated; ``*.bzs``, one little-endian ``(offset, size,
    uncompressed size)`` uint32 triple per stream; ``*.bzv``, one ``(block,
    start, length)`` uint32/uint32/uint16 entry per verse slot (length 0 for
    an empty slot, which is skipped). The Old Testament (``ot``) comes first.

    Returns
    -------
    list of str
        The non-empty entries, in canonical order.

    Raises
    ------
    FileNotFoundError
        If the directory holds neither testament.
    ValueError
        If an index points outside its data (a damaged module).
    """
    module_dir = Path(module_dir)
    verses: list[str] = []
    found = False
    for testament in ("ot", "nt"):
        files = [module_dir / f"{testament}.{ext}" for ext in ("bzs", "bzz", "bzv")]
        if not all(f.is_file() for f in files):
            continue
        found = True
        bzs, bzz, bzv = (f.read_bytes() for f in files)
        if len(bzs) % 12 or len(bzv) % 10:
            raise ValueError(f"{module_dir}: {testament}.bzs/.bzv sizes {len(bzs)}/{len(bzv)} are not multiples of 12/10")
        blocks = []
        for offset, size, usize in struct.iter_unpack("<III", bzs):
            if offset + size > len(bzz):
                raise ValueError(f"{module_dir}: a block of {testament}.bzz ends past the file")
            data = zlib.decompress(bzz[offset:offset + size])
            if len(data) != usize:
                raise ValueError(f"{module_dir}: a block of {testament}.bzz has {len(data)} bytes, the index says {usize}")
            blocks.append(data)
        for block, start, length in struct.iter_unpack("<IIH", bzv):
            if length == 0:
                continue
            if block >= len(blocks) or start + length > len(blocks[block]):
                raise ValueError(f"{module_dir}: verse entry ({block}, {start}, {length}) of {testament}.bzv is out of range")
            verses.append(blocks[block][start:start + length].decode("utf-8"))
    if not found:
        raise FileNotFoundError(f"{module_dir} holds no SWORD zText module (ot.bzs/ot.bzz/ot.bzv or nt.*)")
    return verses


_DROP = re.compile(r"<(note|title)\b[^>]*?(?<!/)>.*?</\1>", re.S)
_TAG = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")
_QUOTES = str.maketrans({"’": "'", "‘": "'", "“": '"', "”": '"', "—": " -- ", "–": "-", "\u00a0": " "})


def osis_to_text(entry: str) -> str:
    """Plain text of an OSIS entry: footnotes and headings removed with their content, tags dropped.

    Examples
    --------
    >>> osis_to_text('<w lemma="x">In</w> the<note placement="foot">a note</note> beginning.')
    'In the beginning.'
    """
    text = _TAG.sub(" ", _DROP.sub(" ", entry))
    text = text.replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"')
    return _SPACE.sub(" ", text).strip()


_TOKEN = re.compile(r"[A-Za-z0-9]+(?:'[A-Za-z]+)*|[^\sA-Za-z0-9]")


def tokenize_english(text: str) -> list[str]:
    """Words (with inner apostrophes), numbers and single punctuation marks.

    Curly quotes become straight ones and an em dash the token ``--``.

    Examples
    --------
    >>> tokenize_english("Cain left Yahweh’s presence, and lived—east of Eden.")
    ['Cain', 'left', "Yahweh's", 'presence', ',', 'and', 'lived', '-', '-', 'east', 'of', 'Eden', '.']
    """
    return _TOKEN.findall(text.translate(_QUOTES))


def default_corpus_splits(verses: Sequence[str], *, block: int = 100, min_count: int = 3) -> dict[str, list[str]]:
    """Lines of the train/valid/test splits of the default corpus (see the module docstring).

    Parameters
    ----------
    verses : sequence of str
        OSIS entries in canonical order.
    block : int
        Consecutive verses per block; block ``j`` is valid if ``j % 10 == 8``,
        test if ``j % 10 == 9``, train otherwise.
    min_count : int
        Words seen fewer times in the whole text become ``<unk>``.
    """
    if block < 1 or min_count < 1:
        raise ValueError(f"block and min_count must be positive, got {block} and {min_count}")
    lines = []
    for v in verses:
        toks = tokenize_english(osis_to_text(v))
        if toks:
            lines.append(toks)
    counts = Counter(t for toks in lines for t in toks)
    splits: dict[str, list[str]] = {s: [] for s in _SPLITS}
    for i, toks in enumerate(lines):
        j = (i // block) % 10
        split = "valid" if j == 8 else "test" if j == 9 else "train"
        splits[split].append(" ".join(t if counts[t] >= min_count else UNK for t in toks))
    return splits


@lru_cache(maxsize=2)
def _default_lines(module: str) -> dict:
    return default_corpus_splits(read_sword_ztext(module))


@lru_cache(maxsize=4)
def _cached(data: str, max_vocab: int) -> Corpus:
    if data in ("", "web"):
        module = Path(os.environ.get("MODULI_WEB_MODULE", DEFAULT_SWORD_MODULE))
        if not module.is_dir():
            raise FileNotFoundError(
                f"the default language-model corpus (the World English Bible) is read from {module}, which does "
                f"not exist: install the Debian package with `apt-get install {SWORD_PACKAGE}`, or pass "
                "--data DIR with a WikiText-format directory (train.txt, valid.txt, test.txt)"
            )
        s = _default_lines(str(module))
        return build_corpus(s["train"], s["valid"], s["test"], max_vocab=max_vocab,
                            source=f"World English Bible ({SWORD_PACKAGE}: {module})")
    return read_wikitext(data, max_vocab=max_vocab)


def load_corpus(data: str = "", *, max_vocab: int = 0) -> Corpus:
    """The corpus named by ``data``: ``""``/``"web"`` for the default, else a WikiText directory.

    Corpora are cached per process (read once per sweep). The environment
    variable ``MODULI_WEB_MODULE`` overrides the default module directory.
    """
    if not isinstance(data, (str, os.PathLike)):
        raise TypeError(f"data must be a path or '' (the default corpus), got {type(data).__name__}")
    return _cached(str(data), int(max_vocab))


def batchify(ids: Tensor, batch_size: int) -> Tensor:
    """Cut a token stream into ``batch_size`` parallel streams.

    Parameters
    ----------
    ids : Tensor, shape=[n]
    batch_size : int

    Returns
    -------
    Tensor, shape=[n // batch_size, batch_size]
        Column ``b`` is the contiguous slice ``ids[b*L:(b+1)*L]``; the tail
        that does not fill a row is dropped.

    Examples
    --------
    >>> batchify(torch.arange(7), 2).T.tolist()
    [[0, 1, 2], [3, 4, 5]]
    """
    if not isinstance(ids, Tensor) or ids.ndim != 1:
        raise ValueError(f"ids must be a 1-D tensor, got shape {tuple(getattr(ids, 'shape', ()))}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    n = ids.numel() // batch_size
    if n < 2:
        raise ValueError(f"{ids.numel()} tokens are too few for {batch_size} streams of at least 2 tokens")
    return ids[: n * batch_size].view(batch_size, n).t().contiguous()
