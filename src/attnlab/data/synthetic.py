"""Synthetic GSM8K-style word problems from templates (loader ``"synthetic"``).

The templates live in ``resources/data/synthetic.yaml`` (format documented at the top of
that file). Each template is a short story with quantity variables, optional
constraints and 1–4 solution steps; every step is one line in GSM8K's format with a
calculator annotation::

    Mia buys 3 packs of 4 pens, so she buys 3*4=<<3*4=12>>12 pens.
    #### 12

Arithmetic is exact (:class:`fractions.Fraction`). Every generated item is checked:
each step result is >= 0, < 1000 (``MAX_RESULT``) and has at most two decimals; every
division is exact (integer result); the question's quantities are pairwise distinct
(so a model — and the key spans — can tell them apart); template constraints hold.
Samples that fail are redrawn from the same stream.

Spec keys: ``train_size``, ``test_size`` (ints >= 0), optional ``families`` (list of
family names, default all, in file order) and ``templates`` (path of another template
file). Splits are built from independent streams so the test set never depends on
``train_size``:

* test: stream ``derive_seed(seed, "synthetic", "test")``, deduplicated by question text;
* train: stream ``derive_seed(seed, "synthetic", "train")``, deduplicated and excluding
  every question of the (full, ``test_size``) test set.

``n`` keeps the first ``n`` items of a split (generation is sequential, so this is the
same as truncating the full split).
"""

from __future__ import annotations

import ast
import random
import re
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from attnlab.data.errors import DataFormatError, read_yaml_resource
from attnlab.data.registry import register_dataset
from attnlab.data.schema import BASE_COLUMNS
from attnlab.data.text import derive_seed, format_number
from attnlab.paths import resources_dir

MAX_RESULT = 1000
MAX_ATTEMPTS_PER_ITEM = 2000
SPEC_KEYS = frozenset({"loader", "train_size", "test_size", "families", "templates"})
DEFAULT_TEMPLATES = Path("data") / "synthetic.yaml"

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?)\}")
_EXPR_TOKEN = re.compile(r"\s*(?:([A-Za-z_][A-Za-z0-9_]*)|(\d+(?:\.\d+)?)|(<=|>=|==|!=|[-+*/()<>]))")
_PERSON_KEYS = {
    "": ("name", "he", "He", "his", "His", "him", "himself"),
    "2": ("name2", "he2", "He2", "his2", "His2", "him2", "himself2"),
}
_PRONOUNS = {
    "female": {"he": "she", "He": "She", "his": "her", "His": "Her", "him": "her", "himself": "herself"},
    "male": {"he": "he", "He": "He", "his": "his", "His": "His", "him": "him", "himself": "himself"},
}


# ------------------------------------------------------------------ compiled templates


@dataclass(frozen=True)
class VarSpec:
    """How one quantity variable is drawn and written.

    kind: ``int`` (uniform in [lo, hi] with ``step``), ``choice`` (one of ``options``, written
    as in the file, e.g. "1.5"), ``money`` (dollars in [lo, hi] plus cents from ``cents``;
    written "3" or "2.50"), ``expr`` (computed from earlier variables).
    """

    name: str
    kind: str
    lo: int = 0
    hi: int = 0
    step: int = 1
    options: tuple[str, ...] = ()
    cents: tuple[int, ...] = ()
    expr: "Expr | None" = None
    money: bool = False


@dataclass(frozen=True)
class Expr:
    """A compiled arithmetic expression over variables: ``+ - * /``, parentheses, constants."""

    source: str
    tokens: tuple[tuple[str, str], ...]  # (kind, text) with kind in {"name", "num", "op"}
    tree: ast.expr
    names: frozenset[str]


@dataclass(frozen=True)
class Step:
    calc: Expr
    let: str
    text: str


@dataclass(frozen=True)
class Template:
    family: str
    topic: str
    key: str  # "family/template_id", for error messages
    picks: tuple[tuple[str, str], ...]  # (placeholder, pool)
    people: int
    variables: tuple[VarSpec, ...]
    where: tuple[Expr, ...]
    question: str
    steps: tuple[Step, ...]
    answer: str
    question_quantities: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class TemplateBank:
    path: str
    names: Mapping[str, tuple[str, ...]]  # gender -> names
    pools: Mapping[str, tuple[Any, ...]]
    families: Mapping[str, tuple[Template, ...]]


def _fail(path: str, key: str, message: str) -> DataFormatError:
    return DataFormatError(f"{path}: {key}: {message}")


