"""The paper's robustness table (FaithUn, Llama-3.2-3B) beside a measured benchmark result.

Numbers from ``PAPER.md`` (a secondary summary of the paper: approximate), in percent; attack
columns are accuracy on the forgotten facts after the attack (lower is better).

Example:
    >>> PAPER_TABLE["SSIUU"]["harmful p=0.3"]
    14.3
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from neuronscope.bench.stats import cell

if TYPE_CHECKING:
    from neuronscope.bench.result import RobustnessResult

__all__ = ["PAPER_TABLE", "beside_paper"]

PAPER_TABLE: dict[str, dict[str, float]] = {
    "GA": {"retain": 58.4, "harmful p=0.1": 68.4, "harmful p=0.3": 73.3, "benign": 16.7},
    "GD": {"retain": 81.0, "harmful p=0.1": 48.1, "harmful p=0.3": 54.8, "benign": 33.3},
    "DPO": {"retain": 81.5, "harmful p=0.1": 31.6, "harmful p=0.3": 46.7, "benign": 15.3},
    "NPO": {"retain": 77.6, "harmful p=0.1": 18.3, "harmful p=0.3": 18.8, "benign": 18.6},
    "RMU": {"retain": 77.8, "harmful p=0.1": 52.6, "harmful p=0.3": 75.5, "benign": 14.3},
    "SSIUU": {"retain": 84.7, "harmful p=0.1": 14.8, "harmful p=0.3": 14.3, "benign": 13.3},
}
ATTACKS = ("harmful p=0.1", "harmful p=0.3", "benign")


def beside_paper(result: RobustnessResult, ssiuu: str = "gd+ssiuu(0.001)") -> str:
    """Markdown: our retain accuracy and accuracy after each attack (percent, mean ± std over
    seeds) next to the paper's, and our excess over the oracle. ``ssiuu``: the method label
    of ours that stands for the paper's SSIUU row (the paper runs SSIUU on GD)."""
    rows = [(name, name.lower()) for name in PAPER_TABLE if name != "SSIUU"]
    rows += [(f"SSIUU ({ssiuu})", ssiuu), ("oracle (never saw the forget set)", "oracle")]
    header = ["method", "retain: ours", "paper"]
    for attack in ATTACKS:
        header += [f"{attack}: ours", "paper"]
    header.append("excess over the oracle, ours (p=0.1 / p=0.3 / benign)")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, method in rows:
        if method not in result.methods:
            continue
        paper = PAPER_TABLE.get(name.split(" ")[0], {})
        first = result.attacks[0]
        cells = [name, cell(result.select(method, first, "retain_accuracy"), scale=100, digits=1),
                 f"{paper['retain']:.1f}" if paper else "n/a"]
        excess = []
        for attack in ATTACKS:
            cells += [cell(result.select(method, attack), scale=100, digits=1),
                      f"{paper[attack]:.1f}" if paper else "n/a"]
            excess.append(cell(result.select(method, attack, "excess_recovery"), signed=True,
                                scale=100, digits=1)
                          if method != "oracle" else "0")
        cells.append(" / ".join(excess))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
