"""SANE: the tokeniser's exact inverse, function-preserving augmentations, the objective against
reference computations, haloed windows, training on a small CNN zoo, property prediction and
sampling, and the errors for bad input."""

import dataclasses
import json
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import zoo_shared_by_workers
from sklearn.linear_model import Ridge

from probegen_jax.archs import make_arch
from probegen_jax.archs.cnn import ACTIVATION_LEAF
from probegen_jax.data import load_digits
from probegen_jax.io import write_json
from probegen_jax.errors import CheckpointError, DataFileError, ShapeMismatchError
from probegen_jax.methods.sane.augment import multiplicative_noise, permute_hidden
from probegen_jax.methods.sane.embed import in_windows, window_starts, zoo_embeddings, zoo_latents
from probegen_jax.methods.sane.losses import masked_mse, nt_xent
from probegen_jax.methods.sane.model import SANEConfig
from probegen_jax.methods.sane.properties import ridge_fit, ridge_probe
from probegen_jax.methods.sane.sample import kde_sample, sample_sub, top_fraction
from probegen_jax.methods.sane.tokens import (
    STANDARDIZATION_FILE,
    TokenLayout,
    destandardize,
    detokenize,
    fit_standardization,
    layer_params,
    load_standardization,
    save_standardization,
    standardize,
    token_layout,
    tokenize,
)
from probegen_jax.methods.sane.model import make_sane
from probegen_jax.methods.sane.train import MODEL_FILE, TrainedSANE, load_sane, save_sane, train_sane
from probegen_jax.training.loop import TrainConfig
from probegen_jax.make.cnn import CNNTraining, SmallCNNZooConfig, finetune_networks, make_small_cnn_zoo, training_data

CNN = make_arch("small_cnn", input_shape=(8, 8, 1), activation=("relu", "tanh"))
MLP = make_arch("mlp", input_shape=(5,), hidden=7, depth=3, out_dim=3)
TINY_SANE = SANEConfig(token_size=32, window=16, d_model=32, heads=2, encoder_layers=1, decoder_layers=1, latent=8,
                       projection_dim=8)


def stacked(arch, n, seed=0):
    return jax.vmap(arch.init)(jax.random.split(jax.random.key(seed), n))


def cnn_params(seed=0, activation=1):
    return {**CNN.init(jax.random.key(seed)), ACTIVATION_LEAF: jnp.asarray(activation, jnp.int32)}


@pytest.fixture(scope="module")
def digits():
    return load_digits()


@pytest.fixture(scope="module")
def epoch_zoo(digits, tmp_path_factory):
    cfg = SmallCNNZooConfig(training=CNNTraining(dataset="digits", train_size=256, test_size=128, train_eval_size=128,
                                                 epochs=(0, 1, 3)), num_networks=48, chunk_size=48, seed=2)
    return zoo_shared_by_workers(tmp_path_factory, "sane_epoch_zoo",
                                 lambda: make_small_cnn_zoo(cfg, data=digits, progress=False))


@pytest.fixture(scope="module")
def trained(epoch_zoo, tmp_path_factory):
    out = tmp_path_factory.mktemp("sane")
    model, result = train_sane(epoch_zoo, TINY_SANE, TrainConfig(epochs=12, batch_size=16, learning_rate=2e-3,
                                                                 schedule="onecycle", optimizer="adamw"),
                               out=out, progress=False)
    return model, result, out


# ----------------------------------------------------------------------------- tokens


