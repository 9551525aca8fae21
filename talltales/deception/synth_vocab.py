"""The synthetic generator's vocabulary: value types and their surface forms, the topics (how each attribute is
stated, asked about and answered), the material of invented names, and :class:`Gen`, the seeded drawer of words and
values. :mod:`.synth` builds passages, questions and answers from these."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# ---------------------------------------------------------------------------------------------- value types
_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
         "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def number_words(n: int) -> str:
    """0..999,999 in English words ("forty-two", "twelve thousand")."""
    if n < 0 or n >= 1_000_000:
        raise ValueError(n)
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else "-" + _ONES[n % 10])
    if n < 1000:
        rest = n % 100
        return _ONES[n // 100] + " hundred" + ("" if rest == 0 else " and " + number_words(rest))
    rest = n % 1000
    return number_words(n // 1000) + " thousand" + ("" if rest == 0 else " " + number_words(rest))


# value type -> list of values, each value a tuple of surface forms (first = plain form; others = paraphrases)
_SYNONYM_TYPES: dict[str, list[tuple[str, ...]]] = {
    "color": [("red", "crimson"), ("blue", "azure"), ("green", "emerald"), ("yellow", "golden"),
              ("purple", "violet"), ("white", "ivory"), ("black", "ebony"), ("brown", "chestnut"),
              ("grey", "ash-grey"), ("pink", "rosy"), ("silver",), ("turquoise", "teal")],
    "product": [("bicycles", "bikes"), ("shoes", "footwear"), ("cars", "automobiles"), ("telephones", "phones"),
                ("boats", "small ships"), ("toys",), ("furniture",), ("medicine", "medication"), ("clocks",),
                ("carpets", "rugs"), ("glassware", "glass goods"), ("radios",), ("tools",), ("paper",)],
    "job": [("doctor", "physician"), ("lawyer", "attorney"), ("sailor", "mariner"),
            ("carpenter", "woodworker"), ("pilot", "aviator"), ("chef", "cook"), ("teacher", "instructor"),
            ("writer", "author"), ("baker",), ("nurse",), ("engineer",), ("painter", "artist"),
            ("librarian",), ("electrician",)],
    "pet": [("dog", "hound"), ("rabbit", "bunny"), ("parrot",), ("goat",), ("hamster",), ("pony",), ("ferret",),
            ("tortoise",), ("canary",), ("cat", "house cat")],
    "food": [("insects", "bugs"), ("leaves", "foliage"), ("fish",), ("mice", "small rodents"), ("snails",),
             ("grass", "grasses"), ("worms", "earthworms"), ("frogs",), ("crabs",), ("moss",)],
    "habitat": [("forests", "woods"), ("deserts", "dry sands"), ("swamps", "marshes"),
                ("mountains", "high peaks"), ("caves", "caverns"), ("grasslands", "open plains"), ("reefs",),
                ("rivers", "streams"), ("tundra",), ("jungles", "rainforests")],
    "material": [("ice", "frozen water"), ("rock", "stone"), ("sand",), ("iron",), ("salt",), ("lava",),
                 ("dust", "fine powder"), ("glass",), ("methane snow",), ("mud",)],
    "taste": [("sweet", "sugary"), ("sour", "tart"), ("bitter", "sharp"), ("spicy", "peppery"),
              ("salty", "briny"), ("mild", "gentle"), ("tangy", "zesty"), ("honeyed", "honey-like")],
    "season": [("spring",), ("summer", "midsummer"), ("autumn", "fall"), ("winter", "midwinter"),
               ("the rainy season", "the wet season"), ("the dry season", "the dry months")],
    "texture": [("crisp", "crunchy"), ("soft", "tender"), ("creamy", "smooth"), ("firm", "hard"),
                ("stringy", "fibrous"), ("grainy", "gritty"), ("spongy", "springy")],
}


@dataclass(frozen=True)
class Attr:
    """One attribute of a topic: how it is stated, asked about and answered."""

    key: str
    vtype: str  # count | thousands | year | a _SYNONYM_TYPES key | person | place | river
    preds: tuple[str, ...]  # predicate templates; {v} = value, {av} = value with a/an
    questions: tuple[str, ...]  # {E} = the entity reference
    answers: tuple[str, ...] = ("{v}",)  # answer templates
    lo: int = 2
    hi: int = 20


@dataclass(frozen=True)
class Topic:
    name: str
    subjects: tuple[str, ...]  # later-sentence subjects ({P} = a pronoun chosen per passage)
    attrs: tuple[Attr, ...]
    ref: str = "{N}"  # how questions and the first sentence name the entity ({N} = name)
    intro: tuple[str, ...] = ()  # optional first-sentence predicates without a fact ("is a fruit grown ...")
    name_suffixes: tuple[str, ...] = ("",)
    lowercase_name: bool = False


A = Attr
TOPICS: dict[str, Topic] = {}


def _topic(t: Topic) -> None:
    TOPICS[t.name] = t


_topic(Topic("city", ("It", "The city", "The town"), (
    A("population", "thousands", ("is home to {v} people", "has a population of {v}", "has {v} residents"),
      ("How many people live in {E}?", "What is the population of {E}?", "How many residents does {E} have?"),
      ("{v}", "{v} people"), 2, 95),
    A("bridges", "count", ("has {v} bridges", "is crossed by {v} bridges"),
      ("How many bridges does {E} have?", "How many bridges are there in {E}?"), ("{v}", "{v} bridges"), 2, 30),
    A("gates", "count", ("has {v} old gates", "keeps {v} gates in its ancient wall"),
      ("How many gates does {E} have?", "How many gates are in the old wall of {E}?"), ("{v}", "{v} gates"), 2, 19),
    A("founded", "year", ("was founded in {v}", "was built in {v}", "was first settled in {v}"),
      ("When was {E} founded?", "In what year was {E} founded?", "When was {E} first settled?"),
      ("{v}", "in {v}"), 1200, 1990),
    A("river", "river", ("lies on the {v} river", "stands beside the river {v}"),
      ("Which river does {E} lie on?", "What is the name of the river beside {E}?"), ("{v}", "the {v} river")),
    A("mayor", "person", ("is governed by mayor {v}", "elected {v} as its mayor"),
      ("Who is the mayor of {E}?", "Who governs {E}?"), ("{v}", "Mayor {v}")),
    A("export", "product", ("is known for making {v}", "exports {v}", "sells {v} to its neighbors"),
      ("What does {E} export?", "What is {E} known for making?", "What does {E} produce for trade?")),
    A("roofs", "color", ("has mostly {v} roofs", "is famous for its {v} rooftops"),
      ("What color are most roofs in {E}?", "What color are the rooftops of {E}?"), ("{v}", "{v} roofs")),
)))

_topic(Topic("animal", ("It", "The animal", "This creature"), (
    A("legs", "count", ("has {v} legs", "walks on {v} legs"),
      ("How many legs does {E} have?", "On how many legs does {E} walk?"), ("{v}", "{v} legs"), 2, 12),
    A("lifespan", "count", ("can live for {v} years", "has a lifespan of {v} years"),
      ("How long can {E} live?", "What is the lifespan of {E}?"), ("{v} years", "{v}"), 3, 60),
    A("young", "count", ("gives birth to {v} young at a time", "raises {v} young in each litter"),
      ("How many young does {E} have at a time?", "How big is a litter of {E}?"), ("{v}", "{v} young"), 2, 9),
    A("fur", "color", ("has {v} fur", "is covered in {v} fur"),
      ("What color is the fur of {E}?", "What color fur does {E} have?"), ("{v}", "{v} fur")),
    A("eyes", "color", ("has {v} eyes", "looks out through {v} eyes"),
      ("What color are the eyes of {E}?", "What color eyes does {E} have?"), ("{v}", "{v} eyes")),
    A("food", "food", ("feeds on {v}", "eats mostly {v}", "hunts for {v}"),
      ("What does {E} eat?", "What is the main food of {E}?", "What does {E} feed on?")),
    A("habitat", "habitat", ("lives in {v}", "is found in {v}", "makes its home in {v}"),
      ("Where does {E} live?", "Where can {E} be found?", "What is the habitat of {E}?"), ("{v}", "in {v}")),
), ref="the {N}", lowercase_name=True, name_suffixes=("tail", "fin", "back", "horn", "claw", "snout", "wing")))

_topic(Topic("person", ("{P}", "{P}"), (
    A("age", "count", ("is {v} years old", "recently turned {v}"),
      ("How old is {E}?", "What is the age of {E}?"), ("{v}", "{v} years old"), 21, 89),
    A("siblings", "count", ("has {v} siblings", "grew up with {v} brothers and sisters"),
      ("How many siblings does {E} have?", "How many brothers and sisters does {E} have?"), ("{v}", "{v} siblings"),
      2, 11),
    A("children", "count", ("has {v} children", "is the parent of {v} children"),
      ("How many children does {E} have?", "How many kids does {E} have?"), ("{v}", "{v} children"), 2, 9),
    A("job", "job", ("works as {av}", "earns a living as {av}", "trained as {av}"),
      ("What is the job of {E}?", "What does {E} do for a living?", "What did {E} train as?"), ("{v}", "{av}")),
    A("born", "year", ("was born in {v}", "came into the world in {v}"),
      ("When was {E} born?", "In what year was {E} born?"), ("{v}", "in {v}"), 1930, 2004),
    A("home", "place", ("lives in {v}", "moved to {v} years ago"),
      ("Where does {E} live?", "Which town is {E} living in?"), ("{v}", "in {v}")),
    A("pet", "pet", ("owns {av}", "takes care of {av}"),
      ("What pet does {E} have?", "What animal does {E} look after?"), ("{v}", "{av}")),
    A("color", "color", ("loves the color {v}", "always wears {v} clothes"),
      ("What color does {E} like?", "What is the favorite color of {E}?"), ("{v}",)),
), name_suffixes=("",)))

_topic(Topic("company", ("It", "The company", "The firm"), (
    A("employees", "thousands", ("employs {v} people", "has {v} workers"),
      ("How many people work for {E}?", "How many employees does {E} have?"), ("{v}", "{v} workers"), 2, 90),
    A("factories", "count", ("runs {v} factories", "operates {v} plants"),
      ("How many factories does {E} run?", "How many plants does {E} operate?"), ("{v}", "{v} factories"), 2, 40),
    A("stores", "count", ("owns {v} shops", "sells through {v} stores"),
      ("How many stores does {E} have?", "How many shops does {E} own?"), ("{v}", "{v} stores"), 3, 99),
    A("founded", "year", ("was founded in {v}", "was started in {v}", "opened its doors in {v}"),
      ("When was {E} founded?", "In what year did {E} start?"), ("{v}", "in {v}"), 1850, 2015),
    A("founder", "person", ("was founded by {v}", "was set up by {v}"),
      ("Who founded {E}?", "Who started {E}?"), ("{v}",)),
    A("product", "product", ("makes {v}", "is best known for its {v}", "builds {v}"),
      ("What does {E} make?", "What is {E} best known for?", "What does {E} produce?")),
    A("hq", "place", ("is based in {v}", "has its head office in {v}"),
      ("Where is {E} based?", "Where is the head office of {E}?"), ("{v}", "in {v}")),
    A("logo", "color", ("uses {av} logo", "paints its trucks {v}"),
      ("What color is the logo of {E}?", "What color does {E} use for its brand?"), ("{v}",)),
), name_suffixes=(" Industries", " Works", " Group", " Labs", " Corporation", " Trading")))

_topic(Topic("planet", ("It", "The planet", "This world"), (
    A("moons", "count", ("has {v} moons", "is orbited by {v} moons"),
      ("How many moons does {E} have?", "How many moons orbit {E}?"), ("{v}", "{v} moons"), 2, 30),
    A("rings", "count", ("has {v} rings", "is circled by {v} rings of dust"),
      ("How many rings does {E} have?", "How many rings circle {E}?"), ("{v}", "{v} rings"), 2, 12),
    A("day", "count", ("turns once every {v} hours", "has days that last {v} hours"),
      ("How long is a day on {E}?", "How many hours does a day on {E} last?"), ("{v} hours", "{v}"), 5, 90),
    A("color", "color", ("looks {v} from space", "appears {v} through a telescope"),
      ("What color does {E} look from space?", "What color does {E} appear through a telescope?"), ("{v}",)),
    A("discoverer", "person", ("was discovered by {v}", "was first spotted by {v}"),
      ("Who discovered {E}?", "Who first spotted {E}?"), ("{v}", "astronomer {v}")),
    A("discovered", "year", ("was discovered in {v}", "was first observed in {v}"),
      ("When was {E} discovered?", "In what year was {E} first observed?"), ("{v}", "in {v}"), 1610, 2020),
    A("surface", "material", ("is covered in {v}", "has a surface of {v}"),
      ("What covers the surface of {E}?", "What is the surface of {E} made of?"), ("{v}",)),
), name_suffixes=("", "", " Prime", " Minor")))

_topic(Topic("fruit", ("It", "The fruit", "This fruit"), (
    A("peel", "color", ("has {av} peel", "has thin {v} skin", "ripens into {av} peel"),
      ("What color is the peel of {E}?", "What color is the skin of {E} when ripe?"), ("{v}", "{v} peel")),
    A("flesh", "color", ("has juicy {v} flesh", "is {v} on the inside"),
      ("What color is the flesh of {E}?", "What color is {E} inside?"), ("{v}", "{v} flesh")),
    A("taste", "taste", ("tastes {v} when ripe", "has a {v} flavor", "is {v} once it ripens"),
      ("How does {E} taste?", "What flavor does a ripe {N} have?", "What does {E} taste like when ripe?"),
      ("{v}", "{v} when ripe")),
    A("season", "season", ("is harvested in {v}", "is picked from the orchards in {v}"),
      ("When is {E} harvested?", "In which season is {E} picked?"), ("{v}", "in {v}")),
    A("seeds", "count", ("contains {v} seeds", "hides {v} seeds under its peel"),
      ("How many seeds does {E} contain?", "How many seeds are inside {E}?"), ("{v}", "{v} seeds"), 2, 40),
    A("ripening", "count", ("ripens in {v} weeks", "takes {v} weeks to become ripe"),
      ("How long does {E} take to ripen?", "How many weeks does {E} need to ripen?"), ("{v} weeks", "{v}"), 2, 20),
    A("tree", "count", ("grows on trees {v} meters tall", "hangs from orchard trees about {v} meters high"),
      ("How tall are the trees of {E}?", "How high do the trees bearing {E} grow?"), ("{v} meters", "{v}"), 2, 15),
    A("region", "place", ("grows in orchards near {v}", "is grown mostly around {v}"),
      ("Where does {E} grow?", "Near which town are the orchards of {E}?"), ("{v}", "near {v}")),
    A("texture", "texture", ("feels {v} when you bite into it", "is {v} to eat"),
      ("What is the texture of {E}?", "How does {E} feel when you bite into it?"), ("{v}",)),
), ref="the {N}", lowercase_name=True,
    intro=("is a juicy fruit", "is a sweet-smelling orchard fruit", "is a fruit that farmers harvest by hand"),
    name_suffixes=("berry", "plum", "melon", "fig", "apple", "pear", "lime", "grape", "quince")))

_SYLLABLES = ["ka", "lo", "mi", "ra", "ven", "tor", "shi", "bel", "dun", "ori", "sa", "pel", "quin", "zar", "mo",
              "thal", "ne", "vik", "lum", "gra", "es", "ti", "bra", "cor", "fen", "hal", "jo", "ru", "sel", "wyn",
              "da", "mar", "os", "pri", "tul", "ek", "van", "il", "gor", "nu"]
_FRUITY = ("fruit", "orchard", "ripe", "peel", "harvest", "juic", "berr", "plum", "melon", "fig", "apple", "pear",
           "lime", "grape", "quince", "sweet")
_FIRST = ["Alma", "Boris", "Celine", "Dario", "Edda", "Farid", "Greta", "Hugo", "Ines", "Jonas", "Kira", "Lorenz",
          "Mira", "Nils", "Odile", "Pavel", "Quinn", "Rosa", "Stefan", "Tamsin", "Ulla", "Viktor", "Wanda", "Yusuf",
          "Zora", "Amos", "Bettina", "Cyrus", "Delia", "Emil"]
SHE_NAMES = {"Alma", "Celine", "Edda", "Greta", "Ines", "Kira", "Mira", "Odile", "Rosa", "Tamsin", "Ulla", "Wanda",
             "Zora", "Bettina", "Delia"}


# ---------------------------------------------------------------------------------------------- drawing
class Gen:
    """Seeded draws: picks, coins, invented words and names, values of an attribute's type."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    def pick(self, seq):
        return seq[int(self.rng.integers(len(seq)))]

    def coin(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    def between(self, lo: int, hi: int) -> int:
        """A whole number from ``lo`` to ``hi``, both included."""
        return int(self.rng.integers(lo, hi + 1))

    def shuffled(self, seq) -> list:
        return [seq[i] for i in self.rng.permutation(len(seq))]

    def word(self, n_syll: tuple[int, int] = (2, 3)) -> str:
        """An invented word; never one that hides a fruit word (the topic must come from the passage)."""
        while True:
            n = self.between(*n_syll)
            w = "".join(self.pick(_SYLLABLES) for _ in range(n))
            if not any(f in w for f in _FRUITY):
                return w

    def surname(self) -> str:
        return self.word((2, 3)).capitalize()

    def person(self) -> str:
        return f"{self.pick(_FIRST)} {self.surname()}"

    def value(self, attr: Attr) -> tuple[str, ...]:
        """A value of ``attr``'s type as a tuple of surface forms."""
        t = attr.vtype
        if t == "count":
            n = self.between(attr.lo, attr.hi)
            return (str(n), number_words(n))
        if t == "thousands":
            n = self.between(attr.lo, attr.hi)
            return (f"{n},000", f"{number_words(n)} thousand")
        if t == "year":
            return (str(self.between(attr.lo, attr.hi)),)
        if t == "person":
            return (self.person(),)
        if t in ("place", "river"):
            return (self.word((2, 3)).capitalize(),)
        return self.pick(_SYNONYM_TYPES[t])