def _compile_expr(source: Any, path: str, key: str) -> Expr:
    if not isinstance(source, str) or not source.strip():
        raise _fail(path, key, f"expression must be a non-empty string, got {source!r}")
    tokens, pos = [], 0
    while pos < len(source.rstrip()):
        match = _EXPR_TOKEN.match(source, pos)
        if not match:
            raise _fail(path, key, f"cannot parse expression {source!r} at character {pos}")
        name, num, op = match.groups()
        tokens.append(("name", name) if name else ("num", num) if num else ("op", op))
        pos = match.end()
    try:
        tree = ast.parse(source, mode="eval").body
    except SyntaxError as exc:
        raise _fail(path, key, f"invalid expression {source!r}: {exc.msg}") from None
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult, ast.Div)):
            continue
        elif isinstance(node, (ast.Constant,)) and isinstance(node.value, (int, float)):
            continue
        elif isinstance(node, (ast.Compare,)) and all(
            isinstance(o, (ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.Eq, ast.NotEq)) for o in node.ops
        ):
            continue
        elif isinstance(node, (ast.Load, ast.operator, ast.cmpop)):
            continue
        else:
            raise _fail(path, key, f"expression {source!r} may only use + - * /, comparisons, names and numbers")
    return Expr(source, tuple(tokens), tree, frozenset(names))


def _evaluate(node: ast.expr, env: Mapping[str, Fraction]) -> Any:
    """Exact evaluation with Fractions; a division records whether it was exact via ``_INEXACT``."""
    if isinstance(node, ast.Name):
        return env[node.id]
    if isinstance(node, ast.Constant):
        return Fraction(str(node.value))
    if isinstance(node, ast.BinOp):
        left, right = _evaluate(node.left, env), _evaluate(node.right, env)
        if isinstance(node.op, ast.Add):
            return left + right
        if isinstance(node.op, ast.Sub):
            return left - right
        if isinstance(node.op, ast.Mult):
            return left * right
        if right == 0:
            raise _Reject("division by zero")
        quotient = left / right
        if quotient.denominator != 1:
            raise _Reject("inexact division")
        return quotient
    if isinstance(node, ast.Compare):
        left = _evaluate(node.left, env)
        for op, comparator in zip(node.ops, node.comparators):
            right = _evaluate(comparator, env)
            ok = {
                ast.Lt: left < right, ast.LtE: left <= right, ast.Gt: left > right,
                ast.GtE: left >= right, ast.Eq: left == right, ast.NotEq: left != right,
            }[type(op)]  # fmt: skip
            if not ok:
                return False
            left = right
        return True
    raise AssertionError(f"unexpected node {ast.dump(node)}")  # excluded by _compile_expr


class _Reject(Exception):
    """A sample violates a constraint; draw again."""


def _compile_var(name: str, raw: Any, path: str, key: str, known: set[str]) -> VarSpec:
    if not isinstance(raw, Mapping) or len(raw) != 1:
        raise _fail(path, key, "a variable must be a mapping with exactly one of: int, choice, money, expr")
    (kind, arg), = raw.items()
    if kind == "int":
        if not (isinstance(arg, list) and len(arg) in (2, 3) and all(type(v) is int for v in arg)):
            raise _fail(path, key, f"int: expects [lo, hi] or [lo, hi, step] integers, got {arg!r}")
        lo, hi, step = (*arg, 1) if len(arg) == 2 else arg
        if lo > hi or step < 1:
            raise _fail(path, key, f"int: empty range {arg!r}")
        return VarSpec(name, "int", lo=lo, hi=hi, step=step)
    if kind == "choice":
        if not (isinstance(arg, list) and arg and all(isinstance(v, (int, str)) and not isinstance(v, bool) for v in arg)):
            raise _fail(path, key, f"choice: expects a non-empty list of numbers (quote decimals: '1.5'), got {arg!r}")
        options = tuple(str(v) for v in arg)
        for option in options:
            if not re.fullmatch(r"\d+(?:\.\d+)?", option):
                raise _fail(path, key, f"choice: {option!r} is not a non-negative number")
        return VarSpec(name, "choice", options=options)
    if kind == "money":
        if not (isinstance(arg, Mapping) and set(arg) == {"dollars", "cents"}):
            raise _fail(path, key, "money: expects {dollars: [lo, hi], cents: [list of cents]}")
        dollars, cents = arg["dollars"], arg["cents"]
        if not (isinstance(dollars, list) and len(dollars) == 2 and all(type(v) is int for v in dollars)):
            raise _fail(path, key, f"money.dollars: expects [lo, hi], got {dollars!r}")
        if not (isinstance(cents, list) and cents and all(type(c) is int and 0 <= c < 100 for c in cents)):
            raise _fail(path, key, f"money.cents: expects a list of ints in [0, 100), got {cents!r}")
        return VarSpec(name, "money", lo=dollars[0], hi=dollars[1], cents=tuple(cents), money=True)
    if kind == "expr":
        expr = _compile_expr(arg, path, key)
        if isinstance(expr.tree, ast.Compare):
            raise _fail(path, key, "expr must be arithmetic, not a comparison")
        unknown = expr.names - known
        if unknown:
            raise _fail(path, key, f"expr uses variables not defined before it: {sorted(unknown)}")
        return VarSpec(name, "expr", expr=expr)
    raise _fail(path, key, f"unknown variable kind {kind!r} (int, choice, money, expr)")


