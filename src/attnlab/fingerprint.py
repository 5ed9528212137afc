"""Code fingerprints: a hash of the library code that decides a rule's output, for Snakemake's ``code`` trigger.

Snakemake reruns a job when its rule's *code* changed (``--rerun-triggers code``, on by default); for a
``shell:`` rule the code it records with each output and compares is the rule's shell command text. The
commands are calls of the ``attnlab`` CLI, so an edit of ``src/attnlab`` alone would leave every output
"up to date". Each rule's command therefore ends in a no-op naming a fingerprint of the code its subcommand runs
(:func:`code_marker`, e.g. ``; : attnlab code 3f0c…`` for ``attnlab.evaluate.cli:_handle_evaluate``):
an edit changes the command text of exactly the rules whose code it touches, and Snakemake reruns their jobs
and, through their newer outputs, everything downstream.

**What is hashed.** The unit is a *definition*: a top-level function or class of an ``attnlab`` module, or the
module's top-level statements (imports, constants, and functions registered by a decorator, which run on
import). Starting from the subcommand's handler (``module:function``), the ``register`` function of its module
(the options and their defaults; not the other subcommands' handlers it names) and the plugin importer
that every job runs, the fingerprint collects every definition reachable through

* names used in a definition's body that are top-level definitions of the same module;
* ``from m import name`` anywhere in it (``name``'s definition in ``m``, or the whole of ``m`` when ``name`` is
  a submodule), and ``import m`` (the whole of ``m``);
* the top-level statements of every module reached, and of its parent packages (they run on import);

then hashes, in sorted order, ``module ‖ name ‖ ast.dump(definition)`` with docstrings removed:

    fingerprint(handler) = sha256( ⨁_{(m, d) ∈ reach(handler), sorted} m ‖ d ‖ ast_dump(d) )[:16]

Comments and layout are not in a syntax tree, and docstrings are removed, so editing them changes nothing;
a change of any reachable definition changes the fingerprint. The analysis is static and follows every
import in a reached body, so it over-approximates what one run executes, never under-approximates what
Python can reach by name (dispatch through registries is covered because registered functions are
top-level statements of their module). The command-line front, ``attnlab.cli.main`` (it routes a
subcommand to its handler), is not part of any fingerprint.

**Cost.** The analysis parses the package (≈ 2–3 s for the 30 rules of a study); every Snakemake invocation
needs all fingerprints, so they are kept on disk, keyed by a hash of the package's source files and the
Python version (:func:`source_key`): an unchanged package reads them back in milliseconds, and an edit of any
file makes a new key, so a stale fingerprint is never read. The folder is ``$ATTNLAB_CACHE`` or
``$XDG_CACHE_HOME/attnlab`` (default ``~/.cache/attnlab``); an unwritable one only costs the recomputation.

What it does not see: third-party packages (Snakemake's ``software-env`` trigger covers the environment) and
data files read at run time. Leaving ``code`` out of ``--rerun-triggers`` — ``snakemake --rerun-triggers
mtime params input software-env`` — ignores the fingerprints for that run: edit the library and rerun the
study without retraining; a later run with the default triggers reruns what the edits changed.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import sys
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

PACKAGE = "attnlab"
PACKAGE_DIR = Path(__file__).resolve().parent
#: the pseudo-definition of a module's top-level statements
TOP = "<module>"
#: the function of a CLI module that declares its subcommands' options (argparse)
REGISTER = "register"
#: definitions every job runs besides its handler: the config's plugin modules are imported by each job
ALWAYS = (("attnlab.tools.plugins", "import_plugins"), ("attnlab.tools.plugins", "plugins_from_env"))

#: fingerprint files kept in the cache folder (one per version of the package's sources; the newest)
KEEP_SOURCE_VERSIONS = 16

_DEF_TYPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


@lru_cache(maxsize=None)
def module_path(name: str) -> Path | None:
    """The source file of an ``attnlab`` module or package, or None if there is none."""
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    base = PACKAGE_DIR.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@dataclass
class _Module:
    name: str
    package: str
    defs: dict[str, ast.AST] = field(default_factory=dict)
    top: list[ast.stmt] = field(default_factory=list)


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, *_DEF_TYPES)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                if isinstance(body[0].value.value, str):
                    node.body = body[1:] or [ast.Pass()]
    return tree


def _is_main_guard(node: ast.stmt) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return (
        isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id == "__name__"
        and any(isinstance(c, ast.Constant) and c.value == "__main__" for c in test.comparators)
    )


@lru_cache(maxsize=None)
def _module(name: str) -> _Module:
    path = module_path(name)
    if path is None:
        raise ValueError(f"no attnlab module {name!r} under {PACKAGE_DIR}")
    tree = _strip_docstrings(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    info = _Module(name, name if path.name == "__init__.py" else name.rpartition(".")[0])
    for node in tree.body:
        if _is_main_guard(node):  # `if __name__ == "__main__":` does not run on import
            continue
        if isinstance(node, _DEF_TYPES) and not node.decorator_list:
            info.defs[node.name] = node
        else:  # statements run on import, including decorated (registered) definitions
            info.top.append(node)
            if isinstance(node, _DEF_TYPES):
                info.defs[node.name] = node
    return info


def _parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _absolute(info: _Module, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    parts = info.package.split(".")
    anchor = parts[: len(parts) - (node.level - 1)]
    return ".".join([*anchor, *([node.module] if node.module else [])])


def _whole(module: str) -> set[tuple[str, str]]:
    info = _module(module)
    return {(module, TOP), *((module, d) for d in info.defs)}


@lru_cache(maxsize=None)
def _uses_of(module: str, name: str) -> frozenset[tuple[str, str]]:
    info = _module(module)
    return frozenset(_uses(module, info.top if name == TOP else [info.defs[name]]))


def _uses(module: str, nodes: list[ast.AST]) -> set[tuple[str, str]]:
    """The definitions that the syntax trees ``nodes`` of ``module`` use directly."""
    info = _module(module)
    found: set[tuple[str, str]] = set()
    for root in nodes:
        for node in ast.walk(root):
            if isinstance(node, ast.Name) and node.id in info.defs:
                found.add((module, node.id))
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if module_path(alias.name):
                        found |= _whole(alias.name)
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(info, node)
                if not module_path(base):
                    continue
                found.add((base, TOP))
                for alias in node.names:
                    if module_path(f"{base}.{alias.name}"):
                        found |= _whole(f"{base}.{alias.name}")
                    elif alias.name in _module(base).defs:
                        found.add((base, alias.name))
    return found


def reach(*entries: str) -> list[tuple[str, str]]:
    """Every definition reachable from ``entries`` (``"module:function"`` or ``"module"``), sorted."""
    todo: list[tuple[str, str]] = list(ALWAYS)
    seen: set[tuple[str, str]] = set()
    for entry in entries:
        module, _, name = entry.partition(":")
        if name and name not in _module(module).defs:
            raise ValueError(f"{entry!r}: {module} has no top-level definition {name!r}")
        todo += [(module, name)] if name else sorted(_whole(module))
        register = _module(module).defs.get(REGISTER)
        if name and register is not None:
            # the subcommand's options and their defaults: `register` and the helpers it calls, not the
            # other subcommands' handlers it names (func=...)
            seen.add((module, REGISTER))
            called = {n.func.id for n in ast.walk(register) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
            todo += [(module, d) for d in sorted(called) if d in _module(module).defs]
            todo += [item for item in _uses_of(module, REGISTER) if item[0] != module]
    while todo:
        item = todo.pop()
        if item in seen:
            continue
        seen.add(item)
        module, name = item
        todo += [(parent, TOP) for parent in _parents(module) if module_path(parent)]
        todo.append((module, TOP))
        todo += _uses_of(module, name)
    return sorted(seen)


def _dump(module: str, name: str) -> str:
    info = _module(module)
    nodes = info.top if name == TOP else [info.defs[name]]
    return "\n".join(ast.dump(node, include_attributes=False) for node in nodes)


@lru_cache(maxsize=None)
def _digest(module: str, name: str) -> bytes:
    return f"{module}\0{name}\0".encode() + _dump(module, name).encode() + b"\0"


def _compute(*entries: str) -> str:
    digest = hashlib.sha256()
    for module, name in reach(*entries):
        digest.update(_digest(module, name))
    return digest.hexdigest()[:16]


@lru_cache(maxsize=None)
def source_key() -> str:
    """sha256 over the package's ``.py`` files (relative path and bytes, sorted) and the Python version."""
    digest = hashlib.sha256(f"{sys.version}\0".encode())
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        digest.update(str(path.relative_to(PACKAGE_DIR)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:32]


def cache_dir() -> Path:
    """Where fingerprints are kept: ``$ATTNLAB_CACHE``, else ``$XDG_CACHE_HOME/attnlab``, else ``~/.cache/attnlab``."""
    if os.environ.get("ATTNLAB_CACHE"):
        return Path(os.environ["ATTNLAB_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "attnlab"


@lru_cache(maxsize=1)
def _stored() -> dict[str, str]:
    try:
        stored = json.loads((cache_dir() / f"fingerprints-{source_key()}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return stored if isinstance(stored, dict) else {}


def _store(table: dict[str, str]) -> None:
    """Write ``table`` atomically (a temporary file renamed over the old one); an unwritable folder is skipped."""
    folder = cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=folder, suffix=".tmp", delete=False, encoding="utf-8") as handle:
            json.dump(table, handle, sort_keys=True)
        os.replace(handle.name, folder / f"fingerprints-{source_key()}.json")
        older = sorted(folder.glob("fingerprints-*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
        for stale in older[KEEP_SOURCE_VERSIONS:]:
            stale.unlink(missing_ok=True)
    except OSError:
        pass


@lru_cache(maxsize=None)
def fingerprint(*entries: str) -> str:
    """The code fingerprint of ``entries`` (see the module docstring): 16 hex digits of a SHA-256."""
    key = " ".join(entries)
    table = _stored()
    if key not in table:
        table[key] = _compute(*entries)
        _store(table)
    return table[key]


def code_marker(*entries: str) -> str:
    """What a rule's shell command ends with: ``; : attnlab code <fingerprint>``.

    ``:`` is the shell's no-op (status 0, after a command that succeeded; Snakemake's ``set -e`` stops at
    one that failed), so the marker changes the command's text — which Snakemake's ``code`` trigger
    compares — and nothing it does.
    """
    return f"; : attnlab code {fingerprint(*entries)}"
