"""The world schema: entity types, functional relations, numeric attributes, and their phrasings.

Every relation is functional (one object per subject), so a chain of relations from a named
entity has exactly one answer. Each relation has several sentence templates for documents, a
noun phrase for composing multi-hop questions, and a single-hop question.
"""

from __future__ import annotations

from dataclasses import dataclass

ENTITY_TYPES = ("person", "city", "country", "organization", "work", "award")

# Comparison question styles (drafted in gather_envs.tasks.comparison). "select" asks for a fact of
# whichever entity wins a year comparison, an entity named in neither question nor closed set; the
# others are opt-in: "apart" (a number of years), and the binary "earlier" (yes/no), "same"
# (yes/no) and "which" (one of the two named entities), HotpotQA-like and guessable by chance.
COMPARISON_SELECT = "select"
COMPARISON_STYLES = (COMPARISON_SELECT, "apart", "earlier", "same", "which")
DEFAULT_COMPARISON_STYLES = (COMPARISON_SELECT,)


@dataclass(frozen=True)
class Relation:
    """A functional relation ``subject -> object`` between two entity types.

    ``sentences`` render the fact into a document ({s} subject, {o} object); ``phrase`` names the
    object given a subject phrase, for composed questions; ``question`` asks for the object.
    """

    name: str
    subject: str
    object: str
    sentences: tuple[str, ...]
    phrase: str
    question: str


@dataclass(frozen=True)
class Attribute:
    """A numeric attribute of an entity type, with its value range and phrasings."""

    name: str
    entity: str
    low: int
    high: int
    sentences: tuple[str, ...]
    question: str
    earlier_question: str = ""  # "Was {a} ... before {b}?" for year-like attributes
    difference_question: str = ""


RELATIONS: tuple[Relation, ...] = (
    Relation(
        "born_in",
        "person",
        "city",
        ("{s} was born in {o}.", "{s} is a native of {o}.", "The birthplace of {s} is {o}."),
        "the city where {s} was born",
        "In which city was {s} born?",
    ),
    Relation(
        "nationality",
        "person",
        "country",
        (
            "{s} is a citizen of {o}.",
            "{s} holds the nationality of {o}.",
            "By nationality, {s} belongs to {o}.",
        ),
        "the country of citizenship of {s}",
        "Of which country is {s} a citizen?",
    ),
    Relation(
        "employer",
        "person",
        "organization",
        ("{s} works for {o}.", "{s} is employed by {o}.", "The employer of {s} is {o}."),
        "the employer of {s}",
        "Which organization employs {s}?",
    ),
    Relation(
        "mentor",
        "person",
        "person",
        ("{s} studied under {o}.", "{s} was trained by {o}.", "The mentor of {s} was {o}."),
        "the mentor of {s}",
        "Who was the mentor of {s}?",
    ),
    Relation(
        "located_in",
        "city",
        "country",
        ("{s} is a city in {o}.", "{s} lies within {o}.", "{s} belongs to the territory of {o}."),
        "the country in which {s} lies",
        "In which country is {s}?",
    ),
    Relation(
        "capital",
        "country",
        "city",
        (
            "The capital of {s} is {o}.",
            "{o} serves as the capital of {s}.",
            "{s} is governed from its capital, {o}.",
        ),
        "the capital of {s}",
        "What is the capital of {s}?",
    ),
    Relation(
        "headquarters",
        "organization",
        "city",
        ("{s} is headquartered in {o}.", "{s} has its head office in {o}.", "The main seat of {s} is {o}."),
        "the city where {s} is headquartered",
        "Where is {s} headquartered?",
    ),
    Relation(
        "founder",
        "organization",
        "person",
        ("{s} was founded by {o}.", "{o} established {s}.", "The founder of {s} is {o}."),
        "the founder of {s}",
        "Who founded {s}?",
    ),
    Relation(
        "author",
        "work",
        "person",
        ("{s} was written by {o}.", "{o} is the author of {s}.", "{s} is a work by {o}."),
        "the author of {s}",
        "Who wrote {s}?",
    ),
    Relation(
        "publisher",
        "work",
        "organization",
        ("{s} was published by {o}.", "{o} released {s}.", "The publisher of {s} is {o}."),
        "the publisher of {s}",
        "Which organization published {s}?",
    ),
    Relation(
        "setting",
        "work",
        "city",
        ("{s} is set in {o}.", "The story of {s} takes place in {o}.", "The setting of {s} is {o}."),
        "the city in which {s} is set",
        "In which city is {s} set?",
    ),
    Relation(
        "named_after",
        "award",
        "person",
        ("{s} is named after {o}.", "{s} honours the memory of {o}.", "{s} takes its name from {o}."),
        "the person {s} is named after",
        "After whom is {s} named?",
    ),
    Relation(
        "presenter",
        "award",
        "organization",
        ("{s} is presented by {o}.", "{o} awards {s}.", "{s} is conferred by {o}."),
        "the organization that presents {s}",
        "Which organization presents {s}?",
    ),
)

