"""``neuronscope attribute`` on a local checkpoint and on the (cached) tiny organism."""

from __future__ import annotations

import torch

from neuronscope.attribution import NeuronAttribution
from neuronscope.cli import main
from tests.attribution.test_engine import CHAR_FACTS


def test_attribute_command_on_a_checkpoint(hf_folders, tmp_path, capsys):
    facts = tmp_path / "facts.jsonl"
    CHAR_FACTS.to_jsonl(facts)
    out = tmp_path / "attr.pt"
    code = main(["attribute", "--model", str(hf_folders["gpt2"]), "--facts", str(facts), "--out", str(out),
                 "--steps", "4", "--layers", "1", "--target", "logprob", "--quiet"])
    assert code == 0
    attr = NeuronAttribution.load(out)
    assert attr.layers == [1] and attr.steps == 4 and len(attr.fact_ids) == len(CHAR_FACTS)
    assert attr.scores.abs().sum() > 0
    printed = capsys.readouterr().out
    assert "completeness" in printed and "top 5 neurons" in printed


def test_attribute_command_on_the_organism(tiny_org, cache_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("NEURONSCOPE_CACHE", str(cache_folder))
    out = tmp_path / "org.pt"
    code = main(["attribute", "--size", "tiny", "--people", "60", "--limit", "3", "--steps", "2",
                 "--method", "grad_x_act", "--out", str(out), "--quiet"])
    assert code == 0
    attr = NeuronAttribution.load(out)
    assert attr.method == "grad_x_act" and attr.scores.shape[0] == 3
    assert torch.isfinite(attr.scores).all()


def test_attribute_command_errors(tmp_path, capsys):
    assert main(["attribute", "--model", str(tmp_path), "--out", str(tmp_path / "x.pt")]) == 2
    assert "--facts" in capsys.readouterr().err
