"""Probe sources for image inputs ``[H, W, C]``: ProbeGen's DCGAN-style deep linear generator, its
non-linear and 5-layer variants, vanilla learned images and fixed random textures.

The generator (ProbeGen, image zoos): K learned latent codes ``(32, 1, 1)`` pass through
transposed convolutions with bias and no activations, one tanh at the very end; width multiplier
16 gives channels 32 -> 128 -> 64 -> 32 -> 32 -> 16 -> C and spatial sizes
1 -> 4 -> 8 -> 16 -> 16 -> 32 -> 32 (247,201 params for C = 1; the 5-layer variant drops the
32 -> 32 3x3 layer).

Output size. The stack natively makes 32x32 images. For another zoo input size the last layer's
output is mapped to ``H x W`` by a *linear* operation before the tanh, so the generator stays deep
linear: a centre crop when the target is at least 3/4 of 32 on both sides (28x28 Fashion-MNIST
takes the central 28x28), otherwise an antialiased bilinear resize (8x8 digits: 4x4 area-like
averaging; larger images: upsampling).

Initialisation: latents N(0, 1); kernels N(0, 1/fan_in) with fan_in the input channels times the
input positions that reach one output pixel, biases zero, so the pre-tanh output starts near unit
variance instead of vanishing through six linear layers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from probegen_jax.errors import ShapeMismatchError, UnknownNameError
from probegen_jax.methods.probing.sources import ProbeSource, fixed_probes, free_probes
from probegen_jax.types import Array, Params, PRNGKey

# (output channels as a multiple of the width (None: image channels), kernel, stride, padding)
DCGAN_LAYERS: tuple[tuple[int | None, int, int, int], ...] = (
    (8, 4, 1, 0),  # 1 -> 4
    (4, 4, 2, 1),  # 4 -> 8
    (2, 4, 2, 1),  # 8 -> 16
    (2, 3, 1, 1),  # 16 -> 16 (dropped by the 5-layer variant)
    (1, 4, 2, 1),  # 16 -> 32
    (None, 3, 1, 1),  # 32 -> 32
)
NATIVE_SIZE = 32


def dcgan_layers(num_layers: int = 6) -> tuple[tuple[int | None, int, int, int], ...]:
    if num_layers == 6:
        return DCGAN_LAYERS
    if num_layers == 5:
        return DCGAN_LAYERS[:3] + DCGAN_LAYERS[4:]
    raise ValueError(f"the DCGAN probe generator has 5 or 6 layers, not {num_layers}")


def _layer_shapes(layers, latent_dim: int, width: int, channels: int) -> list[dict]:
    """Per layer: kernel shape (HWIO), stride, padding and fan-in."""
    out, c, size = [], latent_dim, 1
    for mult, k, s, p in layers:
        c_out = channels if mult is None else mult * width
        fan_in = c * min(math.ceil(k / s), size) ** 2
        out.append({"kernel": (k, k, c, c_out), "stride": s, "padding": k - 1 - p, "fan_in": fan_in})
        c, size = c_out, (size - 1) * s + k - 2 * p
    return out


def conv_transpose_stack(params: Params, latents: Array, specs: Sequence[dict],
                         activation: Callable[[Array], Array] | None = None) -> Array:
    """``[K, latent]`` -> ``[K, 32, 32, C]`` through transposed convolutions (PyTorch's size rule)."""
    x = latents[:, None, None, :]
    for i, spec in enumerate(specs):
        layer = params[f"convT{i}"]
        pad = spec["padding"]
        x = jax.lax.conv_transpose(x, layer["kernel"], (spec["stride"],) * 2, [(pad, pad)] * 2,
                                   dimension_numbers=("NHWC", "HWIO", "NHWC")) + layer["bias"]
        if activation is not None and i < len(specs) - 1:
            x = activation(x)
    return x


def fit_spatial(x: Array, height: int, width: int) -> Array:
    """Linear map of ``[K, h, w, C]`` to ``[K, height, width, C]``: centre crop or bilinear resize."""
    h, w = x.shape[1:3]
    if (h, w) == (height, width):
        return x
    if height <= h and width <= w and 4 * height >= 3 * h and 4 * width >= 3 * w:
        top, left = (h - height) // 2, (w - width) // 2
        return x[:, top:top + height, left:left + width]
    return jax.image.resize(x, (x.shape[0], height, width, x.shape[3]), "linear", antialias=True)


def dcgan_generator(
    num_probes: int,
    input_shape: tuple[int, int, int],
    *,
    latent_dim: int = 32,
    width: int = 16,
    num_layers: int = 6,
    activation: Callable[[Array], Array] | None = None,
    name: str = "probegen",
) -> ProbeSource:
    """ProbeGen's image generator (deep linear unless ``activation`` is given), tanh at the end."""
    input_shape = tuple(int(d) for d in input_shape)
    if len(input_shape) != 3:
        raise ShapeMismatchError(f"image probe generator: expected an input shape (H, W, C), got {input_shape}")
    height, width_px, channels = input_shape
    specs = _layer_shapes(dcgan_layers(num_layers), latent_dim, width, channels)

    def init(key: PRNGKey) -> Params:
        k_lat, *k_layers = jax.random.split(key, len(specs) + 1)
        gen = {f"convT{i}": {"kernel": jax.random.normal(k, s["kernel"]) / math.sqrt(s["fan_in"]),
                             "bias": jnp.zeros(s["kernel"][-1:])}
               for i, (k, s) in enumerate(zip(k_layers, specs, strict=True))}
        return {"latents": jax.random.normal(k_lat, (num_probes, latent_dim)), "generator": gen}

    def apply(params: Params) -> Array:
        return jnp.tanh(generator_pre_tanh(params, specs, height, width_px, activation))

    return ProbeSource(name, num_probes, input_shape, init, apply)


def generator_pre_tanh(params: Params, specs: Sequence[dict], height: int, width: int,
                       activation: Callable[[Array], Array] | None = None, *, via_basis: bool = True) -> Array:
    """The generator's output before the final tanh (affine in the latents when linear).

    A linear generator ``G(z) = G(0) + J z`` is run on the basis ``[0, e_1, ..., e_d]`` only and
    the K probes are combined from it (``via_basis``, used when K > d + 1): the same values and
    gradients, from d + 1 passes through the transposed convolutions instead of K (33 instead of
    128 for ProbeGen's K = 128, the step's dominant cost)."""
    latents = params["latents"]

    def run(z: Array) -> Array:
        return fit_spatial(conv_transpose_stack(params["generator"], z, specs, activation), height, width)

    num_probes, latent_dim = latents.shape
    if activation is not None or not via_basis or num_probes <= latent_dim + 1:
        return run(latents)
    basis = run(jnp.concatenate([jnp.zeros((1, latent_dim), latents.dtype), jnp.eye(latent_dim, dtype=latents.dtype)]))
    offset, columns = basis[0], basis[1:] - basis[:1]
    return offset + jnp.tensordot(latents, columns, axes=1, precision=jax.lax.Precision.HIGHEST)


def dcgan_specs(input_shape: tuple[int, int, int], *, latent_dim: int = 32, width: int = 16,
                num_layers: int = 6) -> list[dict]:
    """The layer specs ``dcgan_generator`` builds (for ``generator_pre_tanh``)."""
    return _layer_shapes(dcgan_layers(num_layers), latent_dim, width, int(input_shape[-1]))


def random_textures(num_probes: int, input_shape: tuple[int, int, int], *, seed: int = 0) -> np.ndarray:
    """Fixed synthetic probes: ``1/f^alpha`` noise textures (alpha ~ U[0, 3]: from white noise to
    smooth blobs), each standardised and squashed into [-1, 1] by tanh."""
    h, w, c = input_shape
    rng = np.random.default_rng([seed, 17])
    noise = rng.standard_normal((num_probes, h, w, c))
    fy, fx = np.meshgrid(np.fft.fftfreq(h), np.fft.fftfreq(w), indexing="ij")
    freq = np.sqrt(fy**2 + fx**2)
    freq[0, 0] = 1.0
    alpha = rng.uniform(0.0, 3.0, (num_probes, 1, 1, 1))
    spectrum = np.fft.fft2(noise, axes=(1, 2)) / freq[None, :, :, None] ** alpha
    spectrum[:, 0, 0] = 0.0
    tex = np.real(np.fft.ifft2(spectrum, axes=(1, 2)))
    tex = (tex - tex.mean(axis=(1, 2, 3), keepdims=True)) / (tex.std(axis=(1, 2, 3), keepdims=True) + 1e-8)
    return np.tanh(tex).astype(np.float32)


def image_probe_source(kind: str, num_probes: int, input_shape: tuple[int, ...], *, seed: int = 0) -> ProbeSource:
    """Probe sources for image inputs by name (see ``IMAGE_SOURCES``)."""
    input_shape = tuple(int(d) for d in input_shape)
    makers = {
        "probegen": lambda: dcgan_generator(num_probes, input_shape),
        "probegen5": lambda: dcgan_generator(num_probes, input_shape, num_layers=5, name="probegen5"),
        "nonlinear": lambda: dcgan_generator(num_probes, input_shape, activation=jax.nn.relu, name="nonlinear"),
        "vanilla": lambda: free_probes(num_probes, input_shape, squash="tanh"),
        "synthetic": lambda: fixed_probes(random_textures(num_probes, input_shape, seed=seed)),
    }
    if kind not in makers:
        raise UnknownNameError(f"unknown image probe source {kind!r}; available: {sorted(makers)}")
    return makers[kind]()


IMAGE_SOURCES = ("probegen", "probegen5", "nonlinear", "vanilla", "synthetic")
