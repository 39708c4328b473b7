"""WordNet 3.0 glosses labelled by lexicographer class: a real 45-way text classification corpus.

Debian's ``wordnet-base`` puts the database under ``/usr/share/wordnet``; ``data.{noun, verb,
adj, adv}`` each open with licence lines (two leading spaces), then one synset a line::

    offset lex_filenum ss_type w_cnt word lex_id [word lex_id ...] p_cnt [pointer ...] [frames] | gloss

``lex_filenum`` (two decimal digits) is the synset's lexicographer file, one of the 45 classes of
lexnames(5WN), which ships no data file: ``LEXNAMES`` holds the table. Nothing downloads.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from probegen_jax.errors import DataFileError

WORDNET_DIR = Path("/usr/share/wordnet")
WORDNET_HINT = ("install Debian's WordNet 3.0 with `apt-get install wordnet-base` (`make wordnet`), or pass the "
                "folder holding data.noun, data.verb, data.adj and data.adv")
PARTS_OF_SPEECH = ("noun", "verb", "adj", "adv")

# lexnames(5WN): (file number = index, name, contents)
LEXNAMES: tuple[tuple[str, str], ...] = (
    ("adj.all", "all adjective clusters"),
    ("adj.pert", "relational adjectives (pertainyms)"),
    ("adv.all", "all adverbs"),
    ("noun.Tops", "unique beginner for nouns"),
    ("noun.act", "nouns denoting acts or actions"),
    ("noun.animal", "nouns denoting animals"),
    ("noun.artifact", "nouns denoting man-made objects"),
    ("noun.attribute", "nouns denoting attributes of people and objects"),
    ("noun.body", "nouns denoting body parts"),
    ("noun.cognition", "nouns denoting cognitive processes and contents"),
    ("noun.communication", "nouns denoting communicative processes and contents"),
    ("noun.event", "nouns denoting natural events"),
    ("noun.feeling", "nouns denoting feelings and emotions"),
    ("noun.food", "nouns denoting foods and drinks"),
    ("noun.group", "nouns denoting groupings of people or objects"),
    ("noun.location", "nouns denoting spatial position"),
    ("noun.motive", "nouns denoting goals"),
    ("noun.object", "nouns denoting natural objects (not man-made)"),
    ("noun.person", "nouns denoting people"),
    ("noun.phenomenon", "nouns denoting natural phenomena"),
    ("noun.plant", "nouns denoting plants"),
    ("noun.possession", "nouns denoting possession and transfer of possession"),
    ("noun.process", "nouns denoting natural processes"),
    ("noun.quantity", "nouns denoting quantities and units of measure"),
    ("noun.relation", "nouns denoting relations between people or things or ideas"),
    ("noun.shape", "nouns denoting two and three dimensional shapes"),
    ("noun.state", "nouns denoting stable states of affairs"),
    ("noun.substance", "nouns denoting substances"),
    ("noun.time", "nouns denoting time and temporal relations"),
    ("verb.body", "verbs of grooming, dressing and bodily care"),
    ("verb.change", "verbs of size, temperature change, intensifying, etc."),
    ("verb.cognition", "verbs of thinking, judging, analyzing, doubting"),
    ("verb.communication", "verbs of telling, asking, ordering, singing"),
    ("verb.competition", "verbs of fighting, athletic activities"),
    ("verb.consumption", "verbs of eating and drinking"),
    ("verb.contact", "verbs of touching, hitting, tying, digging"),
    ("verb.creation", "verbs of sewing, baking, painting, performing"),
    ("verb.emotion", "verbs of feeling"),
    ("verb.motion", "verbs of walking, flying, swimming"),
    ("verb.perception", "verbs of seeing, hearing, feeling"),
    ("verb.possession", "verbs of buying, selling, owning"),
    ("verb.social", "verbs of political and social activities and events"),
    ("verb.stative", "verbs of being, having, spatial relations"),
    ("verb.weather", "verbs of raining, snowing, thawing, thundering"),
    ("adj.ppl", "participial adjectives"),
)


@dataclasses.dataclass(frozen=True)
class TextCorpus:
    """Labelled texts: ``labels[i]`` indexes ``class_names`` (and ``class_descriptions``)."""

    name: str
    texts: tuple[str, ...]
    labels: np.ndarray
    class_names: tuple[str, ...]
    class_descriptions: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def counts(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=self.num_classes)


def parse_data_line(line: str, where: str) -> tuple[int, str]:
    """``(lex_filenum, gloss)`` of one synset line of a WordNet ``data.*`` file."""
    fields, sep, gloss = line.partition(" | ")
    parts = fields.split()
    if not sep or len(parts) < 4 or not parts[1].isdigit() or len(parts[1]) != 2:
        raise DataFileError(f"{where}: not a WordNet synset line (expected 'offset lex_filenum ss_type w_cnt ... | "
                            f"gloss'), got {line[:80]!r}")
    lex = int(parts[1])
    if lex >= len(LEXNAMES):
        raise DataFileError(f"{where}: lex_filenum {lex} is not one of the {len(LEXNAMES)} lexicographer files")
    return lex, gloss.strip()


def read_wordnet_data(path: str | os.PathLike) -> list[tuple[int, str]]:
    """Every synset of one ``data.*`` file as ``(lex_filenum, gloss)``, licence lines skipped."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError as e:
        raise DataFileError(f"{path}: file not found; {WORDNET_HINT}") from e
    except OSError as e:
        raise DataFileError(f"{path}: cannot be read ({e}); reinstall it: {WORDNET_HINT}") from e
    return [parse_data_line(line, f"{path}:{n}") for n, line in enumerate(text.splitlines(), 1)
            if line.strip() and not line.startswith("  ")]


def load_wordnet(data_dir: str | os.PathLike | None = None) -> TextCorpus:
    """All glosses of WordNet (117,659 synsets in 3.0), labelled by their 45 lexicographer classes,
    in file order (noun, verb, adj, adv)."""
    folder = Path(data_dir) if data_dir is not None else WORDNET_DIR
    missing = [f"data.{p}" for p in PARTS_OF_SPEECH if not (folder / f"data.{p}").is_file()]
    if missing:
        raise DataFileError(f"{folder}: WordNet files {missing} not found; {WORDNET_HINT}")
    synsets = [s for p in PARTS_OF_SPEECH for s in read_wordnet_data(folder / f"data.{p}")]
    if not synsets:
        raise DataFileError(f"{folder}: the WordNet data files hold no synsets; {WORDNET_HINT}")
    labels, glosses = zip(*synsets)
    return TextCorpus("wordnet", tuple(glosses), np.asarray(labels, np.int32), tuple(n for n, _ in LEXNAMES),
                      tuple(d for _, d in LEXNAMES))


__all__ = ["LEXNAMES", "TextCorpus", "WORDNET_DIR", "load_wordnet", "parse_data_line", "read_wordnet_data"]
