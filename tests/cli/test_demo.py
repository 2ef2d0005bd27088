"""``neuronscope demo``: the whole story on the tiny organism into a temporary folder."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import neuronscope as ns
import neuronscope.attacks as attacks
from neuronscope.cli import build_parser
from neuronscope.cli.demo import PRESETS, run_demo


@pytest.fixture(scope="module")
def demo(tmp_path_factory, tiny_org, tiny_oracle, cache_folder):
    """One tiny demo run (the organisms come from the session cache)."""
    out = tmp_path_factory.mktemp("demo")
    lines: list[str] = []
    result = run_demo(out, "tiny", quiet=True, cache=cache_folder, echo=lines.append)
    return out, result, lines


@pytest.mark.slow
def test_demo_writes_one_self_contained_report(demo):
    out, result, _ = demo
    assert result.report == out / "report.html"
    assert sorted(p.name for p in out.iterdir()) == ["report.html"], "no temporary files left"
    text = result.report.read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]*\bsrc\s*=", text, flags=re.I)
    for heading in ("The organism: accuracy per split", "Unlearning: accuracy after each method",
                    "GA: D+ and D-", "GD+SSIUU: D+ and D-", "Retraining attacks: recovery over steps",
                    "Method x attack"):
        assert f">{heading}</h2>" in text
    n_figures = text.count("Plotly.newPlot(")
    assert n_figures >= 9


@pytest.mark.slow
def test_demo_tables_cover_every_method_and_attack(demo, tiny_org, forget_retain):
    _, result, lines = demo
    preset = PRESETS["tiny"]
    models = [row["model"] for row in result.tables["unlearning"]]
    assert models == ["original", "oracle", *preset.methods]
    forget, _ = forget_retain
    original = result.tables["unlearning"][0]
    assert original["forget"] == pytest.approx(float(ns.accuracy(tiny_org.bridge, forget)))
    attacks = {(row["attack"], row["method"]) for row in result.tables["attacks"]}
    names = [f"harmful p={p}" for p in preset.attack_p] + ["benign"]
    assert attacks == {(a, m) for a in names for m in preset.methods}
    for row in result.tables["attacks"]:
        assert row["excess recovery"] == pytest.approx(row["after attack"] - row["oracle after"])
    assert [row["method"] for row in result.tables["diagnosis"]] == list(preset.methods)
    # The accuracy table stays the demo's first output.
    assert lines[0].startswith("<FactWorld")
    assert lines[2].split() == ["split", "facts", "accuracy"]
    assert set(result.seconds) >= {"organism", "total"}


@pytest.mark.slow
def test_interrupted_demo_keeps_the_old_report(demo, monkeypatch, cache_folder):
    out, result, _ = demo
    old = result.report.read_text(encoding="utf-8")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(attacks, "relearn", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_demo(out, "tiny", quiet=True, cache=cache_folder, echo=lambda line: None)
    assert result.report.read_text(encoding="utf-8") == old
    assert sorted(p.name for p in out.iterdir()) == ["report.html"]


def test_demo_rejects_a_file_as_output_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match="report folder"):
        run_demo(blocker, "tiny", quiet=True, cache=False)
    with pytest.raises(ValueError, match="preset"):
        run_demo(tmp_path, "huge", quiet=True, cache=False)


def test_demo_flags():
    args = build_parser().parse_args(["demo", "--fast", "--out", "somewhere", "--quiet"])
    assert args.preset == "fast" and args.out == Path("somewhere") and args.quiet
    args = build_parser().parse_args(["demo"])
    assert args.preset == "full" and args.out == Path("neuronscope-demo") and not args.quiet
    assert PRESETS["fast"].people < PRESETS["full"].people
