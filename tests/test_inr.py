"""INR zoos: fit quality checked against the images themselves, determinism, chunking, resumption."""

import dataclasses
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import probegen_jax.make.inr as inr
from probegen_jax.archs import siren
from probegen_jax.data import load_digits
from probegen_jax.errors import ZooFormatError
from probegen_jax.io import load_pytree
from probegen_jax.zoo import load_zoo
from probegen_jax.make.inr import INRZooConfig, fit_inrs, make_inr_zoo

# 60 INRs, too few steps to reach the 40 dB early stop, so every INR takes every step.
SMALL = INRZooConfig(dataset="digits", num_train=40, num_val=10, num_test=10, steps=50, chunk_size=32, seed=3)


@pytest.fixture(scope="module")
def digits():
    return load_digits()


@pytest.fixture(scope="module")
def small_reference(digits):
    """SMALL generated in memory, uninterrupted: what every other way of making it must equal."""
    return make_inr_zoo(SMALL, data=digits, progress=False)


def grid(h, w):
    rows, cols = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    return np.stack([rows, cols], -1).reshape(-1, 2).astype(np.float32)


def reconstruct(zoo, indices, h=8, w=8):
    params = jax.tree.map(lambda a: jnp.asarray(a)[np.asarray(indices)], zoo.params)
    out = jax.vmap(zoo.arch.apply, in_axes=(0, None))(params, jnp.asarray(grid(h, w)))
    return np.asarray(out).reshape(len(indices), h, w)


def numpy_psnr(a, b):
    return -10 * np.log10(np.mean((a - b) ** 2, axis=(1, 2)))


def assert_params_equal(a, b, **tol):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        if tol:
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), **tol)
        else:
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


# ------------------------------------------------------------------------------ fit quality


def test_digits_zoo_fits_the_images(digits_zoo, digits_cfg, digits):
    n_tr, n_va, n_te = digits_cfg.num_train, digits_cfg.num_val, digits_cfg.num_test
    assert len(digits_zoo) == n_tr + n_va + n_te
    assert {k: len(v) for k, v in digits_zoo.splits.items()} == {"train": n_tr, "val": n_va, "test": n_te}
    psnr = digits_zoo.targets["psnr"]
    assert psnr.shape == (len(digits_zoo),)
    assert psnr.mean() > 25.0 and np.percentile(psnr, 5) > 20.0

    # Test-split members are the dataset's first test images, in order: rebuild them from the
    # weights and measure the PSNR ourselves.
    test_idx = digits_zoo.indices("test")
    images = reconstruct(digits_zoo, test_idx)
    ours = numpy_psnr(images, digits.test_images[:n_te, ..., 0])
    assert ours.mean() > 25.0
    np.testing.assert_allclose(ours, psnr[test_idx], atol=0.05)
    np.testing.assert_array_equal(digits_zoo.targets["label"][test_idx], digits.test_labels[:n_te])

    # Train members encode train images of their label: the nearest train image (by MSE) to
    # each reconstruction carries the zoo's label.
    train_idx = digits_zoo.indices("train")[:100]
    recon = reconstruct(digits_zoo, train_idx).reshape(len(train_idx), -1)
    pool = digits.train_images[..., 0].reshape(len(digits.train_images), -1)
    nearest = np.argmin(((recon[:, None, :] - pool[None]) ** 2).mean(-1), axis=1)
    np.testing.assert_array_equal(digits.train_labels[nearest], digits_zoo.targets["label"][train_idx])
    # and train/val/test never share an image
    val_recon = reconstruct(digits_zoo, digits_zoo.indices("val")).reshape(n_va, -1)
    val_nearest = np.argmin(((val_recon[:, None, :] - pool[None]) ** 2).mean(-1), axis=1)
    assert not set(nearest) & set(val_nearest)


def test_early_stop_freezes_inrs_at_the_target(digits_zoo, digits_cfg):
    steps, psnr = digits_zoo.targets["steps"], digits_zoo.targets["psnr"]
    assert steps.max() <= digits_cfg.steps
    stopped = steps < digits_cfg.steps
    assert stopped.any(), "with a 40 dB target on 8x8 digits some INRs should stop early"
    assert np.all(psnr[stopped] >= digits_cfg.target_psnr - 1e-3)


