"""English sentences to distil on, read directly from Debian's ``wordnet-base`` and ``fortunes`` files.

WordNet's ``data.{noun,verb,adj,adv}`` hold one synset a line: ``offset lex_filenum ss_type ... | gloss``. The
gloss is a definition followed by quoted example sentences; both become sentences labelled with the synset's
lexicographer file (45 categories such as noun.animal or verb.motion), the labels of the linear probe.
Fortunes (files of quotes separated by ``%`` lines) add unlabelled, differently styled text.

The held-out split is decided by each sentence's content hash, so it does not depend on which files were read,
their order, or how many sentences a run keeps: a sentence is held out in every run or in none.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgekd.errors import EdgekdError

WORDNET_DIR = Path("/usr/share/wordnet")
FORTUNES_DIR = Path("/usr/share/games/fortunes")
WORDNET_FILES = ("data.noun", "data.verb", "data.adj", "data.adv")
#: WordNet 3.0's lexicographer files, by number (``lexnames(5WN)``).
LEXNAMES = (
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal", "noun.artifact", "noun.attribute",
    "noun.body", "noun.cognition", "noun.communication", "noun.event", "noun.feeling", "noun.food", "noun.group",
    "noun.location", "noun.motive", "noun.object", "noun.person", "noun.phenomenon", "noun.plant",
    "noun.possession", "noun.process", "noun.quantity", "noun.relation", "noun.shape", "noun.state",
    "noun.substance", "noun.time", "verb.body", "verb.change", "verb.cognition", "verb.communication",
    "verb.competition", "verb.consumption", "verb.contact", "verb.creation", "verb.emotion", "verb.motion",
    "verb.perception", "verb.possession", "verb.social", "verb.stative", "verb.weather", "adj.ppl",
)
#: Per mille of sentences held out (by content hash): 10 % of about 180k sentences leaves over 10,000.
HELD_OUT_PER_MILLE = 100
#: Fortunes longer than this many characters are poems or dialogues, not sentences: skipped.
MAX_FORTUNE_CHARS = 300
UNLABELLED = -1
_SPACE = re.compile(r"\s+")


@dataclass
class Corpus:
    """Sentences with their label (index into :data:`LEXNAMES`, or -1) and source (``wordnet-gloss`` ...)."""

    texts: list[str]
    labels: np.ndarray  # int16, -1 for unlabelled
    sources: list[str]
    held_out: np.ndarray  # bool: in the held-out split (by content hash)
    origin: dict[str, int] = field(default_factory=dict)  # source -> sentences read

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, idx: np.ndarray) -> Corpus:
        idx = np.asarray(idx, dtype=np.int64)
        return Corpus([self.texts[i] for i in idx], self.labels[idx], [self.sources[i] for i in idx],
                      self.held_out[idx], dict(self.origin))

    def split(self, held_out: bool) -> Corpus:
        return self.subset(np.flatnonzero(self.held_out == held_out))


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def is_held_out(text: str) -> bool:
    return int(text_hash(text)[:8], 16) % 1000 < HELD_OUT_PER_MILLE


def _clean(text: str) -> str:
    return _SPACE.sub(" ", text).strip()


def parse_wordnet_line(line: str) -> tuple[int, str, list[str]] | None:
    """(lexicographer file, definition, examples) of one ``data.*`` line; None for the licence header."""
    if not line or line.startswith("  "):
        return None
    head, sep, gloss = line.partition(" | ")
    fields = head.split()
    if not sep or len(fields) < 3 or not fields[1].isdigit():
        return None
    lex = int(fields[1])
    definition, examples = [], []
    for part in gloss.split(";"):
        part = _clean(part)
        if part.startswith('"'):
            example = _clean(part.strip('"'))
            if example:
                examples.append(example)
        elif part:
            definition.append(part)
    return lex, "; ".join(definition), examples


def read_wordnet(folder: Path = WORDNET_DIR) -> list[tuple[str, int, str]]:
    """Every gloss definition and example sentence as (text, lexicographer file, source)."""
    out: list[tuple[str, int, str]] = []
    for name in WORDNET_FILES:
        path = folder / name
        if not path.is_file():
            raise EdgekdError(f"{path} not found; install Debian's wordnet-base (apt-get install wordnet-base)")
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            parsed = parse_wordnet_line(line)
            if parsed is None:
                continue
            lex, definition, examples = parsed
            if not 0 <= lex < len(LEXNAMES):
                raise EdgekdError(f"{path}: lexicographer file {lex} outside 0..44; is this WordNet 3.0?")
            if definition:
                out.append((definition, lex, "wordnet-gloss"))
            out.extend((example, lex, "wordnet-example") for example in examples)
    return out


def read_fortunes(folder: Path = FORTUNES_DIR) -> list[str]:
    """Quotes from the fortune files (``%``-separated; the ``.dat`` indexes and ``.u8`` links skipped)."""
    if not folder.is_dir():
        raise EdgekdError(f"{folder} not found; install Debian's fortunes (apt-get install fortunes)")
    out = []
    for path in sorted(folder.iterdir()):
        if path.suffix or not path.is_file() or path.is_symlink():
            continue
        text = path.read_bytes().decode("utf-8", errors="replace")
        for quote in re.split(r"^%$", text, flags=re.MULTILINE):
            quote = _clean(quote.replace("\b", ""))
            if 0 < len(quote) <= MAX_FORTUNE_CHARS:
                out.append(quote)
    return out


def load_corpus(wordnet: Path = WORDNET_DIR, fortunes: Path | None = FORTUNES_DIR) -> Corpus:
    """WordNet glosses and examples (labelled), then fortunes (unlabelled); exact duplicates kept once."""
    rows = read_wordnet(wordnet)
    if fortunes is not None:
        rows += [(q, UNLABELLED, "fortunes") for q in read_fortunes(fortunes)]
    seen: set[str] = set()
    texts, labels, sources = [], [], []
    origin: dict[str, int] = {}
    for text, lex, source in rows:
        origin[source] = origin.get(source, 0) + 1
        if text in seen:
            continue
        seen.add(text)
        texts.append(text)
        labels.append(lex)
        sources.append(source)
    held = np.array([is_held_out(t) for t in texts], dtype=bool)
    return Corpus(texts, np.array(labels, dtype=np.int16), sources, held, origin)


def corpus_from_texts(texts: list[str], source: str = "user") -> Corpus:
    """User sentences as an unlabelled corpus (duplicates kept once, held out by content hash like the built-in
    one); metrics then have no probe."""
    unique = list(dict.fromkeys(_clean(t) for t in texts if _clean(t)))
    if not unique:
        raise EdgekdError(f"{source}: no sentences")
    return Corpus(unique, np.full(len(unique), UNLABELLED, dtype=np.int16), [source] * len(unique),
                  np.array([is_held_out(t) for t in unique], dtype=bool), {source: len(texts)})


def read_sentence_file(path: str | Path) -> list[str]:
    """User text: one sentence a line (``.txt``), or an ``.npz`` whose ``text`` array holds strings.

    ``.npz`` is read with ``allow_pickle=False``: only numpy unicode arrays load, never pickled objects.
    """
    path = Path(path)
    if not path.is_file():
        raise EdgekdError(f"{path}: no such file; give a text file with one sentence a line, or an .npz of strings")
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as data:
                if "text" not in data.files:
                    raise EdgekdError(f"{path}: no 'text' array (it has {', '.join(data.files) or 'none'}); "
                                      "save the sentences as np.savez(path, text=np.array(sentences))")
                arr = data["text"]
        except ValueError:
            raise EdgekdError(f"{path}: 'text' must be a numpy string array (dtype <U), not objects") from None
        if arr.dtype.kind != "U" or arr.ndim != 1:
            raise EdgekdError(f"{path}: 'text' must be a 1-D numpy string array, got {arr.dtype} {arr.shape}")
        lines = [str(t) for t in arr]
    else:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError:
            raise EdgekdError(f"{path}: not UTF-8 text; save it as UTF-8, one sentence a line") from None
    texts = [_clean(t) for t in lines if _clean(t)]
    if not texts:
        raise EdgekdError(f"{path}: no sentences; give one sentence a line")
    return texts