ATTRIBUTES: tuple[Attribute, ...] = (
    Attribute(
        "birth_year",
        "person",
        1700,
        1995,
        ("{s} was born in the year {v}.", "{s} came into the world in {v}.", "The birth year of {s} is {v}."),
        "In what year was {s} born?",
        "Was {a} born before {b}?",
        "How many years apart were {a} and {b} born?",
    ),
    Attribute(
        "founding_year",
        "organization",
        1600,
        2010,
        ("{s} was established in {v}.", "{s} dates from {v}.", "The founding year of {s} is {v}."),
        "In what year was {s} founded?",
        "Was {a} founded before {b}?",
        "How many years apart were {a} and {b} founded?",
    ),
    Attribute(
        "publication_year",
        "work",
        1650,
        2020,
        ("{s} first appeared in {v}.", "{s} was published in {v}.", "The publication year of {s} is {v}."),
        "In what year was {s} published?",
        "Was {a} published before {b}?",
        "How many years apart were {a} and {b} published?",
    ),
    Attribute(
        "established_year",
        "award",
        1800,
        2015,
        ("{s} was first awarded in {v}.", "{s} was instituted in {v}.", "{s} has been given since {v}."),
        "In what year was {s} first awarded?",
        "Was {a} first awarded before {b}?",
        "How many years apart were {a} and {b} first awarded?",
    ),
    Attribute(
        "population",
        "city",
        2000,
        4000000,
        ("{s} has a population of {v}.", "About {v} people live in {s}.", "The population of {s} is {v}."),
        "What is the population of {s}?",
    ),
    Attribute(
        "area",
        "country",
        5000,
        900000,
        (
            "{s} covers an area of {v} square kilometres.",
            "The area of {s} is {v} km2.",
            "{s} spans {v} square kilometres.",
        ),
        "What is the area of {s} in square kilometres?",
    ),
)


@dataclass(frozen=True)
class TimeConstraint:
    """For ``relation`` (s -> o): ``attr(s, subject_attr) - attr(o, object_attr)`` lies in ``[low, high]``.

    This is how the world stays consistent in time: a founder is born 20 to 80 years before the
    organization is founded, a mentor 15 to 60 years before the mentee, a publisher exists before
    it publishes, and so on. Places carry no dates, so relations to cities and countries need none.
    """

    relation: str
    subject_attr: str
    object_attr: str
    low: int
    high: int


TIME_CONSTRAINTS: tuple[TimeConstraint, ...] = (
    TimeConstraint("mentor", "birth_year", "birth_year", 15, 60),
    TimeConstraint("founder", "founding_year", "birth_year", 20, 80),
    TimeConstraint("author", "publication_year", "birth_year", 15, 80),
    TimeConstraint("named_after", "established_year", "birth_year", 20, 150),
    TimeConstraint("employer", "birth_year", "founding_year", -60, 400),
    TimeConstraint("publisher", "publication_year", "founding_year", 0, 400),
    TimeConstraint("presenter", "established_year", "founding_year", 0, 400),
)
TIME_CONSTRAINTS_BY_RELATION = {c.relation: c for c in TIME_CONSTRAINTS}

RELATIONS_BY_NAME = {r.name: r for r in RELATIONS}
ATTRIBUTES_BY_NAME = {a.name: a for a in ATTRIBUTES}

# Entity type -> a short descriptive noun used in the opening sentence of its document.
TYPE_NOUNS = {
    "person": ("scholar", "painter", "engineer", "merchant", "poet", "physician"),
    "city": ("city", "river town", "port city", "market town"),
    "country": ("country", "republic", "kingdom"),
    "organization": ("organization", "institution", "enterprise"),
    "work": ("novel", "symphony", "treatise", "play", "poem cycle"),
    "award": ("award", "decoration", "distinction"),
}

# Filler vocabulary for document-length padding: invented but pronounceable, fact-free.
FILLER_SENTENCES = (
    "Records of {s} mention a long tradition of {w} craftsmanship.",
    "Visitors often remark on the {w} style associated with {s}.",
    "Several accounts describe {s} in connection with the {w} movement.",
    "Local chroniclers wrote about {s} during the {w} era.",
    "Little else is recorded about {s} beyond the {w} archives.",
)
