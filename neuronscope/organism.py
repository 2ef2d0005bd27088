"""The model organism: a tiny TransformerLens model that has memorised a synthetic world.

``organism(world)`` trains (or loads from the disk cache) a ``TransformerBridge`` on the
world's facts plus its benign corpus; ``organism(world, exclude=forget)`` is the oracle twin
trained by the same recipe without the forget facts.

Example:
    >>> from neuronscope import accuracy
    >>> world = FactWorld.synthetic(n_people=8, seed=0)           # 40 facts
    >>> org = organism(world, size="tiny", progress=False)        # ~5 s the first time, then cached
    >>> accuracy(org.bridge, world.facts) >= 0.99
    True
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from neuronscope._version import __version__
from neuronscope.atomic import atomic_torch_save
from neuronscope.cache import cache_dir
from neuronscope.deprecation import DeprecatedAlias
from neuronscope.facts import Fact, FactSet
from neuronscope.models import boot_native, native_config
from neuronscope.scoring import answer_token_logprobs, scores
from neuronscope.tokenization import WordTokenizer, tokenize
from neuronscope.training import EpochSampler, TrainHistory, TrainSettings, finetune
from neuronscope.types import Model
from neuronscope.world import FactWorld

__all__ = ["SIZES", "Organism", "OrganismRecipe", "cache_dir", "organism", "training_facts",
           "untrained_organism"]

RECIPE_VERSION = 4


@dataclass(frozen=True)
class OrganismRecipe:
    """Architecture and training settings of one organism size."""

    n_layers: int
    d_model: int
    n_heads: int
    d_mlp: int
    n_ctx: int = 32
    act_fn: str = "gelu"
    lr: float = 3e-3
    weight_decay: float = 0.0
    batch_size: int = 128
    max_epochs: int = 400
    final_lr_fraction: float = 0.05
    target_accuracy: float = 0.995
    benign_sentences: int | None = None  # None: the whole benign corpus
    eval_every: int = 5  # epochs


SIZES: dict[str, OrganismRecipe] = {
    "small": OrganismRecipe(n_layers=4, d_model=128, n_heads=4, d_mlp=512, max_epochs=50, lr=4e-3,
                            batch_size=256, benign_sentences=400, eval_every=2),
    "tiny": OrganismRecipe(n_layers=2, d_model=64, n_heads=4, d_mlp=256, benign_sentences=300,
                           batch_size=64),
}


@dataclass
class Organism:
    """A trained organism: its ``bridge`` (a TransformerBridge), tokenizer and training record
    (unpacks as that triple). ``model`` is the old name of ``bridge`` (deprecated)."""

    bridge: Model
    tokenizer: WordTokenizer
    record: dict = field(default_factory=dict)
    path: Path | None = None

    model = DeprecatedAlias("bridge", "a bridge's own .model is the Hugging Face module")

    def __iter__(self) -> Iterator[Any]:
        return iter((self.bridge, self.tokenizer, self.record))


def _settings(world: FactWorld, recipe: OrganismRecipe, size: str, seed: int,
              exclude: FactSet | None) -> dict:
    excluded = sorted(f.id or f.prompt for f in exclude) if exclude is not None else []
    return {
        "recipe_version": RECIPE_VERSION,
        "world": world.fingerprint(),
        "size": size,
        "recipe": asdict(recipe),
        "seed": seed,
        "exclude": hashlib.sha256(json.dumps(excluded).encode()).hexdigest()[:16],
        "n_excluded": len(excluded),
        "torch": torch.__version__.split("+")[0],
    }


def _key(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:20]


def _digest(state: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for name in sorted(state):
        digest.update(name.encode())
        digest.update(state[name].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def untrained_organism(world: FactWorld, recipe: OrganismRecipe, seed: int) -> Any:
    """The organism's bridge before training: ``recipe``'s architecture, ``seed``'s random
    weights and ``world``'s tokenizer (what :func:`organism` trains).

    Example:
        >>> world = FactWorld.synthetic(n_people=10)
        >>> untrained_organism(world, SIZES["tiny"], seed=0).cfg.n_layers == SIZES["tiny"].n_layers
        True
    """
    config = native_config(
        d_model=recipe.d_model, d_head=recipe.d_model // recipe.n_heads, n_heads=recipe.n_heads,
        n_layers=recipe.n_layers, n_ctx=recipe.n_ctx, d_vocab=len(world.tokenizer),
        d_mlp=recipe.d_mlp, act_fn=recipe.act_fn, normalization_type="LN", seed=seed,
        model_name="neuronscope-organism",
    )
    model = boot_native(config, model_name="neuronscope-organism")
    model.tokenizer = world.tokenizer
    return model


def training_facts(world: FactWorld, recipe: OrganismRecipe, seed: int,
                   exclude: FactSet | None = None) -> tuple[FactSet, FactSet]:
    """What :func:`organism` trains on: ``world``'s facts without ``exclude`` (the oracle's
    forget set), and the benign sentences (a seeded sample of ``recipe.benign_sentences``).

    Example:
        >>> world = FactWorld.synthetic(n_people=10)
        >>> facts, benign = training_facts(world, SIZES["tiny"], seed=0)
        >>> len(facts) == len(world.facts)
        True
    """
    facts = world.facts if exclude is None else world.facts.without(exclude)
    benign = list(world.benign)
    if recipe.benign_sentences is not None and recipe.benign_sentences < len(benign):
        benign = random.Random(seed).sample(benign, recipe.benign_sentences)
    return facts, FactSet(benign, name="benign")


def _train(model: Any, facts: FactSet, benign: FactSet, recipe: OrganismRecipe, seed: int,
           progress: bool) -> dict:
    """Train on facts + benign sentences through :func:`finetune`: seeded epochs
    (:class:`EpochSampler`), AdamW, linear warm-up over two epochs then a cosine decay to
    ``final_lr_fraction``, fact accuracy every ``eval_every`` epochs, stop at ``target_accuracy``."""
    torch.manual_seed(seed)
    net = model.original_model  # same parameters, without the bridge's per-call overhead
    data = tokenize(list(facts) + list(benign), model.tokenizer, max_length=recipe.n_ctx)
    fact_batch = data[: len(facts)] if len(facts) else None
    steps_per_epoch = math.ceil(len(data) / recipe.batch_size)
    total = steps_per_epoch * recipe.max_epochs
    warmup = steps_per_epoch * 2

    def lr_factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return recipe.final_lr_fraction + (1 - recipe.final_lr_fraction) * 0.5 * (
            1 + math.cos(math.pi * min(1.0, progress)))

    def loss_fn(net: Any, batches: dict[str, Any], step: int) -> dict[str, torch.Tensor]:
        rows = batches["train"]
        picked, mask = answer_token_logprobs(net(rows.tokens), rows)
        return {"loss": -(picked.sum() / mask.sum())}

    def evaluate(net: Any) -> dict[str, float]:
        net.eval()
        acc = _accuracy(net, fact_batch) if fact_batch is not None else 1.0
        net.train()
        return {"fact_accuracy": acc}

    settings = TrainSettings(lr=recipe.lr, max_steps=total, batch_size=recipe.batch_size,
                             weight_decay=recipe.weight_decay, betas=(0.9, 0.98), grad_clip=1.0,
                             eval_every=steps_per_epoch * recipe.eval_every, seed=seed, train_mode=True,
                             snapshot=False)
    def reached(metrics: dict) -> bool:  # the accuracy before the first step never stops the run
        return metrics.get("step", 0) > 0 and metrics["fact_accuracy"] >= recipe.target_accuracy

    _, history = finetune(net, loss_fn, {"train": data}, settings, evaluate=evaluate, stop_when=reached,
                          inplace=True, progress=progress, desc="training organism", sampler=EpochSampler,
                          lr_schedule=lr_factor)
    net.eval()
    model.eval()
    return {"epochs": history.n_steps // steps_per_epoch, "seconds": history.seconds,
            "reached_target": history.stopped_reason == "target", "n_facts": len(facts),
            "n_benign": len(benign), "history": _epochs(history, steps_per_epoch)}


def _epochs(history: TrainHistory, steps_per_epoch: int) -> list[dict]:
    """One record per evaluated epoch: the epoch's mean loss, the fact accuracy and the seconds
    of training steps so far."""
    losses = [r["loss"] for r in history.steps if r["step"] > 0]
    records, seconds = [], 0.0
    for record in history.steps[1:]:
        seconds += record.get("seconds", 0.0)
        if not record.get("evaluated"):
            continue
        epoch = record["step"] // steps_per_epoch
        epoch_loss = 0.0
        for loss in losses[(epoch - 1) * steps_per_epoch : epoch * steps_per_epoch]:
            epoch_loss += loss
        records.append({"epoch": epoch, "loss": epoch_loss / steps_per_epoch,
                        "fact_accuracy": record["fact_accuracy"], "seconds": seconds})
    return records


def _accuracy(net: Any, batch: Any) -> float:
    hits = []
    with torch.no_grad():
        for start in range(0, len(batch), 512):
            rows = batch[start : start + 512]
            hits.append(scores(net(rows.tokens), rows)[1])
    return float(torch.cat(hits).float().mean())


def _save(path: Path, payload: dict) -> None:
    atomic_torch_save(path, payload)


def _load(path: Path, key: str) -> dict | None:
    """The cached payload, or None when missing, unreadable, partial or not matching."""
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return None
    if not isinstance(payload, dict) or payload.get("key") != key:
        return None
    state = payload.get("state_dict")
    if not isinstance(state, dict) or _digest(state) != payload.get("digest"):
        return None
    return payload


def organism(
    world: FactWorld | None = None,
    size: str = "small",
    seed: int = 0,
    exclude: Iterable[Fact] | None = None,
    *,
    cache: bool | str | os.PathLike = True,
    progress: bool = True,
) -> Organism:
    """Train (or load from the cache) the organism for ``world``.

    ``exclude=forget`` gives the oracle: the same recipe without those facts. ``cache`` may
    be False (always train), True (the user cache folder) or a folder.

    Example:
        >>> org = organism(FactWorld.synthetic(n_people=8, seed=0), size="tiny", progress=False)
        >>> model, tokenizer, record = org
        >>> model is org.bridge, record["n_facts"]
        (True, 40)
    """
    world = world if world is not None else FactWorld.synthetic()
    if size not in SIZES:
        raise ValueError(f"size must be one of {sorted(SIZES)}, got {size!r}")
    recipe = SIZES[size]
    exclude_set = FactSet(exclude) if exclude is not None else None
    if exclude_set is not None:
        known = set(world.facts)
        unknown = [f.id or f.prompt for f in exclude_set if f not in known]
        if unknown:
            raise ValueError(f"exclude holds facts that are not in the world: {unknown[:3]}")
    facts, benign = training_facts(world, recipe, seed, exclude_set)
    # Validate before any work: every fact fits the context and uses known words.
    tokenize(list(facts) + list(benign), world.tokenizer, max_length=recipe.n_ctx)
    settings = _settings(world, recipe, size, seed, exclude_set)
    key = _key(settings)
    folder = Path(cache) if isinstance(cache, (str, os.PathLike)) else cache_dir()
    path = folder / f"organism-{size}-{key}.pt"
    model = untrained_organism(world, recipe, seed)
    payload = _load(path, key) if cache is not False else None
    if payload is not None:
        model.load_state_dict(payload["state_dict"])
        model.eval()
        record = dict(payload["record"], cached=True)
        return Organism(model, world.tokenizer, record, path)
    record = _train(model, facts, benign, recipe, seed, progress)
    record.update(settings=settings, key=key, neuronscope=__version__, cached=False)
    if cache is not False:
        state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        _save(path, {"key": key, "state_dict": state, "digest": _digest(state),
                     "record": json.loads(json.dumps(record))})
    return Organism(model, world.tokenizer, record, path if cache is not False else None)
