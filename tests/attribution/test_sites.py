"""Attribution at other sites than the MLP neurons (attention Q, K, V, O; MLP gate, up, down),
and the per-token max / min of the general path, against slow plain-hook references."""

from __future__ import annotations

import pytest
import torch

import neuronscope as ns
from neuronscope.attribution import attribute
from neuronscope.attribution.sites import resolve_sites, site_hook_name
from neuronscope.attribution.spec import position_mask
from neuronscope.hooks import hook_count
from neuronscope.scoring import answer_token_logprobs, batch_for

pytestmark = pytest.mark.usefixtures("one_thread")


def _facts(n: int = 3):
    return [ns.Fact(f"x{i} is", f"{chr(97 + i)}{chr(98 + i)}", id=f"x{i}") for i in range(n)]


@pytest.fixture(scope="module")
def models(hf_folders):
    return {shape: ns.load_model(hf_folders[shape]) for shape in ("gpt2", "llama")}


def _target(model, row, hooks, target="prob"):
    with model.hooks(fwd_hooks=hooks):
        logits = model(row.tokens)
    picked, _ = answer_token_logprobs(logits, row)
    total = picked.sum(-1)[0]
    return total.exp() if target == "prob" else total


def reference_per_token(model, facts, site, layer, target="prob"):
    """Activation x gradient one token at a time: for token k, only position k's activation
    is a leaf; A_k = h_k * dT/dh_k. Returns [fact, pos, unit] (0 outside the prompt)."""
    batch = batch_for(model, facts)
    name = site_hook_name(site, layer)
    out = []
    for f in range(len(batch)):
        row = batch[f : f + 1]
        mask = position_mask(row, "prompt")[0]
        seen = {}
        with torch.no_grad():
            _target(model, row, [(name, lambda a, hook, seen=seen: seen.setdefault("h", a.detach().clone()))],
                    target)
        h = seen["h"].reshape(1, row.tokens.shape[1], -1)
        rows = torch.zeros(row.tokens.shape[1], h.shape[-1], dtype=torch.float64)
        for k in range(row.tokens.shape[1]):
            if not mask[k]:
                continue
            leaf = h[0, k].clone().requires_grad_(True)

            def put(act, hook, k=k, leaf=leaf):
                flat = act.reshape(1, act.shape[1], -1).clone()
                flat[0, k] = leaf
                return flat.view(act.shape)

            value = _target(model, row, [(name, put)], target)
            (grad,) = torch.autograd.grad(value, leaf)
            rows[k] = (leaf.detach() * grad).double()
        out.append((rows, mask))
    return out


def reference_ig(model, facts, site, layer, steps, target="prob"):
    """Integrated gradients of one site with plain hooks: one fact, one step per pass
    (right Riemann sum), the site scaled at the prompt positions."""
    batch = batch_for(model, facts)
    name = site_hook_name(site, layer)
    result = []
    for f in range(len(batch)):
        row = batch[f : f + 1]
        mask = position_mask(row, "prompt")[0]
        seen = {}
        with torch.no_grad():
            _target(model, row, [(name, lambda a, hook, seen=seen: seen.setdefault("h", a.detach().clone()))],
                    target)
        h = seen["h"]
        total = torch.zeros_like(h, dtype=torch.float64)
        for step in range(1, steps + 1):
            alpha = step / steps
            x = h.clone()
            x[:, mask] = alpha * x[:, mask]
            x.requires_grad_(True)
            value = _target(model, row, [(name, lambda a, hook, x=x: x)], target)
            (grad,) = torch.autograd.grad(value, x)
            total += grad.double() / steps
        per_pos = (h.double() * total).reshape(1, h.shape[1], -1)[0] * mask[:, None]
        result.append(per_pos.sum(0))
    return torch.stack(result)


@pytest.mark.parametrize("shape", ["gpt2", "llama"])
def test_grad_x_act_token_extremes_equal_a_loop_over_tokens(models, shape):
    model = models[shape]
    facts = _facts()
    sites = ["q", "k", "v", "o", "up", "mlp_post", "down"] + (["gate"] if shape == "llama" else [])
    attr = attribute(model, facts, method="grad_x_act", sites=sites, progress=False)
    assert [n for n, _ in attr.sites] == [s for s in ("q", "k", "v", "o", "gate", "up", "mlp_post", "down")
                                          if s in sites]
    for site in ("q", "k", "o", "down") + (("gate",) if shape == "llama" else ()):
        part = attr.site_slice(site)
        for layer in (0, 1):
            reference = reference_per_token(model, facts, site, layer)
            for f, (rows, mask) in enumerate(reference):
                got_max = attr.token_max[f, layer, part].double()
                got_min = attr.token_min[f, layer, part].double()
                torch.testing.assert_close(got_max, rows[mask].max(0).values, atol=1e-6, rtol=1e-4)
                torch.testing.assert_close(got_min, rows[mask].min(0).values, atol=1e-6, rtol=1e-4)
                torch.testing.assert_close(attr.scores[f, layer, part].double(), rows.sum(0), atol=1e-6,
                                           rtol=1e-4)
    assert hook_count(model) == 0