def _placeholders(text: str) -> list[str]:
    return _PLACEHOLDER.findall(text)


def _compile_template(
    family: str, topic: str, index: int, raw: Any, pools: Mapping[str, tuple[Any, ...]], path: str
) -> Template:
    base_key = f"families.{family}.templates[{index}]"
    if not isinstance(raw, Mapping):
        raise _fail(path, base_key, "a template must be a mapping")
    allowed = {"id", "people", "pick", "vars", "where", "question", "steps", "answer"}
    extra = set(raw) - allowed
    if extra:
        raise _fail(path, base_key, f"unknown keys {sorted(extra)} (allowed: {sorted(allowed)})")
    tid = raw.get("id", str(index))
    key = f"families.{family}.templates[{index}] (id {tid})"
    people = raw.get("people", 1)
    if people not in (0, 1, 2):
        raise _fail(path, f"{key}.people", "must be 0, 1 or 2")
    picks_raw = raw.get("pick", {}) or {}
    if not isinstance(picks_raw, Mapping):
        raise _fail(path, f"{key}.pick", "must map placeholder -> pool name")
    for placeholder, pool in picks_raw.items():
        if pool not in pools:
            raise _fail(path, f"{key}.pick.{placeholder}", f"unknown pool {pool!r}; pools: {sorted(pools)}")
    picks = tuple((str(p), str(pool)) for p, pool in picks_raw.items())
    vars_raw = raw.get("vars", {}) or {}
    if not isinstance(vars_raw, Mapping):
        raise _fail(path, f"{key}.vars", "must map variable name -> spec")
    known: set[str] = set()
    variables = []
    for name, spec in vars_raw.items():
        variables.append(_compile_var(str(name), spec, path, f"{key}.vars.{name}", known))
        known.add(str(name))
    where = tuple(_compile_expr(w, path, f"{key}.where[{i}]") for i, w in enumerate(raw.get("where", []) or []))
    for i, w in enumerate(where):
        if not isinstance(w.tree, ast.Compare):
            raise _fail(path, f"{key}.where[{i}]", "must be a comparison such as 'c < a*b'")
        if w.names - known:
            raise _fail(path, f"{key}.where[{i}]", f"unknown variables {sorted(w.names - known)}")

    # Placeholders the text may use.
    text_keys: set[str] = set()
    for suffix in list(_PERSON_KEYS)[:people]:
        text_keys.update(_PERSON_KEYS[suffix])
    for placeholder, pool in picks:
        entries = pools[pool]
        if isinstance(entries[0], Mapping):
            text_keys.update(f"{placeholder}.{f}" for f in entries[0])
        else:
            text_keys.add(placeholder)

    question = raw.get("question")
    if not isinstance(question, str) or not question.strip():
        raise _fail(path, f"{key}.question", "missing or empty")
    question_vars = set()
    for ph in _placeholders(question):
        if ph in known:
            question_vars.add(ph)
        elif ph not in text_keys:
            raise _fail(path, f"{key}.question", f"unknown placeholder {{{ph}}}")

    steps_raw = raw.get("steps")
    if not isinstance(steps_raw, list) or not 1 <= len(steps_raw) <= 4:
        raise _fail(path, f"{key}.steps", "must be a list of 1 to 4 steps")
    steps, used = [], set()
    lets = set()
    for i, step in enumerate(steps_raw):
        skey = f"{key}.steps[{i}]"
        if not isinstance(step, Mapping) or set(step) - {"calc", "let", "text"} or not {"calc", "text"} <= set(step):
            raise _fail(path, skey, "a step needs 'calc' and 'text' (and optionally 'let')")
        calc = _compile_expr(step["calc"], path, f"{skey}.calc")
        if isinstance(calc.tree, ast.Compare):
            raise _fail(path, f"{skey}.calc", "must be arithmetic, not a comparison")
        if calc.names - known - lets:
            raise _fail(path, f"{skey}.calc", f"unknown variables {sorted(calc.names - known - lets)}")
        used |= calc.names
        let = str(step.get("let", f"_step{i}"))
        if let in known or let in lets:
            raise _fail(path, f"{skey}.let", f"{let!r} is already defined")
        text = step["text"]
        if not isinstance(text, str) or "{calc}" not in text:
            raise _fail(path, f"{skey}.text", "must be a string containing {calc}")
        for ph in _placeholders(text):
            if ph not in known and ph not in lets and ph not in text_keys and ph != "calc":
                raise _fail(path, f"{skey}.text", f"unknown placeholder {{{ph}}}")
        lets.add(let)
        steps.append(Step(calc, let, text))
    answer = str(raw.get("answer", steps[-1].let))
    if answer not in lets:
        raise _fail(path, f"{key}.answer", f"{answer!r} is not a step's 'let'")
    unused = question_vars - used
    if unused:
        raise _fail(path, f"{key}.question", f"quantities {sorted(unused)} appear in the question but no step uses them")
    return Template(
        family, topic, f"{family}/{tid}", picks, people, tuple(variables), where, question,
        tuple(steps), answer, frozenset(question_vars),
    )  # fmt: skip


