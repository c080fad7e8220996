"""Build a seeded knowledge graph of fictional entities (networkx) from a :class:`WorldConfig`."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import networkx as nx
import numpy as np

from gather_envs.errors import ConfigError
from gather_envs.parameters import parameters_from_signature, parse_parameters
from gather_envs.world.names import NameFactory
from gather_envs.world.schema import ATTRIBUTES, ENTITY_TYPES, RELATIONS, TYPE_NOUNS

GENERATOR_VERSION = 1

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

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WorldConfig:
        """Knobs from JSON, each checked for its name and type first (a ConfigError, not a TypeError)."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown world knob(s) {unknown}; known: {sorted(known)}")
        return cls(**parse_parameters("the world", parameters_from_signature(cls), data, noun="knob"))


class World:
    """A generated knowledge graph with typed entity nodes and relation-keyed edges."""

    def __init__(self, config: WorldConfig, graph: nx.MultiDiGraph, order: list[str]) -> None:
        self.config = config
        self.graph = graph
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


def _counts(n: int) -> dict[str, int]:
    counts = {t: max(MIN_PER_TYPE[t], int(n * share)) for t, share in TYPE_SHARES.items()}
    counts["person"] = max(MIN_PER_TYPE["person"], n - sum(counts.values()))
    return counts


def generate_world(config: WorldConfig) -> World:
    """Generate the world for ``config``: entities, names, attributes and relations."""
    rng = np.random.default_rng(config.seed)
    names = NameFactory(rng)
    graph = nx.MultiDiGraph()
    order: list[str] = []
    by_type: dict[str, list[str]] = {t: [] for t in ENTITY_TYPES}
    counts = _counts(config.num_entities)
    density = config.distractor_density

    for entity_type in ENTITY_TYPES:
        attributes = [a for a in ATTRIBUTES if a.entity == entity_type]
        nouns = TYPE_NOUNS[entity_type]
        for _ in range(counts[entity_type]):
            eid = f"E{len(order):06d}"
            similar = bool(rng.random() < density)
            attrs: dict[str, int] = {}
            peers = by_type[entity_type]
            for attribute in attributes:
                if peers and rng.random() < density:
                    donor = peers[int(rng.integers(len(peers)))]
                    attrs[attribute.name] = graph.nodes[donor]["attrs"][attribute.name]
                else:
                    attrs[attribute.name] = int(rng.integers(attribute.low, attribute.high + 1))
            graph.add_node(
                eid,
                type=entity_type,
                name=names.new(entity_type, similar),
                noun=nouns[int(rng.integers(len(nouns)))],
                attrs=attrs,
                out={},
            )
            order.append(eid)
            peers.append(eid)

    def link(subject: str, relation: str, obj: str) -> None:
        graph.nodes[subject]["out"][relation] = obj
        graph.add_edge(subject, obj, key=relation)

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

    for relation in RELATIONS:
        if relation.name in ("located_in", "capital"):
            continue
        candidates = by_type[relation.object]
        for subject in by_type[relation.subject]:
            while True:
                obj = candidates[int(rng.integers(len(candidates)))]
                if obj != subject:
                    break
            link(subject, relation.name, obj)
    return World(config, graph, order)
