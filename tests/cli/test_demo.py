"""``neuronscope demo``: the whole story on the tiny organism into a temporary folder."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import neuronscope as ns
from neuronscope.bench import Pipeline, attack_label, robustness
from neuronscope.bench.demo import demo_config
from neuronscope.cli import build_parser, main
from neuronscope.cli.demo import PRESETS, run_demo
from neuronscope.unlearning import parse_recipes


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
                    "ga: D+ and D-", "gd+ssiuu(0.01): D+ and D-", "Retraining attacks: recovery over steps",
                    "Method x attack"):
        assert f">{heading}</h2>" in text
    n_figures = text.count("Plotly.newPlot(")
    assert n_figures >= 9


@pytest.mark.slow
def test_demo_tables_cover_every_method_and_attack(demo, tiny_org, forget_retain):
    _, result, lines = demo
    methods = [recipe.label for recipe in PRESETS["tiny"].methods]
    models = [row["model"] for row in result.tables["unlearning"]]
    assert models == ["original", "oracle", *methods]
    forget, _ = forget_retain
    original = result.tables["unlearning"][0]
    assert original["forget"] == pytest.approx(float(ns.accuracy(tiny_org.bridge, forget)))
    attacks = {(row["attack"], row["method"]) for row in result.tables["attacks"]}
    names = [attack_label(a, p) for a, p in PRESETS["tiny"].attacks]
    assert attacks == {(a, m) for a in names for m in methods}
    for row in result.tables["attacks"]:
        assert row["excess recovery"] == pytest.approx(row["after attack"] - row["oracle after"])
    assert [row["method"] for row in result.tables["diagnosis"]] == methods
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

    monkeypatch.setattr(Pipeline, "attack", interrupted)
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
    assert PRESETS["fast"].n_people < PRESETS["full"].n_people
    args = build_parser().parse_args(["demo", "--methods", "gd,gd+ssiuu(1e-3)", "--people", "50"])
    assert args.methods == "gd,gd+ssiuu(1e-3)" and args.people == 50


class _StopError(Exception):
    pass


def test_demo_and_benchmark_drive_the_one_pipeline(monkeypatch, tmp_path):
    """Both drivers hand their settings to Pipeline.run (stopped there by a spy)."""
    calls = []

    def spy(self, seed):
        calls.append((self.config, seed))
        raise _StopError

    monkeypatch.setattr(Pipeline, "run", spy)
    with pytest.raises(_StopError):
        run_demo(tmp_path, "tiny", seed=3, quiet=True, cache=False)
    with pytest.raises(_StopError):
        robustness("smoke", seeds=[5], progress=False, cache=False)
    (demo, demo_seed), (bench, bench_seed) = calls
    assert demo == demo_config("tiny", seed=3) and demo.diagnose and demo_seed == 3
    assert bench == ns.bench.PRESETS["smoke"].with_overrides(seeds=(5,)) and bench_seed == 5
    # Both command lines read --methods with the one recipe parser.
    recipes = parse_recipes("gd,gd+ssiuu(1e-3,level=neuron)")
    for argv in (["demo", "--preset", "tiny", "--quiet", "--out", str(tmp_path)],
                 ["bench", "robustness", "--preset", "smoke", "--quiet", "--out", str(tmp_path)]):
        with pytest.raises(_StopError):
            main([*argv, "--methods", "gd, gd+ssiuu(1e-3,level=neuron)"])
        assert calls[-1][0].methods == recipes


@pytest.mark.slow
def test_benchmark_of_the_demo_preset_gives_the_demo_numbers(demo, cache_folder):
    """The robustness benchmark run on the demo's own settings makes the demo's numbers."""
    _, result, _ = demo
    bench = robustness(demo_config("tiny", diagnose=False), cache=cache_folder, progress=False)
    rows = {(r["attack"], r["method"]): r for r in bench.rows}
    for row in result.tables["attacks"]:
        same = rows[(row["attack"], row["method"])]
        assert (row["before attack"], row["after attack"], row["oracle after"]) == (
            same["unlearned"], same["attacked"], same["oracle_attacked"])
    for row in result.tables["unlearning"][2:]:
        same = rows[("benign", row["model"])]
        assert (row["forget"], row["retain"], row["steps"]) == (
            same["forget_accuracy"], same["retain_accuracy"], same["unlearn_steps"])
