"""One-off generator of resources/relations/fictional.yaml (kept for provenance; output is committed)."""
import random, yaml
rng = random.Random(20261125)
ON = ["br", "k", "v", "t", "z", "m", "d", "l", "s", "g", "th", "qu", "r", "n", "p", "f", "sh", "dr", "gl", "h"]
NU = ["a", "e", "i", "o", "u", "ai", "ou", "ae", "y", "ea"]
CO = ["n", "r", "th", "sk", "l", "m", "st", "x", "nd", "v", ""]
used = set()
def word(syll, suffixes=("",)):
    while True:
        w = "".join(rng.choice(ON) + rng.choice(NU) + rng.choice(CO) for _ in range(syll))
        w = (w + rng.choice(suffixes)).capitalize()
        if 4 <= len(w) <= 11 and w not in used:
            used.add(w); return w
def names(n, syll, suffixes=("",), fmt="{}"):
    return [fmt.format(word(syll, suffixes)) for _ in range(n)]
N = 24
countries = names(N, 2, ("ia", "and", "or", "ea", "istan", ""))
cities = names(N, 2, ("ville", "burg", "port", "ham", "ton", ""))
hq_cities = names(10, 2, ("by", "mouth", "field", "a"))
birth_cities = names(10, 2, ("stead", "grad", "o"))
languages = names(N, 2, ("ish", "ic", "ese", "i"))
currencies = names(8, 1, ("", "o", "et"), fmt="{}")
currencies = [c.lower() for c in currencies]
shows = names(N, 2, ("",), fmt="{} Tonight")
shows = [s if i % 3 else s.replace(" Tonight", " Street") for i, s in enumerate(shows)]
networks = names(6, 1, ("",), fmt="{} TV")
bands = names(N, 2, ("",), fmt="The {}s")
labels = names(6, 2, ("",), fmt="{} Records")
musicians = [f"{a} {b}" for a, b in zip(names(N, 1, ("a", "o", "")), names(N, 2))]
instruments = ["the " + w.lower() for w in names(6, 2, ("phone", "lin", "harp"))]
companies = names(N, 2, ("corp", "tek", "co", "ware"))
founders = [f"{a} {b}" for a, b in zip(names(N, 1, ("en", "ia", "")), names(N, 2))]
books = names(N, 2, ("",), fmt="The {} Chronicle")
writers = [f"{a} {b}" for a, b in zip(names(10, 1, ("e", "is", "")), names(10, 2))]
athletes = [f"{a} {b}" for a, b in zip(names(N, 1, ("i", "as", "")), names(N, 2))]
teams = names(8, 2, ("",), fmt="{} United")
def pairs(subjects, objects):
    return [[s, objects[i] if len(objects) >= len(subjects) else rng.choice(objects)] for i, s in enumerate(subjects)]
rels = {
  "capital": (["The capital of {subject} is {object}", "{subject} has its capital in {object}", "The capital city of {subject} is {object}"], pairs(countries, cities)),
  "official_language": (["The official language of {subject} is {object}", "People in {subject} officially speak {object}", "In {subject} the official language is {object}"], pairs(countries, languages)),
  "currency": (["The currency of {subject} is the {object}", "In {subject} people pay with the {object}", "{subject} uses a currency called the {object}"], pairs(countries, currencies)),
  "broadcast_network": (["{subject} is broadcast on {object}", "The show {subject} airs on {object}", "{subject} is a programme of {object}"], pairs(shows, networks)),
  "record_label": (["{subject} are signed to {object}", "The record label of {subject} is {object}", "{subject} release their albums on {object}"], pairs(bands, labels)),
  "member_of": (["{subject} is a member of {object}", "{subject} plays in the band {object}", "{subject} joined {object}"], pairs(musicians, bands)),
  "instrument": (["{subject} plays {object}", "The instrument of {subject} is {object}", "{subject} performs on {object}"], pairs(musicians, instruments)),
  "headquarters": (["{subject} has its headquarters in {object}", "The headquarters of {subject} are in {object}", "{subject} is based in {object}"], pairs(companies, hq_cities)),
  "founded_by": (["{subject} was founded by {object}", "The founder of {subject} is {object}", "{subject} was started by {object}"], pairs(companies, founders)),
  "birthplace": (["{subject} was born in {object}", "The birthplace of {subject} is {object}", "{subject} grew up in {object}"], pairs(founders, birth_cities)),
  "author": (["{subject} was written by {object}", "The author of {subject} is {object}", "{subject} is a novel by {object}"], pairs(books, writers)),
  "plays_for": (["{subject} plays for {object}", "{subject} is a player of {object}", "The team of {subject} is {object}"], pairs(athletes, teams)),
}
kb = {"name": "fictional", "description": "An invented knowledge base: every entity name was generated for attnlab "
      "(seeded syllable combinations), so no model has seen these facts outside the scratch pretraining corpus.",
      "relations": {k: {"templates": t, "facts": f} for k, (t, f) in rels.items()}}
class D(yaml.SafeDumper): pass
D.add_representer(list, lambda d, v: d.represent_sequence("tag:yaml.org,2002:seq", v, flow_style=all(isinstance(x, str) for x in v) and len(v) == 2))
import sys
out = open(sys.argv[1], "w")
out.write("# The fictional knowledge base of the perturbation stage (research question 4). Entity names are invented\n"
          "# (generated once by a seeded syllable generator; this file is the source of truth).\n"
          "# Each relation: templates end with {object} (the target span); facts are [subject, object].\n")
yaml.dump(kb, out, Dumper=D, sort_keys=False, allow_unicode=True, width=200)
