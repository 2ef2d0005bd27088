"""ns.plots: figure data (shapes, centred colour scales, flagged neurons), reduction of
large models, and clear errors on bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import neuronscope as ns
from neuronscope import plots


def _figure_bytes(fig) -> int:
    """Size of a saved figure without plotly.js itself (loaded from the CDN)."""
    return len(fig.to_html(include_plotlyjs="cdn", full_html=True).encode())


def test_heatmap_matrix_centred_on_zero():
    values = torch.tensor([[0.5, -2.0, 1.0], [0.1, 0.2, -0.3]])
    fig = plots.neuron_heatmap(values)
    trace = fig.data[0]
    assert np.allclose(trace.z, values.numpy())
    assert trace.zmid == 0.0
    assert trace.zmin == -2.0 and trace.zmax == 2.0
    assert list(trace.y) == ["0", "1"]
    assert "layer" in trace.hovertemplate and "neuron" in trace.hovertemplate


def test_heatmap_per_fact_mean_and_hover_facts():
    gen = torch.Generator().manual_seed(0)
    scores = torch.randn(6, 3, 10, generator=gen)
    ids = [f"f{i}" for i in range(6)]
    fig = plots.neuron_heatmap(scores, fact_ids=ids, layers=[2, 5, 7], top_facts=2)
    trace = fig.data[0]
    assert np.allclose(trace.z, scores.mean(0).numpy(), atol=1e-6)
    assert list(trace.y) == ["2", "5", "7"]
    # Hover of layer row 1, neuron 4 names the fact with the largest |score| first.
    best = int(scores[:, 1, 4].abs().argmax())
    neuron, facts = trace.customdata[1, 4]
    assert int(neuron) == 4
    assert facts.startswith(f"f{best} (")
    assert "matters most for" in trace.hovertemplate


def test_heatmap_large_model_is_reduced_and_small():
    gen = torch.Generator().manual_seed(1)
    values = torch.randn(12, 3072, generator=gen)
    fig = plots.neuron_heatmap(values, max_neurons=512)
    trace = fig.data[0]
    assert trace.z.shape == (12, 512)
    neurons = np.array(trace.customdata[..., 0], dtype=int)
    for layer in range(12):
        expected = set(values[layer].abs().topk(512).indices.tolist())
        assert set(neurons[layer].tolist()) == expected
        row = trace.z[layer]
        assert np.all(np.diff(row) <= 0), "kept neurons are sorted by value"
        assert np.allclose(row, values[layer, neurons[layer]].numpy())
    assert trace.zmax == pytest.approx(float(values.abs().max()))
    assert "rank" in fig.layout.xaxis.title.text
    assert _figure_bytes(fig) < 5e6


def test_heatmap_large_model_with_facts_stays_under_5mb():
    gen = torch.Generator().manual_seed(2)
    scores = torch.randn(16, 12, 3072, generator=gen)
    fig = plots.neuron_heatmap(scores, fact_ids=[f"person_{i}:birth_city:t0" for i in range(16)])
    assert _figure_bytes(fig) < 5e6
    fig = plots.before_after(scores[0], scores[1])
    assert _figure_bytes(fig) < 5e6


def test_before_after_shared_centred_scale():
    gen = torch.Generator().manual_seed(3)
    before, after = torch.randn(3, 20, generator=gen), torch.randn(3, 20, generator=gen) * 3
    fig = plots.before_after(before, after)
    assert len(fig.data) == 3
    assert {t.coloraxis for t in fig.data} == {"coloraxis"}
    axis = fig.layout.coloraxis
    assert axis.cmid == 0.0 and axis.cmin == -axis.cmax
    bound = max(before.abs().max(), after.abs().max(), (after - before).abs().max())
    assert axis.cmax == pytest.approx(float(bound))
    assert np.allclose(fig.data[2].z, (after - before).numpy(), atol=1e-6)
    assert np.allclose(fig.data[0].z, before.numpy())


def test_before_after_selects_same_neurons_in_all_panels():
    gen = torch.Generator().manual_seed(4)
    before, after = torch.randn(2, 600, generator=gen), torch.randn(2, 600, generator=gen)
    fig = plots.before_after(before, after, max_neurons=50)
    index = [np.array(t.customdata[..., 0], dtype=int) for t in fig.data]
    assert index[0].shape == (2, 50)
    assert all((i == index[0]).all() for i in index)
    assert np.allclose(fig.data[1].z, np.take_along_axis(after.numpy(), index[0], axis=1))


@pytest.mark.parametrize("bad, message", [
    ("weights", "NeuronAttribution"),
    ({"a": 1}, "NeuronAttribution"),
    (torch.zeros(5), "2-D or 3-D"),
    (torch.zeros(1, 2, 3, 4), "2-D or 3-D"),
    (torch.full((2, 2), float("nan")), "NaN"),
])
def test_heatmap_rejects_bad_input(bad, message):
    with pytest.raises(ValueError, match=message):
        plots.neuron_heatmap(bad)


def test_heatmap_rejects_bad_options():
    with pytest.raises(ValueError, match="layer labels"):
        plots.neuron_heatmap(torch.zeros(2, 3), layers=[0])
    with pytest.raises(ValueError, match="mode"):
        plots.neuron_heatmap(torch.zeros(2, 3), mode="bin")
    with pytest.raises(ValueError, match="fact ids"):
        plots.neuron_heatmap(torch.zeros(4, 2, 3), fact_ids=["a"])
    with pytest.raises(ValueError, match="differ in shape"):
        plots.before_after(torch.zeros(2, 3), torch.zeros(2, 4))


def test_d_per_layer_sums_clipped_values():
    plus = torch.tensor([[1.0, -1.0, 2.0], [0.0, 0.5, 0.5]])
    minus = torch.tensor([[-3.0, 4.0, 0.0], [1.0, 1.0, 1.0]])
    fig = plots.d_per_layer((plus, minus), layers=[3, 4])
    assert fig.data[0].y.tolist() == [3.0, 1.0]
    assert fig.data[1].y.tolist() == [4.0, 3.0]
    assert list(fig.data[0].x) == ["3", "4"]


@pytest.mark.parametrize("as_mask", [True, False])
def test_d_scatter_marks_flagged_neurons(as_mask):
    gen = torch.Generator().manual_seed(5)
    plus, minus = torch.rand(3, 40, generator=gen), torch.rand(3, 40, generator=gen)
    pairs = [(0, 7), (2, 39), (1, 0)]
    if as_mask:
        flagged = torch.zeros(3, 40, dtype=torch.bool)
        for layer, neuron in pairs:
            flagged[layer, neuron] = True
    else:
        flagged = pairs
    fig = plots.d_scatter((plus, minus, flagged))
    normal, marked = fig.data
    assert len(normal.x) == 3 * 40 - 3
    assert marked.name == "flagged (3)" and marked.marker.symbol == "x"
    got = {(int(a), int(b)) for a, b in marked.customdata}
    assert got == set(pairs)
    for (layer, neuron), x, y in zip(marked.customdata, marked.x, marked.y, strict=True):
        assert x == pytest.approx(float(plus[int(layer), int(neuron)]))
        assert y == pytest.approx(float(minus[int(layer), int(neuron)]))
    assert marked.y.tolist() == sorted(marked.y.tolist(), reverse=True)
    assert marked.text[0].startswith("L")


def test_d_scatter_rejects_bad_input():
    with pytest.raises(ValueError, match="Diagnosis"):
        plots.d_scatter(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="differ in shape"):
        plots.d_scatter((torch.zeros(2, 3), torch.zeros(3, 2)))
    with pytest.raises(ValueError, match="outside"):
        plots.d_scatter((torch.zeros(2, 3), torch.zeros(2, 3), [(0, 3)]))
    with pytest.raises(ValueError, match="mask has shape"):
        plots.d_scatter((torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 2, dtype=torch.bool)))


def test_top_table_matches_topk():
    gen = torch.Generator().manual_seed(6)
    scores = torch.randn(4, 3, 30, generator=gen)
    fig = plots.top_table(scores, k=5, fact_ids=list("abcd"))
    header = list(fig.data[0].header.values)
    columns = dict(zip(header, fig.data[0].cells.values, strict=True))
    mean = scores.mean(0)
    flat = mean.abs().flatten().topk(5).indices
    assert list(columns["layer"]) == [int(i) // 30 for i in flat]
    assert list(columns["neuron"]) == [int(i) % 30 for i in flat]
    assert "matters most for" in columns
    with pytest.raises(ValueError, match="k must be"):
        plots.top_table(scores, k=0)


def test_recovery_curves_per_method_and_attack():
    rows = [{"method": m, "attack": a, "step": s, "accuracy": s / 10 + (m == "GA") * 0.1}
            for m in ("GA", "GD+SSIUU", "oracle") for a in ("harmful p=0.1", "benign") for s in range(4)]
    fig = plots.recovery_curves(rows, chance=0.1)
    assert len(fig.data) == 6
    assert [t.name for t in fig.data[:3]] == ["GA", "GD+SSIUU", "oracle"]
    assert fig.data[2].line.dash == "dash" and fig.data[0].line.dash == "solid"
    assert list(fig.data[0].y) == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert [a.text for a in fig.layout.annotations[:2]] == ["harmful p=0.1", "benign"]
    with pytest.raises(ValueError, match="lacks column"):
        plots.recovery_curves([{"method": "GA", "step": 1}])
    with pytest.raises(ValueError, match="DataFrame"):
        plots.recovery_curves(torch.zeros(3))


def test_attack_grid_places_values():
    rows = [{"method": "GA", "attack": "benign", "accuracy": 0.3},
            {"method": "GD", "attack": "benign", "accuracy": 0.2},
            {"method": "GA", "attack": "harmful", "accuracy": 0.7}]
    z = plots.attack_grid(rows).data[0].z
    assert z[0, 0] == 0.3 and z[1, 0] == 0.2 and z[0, 1] == 0.7 and np.isnan(z[1, 1])


def test_lambda_sweep_axes():
    rows = [{"lambda": lam, "retain": 0.9, "harmful": 0.3} for lam in (0.1, 0.001, 0.01)]
    fig = plots.lambda_sweep(rows)
    assert fig.layout.xaxis.type == "log"
    assert list(fig.data[0].x) == [0.001, 0.01, 0.1]
    fig = plots.lambda_sweep([*rows, {"lambda": 0.0, "retain": 1.0, "harmful": 0.9}])
    assert fig.layout.xaxis.type == "category" and fig.data[0].x[0] == "0"
    with pytest.raises(ValueError, match="numeric"):
        plots.lambda_sweep([{"lambda": 0.1, "name": "x"}])


def test_pandas_tables_accepted():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"method": ["GA", "GD"], "attack": ["benign"] * 2, "accuracy": [0.1, 0.2]})
    assert plots.attack_grid(frame).data[0].z.shape == (2, 1)
    assert list(plots.table(frame).data[0].header.values) == ["method", "attack", "accuracy"]


def test_public_names():
    assert ns.plots.neuron_heatmap is plots.neuron_heatmap
    assert all(callable(getattr(plots, name)) for name in plots.__all__)


def test_repeated_points_are_drawn_as_their_mean():
    rows = [{"seed": s, "method": "GA", "attack": "benign", "step": step, "accuracy": 0.1 * s + step}
            for s in (0, 1) for step in (5, 0)]
    fig = plots.recovery_curves(rows)
    assert list(fig.data[0].x) == [0, 5]
    assert list(fig.data[0].y) == pytest.approx([0.05, 5.05])
    grid = plots.attack_grid([{"method": "GA", "attack": "benign", "accuracy": a} for a in (0.2, 0.4)])
    assert grid.data[0].z[0, 0] == pytest.approx(0.3)
    assert grid.data[0].customdata[0][0] == 2
