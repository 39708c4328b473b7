"""Reading a function's traced program: convolutions and array sizes, nested calls included."""

import jax
import jax.numpy as jnp

from probegen_jax.tracing import contains_convolution, largest_array_bytes

X = jnp.ones((1, 8, 8, 1))
KERNEL = jnp.ones((3, 3, 1, 2))


def conv(x):
    return jax.lax.conv_general_dilated(x, KERNEL, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))


def test_contains_convolution_looks_inside_nested_calls():
    nested = jax.jit(lambda x: jax.lax.scan(lambda c, _: (c, jnp.sum(jax.checkpoint(conv)(x))), 0.0, None, length=2))
    branch = lambda x: jax.lax.cond(jnp.sum(x) > 0, conv, lambda x: jnp.zeros((1, 8, 8, 2)), x)  # noqa: E731
    assert contains_convolution(conv, X)
    assert contains_convolution(nested, X)
    assert contains_convolution(branch, X)
    assert contains_convolution(jax.grad(lambda x: jnp.sum(jax.jit(conv)(x))), X)
    assert not contains_convolution(jax.jit(lambda x: jnp.sin(x) @ jnp.ones((1, 3))), X)


def test_largest_array_bytes_finds_arrays_made_inside_nested_calls():
    inner = jax.jit(lambda x: jnp.sum(jnp.outer(x, x), axis=0))  # a [300, 300] float32 lives only inside
    assert largest_array_bytes(lambda x: inner(x) * 2, jnp.ones(300)) == 300 * 300 * 4
    assert largest_array_bytes(lambda x: jnp.sin(x), jax.ShapeDtypeStruct((5, 7), jnp.float16)) == 5 * 7 * 2
    assert largest_array_bytes(lambda x: x, jnp.ones(3)) == 0  # nothing computed