@lru_cache(maxsize=8)
def load_templates(path: str) -> TemplateBank:
    """Parse and check a template file; errors name the file and the key path."""
    raw = read_yaml_resource(path, "template file")
    if not isinstance(raw, Mapping) or not {"names", "pools", "families"} <= set(raw):
        raise DataFormatError(f"{path}: top level must have keys names, pools, families")
    names_raw = raw["names"]
    if not isinstance(names_raw, Mapping) or set(names_raw) != set(_PRONOUNS):
        raise _fail(path, "names", f"must have exactly the genders {sorted(_PRONOUNS)}")
    names = {}
    for gender, values in names_raw.items():
        if not (isinstance(values, list) and len(values) >= 2 and all(isinstance(v, str) and v.isalpha() for v in values)):
            raise _fail(path, f"names.{gender}", "must be a list of at least two alphabetic names")
        names[gender] = tuple(values)
    pools = {}
    for pool, entries in (raw["pools"] or {}).items():
        if not isinstance(entries, list) or not entries:
            raise _fail(path, f"pools.{pool}", "must be a non-empty list")
        first = entries[0]
        for i, entry in enumerate(entries):
            if isinstance(first, Mapping):
                if not isinstance(entry, Mapping) or set(entry) != set(first):
                    raise _fail(path, f"pools.{pool}[{i}]", f"must have the keys {sorted(first)} like the first entry")
                if not all(isinstance(v, str) for v in entry.values()):
                    raise _fail(path, f"pools.{pool}[{i}]", "values must be strings")
            elif not isinstance(entry, str):
                raise _fail(path, f"pools.{pool}[{i}]", "must be a string (or all entries mappings)")
        pools[str(pool)] = tuple(entries)
    families: dict[str, tuple[Template, ...]] = {}
    for family, body in (raw["families"] or {}).items():
        fkey = f"families.{family}"
        if not isinstance(body, Mapping) or set(body) != {"topic", "templates"}:
            raise _fail(path, fkey, "must have exactly the keys topic and templates")
        if not isinstance(body["topic"], str) or not body["topic"]:
            raise _fail(path, f"{fkey}.topic", "must be a non-empty string")
        if not isinstance(body["templates"], list) or not body["templates"]:
            raise _fail(path, f"{fkey}.templates", "must be a non-empty list")
        families[str(family)] = tuple(
            _compile_template(str(family), body["topic"], i, t, pools, path) for i, t in enumerate(body["templates"])
        )
    if not families:
        raise _fail(path, "families", "no families defined")
    return TemplateBank(path, names, pools, families)


def default_templates_path() -> Path:
    return resources_dir() / DEFAULT_TEMPLATES


# -------------------------------------------------------------------------- sampling


