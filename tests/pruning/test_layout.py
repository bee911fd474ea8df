import pytest

from toolkit import nn
from toolkit.pruning._layout import get_at, resolve

from .plant import ARCHITECTURES, make


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_paths_name_the_wired_nodes(name):
    model, _, _ = make(name, batch_norm=True)
    layout = resolve(model)
    assert layout.names == tuple(model.wiring())
    for g, group in zip(layout.groups, model.wiring().values()):
        kinds = {
            kind: [s for s in group.slots if isinstance(s, kind)]
            for kind in (nn.Leaf, nn.StateLeaf, nn.SizeField)
        }
        for a, s in zip(g.leaves, kinds[nn.Leaf], strict=True):
            assert get_at(model, a.path) is s.where(model) and a.axis == s.axis
        for a, s in zip(g.states, kinds[nn.StateLeaf], strict=True):
            index = s.where(model)
            assert get_at(model, a.path) is index and a.marker == index.marker
        for a, s in zip(g.sizes, kinds[nn.SizeField], strict=True):
            assert get_at(model, a.path) is s.where(model) and a.name == s.name


def test_equal_layouts_hash_alike():
    model, _, _ = make("resnet", batch_norm=True)
    other, _, _ = make("resnet", 1, batch_norm=True)
    vgg, _, _ = make("vgg", batch_norm=True)
    assert resolve(model) == resolve(other)
    assert hash(resolve(model)) == hash(resolve(other))
    assert resolve(model) != resolve(vgg)