@pytest.mark.parametrize("arch", [CNN, MLP], ids=["small_cnn", "mlp"])
@pytest.mark.parametrize("token_size", [7, 32, 150])
def test_tokens_back_to_params_reproduce_the_outputs_exactly(arch, token_size):
    params = cnn_params() if arch is CNN else arch.init(jax.random.key(1))
    layout = token_layout(params, token_size)
    tokens = tokenize(params, layout)
    assert tokens.shape == (layout.num_tokens, token_size)
    extras = {k: v for k, v in params.items() if k not in {s.name for s in layout.layers}}
    rebuilt = detokenize(tokens, layout, extras)
    x = jax.random.normal(jax.random.key(2), (4, *arch.input_shape))
    np.testing.assert_array_equal(np.asarray(arch.apply(rebuilt, x)), np.asarray(arch.apply(params, x)))
    for a, b in zip(jax.tree.leaves(rebuilt), jax.tree.leaves(params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_layout_rows_positions_and_mask():
    params = cnn_params()
    layout = token_layout(params, 64)
    # conv0 rows 3*3*1+1 = 10 -> 1 token; conv1/conv2 rows 145 -> 3 tokens; dense0 rows 17 -> 1 token
    assert [s.tokens_per_row for s in layout.layers] == [1, 3, 3, 1]
    assert layout.num_tokens == 16 + 48 + 48 + 10
    assert layout.mask().sum() == 4970 == layout.num_weights  # the small CNN's weights and biases
    pos = layout.positions()
    assert (pos[:, 0] == np.arange(layout.num_tokens)).all()
    assert np.bincount(pos[:, 1]).tolist() == [16, 48, 48, 10]
    assert pos[16:64, 2].tolist() == [k for k in range(16) for _ in range(3)]  # the row, for each of its pieces
    assert layout.position_table_sizes() == (122, 4, 16)
    tokens = np.asarray(tokenize(params, layout))
    assert (tokens[layout.mask() == 0] == 0).all()


def test_layout_mismatch_names_the_layer():
    layout = token_layout(cnn_params(), 64)
    wide = make_arch("small_cnn", input_shape=(8, 8, 1), channels=8).init(jax.random.key(0))
    with pytest.raises(ShapeMismatchError, match="conv0"):
        layout.check(wide)
    with pytest.raises(ShapeMismatchError, match="layers"):
        layout.check(MLP.init(jax.random.key(0)))
    with pytest.raises(ShapeMismatchError, match=r"expected \[122, 64\]"):
        detokenize(jnp.zeros((10, 64)), layout)
    with pytest.raises(ValueError, match="token size must be positive"):
        token_layout(cnn_params(), -1)


def test_automatic_and_oversized_token_sizes_and_window_larger_than_the_sequence():
    params = cnn_params()
    auto = token_layout(params, 0)
    assert auto.token_size == 145 and auto.num_tokens == 16 + 16 + 16 + 10  # one token per row
    big = token_layout(params, 5000)  # larger than the network: every row is one padded token
    assert big.num_tokens == auto.num_tokens and big.mask().sum() == 4970
    np.testing.assert_array_equal(np.asarray(tokenize(params, big))[:, :145], np.asarray(tokenize(params, auto)))
    cfg = dataclasses.replace(TINY_SANE, token_size=0).for_layout(auto)
    assert cfg.token_size == 145 and cfg.max_layer_tokens == 16
    layout = token_layout(params, 64)
    with pytest.raises(ValueError, match="window 500 is larger than the sequence"):
        dataclasses.replace(TINY_SANE, token_size=64, window=500).for_layout(layout)


def test_standardization_per_layer_inverse_and_file(tmp_path):
    zoo = stacked(MLP, 20)
    zoo = jax.tree.map(lambda a: a * jnp.linspace(1.0, 3.0, 20).reshape(-1, *[1] * (a.ndim - 1)) + 1.0, zoo)
    layout = token_layout(jax.tree.map(lambda a: a[0], zoo), 16)
    stats = fit_standardization(zoo, layout)
    for i, s in enumerate(layout.layers):  # mean of per-network means, sqrt of the mean unbiased variance
        per_net = [np.concatenate([np.ravel(zoo[s.name]["kernel"][n]), np.ravel(zoo[s.name]["bias"][n])])
                   for n in range(20)]
        assert stats.mean[i] == pytest.approx(np.mean([v.mean() for v in per_net]), rel=1e-5)
        assert stats.std[i] == pytest.approx(np.sqrt(np.mean([v.var(ddof=1) for v in per_net])), rel=1e-5)
        pooled = np.concatenate(per_net).std()
        assert abs(stats.std[i] - pooled) > 1e-3 * pooled  # not the pooled std: the spread of means is left out
    std = standardize(zoo, stats, layout)
    back = destandardize(std, stats, layout)
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(zoo), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    save_standardization(tmp_path, stats, layout)
    loaded, loaded_layout = load_standardization(tmp_path)
    np.testing.assert_array_equal(loaded.mean, stats.mean)
    assert loaded_layout == layout
    (tmp_path / STANDARDIZATION_FILE).unlink()
    with pytest.raises(DataFileError, match="standardisation file missing"):
        load_standardization(tmp_path)
    (tmp_path / STANDARDIZATION_FILE).write_text("{not json")
    with pytest.raises(DataFileError, match="damaged"):
        load_standardization(tmp_path)


# ----------------------------------------------------------------------------- the SANE reference code's tokens

OFFICIAL = np.load(Path(__file__).parent / "fixtures" / "sane_official" / "sane_official.npz")
BN_LEAVES = {"weight": "scale", "bias": "bias", "running_mean": "mean", "running_var": "var"}


def torch_state(kind: str, seed: int) -> dict[str, np.ndarray]:
    """A fixture network's state dict (torch layout, in the module's order)."""
    prefix = f"{kind}/net{seed}/"
    return {k[len(prefix):]: OFFICIAL[k] for k in OFFICIAL.files if k.startswith(prefix)}


def library_params(state: dict[str, np.ndarray]) -> dict:
    """Torch layout to this library's: kernels ``[in, out]`` / HWIO, BatchNorm ``scale, bias, mean, var``."""
    params = {}
    for key, value in state.items():
        name, leaf = key.split(".")
        layer = params.setdefault(name, {})
        if name.startswith("bn"):
            layer[BN_LEAVES[leaf]] = jnp.asarray(value)
        else:
            layer["kernel" if leaf == "weight" else "bias"] = jnp.asarray(
                value.T if leaf == "weight" and value.ndim == 2 else
                value.transpose(2, 3, 1, 0) if leaf == "weight" else value)
    return params


def spec_tokens(state: dict[str, np.ndarray], size: int, ignore_bn: bool):
    """SANE's tokeniser written from its description, on a torch state dict: every weight and running
    statistic in order, rows ``reshape(out, -1)`` with the bias as a last column, pieces of ``size``."""
    tensors = []
    for key, w in state.items():
        name, leaf = key.split(".")
        if (ignore_bn and name.startswith("bn")) or leaf == "bias":
            continue
        rows = w.reshape(len(w), -1)
        if leaf == "weight" and f"{name}.bias" in state:
            rows = np.concatenate([rows, state[f"{name}.bias"][:, None]], axis=1)
        tensors.append(rows)
    if size == 0:
        size = max(r.shape[1] for r in tensors)
    tokens, mask, pos = [], [], []
    for l, rows in enumerate(tensors):
        pieces = -(-rows.shape[1] // size)
        padded = np.zeros((len(rows), pieces * size), np.float32)
        padded[:, : rows.shape[1]] = rows
        tokens.append(padded.reshape(-1, size))
        mask.append((np.arange(pieces * size) < rows.shape[1])[None].repeat(len(rows), 0).reshape(-1, size))
        pos += [(l, k) for k in range(len(rows)) for _ in range(pieces)]
    pos = np.asarray([(n, l, k) for n, (l, k) in enumerate(pos)])
    return np.concatenate(tokens), np.concatenate(mask), pos


CASES = [("mlp", False), ("cnn", False), ("cnn_bn", False), ("cnn_bn", True)]


@pytest.mark.parametrize("kind,ignore_bn", CASES)
@pytest.mark.parametrize("size", [0, 4, 10_000])
def test_tokens_match_the_sane_reference_code_and_the_description(kind, ignore_bn, size):
    state = torch_state(kind, 0)
    params = library_params(state)
    layout = token_layout(params, size, ignore_norm=ignore_bn)
    tokens, mask, pos = np.asarray(tokenize(params, layout)), layout.mask().astype(bool), layout.positions()
    tag = f"{kind}/ignore_bn{int(ignore_bn)}/size{size}"
    np.testing.assert_array_equal(tokens, OFFICIAL[f"{tag}/tokens"])
    np.testing.assert_array_equal(mask, OFFICIAL[f"{tag}/mask"])
    np.testing.assert_array_equal(pos, OFFICIAL[f"{tag}/pos"])
    if size:  # the description has no automatic size quirks to follow
        ref_tokens, ref_mask, ref_pos = spec_tokens(state, size, ignore_bn)
        np.testing.assert_array_equal(tokens, ref_tokens)
        np.testing.assert_array_equal(mask, ref_mask)
        np.testing.assert_array_equal(pos, ref_pos)
    # the reference's tokens decode to the networks' own tensors
    back = detokenize(jnp.asarray(OFFICIAL[f"{tag}/tokens"]), layout)
    for name, layer in layer_params(params, layout).items():
        for leaf, value in layer.items():
            np.testing.assert_array_equal(np.asarray(back[name][leaf]), np.asarray(value), err_msg=f"{name}/{leaf}")


@pytest.mark.parametrize("kind,ignore_bn", CASES)
def test_standardisation_matches_the_sane_reference_code(kind, ignore_bn):
    nets = [library_params(torch_state(kind, s)) for s in range(3)]
    zoo = jax.tree.map(lambda *a: jnp.stack(a), *nets)
    layout = token_layout(nets[0], 4, ignore_norm=ignore_bn)
    stats = fit_standardization(layer_params(zoo, layout), layout)
    tag = f"{kind}/ignore_bn{int(ignore_bn)}/std"
    assert len(OFFICIAL[f"{tag}/keys"]) == len(layout.layers)
    np.testing.assert_allclose(stats.mean, OFFICIAL[f"{tag}/mean"], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(stats.std, OFFICIAL[f"{tag}/std"], rtol=1e-5)
    standardized = standardize(layer_params(zoo, layout), stats, layout)
    for s in range(3):
        tokens = tokenize(jax.tree.map(lambda a: a[s], standardized), layout)
        np.testing.assert_allclose(np.asarray(tokens), OFFICIAL[f"{tag}/net{s}/tokens"], rtol=1e-5, atol=1e-5)
    back = destandardize(standardized, stats, layout)
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(layer_params(zoo, layout)), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)


def test_legacy_layout_of_older_models_reads_as_before():
    params = cnn_params()
    old = {"token_size": 64, "layers": [{"name": n, "kernel_shape": list(params[n]["kernel"].shape)}
                                        for n in ("conv0", "conv1", "conv2", "dense0")]}
    layout = TokenLayout.from_json(old)
    assert layout.convention == "legacy" and TokenLayout.from_json(layout.to_json()) == layout
    assert layout == token_layout(params, 64, convention="legacy")
    # rows ordered (kh, kw, in) and positions k counting the tokens of a layer
    rows = np.concatenate([np.asarray(params["conv1"]["kernel"]).reshape(-1, 16).T,
                           np.asarray(params["conv1"]["bias"])[:, None]], axis=1)
    padded = np.pad(rows, ((0, 0), (0, 3 * 64 - 145))).reshape(-1, 64)
    np.testing.assert_array_equal(np.asarray(tokenize(params, layout))[16:64], padded)
    assert layout.positions()[16:64, 2].tolist() == list(range(48))
    rebuilt = detokenize(tokenize(params, layout), layout)
    np.testing.assert_array_equal(np.asarray(rebuilt["conv1"]["kernel"]), np.asarray(params["conv1"]["kernel"]))


# ----------------------------------------------------------------------------- augmentations


@pytest.mark.parametrize("arch", [CNN, MLP], ids=["small_cnn", "mlp"])
def test_permuting_hidden_units_preserves_the_function(arch):
    params = cnn_params(activation=0) if arch is CNN else arch.init(jax.random.key(1))
    names = [s.name for s in token_layout(params, 16).layers]
    permuted = permute_hidden(params, jax.random.key(3), names)
    x = jax.random.normal(jax.random.key(4), (6, *arch.input_shape))
    np.testing.assert_allclose(arch.apply(permuted, x), arch.apply(params, x), rtol=1e-5, atol=1e-5)
    assert not np.allclose(permuted[names[0]]["kernel"], params[names[0]]["kernel"])
    np.testing.assert_array_equal(permuted[names[-1]]["bias"], params[names[-1]]["bias"])  # outputs stay put


def test_permutations_carry_batchnorm_layers_along():
    k = jax.random.split(jax.random.key(7), 6)
    params = {"dense0": {"kernel": jax.random.normal(k[0], (5, 6)), "bias": jax.random.normal(k[1], (6,))},
              "bn0": {"scale": jax.random.uniform(k[2], (6,)) + 0.5, "bias": jax.random.normal(k[3], (6,)),
                      "mean": jax.random.normal(k[4], (6,)), "var": jnp.linspace(0.5, 2.0, 6)},
              "dense1": {"kernel": jax.random.normal(k[5], (6, 3)), "bias": jnp.zeros(3)}}

    def apply(p, x):  # dense -> BatchNorm (inference) -> relu -> dense
        h = x @ p["dense0"]["kernel"] + p["dense0"]["bias"]
        bn = p["bn0"]
        h = (h - bn["mean"]) / jnp.sqrt(bn["var"] + 1e-5) * bn["scale"] + bn["bias"]
        return jax.nn.relu(h) @ p["dense1"]["kernel"] + p["dense1"]["bias"]

    layout = token_layout(params, 8)
    assert layout.layer_names() == ["dense0", "bn0", "dense1"]
    assert [(s.name, s.part) for s in layout.layers][1:4] == [("bn0", "scale"), ("bn0", "mean"), ("bn0", "var")]
    permuted = permute_hidden(params, jax.random.key(3), layout.layer_names())
    x = jax.random.normal(jax.random.key(4), (4, 5))
    np.testing.assert_allclose(apply(permuted, x), apply(params, x), rtol=1e-5, atol=1e-5)
    assert not np.allclose(permuted["bn0"]["mean"], params["bn0"]["mean"])


def test_multiplicative_noise_scales_values_and_keeps_padding():
    tokens = jnp.concatenate([jnp.ones((100, 50)), jnp.zeros((100, 10))], axis=1)
    noisy = np.asarray(multiplicative_noise(tokens, jax.random.key(0), 0.1))
    assert (noisy[:, 50:] == 0).all()
    assert abs(noisy[:, :50].std() - 0.1) < 0.01 and abs(noisy[:, :50].mean() - 1) < 0.01


# ----------------------------------------------------------------------------- objective


def nt_xent_reference(z1, z2, t):
    z = np.concatenate([z1, z2])
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    n = len(z1)
    losses = []
    for i in range(2 * n):
        j = (i + n) % (2 * n)
        sims = np.array([z[i] @ z[k] / t for k in range(2 * n) if k != i])
        pos = z[i] @ z[j] / t
        losses.append(-pos + np.log(np.exp(sims).sum()))
    return np.mean(losses)


def test_nt_xent_matches_a_reference_and_masked_mse_ignores_padding():
    z1, z2 = np.random.default_rng(0).normal(size=(2, 5, 4))
    np.testing.assert_allclose(nt_xent(jnp.asarray(z1), jnp.asarray(z2), 0.1), nt_xent_reference(z1, z2, 0.1),
                               rtol=1e-4)
    assert float(nt_xent(jnp.asarray(z1), jnp.asarray(z1), 0.1)) < float(nt_xent(jnp.asarray(z1), jnp.asarray(z2), 0.1))
    pred, target = jnp.ones((2, 3)), jnp.asarray([[1.0, 3.0, 100.0], [1.0, 1.0, 100.0]])
    mask = jnp.asarray([1.0, 1.0, 0.0])
    assert float(masked_mse(pred, target, mask)) == pytest.approx(1.0)


@pytest.mark.parametrize("num_tokens,window,halo", [(122, 16, 4), (50, 16, 0), (17, 16, 3), (10, 16, 2)])
def test_haloed_windows_encode_every_token_once(num_tokens, window, halo):
    starts, core = window_starts(num_tokens, window, halo)
    x = jnp.arange(num_tokens * 2, dtype=jnp.float32).reshape(num_tokens, 2)
    pos = jnp.zeros((num_tokens, 3), jnp.int32)
    seen = []

    def tokenwise(params, xw, pw):  # no interaction between tokens: the windowed result must equal it
        assert xw.shape[0] == min(window, num_tokens)
        return xw * 2.0 + params

    out = in_windows(tokenwise, 1.0, x, pos, 2, window=window, halo=halo)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(x * 2.0 + 1.0))
    for i, s in enumerate(starts):  # each core lies inside its window, with the halo where there is room
        lo, hi = i * core, min((i + 1) * core, num_tokens)
        assert s <= lo and hi <= s + min(window, num_tokens)
        seen.extend(range(lo, hi))
    assert sorted(seen) == list(range(num_tokens))


# ----------------------------------------------------------------------------- training, embeddings, properties


def test_sane_learns_to_reconstruct_and_embeds_every_network(trained, epoch_zoo):
    model, result, _ = trained
    first, last = result.history[0], result.history[-1]
    assert last["val_mse"] < 0.5 * first["val_mse"], result.history  # held-out networks' weights
    assert result.best_epoch >= len(result.history) // 2
    emb = zoo_embeddings(model, epoch_zoo.params)
    assert emb.shape == (len(epoch_zoo), TINY_SANE.latent) and np.isfinite(emb).all()
    assert np.linalg.matrix_rank(emb - emb.mean(0), tol=1e-4) == TINY_SANE.latent  # not collapsed to a point


def test_saved_model_gives_the_same_embeddings_and_names_missing_parts(trained, epoch_zoo, tmp_path):
    model, _, out = trained
    loaded = load_sane(out)
    np.testing.assert_allclose(zoo_embeddings(loaded, epoch_zoo.params), zoo_embeddings(model, epoch_zoo.params),
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(ShapeMismatchError, match="layout"):
        zoo_latents(loaded, stacked(MLP, 3))
    with pytest.raises(CheckpointError, match="not a saved SANE model"):
        load_sane(tmp_path)
    (tmp_path / MODEL_FILE).write_text((out / MODEL_FILE).read_text()[:-20])  # cut short
    with pytest.raises(CheckpointError, match=f"{MODEL_FILE}: not valid JSON"):
        load_sane(tmp_path)


def test_models_saved_with_the_legacy_layout_load_and_embed_as_before(epoch_zoo, tmp_path):
    template = jax.tree.map(lambda a: a[0], epoch_zoo.params)
    layout = token_layout(template, 32, convention="legacy")
    cfg = TINY_SANE.for_layout(layout)
    model = make_sane(cfg)
    nets = layer_params(epoch_zoo.params, layout)
    old = TrainedSANE(model, model.init(jax.random.key(0)), layout, fit_standardization(nets, layout),
                      {"config": dataclasses.asdict(cfg), "layout": layout.to_json()})
    save_sane(tmp_path, old)
    for file in (MODEL_FILE, STANDARDIZATION_FILE):  # as written before layouts recorded a convention
        record = json.loads((tmp_path / file).read_text())
        record["layout"] = {"token_size": 32, "layers": [{"name": d["name"], "kernel_shape": d["shape"]}
                                                         for d in record["layout"]["layers"]]}
        write_json(tmp_path / file, record)
    loaded = load_sane(tmp_path)
    assert loaded.layout == layout and loaded.layout.convention == "legacy"
    assert cfg.max_layer_tokens == 16 * 5  # sized for the legacy positions (tokens within a layer)
    np.testing.assert_allclose(zoo_embeddings(loaded, epoch_zoo.params), zoo_embeddings(old, epoch_zoo.params),
                               rtol=1e-6, atol=1e-6)
    official = token_layout(template, 32)
    assert not np.array_equal(np.asarray(tokenize(template, official)), np.asarray(tokenize(template, layout)))


def test_training_resumes_from_its_checkpoint_and_refuses_other_settings(epoch_zoo, tmp_path):
    cfg = TrainConfig(epochs=2, batch_size=16, schedule="onecycle", optimizer="adamw")
    _, first = train_sane(epoch_zoo, TINY_SANE, cfg, out=tmp_path, progress=False)
    _, again = train_sane(epoch_zoo, TINY_SANE, cfg, out=tmp_path, progress=False)  # nothing left to train
    assert again.history == first.history
    with pytest.raises(CheckpointError, match="settings"):
        train_sane(epoch_zoo, TINY_SANE, dataclasses.replace(cfg, epochs=3), out=tmp_path, progress=False)


def test_ridge_matches_sklearn_and_selects_on_validation():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 8))
    y = x @ rng.normal(size=8) + 0.1 * rng.normal(size=300)
    w, b = ridge_fit(x, y, 3.0)
    ref = Ridge(alpha=3.0).fit(x, y)
    np.testing.assert_allclose(w, ref.coef_, rtol=1e-8)
    np.testing.assert_allclose(b, ref.intercept_, rtol=1e-8)
    wide = rng.normal(size=(40, 100))
    np.testing.assert_allclose(ridge_fit(wide, wide[:, 0], 2.0)[0], Ridge(alpha=2.0).fit(wide, wide[:, 0]).coef_,
                               rtol=1e-6, atol=1e-10)
    splits = {"train": slice(0, 200), "val": slice(200, 250), "test": slice(250, 300)}
    r = ridge_probe({k: x[v] for k, v in splits.items()}, {k: y[v] for k, v in splits.items()})
    assert r["test_r2"] > 0.95


# ----------------------------------------------------------------------------- sampling


def test_kde_sampling_and_anchor_selection():
    anchors = jnp.asarray(np.random.default_rng(0).normal(size=(4, 6, 3)), jnp.float32)
    exact = np.asarray(kde_sample(jax.random.key(0), anchors, 50, bandwidth=0.0))
    assert exact.shape == (50, 6, 3)
    for i in range(50):  # bandwidth 0: each sample is one anchor's whole latent sequence
        assert any(np.allclose(exact[i], anchors[a]) for a in range(4))
    mixed = np.asarray(kde_sample(jax.random.key(0), anchors, 50, bandwidth=0.0, per_position=True))
    for t in range(6):  # per position: every position is one of the anchors' latents at that position
        assert all(any(np.allclose(mixed[i, t], anchors[a, t]) for a in range(4)) for i in range(50))
    assert not all(any(np.allclose(mixed[i], anchors[a]) for a in range(4)) for i in range(50))
    noisy = np.asarray(kde_sample(jax.random.key(0), anchors, 2000, bandwidth=0.2))
    assert 0.8 < noisy.std() / float(anchors.std()) < 1.3
    assert top_fraction(np.array([0.1, 0.9, 0.5, 0.7]), 0.5).tolist() == [1, 3]


def test_sub_keeps_the_best_sampled_networks(trained, epoch_zoo):
    model, _, _ = trained
    train = epoch_zoo.split("train")
    anchors = jax.tree.map(lambda a: a[top_fraction(train.target("test_accuracy"))], train.params)
    extras = lambda n: {ACTIVATION_LEAF: jnp.zeros((n,), jnp.int32)}  # noqa: E731
    score = lambda p: -np.asarray(p["dense0"]["bias"]).sum(1)  # noqa: E731  (any deterministic score)
    kept, scores = sample_sub(model, anchors, jax.random.key(0), score, num=12, keep=4, extras=extras)
    assert scores.shape == (4,) and (np.diff(scores) <= 0).all()
    np.testing.assert_allclose(score(kept), scores, rtol=1e-6)
    assert kept["conv0"]["kernel"].shape == (4, 3, 3, 1, 16) and kept[ACTIVATION_LEAF].shape == (4,)
    assert all(np.isfinite(np.asarray(leaf)).all() for leaf in jax.tree.leaves(kept))


def test_finetuning_given_networks_improves_them(digits, epoch_zoo):
    data = training_data(digits, CNNTraining(dataset="digits", train_size=512, test_size=200), 0)
    params = {**stacked(CNN, 4), ACTIVATION_LEAF: jnp.zeros((4,), jnp.int32)}  # fresh (Glorot) networks
    metrics = finetune_networks(epoch_zoo.arch, params, data, epochs=(0, 2), learning_rate=3e-3)
    assert metrics["test_accuracy"].shape == (4, 2)
    assert metrics["test_accuracy"][:, 1].mean() > metrics["test_accuracy"][:, 0].mean() + 0.2


def test_cli_trains_sane_and_samples_networks(epoch_zoo, tmp_path, capsys):
    from probegen_jax.cli import main
    from probegen_jax.zoo.store import load_zoo, save_zoo

    save_zoo(epoch_zoo, tmp_path / "zoo")
    tiny = ["--token-size", "32", "--window", "16", "--d-model", "32", "--heads", "2", "--layers", "1",
            "--latent", "8", "--epochs", "2", "--batch-size", "16"]
    assert main(["train", "sane", "--zoo", str(tmp_path / "zoo"), "--out", str(tmp_path / "sane"), *tiny]) == 0
    assert "kendall_tau" in json.loads(capsys.readouterr().out)["test"]  # a run like any other
    assert main(["sane", "sample", "--model", str(tmp_path / "sane"), "--zoo", str(tmp_path / "zoo"), "--num", "6",
                 "--keep", "2", "--rounds", "2", "--out", str(tmp_path / "sampled")]) == 0
    sampled = load_zoo(tmp_path / "sampled")
    assert len(sampled) == 2 and sampled.arch.spec() == epoch_zoo.arch.spec()
    scores = sampled.target("reference_accuracy")
    assert scores[0] >= scores[1]
    shutil.rmtree(tmp_path / "sane" / "constants")  # the run's standardisation statistics
    assert main(["sane", "sample", "--model", str(tmp_path / "sane"), "--zoo", str(tmp_path / "zoo"),
                 "--out", str(tmp_path / "again")]) == 2
    assert "constants" in capsys.readouterr().err


def test_sane_through_the_contract_predicts_test_accuracy_from_embeddings(epoch_zoo, tmp_path):
    """Autoencoder + ridge probe as one run: saved, loaded, and predicting as evaluated."""
    from probegen_jax.methods.contract import evaluate, predict, train
    from probegen_jax.methods.run import load_run, save_run
    from probegen_jax.methods.sane.method import trained_sane

    spec = {"token_size": TINY_SANE.token_size, "window": TINY_SANE.window, "d_model": TINY_SANE.d_model,
            "heads": TINY_SANE.heads, "layers": TINY_SANE.encoder_layers, "latent": TINY_SANE.latent}
    run = train("sane", epoch_zoo, spec, TrainConfig(epochs=6, batch_size=16, learning_rate=2e-3, schedule="onecycle",
                                                     optimizer="adamw"), checkpoint="all", progress=False)
    assert run.target == "test_accuracy" and run.task.name == "regression"
    assert evaluate(run, epoch_zoo, "test") == pytest.approx(run.result.test)
    save_run(run, tmp_path / "run")
    loaded = load_run(tmp_path / "run")
    np.testing.assert_allclose(predict(loaded, epoch_zoo), predict(run, epoch_zoo), rtol=1e-5, atol=1e-6)
    embeddings = zoo_embeddings(trained_sane(loaded, epoch_zoo), epoch_zoo.params)
    assert embeddings.shape == (len(epoch_zoo), TINY_SANE.latent)
    # accuracy rises with the epoch a checkpoint was taken at: the embeddings carry it
    assert run.result.test["kendall_tau"] > 0.2, run.result.test