def test_grad_x_act_sees_grouped_query_widths(models):
    llama = models["llama"]  # 4 query heads, 2 key/value heads of 8 dimensions, MLP 64
    widths = dict((s.name, s.width) for s in resolve_sites(llama, ["q", "k", "v", "o", "gate", "up"]))
    assert widths == {"q": 32, "k": 16, "v": 16, "o": 32, "gate": 64, "up": 64}


@pytest.mark.parametrize("shape", ["gpt2", "llama"])
def test_attention_site_ig_equals_plain_hooks(models, shape):
    model = models[shape]
    facts = _facts(2)
    attr = attribute(model, facts, method="ig", steps=4, quadrature="riemann_right", sites=["q", "o"],
                     layers=[1], progress=False)
    for site in ("q", "o"):
        expected = reference_ig(model, facts, site, 1, steps=4)
        got = attr.select(site=site).scores[:, 0].double()
        torch.testing.assert_close(got, expected, atol=1e-7, rtol=1e-4)


def test_site_ig_is_complete(models):
    """Sum over a site's units = T(x) - T(site zeroed) as the quadrature refines."""
    model = models["llama"]
    attr = attribute(model, _facts(2), method="ig", steps=24, sites="v", target="logprob", progress=False)
    assert attr.target_baseline is not None
    gap = (attr.target_input[:, None] - attr.target_baseline).abs()
    assert float(gap.min()) > 1e-4  # the check has something to check
    assert float(attr.convergence_delta.abs().max()) < 1e-3 * float(gap.max())


def test_mlp_site_matches_the_fast_engine(tiny_org, forget_retain):
    forget, _ = forget_retain
    facts = list(forget)[:6]
    fast = attribute(tiny_org.bridge, facts, steps=6, layers=[0, 1], progress=False)
    general = attribute(tiny_org.bridge, facts, steps=6, layers=[0, 1], sites="mlp_post", progress=False)
    torch.testing.assert_close(general.scores, fast.scores, atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(general.convergence_delta, fast.convergence_delta, atol=1e-5, rtol=1e-3)
    extremes = attribute(tiny_org.bridge, facts, method="grad_x_act", layers=[0, 1], token_extremes=True,
                         progress=False)
    plain = attribute(tiny_org.bridge, facts, method="grad_x_act", layers=[0, 1], progress=False)
    assert extremes.sites is None and extremes.token_max is not None
    torch.testing.assert_close(extremes.scores, plain.scores, atol=1e-6, rtol=1e-4)
    assert bool((extremes.token_max >= extremes.token_min).all())


def test_sites_in_the_index_select_save_and_pandas(models, tmp_path):
    model = models["gpt2"]
    attr = attribute(model, _facts(2), method="grad_x_act", sites=["k", "up"], progress=False)
    assert attr.n_neurons == 32 + 128 and attr.locate(40) == ("up", 8)
    part = attr.select([1], site="up")
    assert part.sites == [("up", 128)] and part.scores.shape == (1, 2, 128)
    torch.testing.assert_close(part.token_max[0], attr.token_max[1, :, 32:])
    loaded = ns.NeuronAttribution.load(attr.save(tmp_path / "a.pt"))
    assert loaded.sites == attr.sites and torch.equal(loaded.token_min, attr.token_min)
    frame = attr.to_pandas(reduce="mean")
    assert set(frame["site"]) == {"k", "up"} and int(frame[frame.site == "k"].neuron.max()) == 31
    assert "k (32)" in repr(attr)
    hover = ns.plots.neuron_heatmap(attr, max_neurons=200).data[0].customdata[0][:, 0].tolist()
    assert hover[:2] == ["k/0", "k/1"] and hover[32] == "up/0"


def test_bad_sites_are_named_before_work(models):
    gpt2 = models["gpt2"]
    with pytest.raises(ValueError, match=r"site 'gate'.*does not exist.*available"):
        attribute(gpt2, _facts(1), method="grad_x_act", sites=["q", "gate"], progress=False)
    with pytest.raises(ValueError, match="unknown site"):
        attribute(gpt2, _facts(1), sites="attn_q", progress=False)
    with pytest.raises(ValueError, match="param_x_grad"):
        attribute(gpt2, _facts(1), method="param_x_grad", sites="q", progress=False)
    with pytest.raises(ValueError, match="repeat"):
        attribute(gpt2, _facts(1), sites=["q", "q"], progress=False)
    assert hook_count(gpt2) == 0


def test_site_ig_default_refines_until_the_tolerance_holds(models):
    """steps=None on the general path doubles the rule until every (fact, layer, site) is within
    1 % of f(x) - f(baseline); a fixed rule that misses it warns naming the layers."""
    model = models["llama"]
    attr = attribute(model, _facts(2), sites=["q", "v"], target="logprob", progress=False)
    assert attr.steps >= 8 and attr.tolerance == 0.01
    exact = attribute(model, _facts(2), steps=256, sites=["q", "v"], target="logprob", progress=False)
    for name, _ in attr.site_widths:
        part = attr.site_slice(name)
        mine = attr.scores[..., part].double().sum(-1)
        ref = exact.scores[..., part].double().sum(-1)
        scale = (attr.target_input[:, None].double() - ref).abs() + ref.abs()
        assert bool(((mine - ref).abs() <= 0.02 * scale.clamp_min(1e-6)).all())
    with pytest.warns(UserWarning, match="layers"):
        attribute(model, _facts(2), steps=1, sites="v", target="logprob", tolerance=1e-6,
                  progress=False)
