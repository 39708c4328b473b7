"""WordNet glosses by lexicographer class (read from files in WordNet's exact format) and a tiny
tree of all-MiniLM-L6-v2 fine-tunes made through the command line."""

from pathlib import Path

import jax
import numpy as np
import pytest

from probegen_jax.archs.minilm import classify_hidden, load_minilm, tokenize
from probegen_jax.cli import main
from probegen_jax.data.wordnet import LEXNAMES, WORDNET_DIR, load_wordnet, read_wordnet_data
from probegen_jax.errors import DataFileError
from probegen_jax.make import text_tree
from probegen_jax.make.text_tree import hidden_states, sample_glosses
from probegen_jax.make.trees import load_trees
from probegen_jax.methods.probex.experts import all_layer_names, probex_trees

LICENCE = [f"  {i} licence text of the database, two leading spaces  " for i in range(1, 30)]
# lex_filenum 05 noun.animal, 13 noun.food, 38 verb.motion; pointers, frames and w_cnt in hex as WordNet writes them
GLOSSES = {
    "noun": [(5, "a domesticated carnivorous mammal that barks"), (5, "a small bird that sings at dawn"),
             (5, "a large fish of the open sea"), (5, "a striped wild cat of asia"),
             (13, "bread baked from rye flour"), (13, "a sweet drink made of pressed apples"),
             (13, "a soup of vegetables and meat"), (13, "a cake filled with cream")],
    "verb": [(38, "move fast by using one's feet"), (38, "travel through the air; \"birds fly south\""),
             (38, "move through water by moving the limbs"), (38, "walk slowly and without aim")],
    "adj": [], "adv": [],
}


def write_wordnet(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for pos, rows in GLOSSES.items():
        ss = {"noun": "n", "verb": "v", "adj": "a", "adv": "r"}[pos]
        lines = list(LICENCE)
        for i, (lex, gloss) in enumerate(rows):
            frames = " 01 + 02 00" if pos == "verb" else ""
            lines.append(f"{1740 + 100 * i:08d} {lex:02d} {ss} 0{1 + i % 2:x} word_{i} 0" + (" synonym 1" if i % 2 else "")
                         + f" 001 @ 00001930 {ss} 0000{frames} | {gloss}  ")
        (folder / f"data.{pos}").write_text("\n".join(lines) + "\n")
    return folder


def test_wordnet_glosses_and_classes(tmp_path):
    corpus = load_wordnet(write_wordnet(tmp_path / "wn"))
    assert len(LEXNAMES) == 45 and LEXNAMES[5][0] == "noun.animal" and LEXNAMES[44][0] == "adj.ppl"
    assert corpus.texts[0] == "a domesticated carnivorous mammal that barks"
    assert corpus.texts[9] == 'travel through the air; "birds fly south"'
    assert corpus.counts()[[5, 13, 38]].tolist() == [4, 4, 4] and corpus.counts().sum() == 12
    assert corpus.class_descriptions[38] == "verbs of walking, flying, swimming"
    classes, parts = sample_glosses(corpus, 3, 2, 1, seed=0)
    assert classes == [5, 13, 38] and parts["train"][1].tolist() == [0, 0, 1, 1, 2, 2]
    assert not set(parts["train"][0]) & set(parts["test"][0])


def test_wordnet_errors_name_the_file_and_the_install_command(tmp_path):
    with pytest.raises(DataFileError, match=r"data.noun.*apt-get install wordnet-base"):
        load_wordnet(tmp_path / "nowhere")
    folder = write_wordnet(tmp_path / "bad")
    (folder / "data.adv").write_text("\n".join(LICENCE) + "\n00001740 02 r 01 fast 0 000 no gloss here\n")
    with pytest.raises(DataFileError, match=r"data.adv:30: not a WordNet synset line"):
        load_wordnet(folder)
    (folder / "data.adv").write_text("00001740 45 r 01 fast 0 000 | quickly\n")
    with pytest.raises(DataFileError, match="lex_filenum 45 is not one of the 45"):
        read_wordnet_data(folder / "data.adv")


def test_debian_wordnet_has_every_synset():  # make test installs wordnet-base
    corpus = load_wordnet(WORDNET_DIR)
    assert len(corpus.texts) == 117_659 and int((corpus.counts() >= 300).sum()) == 40


def test_tiny_text_tree_end_to_end(tmp_path, capsys, monkeypatch):
    wordnet, out = write_wordnet(tmp_path / "wn"), tmp_path / "trees"
    args = ["zoo", "make", "text-tree", "--out", str(out), "--children", "4", "--chunk-size", "4", "--steps", "2", "3",
            "--classes-per-child", "2", "3", "--wordnet-dir", str(wordnet)]
    small = {"min_glosses": 3, "train_per_class": 3, "test_per_class": 1, "max_tokens": 16, "pretrain_steps": 2}
    original = text_tree.text_trees
    monkeypatch.setattr(text_tree, "text_trees", lambda n, seed, **kw: original(n, seed, **kw, **small))
    assert main(args) == 0
    trees = load_trees(out)
    assert list(trees) == ["minilm", "minilm_wordnet"]
    assert main(args) == 0  # made: found again, not remade
    assert "already made" in capsys.readouterr().err
    base, children = trees["minilm"]
    assert len(children) == 4 and children.targets["classes"].shape == (4, 3)
    assert children.targets["classes"].sum(1).min() >= 2 and children.targets["tree"].tolist() == [0] * 4
    assert children.meta["class_names"] == ["noun.animal", "noun.food", "verb.motion"]
    assert trees["minilm_wordnet"][1].targets["tree"].tolist() == [1] * 4
    # the base's layer is the pretrained one; a child's moved from it
    pretrained = np.asarray(load_minilm().params["layer5"]["query"]["kernel"])
    np.testing.assert_array_equal(base.params["layer5"]["query"]["kernel"][0], pretrained)
    assert not np.allclose(children.params["layer5"]["query"]["kernel"][0], pretrained)
    zoo = probex_trees(out)["minilm"]
    assert "layer5/query/kernel" in all_layer_names(zoo, exclude=["head"]) and "head/kernel" not in all_layer_names(
        zoo, exclude=["head"])
    # a child's forward pass from token ids equals its pass from the cached frozen states
    texts = ["a small bird that sings at dawn", "move fast by using one's feet"]
    child = jax.tree.map(lambda a: a[1], children.params)
    ids, _ = tokenize(texts, 16, pad_to=16)
    cached = classify_hidden(child, hidden_states(texts, 1, 16), load_minilm().config)
    np.testing.assert_allclose(children.arch.apply(child, ids), cached, atol=1e-4)
