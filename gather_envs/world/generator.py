"""Build a seeded knowledge graph of fictional entities (networkx) from a :class:`WorldConfig`."""

from __future__ import annotations

import bisect
from dataclasses import asdict, dataclass
from typing import Any

import networkx as nx
import numpy as np

from gather_envs.errors import ConfigError
from gather_envs.parameters import parameters_from_signature, parse_parameters
from gather_envs.world.names import NameFactory
from gather_envs.world.schema import (
    ATTRIBUTES,
    ATTRIBUTES_BY_NAME,
    COMPARISON_STYLES,
    DEFAULT_COMPARISON_STYLES,
    ENTITY_TYPES,
    RELATIONS,
    TIME_CONSTRAINTS_BY_RELATION,
    TYPE_NOUNS,
    Relation,
)

GENERATOR_VERSION = 2  # 2: time-consistent facts, a separate train world, comparison styles

SPLIT_TEST = "test"
SPLIT_TRAIN = "train"
WORLD_SPLITS = (SPLIT_TEST, SPLIT_TRAIN)
TRAIN_WORLD_STREAM = 3  # sub-stream of the corpus seed that draws the train world
ID_PREFIXES = {SPLIT_TEST: "E", SPLIT_TRAIN: "R"}
# Relations whose subject's year is drawn after the object is chosen (a founding year follows the
# founder's birth); the other dated relations pick an object whose year fits the subject's.
DERIVED_RELATIONS = ("founder", "author", "named_after")
DERIVED_ATTRIBUTES = tuple(TIME_CONSTRAINTS_BY_RELATION[r].subject_attr for r in DERIVED_RELATIONS)
UNDATED_FIRST = ("located_in", "capital")

# Share of entities per type; persons take the remainder.
TYPE_SHARES = {"country": 0.03, "city": 0.15, "organization": 0.15, "work": 0.17, "award": 0.10}
MIN_PER_TYPE = {"country": 4, "city": 8, "organization": 4, "work": 4, "award": 4, "person": 8}
MIN_ENTITIES = sum(MIN_PER_TYPE.values())


