"""The house's shape, checked on the imports themselves (read with `ast`, nothing imported).

1. Floors: `api → dispatch → delivery | presence → base`; nothing imports a floor above its own, and delivery and
   presence do not import each other.
2. One door: adapters (`api/`, `scripts/`) and the deadline keeper reach dispatch through its use cases, views,
   frames and types: the modules in `DOOR`, and from any other dispatch module only its value types (frozen
   dataclasses, enums, exceptions).
3. Other libraries' private internals are imported only by the two quarantine modules, one per library family,
   each of which refuses at import a version it was not written for (`base/versions.py`).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FLOORS = {"api": 3, "scripts": 3, "dispatch": 2, "delivery": 1, "presence": 1, "base": 0}

# The dispatch modules adapters may import: the use cases (the request lifecycle's, a device's socket's, and the
# catalogue's: mechanics, workshops, favorites, plans, push subscriptions), the read models (the views, the KPIs
# and their what-if, the customers' live favorites), what crosses the door
# (frames, types) and the composition root the lifespan calls. Behind it: requests and their changes, windows,
# offers, owed work, the keeper's timers, keys, tables.
DOOR = {
    "dispatch.usecases",
    "dispatch.devices",
    "dispatch.fulfillment",
    "dispatch.catalogue",
    "dispatch.mechanics",
    "dispatch.workshops",
    "dispatch.favorites",
    "dispatch.plans",
    "dispatch.pushes",
    "dispatch.views",
    "dispatch.kpis",
    "dispatch.what_if",
    "dispatch.live_favorites",
    "dispatch.frames",
    "dispatch.models",
    "dispatch.booking",
    "dispatch.deadlines",
    "dispatch.idempotency",
    "dispatch.assembly",
}
PRIVATE_INTERNALS = {
    "base.databases_internals": {"databases.backends", "sqlalchemy.engine.cursor"},
    "delivery.uvicorn_protocols": {"uvicorn._types", "uvicorn.protocols"},
}
PRIVATE_PREFIXES = ("databases.backends", "sqlalchemy.engine.cursor", "uvicorn._types", "uvicorn.protocols")


def _modules() -> dict[str, set[str]]:
    """Every module of the house and the modules it imports (absolute names)."""
    found = {}
    for package in FLOORS:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            imported = set()
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    imported |= {alias.name for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    imported |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
            found[name] = imported
    return found


def _house_modules(imported: set[str], modules: dict[str, set[str]]) -> set[str]:
    return {name for name in imported if name in modules}


def _value_types(module: str) -> set[str]:
    """The classes a module defines that are values, not services: frozen dataclasses, enums, exceptions."""
    found = set()
    for node in ast.parse((ROOT / f"{module.replace('.', '/')}.py").read_text()).body:
        if not isinstance(node, ast.ClassDef):
            continue
        bases = {ast.unparse(base).rsplit(".", 1)[-1] for base in node.bases}
        frozen = any("dataclass" in ast.unparse(d) and "frozen=True" in ast.unparse(d) for d in node.decorator_list)
        if frozen or bases & {"Enum", "StrEnum", "IntEnum", "Exception"} or any(b.endswith("Error") for b in bases):
            found.add(node.name)
    return found


def _only_values_from(module: str, imported: set[str]) -> bool:
    """Whether what is imported from `module` is its value types alone (`from m import A, B`, A and B values)."""
    names = {i.removeprefix(f"{module}.") for i in imported if i.startswith(f"{module}.")}
    return bool(names) and names <= _value_types(module)


def test_no_floor_imports_a_floor_above_it_or_beside_it() -> None:
    modules = _modules()
    wrong = []
    for name, imported in modules.items():
        floor = name.split(".")[0]
        for target in _house_modules(imported, modules):
            other = target.split(".")[0]
            beside = {floor, other} == {"delivery", "presence"}
            if FLOORS[other] > FLOORS[floor] or beside or (other == "scripts" and floor != "scripts"):
                wrong.append(f"{name} imports {target}")
    assert wrong == []


def test_adapters_and_the_keeper_reach_dispatch_only_through_its_door() -> None:
    modules = _modules()
    reaching = {}
    for name, imported in modules.items():
        if not name.startswith(("api.", "scripts.")) and name != "dispatch.keeper":
            continue
        beyond = {
            target
            for target in _house_modules(imported, modules)
            if target.startswith("dispatch.") and target not in DOOR and not _only_values_from(target, imported)
        }
        if beyond:
            reaching[name] = beyond
    assert modules["dispatch.keeper"] & {m for m in modules if m.startswith("dispatch.")} == {"dispatch.deadlines"}
    assert reaching == {}


def test_private_internals_of_libraries_stay_where_they_are_listed() -> None:
    used = {}
    for name, imported in _modules().items():
        private = {p for p in PRIVATE_PREFIXES if any(i == p or i.startswith(f"{p}.") for i in imported)}
        if private:
            used[name] = private
    assert used == PRIVATE_INTERNALS
