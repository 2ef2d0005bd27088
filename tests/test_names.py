"""One meaning per name: ``.bridge`` is a TransformerBridge; ``.model`` on neuronscope's results
is its deprecated old name (a bridge's own ``.model`` is the Hugging Face module)."""

from __future__ import annotations

import warnings

import pytest

import neuronscope as ns
from neuronscope.types import Model


def test_organism_bridge_and_its_old_name(tiny_org):
    assert isinstance(tiny_org.bridge, Model)
    with pytest.warns(DeprecationWarning, match=r"Organism.model is deprecated; use Organism.bridge"):
        assert tiny_org.model is tiny_org.bridge
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bridge, tokenizer, _ = tiny_org
    assert bridge is tiny_org.bridge and tokenizer is tiny_org.tokenizer


def test_unlearn_result_bridge_and_its_old_name(tiny_org, forget_retain, tmp_path):
    forget, retain = forget_retain
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # the library itself uses the new name
        result = ns.unlearn(tiny_org.bridge, forget, retain, method="ga", max_steps=1, progress=False)
        result.save(tmp_path / "r")
    assert isinstance(result.bridge, Model) and result.bridge is not tiny_org.bridge
    with pytest.warns(DeprecationWarning, match="UnlearnResult.model"):
        assert result.model is result.bridge
    loaded = ns.UnlearnResult.load(tmp_path / "r", like=tiny_org.bridge)
    first = next(iter(result.bridge.state_dict()))
    assert (loaded.bridge.state_dict()[first] == result.bridge.state_dict()[first]).all()


def test_relearn_result_bridge_and_its_old_name(tiny_org, forget_retain):
    forget, retain = forget_retain
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # the library itself uses the new name
        result = ns.relearn(tiny_org.bridge, attack="harmful", forget=forget, retain=retain, steps=1,
                            lr=[1e-4, 1e-3], eval_every=1, progress=False)
    assert isinstance(result.bridge, Model) and result.bridge is not tiny_org.bridge
    assert [run.bridge is result.bridge for run in result.grid].count(True) == 1  # the others dropped
    with pytest.warns(DeprecationWarning, match=r"RelearnResult.model is deprecated; use RelearnResult.br"):
        assert result.model is result.bridge
    with pytest.warns(DeprecationWarning, match="RelearnResult.model"):
        result.model = None
    assert result.bridge is None
