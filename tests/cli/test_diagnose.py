"""``neuronscope diagnose`` on local Hugging Face checkpoint folders and JSONL facts."""

from __future__ import annotations

import shutil

import pytest
import torch

import neuronscope as ns
from neuronscope.cli import main


def _char_facts(prefix: str, n: int) -> ns.FactSet:
    return ns.FactSet([ns.Fact(f"{prefix}{i} is", f"{chr(97 + i % 26)}{chr(98 + i % 20)}",
                               subject=f"{prefix}{i}", id=f"{prefix}{i}") for i in range(n)])


@pytest.fixture(scope="module")
def unlearned_folder(hf_folders, tmp_path_factory):
    """A copy of the tiny Llama checkpoint with one MLP layer's output weights flipped."""
    from transformers import AutoModelForCausalLM

    folder = tmp_path_factory.mktemp("llama-after")
    model = AutoModelForCausalLM.from_pretrained(hf_folders["llama"])
    with torch.no_grad():
        model.model.layers[1].mlp.down_proj.weight.mul_(-1.0)
    model.save_pretrained(folder)
    for item in hf_folders["llama"].iterdir():
        if "token" in item.name or item.name == "special_tokens_map.json":
            shutil.copy(item, folder / item.name)
    return folder


@pytest.mark.filterwarnings("ignore:the original model gives")  # a random model knows nothing
def test_cli_diagnose_folders_end_to_end(hf_folders, unlearned_folder, tmp_path, capsys):
    facts, control = tmp_path / "forget.jsonl", tmp_path / "retain.jsonl"
    _char_facts("x", 8).to_jsonl(facts)
    _char_facts("y", 16).to_jsonl(control)
    out, csv = tmp_path / "diag.pt", tmp_path / "neurons.csv"
    code = main(["diagnose", "--before", str(hf_folders["llama"]), "--after", str(unlearned_folder),
                 "--facts", str(facts), "--control", str(control), "--out", str(out), "--csv", str(csv),
                 "--steps", "4", "--permutations", "200", "--alpha", "0.05", "--verify", "5", "--quiet"])
    text = capsys.readouterr().out
    assert code == 0, text
    diag = ns.Diagnosis.load(out)
    assert diag.d_minus.shape == (2, 64) and len(diag.fact_ids) == 8
    assert "hide index" in text and "flagged spurious neurons" in text
    assert csv.read_text().splitlines()[0].startswith("layer,neuron,d_plus,d_minus")
    assert len(csv.read_text().splitlines()) == 1 + 2 * 64


def test_cli_diagnose_needs_a_null(hf_folders, tmp_path, capsys):
    facts = tmp_path / "forget.jsonl"
    _char_facts("x", 4).to_jsonl(facts)
    code = main(["diagnose", "--before", str(hf_folders["llama"]), "--after", str(hf_folders["llama"]),
                 "--facts", str(facts), "--out", str(tmp_path / "d.pt")])
    assert code == 2
    assert "null" in capsys.readouterr().err
    assert not (tmp_path / "d.pt").exists()


@pytest.mark.filterwarnings("ignore:the original model gives")
def test_cli_diagnose_paper_definition_and_sites(hf_folders, unlearned_folder, tmp_path, capsys):
    facts, control = tmp_path / "forget.jsonl", tmp_path / "retain.jsonl"
    _char_facts("x", 6).to_jsonl(facts)
    _char_facts("y", 10).to_jsonl(control)
    out = tmp_path / "paper.pt"
    code = main(["diagnose", "--before", str(hf_folders["llama"]), "--after", str(unlearned_folder),
                 "--facts", str(facts), "--control", str(control), "--out", str(out), "--definition", "paper",
                 "--sites", "mlp_post", "k", "q", "--top-m", "7", "--permutations", "100", "--alpha", "0.05",
                 "--verify", "0", "--quiet"])
    text = capsys.readouterr().out
    assert code == 0, text
    diag = ns.Diagnosis.load(out)
    assert diag.meta["definition"] == "paper"
    assert (diag.meta["method"], diag.meta["target"]) == ("grad_x_act", "prob")  # the paper's defaults
    assert [name for name, _ in diag.sites] == ["q", "k", "mlp_post"]  # module order
    # the CLI only parses: the same call through the Python API gives the same numbers
    before, after = ns.load_model(hf_folders["llama"]), ns.load_model(unlearned_folder)
    direct = ns.diagnose(before, after, ns.FactSet.from_jsonl(facts), control=ns.FactSet.from_jsonl(control),
                         definition="paper", sites=["q", "k", "mlp_post"], n_permutations=100, alpha=0.05,
                         progress=False)
    torch.testing.assert_close(diag.d_minus, direct.d_minus)
    torch.testing.assert_close(diag.d_plus, direct.d_plus)
    top = direct.top_m(7)
    assert f"top-7 sums: D+ {top['d_plus']:.4g}   D- {top['d_minus']:.4g}" in text


@pytest.mark.parametrize(("extra", "message"), [
    (["--definition", "paper", "--method", "ig"], "definition='paper'"),
    (["--top-m", "0"], "--top-m must be a positive integer"),
])
def test_cli_diagnose_bad_options_fail_before_loading(extra, message, tmp_path, capsys):
    facts = tmp_path / "forget.jsonl"
    _char_facts("x", 4).to_jsonl(facts)
    # the model folders do not exist: the option is rejected before anything is loaded
    code = main(["diagnose", "--before", str(tmp_path / "missing"), "--after", str(tmp_path / "missing"),
                 "--facts", str(facts), "--control", str(facts), "--out", str(tmp_path / "d.pt"), *extra])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "d.pt").exists()


@pytest.mark.parametrize(("shape", "extra", "message"), [
    ("gpt2", ["--sites", "gate"], "site 'gate'"),
    ("llama", ["--top-m", "100000"], "--top-m 100000 is larger than the number of neurons (128)"),
])
def test_cli_diagnose_options_the_model_cannot_meet(shape, extra, message, hf_folders, tmp_path, capsys):
    facts = tmp_path / "forget.jsonl"
    _char_facts("x", 4).to_jsonl(facts)
    code = main(["diagnose", "--before", str(hf_folders[shape]), "--after", str(hf_folders[shape]),
                 "--facts", str(facts), "--control", str(facts), "--out", str(tmp_path / "d.pt"), *extra])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "d.pt").exists()


@pytest.mark.parametrize("extra", [["--definition", "ours"], ["--sites", "mlp"]])
def test_cli_diagnose_rejects_unknown_names(extra, tmp_path, capsys):
    with pytest.raises(SystemExit) as error:
        main(["diagnose", "--before", "a", "--after", "b", "--facts", "f.jsonl", "--out", "d.pt", *extra])
    assert error.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
