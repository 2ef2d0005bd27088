"""Two gloo processes on the CPU give the same numbers as one process."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from neuronscope.attribution import NeuronAttribution, attribute
from neuronscope.diagnostics import diagnose
from neuronscope.hooks import hook_count
from tests.attribution.test_engine import TOKENIZER, word_facts
from tests.conftest import make_native

SETTINGS = dict(steps=4, tokenizer=TOKENIZER, progress=False, batch_size=2)


def _model():
    return make_native("rms_gated_rotary", d_vocab=len(TOKENIZER), seed=11)


METHODS = ("ig", "param_x_grad")


def _worker(rank: int, world: int, port: int, state_path: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        model = _model()
        model.load_state_dict(torch.load(state_path, weights_only=True))
        for method in METHODS:
            attr = attribute(model, word_facts(7), method=method, **SETTINGS)
            attr.save(f"{out_dir}/{method}-rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_processes_equal_one(tmp_path):
    model = _model()
    torch.save(model.state_dict(), tmp_path / "state.pt")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        singles = {method: attribute(model, word_facts(7), method=method, **SETTINGS) for method in METHODS}
    finally:
        torch.set_num_threads(threads)
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path / "state.pt"), str(tmp_path)), nprocs=2,
             join=True)
    for method in METHODS:
        for rank in range(2):
            _check(NeuronAttribution.load(tmp_path / f"{method}-rank{rank}.pt"), singles[method])


def _check(shard: NeuronAttribution, single: NeuronAttribution) -> None:
    """Bitwise equal: each rank runs whole chunks of the one-process plan."""
    assert shard.meta["world_size"] == 2 and single.meta["world_size"] == 1
    assert shard.fact_ids == single.fact_ids
    assert torch.equal(shard.scores, single.scores)
    assert torch.equal(shard.target_input, single.target_input)
    if single.convergence_delta is not None:
        assert torch.equal(shard.convergence_delta, single.convergence_delta)


def _site_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    """Each rank tries the site path and the paper's diagnosis; writes what it got."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        model = _model()
        facts = word_facts(7)
        calls = {"sites": lambda: attribute(model, facts, sites=["q", "k"], **SETTINGS),
                 "paper": lambda: diagnose(model, model, facts[:4], control=facts[4:], definition="paper",
                                           tokenizer=TOKENIZER, progress=False)}
        lines = []
        for name, call in calls.items():
            try:
                call()
                lines.append(f"{name}\tno error")
            except ValueError as error:
                lines.append(f"{name}\t{error}")
        lines.append(f"hooks\t{hook_count(model)}")
        (Path(out_dir) / f"rank{rank}.txt").write_text("\n".join(lines))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_site_path_under_distributed_is_a_named_error(tmp_path):
    """Sites and token extremes are not sharded yet: every rank gets the same ValueError, the
    model keeps no hooks, and no rank hangs waiting for a collective."""
    mp.spawn(_site_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        got = dict(line.split("\t", 1) for line in (tmp_path / f"rank{rank}.txt").read_text().splitlines())
        for name in ("sites", "paper"):
            assert "do not run under torch.distributed" in got[name], got[name]
            assert "definition='paper'" in got[name]
        assert got["hooks"] == "0"
