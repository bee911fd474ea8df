import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from toolkit import nn


def _pair(conv, x):
    """`convolve` and the convolution's own call, with their gradients in the weight,
    the bias and the image."""

    def loss(f, conv, x):
        return jnp.sum(jnp.sin(f(conv, x)))

    ours = jax.value_and_grad(loss, argnums=(1, 2))(nn.convolve, conv, x)
    theirs = jax.value_and_grad(loss, argnums=(1, 2))(lambda c, x: c(x), conv, x)
    return nn.convolve(conv, x), conv(x), ours, theirs


@pytest.mark.parametrize(
    "kernel, padding, bias, size",
    [
        (5, 2, True, (12, 12)),
        (3, 1, False, (9, 7)),
        ((3, 5), ((0, 2), (1, 0)), True, (8, 10)),
        (4, 0, True, (6, 6)),
    ],
)
def test_a_single_channel_convolution_is_the_convolution(kernel, padding, bias, size):
    wkey, bkey, xkey = jr.split(jr.key(0), 3)
    conv = eqx.nn.Conv2d(1, 3, kernel, padding=padding, use_bias=bias, key=wkey)
    if bias:
        # Equinox starts biases small and uniform; a spread one checks the broadcast.
        conv = eqx.tree_at(lambda c: c.bias, conv, jr.normal(bkey, conv.bias.shape))
    x = jr.normal(xkey, (1, *size))
    y, reference, (value, grads), (ref_value, ref_grads) = _pair(conv, x)
    assert y.shape == reference.shape
    np.testing.assert_allclose(y, reference, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(value, ref_value, rtol=1e-5)
    for ours, theirs in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads)):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, channels",
    [
        (dict(stride=2), 1),
        (dict(dilation=2), 1),
        (dict(padding_mode="REFLECT", padding=1), 1),
        (dict(padding="SAME"), 1),
        ({}, 3),
    ],
)
def test_other_convolutions_are_left_to_xla(kwargs, channels):
    conv = eqx.nn.Conv2d(channels, 2, 3, key=jr.key(1), **kwargs)
    x = jr.normal(jr.key(2), (channels, 9, 9))
    jaxpr = str(jax.make_jaxpr(nn.convolve)(conv, x))
    assert "conv_general_dilated" in jaxpr
    np.testing.assert_array_equal(nn.convolve(conv, x), conv(x))


def test_a_single_channel_convolution_is_a_matrix_product():
    conv = eqx.nn.Conv2d(1, 6, 5, padding=2, key=jr.key(3))
    jaxpr = str(jax.make_jaxpr(nn.convolve)(conv, jnp.zeros((1, 28, 28))))
    assert "conv_general_dilated" not in jaxpr
    assert "dot_general" in jaxpr


def test_lenet_computes_what_its_layers_do():
    """The network's forward pass through `convolve` equals one built from the layers'
    own calls."""
    model = nn.ConvNet(1, 10, 28, key=jr.key(4))
    x = jr.normal(jr.key(5), (1, 28, 28))
    y, _ = model(x, eqx.nn.State(model))
    h = x
    for conv in model.convs:
        h = nn._convnet.max_pool(jax.nn.relu(conv(h)))
    h = jnp.ravel(h)
    for linear in model.linears[:-1]:
        h = jax.nn.relu(linear(h))
    np.testing.assert_allclose(y, model.linears[-1](h), rtol=1e-5, atol=1e-6)