def test_fit_inrs_lowers_the_error_and_stops_at_target(digits):
    arch = siren()
    coords = jnp.asarray(grid(8, 8))
    pixels = jnp.asarray(digits.train_images[:6].reshape(6, 64, 1))
    init = jax.vmap(arch.init)(jax.random.split(jax.random.key(0), 6))
    before = -10 * np.log10(np.mean((np.asarray(jax.vmap(arch.apply, (0, None))(init, coords)) - pixels) ** 2, (1, 2)))
    params, psnr, taken = fit_inrs(arch, init, coords, pixels, steps=60, learning_rate=5e-4, target_psnr=1e9)
    assert np.all(np.asarray(taken) == 60)
    after = -10 * np.log10(np.mean((np.asarray(jax.vmap(arch.apply, (0, None))(params, coords)) - pixels) ** 2, (1, 2)))
    np.testing.assert_allclose(after, psnr, atol=1e-3)
    assert np.all(after > before + 5.0)
    # A target already met stops every INR before its first update.
    params0, _, taken0 = fit_inrs(arch, init, coords, pixels, steps=10, learning_rate=5e-4, target_psnr=-1e9)
    assert np.all(np.asarray(taken0) == 0)
    assert_params_equal(params0, init)


def test_closed_form_siren_gradient_equals_autodiff():
    """The fused SIREN step: the MSE and every gradient equal autodiff of the plain apply with
    XLA's exact sine (another way to compute them), for one and three output channels."""
    for out_dim in (1, 3):
        arch = siren(out_dim=out_dim)
        exact = siren(out_dim=out_dim, exact_sine=True)
        params = arch.init(jax.random.key(out_dim))
        coords = jnp.asarray(grid(28, 28))
        target = jax.random.uniform(jax.random.key(9), (28 * 28, out_dim))
        want_mse, want = jax.value_and_grad(lambda p: jnp.mean((exact.apply(p, coords) - target) ** 2))(params)
        got_mse, got = jax.jit(inr.inr_mse_and_grad(arch))(params, coords, target)
        np.testing.assert_allclose(got_mse, want_mse, rtol=1e-5)
        for path, w in jax.tree_util.tree_leaves_with_path(want):
            g = dict(jax.tree_util.tree_leaves_with_path(got))[path]
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5 * float(jnp.max(jnp.abs(w))), err_msg=str(path))


