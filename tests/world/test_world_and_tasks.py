"""The generated world and its tasks: schema size, uniqueness, answers checked against the graph."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from conftest import SMALL_WORLD

from gather_envs.corpus.frozen import load_frozen, procedural_corpus
from gather_envs.errors import ConfigError
from gather_envs.scoring.normalize import answer_in_text, normalize_answer
from gather_envs.world.check import world_problems
from gather_envs.world.generator import WorldConfig, generate_world, generate_worlds
from gather_envs.world.render import format_number
from gather_envs.world.schema import (
    ATTRIBUTES,
    ENTITY_TYPES,
    RELATIONS,
    RELATIONS_BY_NAME,
    TIME_CONSTRAINTS,
)

CONFIG = WorldConfig.from_json(SMALL_WORLD)
MIN_RELATION_COVERAGE = 0.9
COVERAGE_MIN_ENTITIES = 400


def test_schema_is_rich_enough() -> None:
    assert len(ENTITY_TYPES) >= 6 and len(RELATIONS) >= 10 and len(ATTRIBUTES) >= 4
    assert all(len(r.sentences) >= 3 for r in RELATIONS)


def test_names_are_unique_within_a_world() -> None:
    world = generate_world(CONFIG)
    names = [world.name(e).lower() for e in world.entity_ids]
    assert len(set(names)) == len(names)
    assert {world.type(e) for e in world.entity_ids} == set(ENTITY_TYPES)


def _template_regex(template: str) -> re.Pattern[str]:
    pattern = re.escape(template)
    for slot in ("s", "o"):
        pattern = pattern.replace(re.escape("{" + slot + "}"), "[A-Z][\\w ]+?")
    return re.compile(pattern, re.IGNORECASE)


def test_every_relation_is_rendered_in_at_least_three_phrasings() -> None:
    text = " ".join(d.text for d in procedural_corpus(SMALL_WORLD).documents)
    for relation in RELATIONS:
        used = [t for t in relation.sentences if _template_regex(t).search(text)]
        assert len(used) >= 3, (relation.name, used)


def recompute_answer(world, task) -> str:
    """Recompute a task's answer from the graph by walking its kind."""
    start = task.gold_path[0].doc_id
    parts = task.kind.split(".")
    if task.family == "comparison":
        a, b = (step.doc_id for step in task.gold_path)
        style, name = parts[0], parts[1]
        if style == "earlier":
            return "yes" if world.attr(a, name) < world.attr(b, name) else "no"
        if style == "apart":
            return str(abs(world.attr(a, name) - world.attr(b, name)))
        if style in ("select", "which"):
            first, last = sorted((a, b), key=lambda e: world.attr(e, name))
            winner = last if parts[2] == "last" else first
            return world.name(winner) if style == "which" else world.name(world.obj(winner, parts[3]))
        return "yes" if world.obj(a, name) == world.obj(b, name) else "no"
    current = start
    for part in parts:
        if part in RELATIONS_BY_NAME:
            current = world.obj(current, part)
        else:
            return format_number(world.attr(current, part))
    return world.name(current)


def test_every_answer_follows_from_the_graph_and_is_not_in_the_question() -> None:
    corpus = procedural_corpus(SMALL_WORLD)
    worlds = generate_worlds(CONFIG)
    tasks = [(split, t) for split, tasks in corpus.splits.items() for t in tasks]
    assert {t.family for _, t in tasks} == {"single-hop", "bridge", "comparison"}
    for split, task in tasks:
        world = worlds[split]
        assert recompute_answer(world, task) == task.answer, task.task_id
        assert not answer_in_text(task.answer, task.question), task.task_id
        assert len(task.gold_path) == task.hops == len(task.supporting_doc_ids)
        assert set(task.supporting_doc_ids) <= set(task.context_doc_ids)


def test_bridge_tasks_have_two_to_four_hops_and_distinct_documents() -> None:
    corpus = procedural_corpus(SMALL_WORLD)
    bridges = corpus.tasks("test", "bridge") + corpus.tasks("train", "bridge")
    assert {t.hops for t in bridges} <= {2, 3, 4} and len({t.hops for t in bridges}) >= 2
    assert all(len(set(t.supporting_doc_ids)) == t.hops for t in bridges)


def gold_path_entities(corpus, task) -> set[str]:
    """Every entity on a task's gold path, by doc id and by normalized name, plus the answer when it
    names an entity (a number such as a year may occur in both worlds without naming anything)."""
    names = {normalize_answer(corpus.doc(d).title) for d in task.supporting_doc_ids}
    answer = set() if task.answer.replace(",", "").isdigit() else {normalize_answer(task.answer)}
    return set(task.supporting_doc_ids) | names | answer


@pytest.mark.parametrize(
    "corpus_of", [lambda: procedural_corpus(SMALL_WORLD), load_frozen], ids=["small", "default"]
)
def test_train_and_test_share_no_gold_path_entity_and_no_question(corpus_of) -> None:
    """Each split comes from its own world: zero overlap of gold-path entities (ids or names, the
    answer entity included) and of (question, answer) pairs; the worlds share no name at all."""
    corpus = corpus_of()
    test, train = corpus.splits["test"], corpus.splits["train"]
    assert test and train and not {t.task_id for t in test} & {t.task_id for t in train}
    test_entities = set().union(*(gold_path_entities(corpus, t) for t in test))
    train_entities = set().union(*(gold_path_entities(corpus, t) for t in train))
    assert test_entities & train_entities == set()
    test_docs = {d for t in test for d in t.supporting_doc_ids + t.context_doc_ids}
    train_docs = {d for t in train for d in t.supporting_doc_ids + t.context_doc_ids}
    assert test_docs.isdisjoint(train_docs)
    assert not {(t.question, t.answer) for t in test} & {(t.question, t.answer) for t in train}
    test_names = {normalize_answer(d.title) for d in corpus.documents_of("test")}
    train_names = {normalize_answer(d.title) for d in corpus.documents_of("train")}
    assert test_names.isdisjoint(train_names)