@dataclass(frozen=True)
class WorldConfig:
    """The knobs of a synthetic world; the same knobs give the same world in any process.

    ``distractor_density`` (0..1) is the chance that a new entity copies a name part or an
    attribute value from an earlier entity of its type, creating look-alikes of path entities.
    ``doc_length`` is the number of fact-free filler sentences added to each document.
    The test tasks come from one world and the train tasks from a second, disjoint world (own
    seed stream, own entity ids, no shared names). ``comparison_styles`` picks the comparison
    question styles (see :mod:`gather_envs.tasks.comparison`); the default ``("select",)`` asks
    for an entity that only the compared documents name, never yes/no or one of the two.
    """

    seed: int = 0
    num_entities: int = 3000
    min_hops: int = 2
    max_hops: int = 4
    distractor_density: float = 0.2
    doc_length: int = 1
    tasks_per_family: int = 500
    train_tasks_per_family: int = 1000
    num_distractors: int = 8
    comparison_styles: tuple[str, ...] = DEFAULT_COMPARISON_STYLES

    def __post_init__(self) -> None:
        if self.num_entities < MIN_ENTITIES:
            raise ConfigError(f"num_entities must be at least {MIN_ENTITIES}, got {self.num_entities}")
        if not 1 <= self.min_hops <= self.max_hops:
            raise ConfigError(f"need 1 <= min_hops <= max_hops, got {self.min_hops}, {self.max_hops}")
        if self.max_hops > 4:
            raise ConfigError(f"max_hops is at most 4, got {self.max_hops}")
        if not 0.0 <= self.distractor_density <= 1.0:
            raise ConfigError(f"distractor_density must be in [0, 1], got {self.distractor_density}")
        if self.doc_length < 0 or self.num_distractors < 0:
            raise ConfigError("doc_length and num_distractors must be >= 0")
        if self.tasks_per_family < 0 or self.train_tasks_per_family < 0:
            raise ConfigError("task counts must be >= 0")
        styles = self.comparison_styles
        if isinstance(styles, str) or not isinstance(styles, list | tuple):
            raise ConfigError(f"comparison_styles takes a list of style names, got {styles!r}")
        object.__setattr__(self, "comparison_styles", tuple(styles))
        unknown = [style for style in self.comparison_styles if style not in COMPARISON_STYLES]
        if unknown or not self.comparison_styles:
            raise ConfigError(
                f"comparison_styles must be a non-empty list from {COMPARISON_STYLES}, got {list(styles)}"
            )

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["comparison_styles"] = list(self.comparison_styles)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WorldConfig:
        """Knobs from JSON, each checked for its name and type first (a ConfigError, not a TypeError)."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown world knob(s) {unknown}; known: {sorted(known)}")
        return cls(**parse_parameters("the world", parameters_from_signature(cls), data, noun="knob"))


class World:
    """A generated knowledge graph with typed entity nodes and relation-keyed edges.

    ``split`` says which of a corpus's two worlds this is; ``seed_key`` is the seed material every
    later stage (rendering, task drafting) extends with its own sub-stream.
    """

    def __init__(
        self, config: WorldConfig, graph: nx.MultiDiGraph, order: list[str], split: str = SPLIT_TEST
    ) -> None:
        self.config = config
        self.graph = graph
        self.split = split
        self.seed_key = world_seed_key(config.seed, split)
        self.entity_ids = order  # generation order; every listing follows it, never set order
        self._data = {eid: graph.nodes[eid] for eid in order}  # plain dict: fast attribute access
        self._by_type: dict[str, list[str]] = {t: [] for t in ENTITY_TYPES}
        for eid in order:
            self._by_type[self._data[eid]["type"]].append(eid)

    def name(self, eid: str) -> str:
        return self._data[eid]["name"]

    def type(self, eid: str) -> str:
        return self._data[eid]["type"]

    def noun(self, eid: str) -> str:
        return self._data[eid]["noun"]

    def attr(self, eid: str, attribute: str) -> int:
        return self._data[eid]["attrs"][attribute]

    def attrs(self, eid: str) -> dict[str, int]:
        return self._data[eid]["attrs"]

    def obj(self, eid: str, relation: str) -> str | None:
        """The object of a functional relation, or None when the entity lacks it."""
        return self._data[eid]["out"].get(relation)

    def of_type(self, entity_type: str) -> list[str]:
        return self._by_type[entity_type]

    def ref(self, eid: str) -> str:
        """How the entity is referred to mid-sentence ("the X Institute" for institutions)."""
        name = self.name(eid)
        if self.type(eid) in ("organization", "award"):
            return f"the {name}"
        return name


def world_seed_key(seed: int, split: str) -> tuple[int, ...]:
    """The seed material of a corpus's test or train world (the train world has its own stream)."""
    if split not in WORLD_SPLITS:
        raise ConfigError(f"unknown world split {split!r}; choose one of {WORLD_SPLITS}")
    return (seed,) if split == SPLIT_TEST else (seed, TRAIN_WORLD_STREAM)


def _counts(n: int) -> dict[str, int]:
    counts = {t: max(MIN_PER_TYPE[t], int(n * share)) for t, share in TYPE_SHARES.items()}
    counts["person"] = max(MIN_PER_TYPE["person"], n - sum(counts.values()))
    return counts


def _draw(rng: np.random.Generator, low: int, high: int, pool: list[int], density: float) -> int:
    """A value in ``[low, high]``: a peer's value (a look-alike) with chance ``density``, else uniform."""
    if pool and rng.random() < density:
        value = pool[int(rng.integers(len(pool)))]
        if low <= value <= high:
            return value
    return int(rng.integers(low, high + 1))