@dataclass(frozen=True)
class Problem:
    """One generated problem."""

    family: str
    topic: str
    template: str
    question: str
    answer: str
    answer_number: Fraction
    key_spans: tuple[tuple[int, int], ...]


def _draw_value(spec: VarSpec, rng: random.Random, env: Mapping[str, Fraction]) -> tuple[Fraction, str]:
    """A value and how it is written in the question (money without the "$")."""
    if spec.kind == "int":
        value = rng.randrange(spec.lo, spec.hi + 1, spec.step)
        return Fraction(value), str(value)
    if spec.kind == "choice":
        text = spec.options[rng.randrange(len(spec.options))]
        return Fraction(text), text
    if spec.kind == "money":
        dollars = rng.randint(spec.lo, spec.hi)
        cents = spec.cents[rng.randrange(len(spec.cents))]
        return Fraction(100 * dollars + cents, 100), (f"{dollars}.{cents:02d}" if cents else str(dollars))
    assert spec.expr is not None
    value = _evaluate(spec.expr.tree, env)
    if value < 0 or value >= MAX_RESULT or not _two_decimals(value):
        raise _Reject("derived value out of range")
    return value, format_number(value)


def _two_decimals(value: Fraction) -> bool:
    return (value * 100).denominator == 1


def _render(text: str, context: Mapping[str, str], spans_for: frozenset[str] = frozenset()) -> tuple[str, list[tuple[int, int]]]:
    """Fill ``{placeholders}``; return the text and the spans of the placeholders in ``spans_for``."""
    parts: list[str] = []
    spans: list[tuple[int, int]] = []
    length, cursor = 0, 0
    for match in _PLACEHOLDER.finditer(text):
        literal = text[cursor : match.start()]
        parts.append(literal)
        length += len(literal)
        value = context[match.group(1)]
        if match.group(1) in spans_for:
            spans.append((length, length + len(value)))
        parts.append(value)
        length += len(value)
        cursor = match.end()
    parts.append(text[cursor:])
    return "".join(parts), spans


def _calc_text(expr: Expr, written: Mapping[str, str]) -> str:
    """The expression with variables replaced by how they are written, no spaces: ``3*2.50``."""
    return "".join(written[text] if kind == "name" else text for kind, text in expr.tokens)


def sample_problem(template: Template, bank: TemplateBank, rng: random.Random) -> Problem:
    """Draw one problem from ``template`` (redrawing until all constraints hold)."""
    for _ in range(MAX_ATTEMPTS_PER_ITEM):
        try:
            return _sample_once(template, bank, rng)
        except _Reject:
            continue
    raise DataFormatError(
        f"{bank.path}: template {template.key}: no valid sample in {MAX_ATTEMPTS_PER_ITEM} draws; "
        "its constraints (or the built-in ones: results in [0, 1000), two decimals, exact divisions, "
        "distinct question quantities) are too tight"
    )


def _sample_once(template: Template, bank: TemplateBank, rng: random.Random) -> Problem:
    context: dict[str, str] = {}
    used_names: set[str] = set()
    for suffix in list(_PERSON_KEYS)[: template.people]:
        gender = ("female", "male")[rng.randrange(2)]
        name = bank.names[gender][rng.randrange(len(bank.names[gender]))]
        if name in used_names:
            raise _Reject("same name twice")
        used_names.add(name)
        context["name" + suffix] = name
        for pronoun, word in _PRONOUNS[gender].items():
            context[pronoun + suffix] = word
    picked: set[tuple[str, int]] = set()
    for placeholder, pool in template.picks:
        entries = bank.pools[pool]
        index = rng.randrange(len(entries))
        if (pool, index) in picked:  # two picks from one pool must differ ("3 pens and 2 rulers")
            raise _Reject("same pool entry twice")
        picked.add((pool, index))
        entry = entries[index]
        if isinstance(entry, Mapping):
            for field_name, value in entry.items():
                context[f"{placeholder}.{field_name}"] = value
        else:
            context[placeholder] = entry

    env: dict[str, Fraction] = {}
    written: dict[str, str] = {}
    for spec in template.variables:
        env[spec.name], written[spec.name] = _draw_value(spec, rng, env)
    for constraint in template.where:
        if not _evaluate(constraint.tree, env):
            raise _Reject("constraint")
    question_values = [env[v] for v in template.question_quantities]
    if len(set(question_values)) != len(question_values):
        raise _Reject("question quantities not distinct")

    lines = []
    for step in template.steps:
        value = _evaluate(step.calc.tree, env)
        if value < 0 or value >= MAX_RESULT or not _two_decimals(value):
            raise _Reject("step result out of range")
        calc = _calc_text(step.calc, written)
        result = format_number(value)
        env[step.let], written[step.let] = value, result
        step_context = {**context, **written, "calc": f"{calc}=<<{calc}={result}>>{result}"}
        lines.append(_render(step.text, step_context)[0])
    answer_value = env[template.answer]
    lines.append(f"#### {format_number(answer_value)}")

    question, spans = _render(template.question, {**context, **written}, template.question_quantities)
    return Problem(
        template.family, template.topic, template.key, question, "\n".join(lines), answer_value, tuple(spans)
    )