def test_fitting_layouts_agree_and_the_fused_step_equals_autodiff(digits):
    """Workers and blocks are a layout, not a result: any number of workers gives bit-identical
    INRs for one block size, another block size the same to float rounding, and the closed-form
    SIREN step the INRs that autodiff's step fits (the path every other architecture takes)."""
    arch = siren()
    coords = jnp.asarray(grid(8, 8))
    pixels = digits.train_images[:10].reshape(10, 64, 1)
    init = jax.vmap(arch.init)(jax.random.split(jax.random.key(1), 10))
    fit = lambda layout: fit_inrs(arch, init, coords, pixels, steps=30, learning_rate=5e-4,  # noqa: E731
                                  target_psnr=1e9, layout=layout)
    one = fit((1, 4))
    assert_params_equal(one, fit((3, 4)))
    assert_params_equal(one, fit((1, 10)), rtol=1e-5, atol=1e-6)
    autodiff = inr._fit_in_blocks(inr._autodiff_mse_and_grad(arch.apply), init, coords, jnp.asarray(pixels),
                                  steps=30, learning_rate=5e-4, target_psnr=1e9, block_size=10)
    assert_params_equal(one, autodiff, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------ determinism, chunks


def test_same_seed_same_zoo_other_seed_other_zoo(digits, small_reference):
    a = small_reference
    b = make_inr_zoo(SMALL, data=digits, progress=False)
    assert_params_equal(a.params, b.params)
    np.testing.assert_array_equal(a.targets["label"], b.targets["label"])
    c = make_inr_zoo(dataclasses.replace(SMALL, seed=4), data=digits, progress=False)
    assert not np.allclose(np.asarray(a.params["dense0"]["kernel"]), np.asarray(c.params["dense0"]["kernel"]))


def test_zoo_does_not_depend_on_chunk_size(digits, small_reference):
    a = small_reference  # chunks of 32: 32 + 28 (padded)
    b = make_inr_zoo(dataclasses.replace(SMALL, chunk_size=60), data=digits, progress=False)  # one chunk
    assert_params_equal(a.params, b.params, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(a.targets["psnr"], b.targets["psnr"], rtol=1e-6)
    np.testing.assert_array_equal(a.targets["label"], b.targets["label"])
    for s in ("train", "val", "test"):
        np.testing.assert_array_equal(a.splits[s], b.splits[s])


# ------------------------------------------------------------------------------ resumption


SLOW_CHUNK_S = 4.0  # longer than the resumed run takes: its time alone would be less


class Boom(RuntimeError):
    pass


def interrupt_on_call(monkeypatch, n, *, seconds_each=0.0):
    """Make the n-th call of ``fit_inrs`` (1-based) raise, each taking at least ``seconds_each``;
    returns the list of calls."""
    calls = []
    real = inr.fit_inrs

    def wrapped(*args, **kwargs):
        calls.append(1)
        if len(calls) == n:
            raise Boom("interrupted")
        time.sleep(seconds_each)
        return real(*args, **kwargs)

    monkeypatch.setattr(inr, "fit_inrs", wrapped)
    return calls


def test_interrupted_generation_resumes_to_the_same_zoo(tmp_path, monkeypatch, digits, small_reference):
    out = tmp_path / "zoo"
    partial = tmp_path / "zoo.partial"
    reference = small_reference

    interrupt_on_call(monkeypatch, 2, seconds_each=SLOW_CHUNK_S)
    with pytest.raises(Boom):
        make_inr_zoo(SMALL, out, data=digits, progress=False)
    spent = json.loads((partial / "time_spent.json").read_text())["wall_seconds"]
    assert spent >= SLOW_CHUNK_S
    assert (partial / "chunk_00000" / "manifest.json").is_file()
    assert not (partial / "chunk_00001").exists()
    assert json.loads((partial / "plan.json").read_text())["config"]["seed"] == SMALL.seed
    assert not out.exists()
    chunk = load_pytree(partial / "chunk_00000")
    np.testing.assert_array_equal(chunk["params/dense1/kernel"], np.asarray(reference.params["dense1"]["kernel"])[:32])

    monkeypatch.undo()
    calls = interrupt_on_call(monkeypatch, 0)  # count only
    resumed = make_inr_zoo(SMALL, out, data=digits, progress=False)
    assert len(calls) == 1, "the finished chunk must be read back, not fitted again"
    assert resumed.meta["generation_seconds"] >= spent  # the interrupted run's time counts too
    assert_params_equal(resumed.params, reference.params)
    for k in ("label", "psnr", "steps"):
        np.testing.assert_array_equal(resumed.targets[k], reference.targets[k])
    assert not partial.exists()
    loaded = load_zoo(out)
    assert_params_equal(loaded.params, reference.params)
    np.testing.assert_array_equal(loaded.targets["label"], reference.targets["label"])
    for s in ("train", "val", "test"):
        np.testing.assert_array_equal(loaded.splits[s], reference.splits[s])
    assert loaded.meta["config"] == dataclasses.asdict(SMALL)


def test_resume_with_a_different_plan_is_refused(tmp_path, monkeypatch, digits):
    out = tmp_path / "zoo"
    interrupt_on_call(monkeypatch, 2)
    with pytest.raises(Boom):
        make_inr_zoo(SMALL, out, data=digits, progress=False)
    monkeypatch.undo()
    with pytest.raises(ZooFormatError) as err:
        make_inr_zoo(dataclasses.replace(SMALL, steps=51), out, data=digits, progress=False)
    assert str(tmp_path / "zoo.partial") in str(err.value) and "plan" in str(err.value)
    assert (tmp_path / "zoo.partial" / "chunk_00000" / "arrays.bin").is_file()  # nothing of it was destroyed
    assert not out.exists()


def test_unreadable_chunk_is_recomputed(tmp_path, monkeypatch, digits, small_reference):
    out = tmp_path / "zoo"
    interrupt_on_call(monkeypatch, 2)
    with pytest.raises(Boom):
        make_inr_zoo(SMALL, out, data=digits, progress=False)
    monkeypatch.undo()
    chunk = tmp_path / "zoo.partial" / "chunk_00000" / "arrays.bin"
    chunk.write_bytes(chunk.read_bytes()[:100])
    resumed = make_inr_zoo(SMALL, out, data=digits, progress=False)
    assert_params_equal(resumed.params, small_reference.params)


def test_too_many_inrs_for_the_dataset_is_refused(digits):
    with pytest.raises(ValueError, match="digits"):
        make_inr_zoo(dataclasses.replace(SMALL, num_test=10_000), data=digits, progress=False)