def test_static_and_sequential_twins_share_their_facts_within_each_split() -> None:
    corpus = procedural_corpus(SMALL_WORLD)
    for split in ("test", "train"):
        own = {d.doc_id for d in corpus.documents_of(split)}
        for static in corpus.tasks(split, "static"):
            twin = corpus.task(static.meta["source_task_id"])
            assert (static.question, static.answer, static.context_doc_ids) == (
                twin.question,
                twin.answer,
                twin.context_doc_ids,
            )
            assert set(static.context_doc_ids) <= own and set(twin.supporting_doc_ids) <= own


@pytest.mark.parametrize("seed", [0, 1, 2026])
@pytest.mark.parametrize("num_entities", [40, 400, 3000])
def test_every_generated_world_is_consistent(seed: int, num_entities: int) -> None:
    """The checker finds nothing in either world of several seeds and sizes ..."""
    worlds = generate_worlds(WorldConfig(seed=seed, num_entities=num_entities))
    for world in worlds.values():
        assert world_problems(world) == [], (seed, num_entities, world.split)
    test_world = worlds["test"]
    # The constraints drop few facts: in worlds of realistic size most subjects keep every relation.
    for relation in RELATIONS if num_entities >= COVERAGE_MIN_ENTITIES else ():
        subjects = test_world.of_type(relation.subject)
        present = sum(test_world.obj(e, relation.name) is not None for e in subjects)
        assert present >= MIN_RELATION_COVERAGE * len(subjects), (relation.name, present, len(subjects))


def test_the_checker_catches_each_kind_of_contradiction() -> None:
    """... and it would: a founder born after the founding, a self-mentor, a mentor cycle."""
    world = generate_world(CONFIG)
    org = world.of_type("organization")[0]
    founder = world.obj(org, "founder")
    world.attrs(founder)["birth_year"] = world.attr(org, "founding_year") + 1
    person, other = world.of_type("person")[:2]
    world.graph.nodes[person]["out"]["mentor"] = person
    world.graph.nodes[other]["out"]["mentor"] = world.of_type("person")[2]
    world.graph.nodes[world.of_type("person")[2]]["out"]["mentor"] = other
    problems = "\n".join(world_problems(world))
    assert f"{org} founder -> {founder}" in problems
    assert f"{person} mentor -> {person}: not a distinct person" in problems
    assert "mentor cycle" in problems
    assert {c.relation for c in TIME_CONSTRAINTS} >= {
        "founder",
        "author",
        "mentor",
        "presenter",
        "named_after",
    }


def test_default_comparisons_are_never_yes_no_nor_a_named_entity() -> None:
    for corpus in (procedural_corpus(SMALL_WORLD), load_frozen()):
        tasks = corpus.tasks("test", "comparison") + corpus.tasks("train", "comparison")
        assert tasks and all(t.kind.startswith("select.") for t in tasks)
        for task in tasks:
            assert normalize_answer(task.answer) not in ("yes", "no"), task.task_id
            named = {normalize_answer(corpus.doc(d).title) for d in task.supporting_doc_ids}
            assert normalize_answer(task.answer) not in named, task.task_id
            assert not answer_in_text(task.answer, task.question), task.task_id


def test_binary_comparison_styles_are_opt_in() -> None:
    knobs = {**SMALL_WORLD, "comparison_styles": ["earlier", "same", "which", "apart"]}
    corpus = procedural_corpus(knobs)
    worlds = generate_worlds(WorldConfig.from_json(knobs))
    tasks = corpus.tasks("test", "comparison")
    assert {t.kind.split(".")[0] for t in tasks} == {"earlier", "same", "which", "apart"}
    for task in tasks:
        assert recompute_answer(worlds["test"], task) == task.answer, task.task_id
    with pytest.raises(ConfigError, match="comparison_styles"):
        WorldConfig.from_json({**SMALL_WORLD, "comparison_styles": ["coin"]})


@pytest.mark.parametrize(
    "knobs", [{"num_entities": 3}, {"min_hops": 3, "max_hops": 2}, {"distractor_density": 2.0}, {"size": 3}]
)
def test_bad_knobs_are_config_errors(knobs: dict) -> None:
    with pytest.raises(ConfigError):
        WorldConfig.from_json(knobs)


SCRIPT = """
import hashlib, json, sys
from gather_envs.corpus.synthetic import generate_corpus
from gather_envs.world.generator import WorldConfig
corpus, _ = generate_corpus(WorldConfig.from_json(json.loads(sys.argv[1])))
tasks = json.dumps([t.to_json() for s in sorted(corpus.splits) for t in corpus.splits[s]], sort_keys=True)
print(corpus.content_hash, hashlib.sha256(tasks.encode()).hexdigest())
"""


def test_same_knobs_same_world_across_processes_and_hash_seeds() -> None:
    outputs = set()
    for hash_seed in ("0", "1", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        result = subprocess.run(
            [sys.executable, "-c", SCRIPT, json.dumps(SMALL_WORLD)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        outputs.add(result.stdout.strip())
    assert len(outputs) == 1
    here = procedural_corpus(SMALL_WORLD).content_hash
    assert outputs.pop().split()[0] == here


def test_different_seed_gives_a_different_world() -> None:
    other = procedural_corpus({**SMALL_WORLD, "seed": 8})
    assert other.content_hash != procedural_corpus(SMALL_WORLD).content_hash