def generate_world(config: WorldConfig, split: str = SPLIT_TEST, used_names: set[str] | None = None) -> World:
    """Generate one world of ``config``: entities, names, attributes and time-consistent relations.

    ``split`` picks the test world or the disjoint train world; ``used_names`` (shared between
    the two) keeps every name unique across both.
    """
    rng = np.random.default_rng(list(world_seed_key(config.seed, split)))
    names = NameFactory(rng, used_names)
    prefix = ID_PREFIXES[split]
    graph = nx.MultiDiGraph()
    order: list[str] = []
    by_type: dict[str, list[str]] = {t: [] for t in ENTITY_TYPES}
    counts = _counts(config.num_entities)
    density = config.distractor_density
    pools: dict[str, list[int]] = {a.name: [] for a in ATTRIBUTES}

    for entity_type in ENTITY_TYPES:
        drawn = [a for a in ATTRIBUTES if a.entity == entity_type and a.name not in DERIVED_ATTRIBUTES]
        nouns = TYPE_NOUNS[entity_type]
        for _ in range(counts[entity_type]):
            eid = f"{prefix}{len(order):06d}"
            similar = bool(rng.random() < density)
            attrs = {a.name: _draw(rng, a.low, a.high, pools[a.name], density) for a in drawn}
            for name, value in attrs.items():
                pools[name].append(value)
            graph.add_node(
                eid,
                type=entity_type,
                name=names.new(entity_type, similar),
                noun=nouns[int(rng.integers(len(nouns)))],
                attrs=attrs,
                out={},
            )
            order.append(eid)
            by_type[entity_type].append(eid)

    def link(subject: str, relation: str, obj: str) -> None:
        graph.nodes[subject]["out"][relation] = obj
        graph.add_edge(subject, obj, key=relation)

    def year(eid: str, attribute: str) -> int:
        return graph.nodes[eid]["attrs"][attribute]

    # Cities are spread over countries so that every country has at least one city.
    countries, cities = by_type["country"], by_type["city"]
    cities_of: dict[str, list[str]] = {country: [] for country in countries}
    for i, city in enumerate(cities):
        country = countries[i] if i < len(countries) else countries[int(rng.integers(len(countries)))]
        link(city, "located_in", country)
        cities_of[country].append(city)
    for country in countries:
        own = cities_of[country]
        link(country, "capital", own[int(rng.integers(len(own)))])

    # Derived relations first (they set the years the other dated relations are checked against).
    rest = [r for r in RELATIONS if r.name not in DERIVED_RELATIONS and r.name not in UNDATED_FIRST]
    for relation in [r for r in RELATIONS if r.name in DERIVED_RELATIONS] + rest:
        constraint = TIME_CONSTRAINTS_BY_RELATION.get(relation.name)
        subjects, candidates = by_type[relation.subject], by_type[relation.object]
        if constraint is None:
            for subject in subjects:
                link(subject, relation.name, _any_other(rng, candidates, subject))
        elif relation.name in DERIVED_RELATIONS:
            _link_derived(rng, relation, subjects, candidates, graph, link, density, pools)
        else:
            object_attr = constraint.object_attr
            ranked = sorted(candidates, key=lambda e: year(e, object_attr))  # stable: ties by id
            values = [year(e, object_attr) for e in ranked]
            for subject in subjects:
                value = year(subject, constraint.subject_attr)
                lo = bisect.bisect_left(values, value - constraint.high)
                hi = bisect.bisect_right(values, value - constraint.low)
                if lo < hi:  # no object of the right age: the fact is simply absent
                    link(subject, relation.name, ranked[lo + int(rng.integers(hi - lo))])
    return World(config, graph, order, split)


def _any_other(rng: np.random.Generator, candidates: list[str], subject: str) -> str:
    while True:
        obj = candidates[int(rng.integers(len(candidates)))]
        if obj != subject:
            return obj


def _link_derived(
    rng: np.random.Generator,
    relation: Relation,
    subjects: list[str],
    candidates: list[str],
    graph: nx.MultiDiGraph,
    link: Any,
    density: float,
    pools: dict[str, list[int]],
) -> None:
    """Pick each subject's object, then draw the subject's year inside the constraint's window."""
    constraint = TIME_CONSTRAINTS_BY_RELATION[relation.name]
    attribute = ATTRIBUTES_BY_NAME[constraint.subject_attr]
    fits = [
        e
        for e in candidates
        if graph.nodes[e]["attrs"][constraint.object_attr] + constraint.low <= attribute.high
        and graph.nodes[e]["attrs"][constraint.object_attr] + constraint.high >= attribute.low
    ]
    if not fits:
        raise ConfigError(
            f"world too small: no {relation.object} can be the {relation.name} of a {relation.subject}"
        )
    pool = pools[attribute.name]
    for subject in subjects:
        obj = fits[int(rng.integers(len(fits)))]
        base = graph.nodes[obj]["attrs"][constraint.object_attr]
        low = max(attribute.low, base + constraint.low)
        high = min(attribute.high, base + constraint.high)
        value = _draw(rng, low, high, pool, density)
        pool.append(value)
        graph.nodes[subject]["attrs"][attribute.name] = value
        link(subject, relation.name, obj)


def generate_worlds(config: WorldConfig) -> dict[str, World]:
    """The test world and, when train tasks are wanted, the disjoint train world (no shared names)."""
    used: set[str] = set()
    worlds = {SPLIT_TEST: generate_world(config, SPLIT_TEST, used)}
    if config.train_tasks_per_family:
        worlds[SPLIT_TRAIN] = generate_world(config, SPLIT_TRAIN, used)
    return worlds
