"""Settings of the pipeline (:mod:`neuronscope.bench.pipeline`) and their named presets.

One settings type, :class:`BenchConfig`, serves both drivers of the pipeline: ``PRESETS`` are
the robustness benchmark's (``smoke``, ``fast``, ``full``), ``DEMO_PRESETS`` the demo's
(``full``, ``fast``, ``tiny``: one seed, unlearning to the oracle's level, with the diagnosis).

Example:
    >>> PRESETS["fast"].size, DEMO_PRESETS["fast"].diagnose
    ('tiny', True)
    >>> [m.label for m in parse_methods("gd, gd+ssiuu(0.01), gd+ssiuu(0.01,level=neuron)")]
    ['gd', 'gd+ssiuu(0.01)', 'gd+ssiuu(0.01,level=neuron)']
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from neuronscope.unlearning.recipe import Recipe, parse_recipe, parse_recipes
from neuronscope.unlearning.ssiuu import SSIUU

__all__ = ["DEMO_PRESETS", "PRESETS", "RETAIN_SAMPLES", "TARGETS", "BenchConfig", "Recipe",
           "parse_methods"]

TARGETS = ("chance", "oracle")
RETAIN_SAMPLES = ("seeded", "first")


def parse_methods(text: str) -> tuple[Recipe, ...]:
    """``"ga, gd, gd+ssiuu(1e-3)"`` -> recipes (see :mod:`neuronscope.unlearning.recipe`)."""
    return parse_recipes(text)


def _recipe(value: Any) -> Recipe:
    if isinstance(value, Recipe):
        return value
    if isinstance(value, str):
        return parse_recipe(value)
    if isinstance(value, dict) and "label" in value:
        return Recipe.from_dict(value)
    raise ValueError(f"a benchmark method must be a Recipe or a recipe text, got {value!r}")


@dataclass(frozen=True)
class BenchConfig:
    """Everything the benchmark does, so that a saved result says how to regenerate it.

    ``forget``/``forget_by``: the forget-set kind (``"group"`` = whole families, the default;
    ``"subject"`` = people; ``"fact"`` = random facts). ``target``: the forget accuracy every
    method unlearns to: ``"chance"`` (the default) is the world's chance level on the forget
    facts (always answering each relation's commonest value); ``"oracle"`` the oracle's own
    accuracy on them, which swings from seed to seed (0.075 to 0.165 on the small organism)
    and below chance forces erasure; a float means that value. ``method_settings``: extra
    :func:`ns.unlearn` settings for one base method (``{"ga": {"lr": 1e-4}}``), over
    ``unlearn``. ``sweep``: SSIUU weights for the lambda sweep on ``sweep_base``. Each seed
    draws its own organism, forget set, attack split and minibatch order.

    ``attack_retain_sample``: the control facts, that many retain facts (None: all of them),
    scored during the attacks and, with ``diagnose``, the null of the diagnosis; drawn
    ``retain_sample`` = ``"seeded"`` (a random subset, per seed) or ``"first"`` (the first
    ones). ``diagnose``: attribute before and after unlearning (integrated gradients of
    log P with ``attribution_steps``/``attribution_tolerance``) and diagnose every method
    against the control facts (``permutations`` for the null).
    """

    size: str = "small"
    n_people: int = 400
    world_seed: int = 0
    forget: float = 0.1
    forget_by: str = "group"
    methods: tuple[Recipe, ...] = (Recipe("ga"), Recipe("gd"), Recipe("gd", (SSIUU(1e-3),)))
    attacks: tuple[tuple[str, float | None], ...] = (("harmful", 0.1), ("harmful", 0.3),
                                                     ("benign", None))
    seeds: tuple[int, ...] = (0, 1, 2)
    target: str | float = "chance"
    unlearn: dict[str, Any] = field(default_factory=dict)  # extra settings for ns.unlearn
    method_settings: dict[str, dict[str, Any]] = field(default_factory=dict)  # per base method
    attack_steps: int = 40
    attack_lr: float = 3e-4
    attack_batch_size: int = 16
    attack_eval_every: int = 10
    attack_by: str = "fact"
    attack_retain_sample: int | None = 300  # retain facts scored during attacks (None: all)
    sweep: tuple[float, ...] = ()
    sweep_base: str = "gd"
    retain_sample: str = "seeded"
    diagnose: bool = False
    attribution_steps: int | None = None  # None: adaptive, exact to attribution_tolerance
    attribution_tolerance: float | None = 0.01  # None with fixed steps: no completeness check
    permutations: int = 500

    def __post_init__(self) -> None:
        object.__setattr__(self, "methods", tuple(_recipe(m) for m in self.methods))
        if not self.seeds:
            raise ValueError("seeds is empty")
        if not self.methods and not self.sweep:
            raise ValueError("no methods and no lambda sweep: nothing to run")
        if self.forget_by not in ("group", "subject", "fact"):
            raise ValueError(f"forget_by must be 'group', 'subject' or 'fact', got {self.forget_by!r}")
        if not 0.0 < self.forget < 1.0:
            raise ValueError(f"forget must be a fraction in (0, 1), got {self.forget!r}")
        if isinstance(self.target, str) and self.target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS} or an accuracy, got {self.target!r}")
        if not isinstance(self.target, str) and not 0.0 <= float(self.target) <= 1.0:
            raise ValueError(f"target accuracy must be in [0, 1], got {self.target!r}")
        for attack, p in self.attacks:
            if attack not in ("harmful", "benign"):
                raise ValueError(f"unknown attack {attack!r} in attacks")
            if attack == "harmful" and not (p is not None and 0.0 < p < 1.0):
                raise ValueError(f"harmful attack needs p in (0, 1), got {p!r}")
        if self.attack_retain_sample is not None and self.attack_retain_sample < 1:
            raise ValueError(f"attack_retain_sample must be >= 1 or None, got {self.attack_retain_sample!r}")
        bad = [name for name, value in self.method_settings.items() if not isinstance(value, dict)]
        if bad:
            raise ValueError(f"method_settings must map a method to a dict of settings; {bad} do not")
        if any(lam < 0 for lam in self.sweep):
            raise ValueError(f"sweep holds a negative lambda: {self.sweep}")
        if self.retain_sample not in RETAIN_SAMPLES:
            raise ValueError(f"retain_sample must be one of {RETAIN_SAMPLES}, got {self.retain_sample!r}")
        if self.attribution_steps is None and self.attribution_tolerance is None:
            raise ValueError("attribution_steps and attribution_tolerance are both None: "
                             "give a number of steps or a tolerance")
        if self.permutations < 1:
            raise ValueError(f"permutations must be >= 1, got {self.permutations!r}")

    def settings_for(self, method: str) -> dict[str, Any]:
        """The :func:`ns.unlearn` settings of base ``method``: ``unlearn`` then its own."""
        return {**self.unlearn, **self.method_settings.get(method, {})}

    def all_methods(self) -> tuple[Recipe, ...]:
        """The methods, then the sweep's (the paper's SSIUU at each lambda; duplicates dropped)."""
        sweep = tuple(Recipe(self.sweep_base, (SSIUU(lam),)) if lam > 0 else Recipe(self.sweep_base)
                      for lam in self.sweep)
        return tuple(dict.fromkeys(self.methods + sweep))

    def with_overrides(self, **overrides: Any) -> BenchConfig:
        unknown = set(overrides) - set(self.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown benchmark setting(s) {sorted(unknown)}")
        return replace(self, **overrides)

    def to_dict(self) -> dict:
        record = asdict(self)
        record["methods"] = [m.to_dict() for m in self.methods]
        record["attacks"] = [list(a) for a in self.attacks]
        return record

    @classmethod
    def from_dict(cls, record: dict) -> BenchConfig:
        record = dict(record)
        record["methods"] = tuple(_recipe(m) for m in record["methods"])
        record["attacks"] = tuple((a, p) for a, p in record["attacks"])
        record["seeds"] = tuple(record["seeds"])
        record["sweep"] = tuple(record["sweep"])
        return cls(**record)


PRESETS: dict[str, BenchConfig] = {
    # CI: a tiny world and organism, two methods, one seed (seconds).
    "smoke": BenchConfig(size="tiny", n_people=60, forget=0.2, seeds=(0,),
                         methods=(Recipe("gd"), Recipe("gd", (SSIUU(1e-3),))),
                         attacks=(("harmful", 0.3), ("benign", None)), attack_steps=10),
    # A few minutes: the tiny organism, the headline comparison, three seeds.
    "fast": BenchConfig(size="tiny", n_people=100, forget=0.2, seeds=(0, 1, 2),
                        methods=(Recipe("ga"), Recipe("gd"), Recipe("gd", (SSIUU(1e-3),))),
                        attack_steps=20),
    # The documented run (docs/results.md): every base method, the paper's SSIUU (Algorithm 1,
    # lambda 1e-3) on GD as the paper runs it, and a lambda sweep on GD. GA runs gently (lr 1e-4,
    # as GA is run on real models) instead of collapsing the model in ten steps at its default.
    "full": BenchConfig(size="small", seeds=(0, 1, 2),
                        method_settings={"ga": {"lr": 1e-4, "max_steps": 300}},
                        methods=(Recipe("gd"), Recipe("gd", (SSIUU(1e-3),)), Recipe("ga"),
                                 Recipe("npo"), Recipe("dpo"), Recipe("rmu")),
                        sweep=(0.0, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)),
}

_DEMO_UNLEARN = {"max_steps": 200, "lr": 2e-3, "eval_every": 10, "eval_retain": False}

DEMO_PRESETS: dict[str, BenchConfig] = {
    # ``neuronscope demo``: one seed (the world's too), GA, GD and GD + SSIUU unlearned down to
    # the oracle's forget accuracy at twice the methods' default lr (the demo stays within a
    # minute), the diagnosis against the first retain facts, one harmful and the benign attack.
    "full": BenchConfig(size="small", n_people=400, forget=0.1, seeds=(0,), target="oracle",
                        methods=(Recipe("ga"), Recipe("gd"), Recipe("gd", (SSIUU(0.01),))),
                        attacks=(("harmful", 0.3), ("benign", None)), unlearn=dict(_DEMO_UNLEARN),
                        attack_steps=30, attack_lr=1e-3, attack_retain_sample=100,
                        retain_sample="first", diagnose=True),
}
DEMO_PRESETS["fast"] = DEMO_PRESETS["full"].with_overrides(
    size="tiny", n_people=100, forget=0.2, attack_retain_sample=60, permutations=200,
    unlearn={**_DEMO_UNLEARN, "max_steps": 100, "eval_every": 5})
DEMO_PRESETS["tiny"] = DEMO_PRESETS["full"].with_overrides(
    size="tiny", n_people=60, forget=0.2, attack_retain_sample=40, attribution_steps=4,
    attribution_tolerance=None, permutations=100, attack_steps=8, attack_eval_every=4,
    unlearn={**_DEMO_UNLEARN, "max_steps": 30, "eval_every": 5})
