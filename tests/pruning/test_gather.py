import jax.numpy as jnp
import numpy as np
import pytest

from toolkit.pruning._gather import _gather, LiveIndices, place, take
from toolkit.pruning._layout import GroupLayout, Layout


def _indices(size, keep):
    layout = Layout(object, (GroupLayout("g", size, (), (), ()),))
    return LiveIndices(layout, {"g": np.asarray(keep)})


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.bool_, jnp.bfloat16])
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_gather_is_take(dtype, axis):
    a = (np.arange(5 * 6 * 7) % 3).astype(dtype).reshape(5, 6, 7)
    index = np.array([0, 2, 3])
    out = _gather(a, index, axis)
    assert out.dtype == a.dtype and out.flags.c_contiguous
    np.testing.assert_array_equal(out, np.take(a, index, axis=axis))


def test_take_blocks_and_already_pruned():
    indices = _indices(4, [1, 3])
    # Each unit owns 3 consecutive columns, as a flattened feature map gives them.
    w = jnp.arange(2 * 12.0).reshape(2, 12)
    cols = [3, 4, 5, 9, 10, 11]
    small = place([take(w, 1, 3, 0, indices, str)], [w])[0]
    np.testing.assert_array_equal(small, np.asarray(w)[:, cols])
    with pytest.raises(ValueError, match="already pruned"):
        take(small, 1, 3, 0, indices, str)
    with pytest.raises(ValueError, match="axis 1 has size 5"):
        take(jnp.ones((2, 5)), 1, 3, 0, indices, lambda: "w")