def generate_problems(
    bank: TemplateBank,
    families: Sequence[str],
    count: int,
    seed: int,
    exclude: frozenset[str] | set[str] = frozenset(),
) -> list[Problem]:
    """``count`` problems with distinct question texts (none in ``exclude``) from stream ``seed``.

    Each problem: pick a family uniformly, then one of its templates uniformly, then sample.
    """
    rng = random.Random(seed)
    seen: set[str] = set()
    problems: list[Problem] = []
    max_draws = 50 * count + 1000
    draws = 0
    while len(problems) < count:
        draws += 1
        if draws > max_draws:
            raise DataFormatError(
                f"{bank.path}: could only make {len(problems)} distinct problems out of {count} requested "
                f"from families {list(families)}; add templates or widen the ranges"
            )
        templates = bank.families[families[rng.randrange(len(families))]]
        problem = sample_problem(templates[rng.randrange(len(templates))], bank, rng)
        if problem.question in seen or problem.question in exclude:
            continue
        seen.add(problem.question)
        problems.append(problem)
    return problems


def _check_spec(spec: Mapping[str, Any]) -> tuple[int, int, list[str] | None, Path]:
    extra = set(spec) - SPEC_KEYS
    if extra:
        raise ValueError(f"synthetic dataset spec: unknown keys {sorted(extra)} (allowed: {sorted(SPEC_KEYS)})")
    sizes = []
    for key in ("train_size", "test_size"):
        if key not in spec:
            raise ValueError(f"synthetic dataset spec: missing key {key!r}")
        value = spec[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"synthetic dataset spec: {key!r} must be an int >= 0, got {value!r}")
        sizes.append(value)
    families = spec.get("families")
    if families is not None and (
        not isinstance(families, list) or not families or not all(isinstance(f, str) for f in families)
    ):
        raise ValueError(f"synthetic dataset spec: 'families' must be a non-empty list of names, got {families!r}")
    path = Path(spec["templates"]) if spec.get("templates") is not None else default_templates_path()
    return sizes[0], sizes[1], families, path


def _frame(problems: Sequence[Problem], split: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [f"synthetic-{split}-{i:05d}" for i in range(len(problems))],
            "split": [split] * len(problems),
            "family": [p.family for p in problems],
            "topic": [p.topic for p in problems],
            "question": [p.question for p in problems],
            "answer": [p.answer for p in problems],
            "answer_number": [float(p.answer_number) for p in problems],
            "key_spans": [[{"start": s, "end": e} for s, e in p.key_spans] for p in problems],
        },
        columns=list(BASE_COLUMNS),
    )


@register_dataset("synthetic")
def load_synthetic(spec: Mapping[str, Any], split: str, seed: int, n: int | None) -> pd.DataFrame:
    """The synthetic split ``split`` ("train" or "test"); see the module docstring for the scheme."""
    train_size, test_size, families, path = _check_spec(spec)
    if split not in ("train", "test"):
        raise ValueError(f"synthetic dataset: split must be 'train' or 'test', got {split!r}")
    bank = load_templates(str(path))
    if families is None:
        families = list(bank.families)
    unknown = [f for f in families if f not in bank.families]
    if unknown:
        raise ValueError(f"synthetic dataset spec: unknown families {unknown}; known: {list(bank.families)}")
    size = test_size if split == "test" else train_size
    count = size if n is None else min(n, size)
    test_seed = derive_seed(seed, "synthetic", "test")
    if split == "test":
        problems = generate_problems(bank, families, count, test_seed)
    else:
        test_questions = {p.question for p in generate_problems(bank, families, test_size, test_seed)}
        problems = generate_problems(bank, families, count, derive_seed(seed, "synthetic", "train"), test_questions)
    return _frame(problems, split)
