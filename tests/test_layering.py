"""Layering rules of issue 14: protocol layers never reach into ``Federation``.

* no module of the package other than ``federation.py`` touches a private
  member of :class:`~fedbench.Federation` (an :mod:`ast` scan: a private name
  only Federation defines, on any object; one other classes define too, on an
  object named as a federation);
* nothing in :mod:`fedbench.learn` imports ``fedbench.federation``, directly
  or through other modules; the names that build a Federation
  (``partition``, ``to_federation``, ``FedAvgClassifier``...) live above it and
  ``fedbench.learn`` re-exports them lazily.
"""

from __future__ import annotations

import ast
import subprocess
import sys

import fedbench
import fedbench.estimators
import fedbench.partition

from .test_import_cycles import PACKAGE_DIR, import_graph

FEDERATION_PY = PACKAGE_DIR / "federation.py"


def _is_private(name: str) -> bool:
    # Dunders and IPython's display hooks (``_repr_html_``) are public protocols, not private members.
    return name.startswith("_") and not name.endswith("_")


def federation_private_names() -> set[str]:
    """Private names Federation defines: its methods and properties, and attributes it sets on ``self``."""
    tree = ast.parse(FEDERATION_PY.read_text(encoding="utf-8"))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Federation")
    names = {n.name for n in cls.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
    names |= {t.id for n in cls.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
    names |= {n.attr for n in ast.walk(cls) if isinstance(n, ast.Attribute)
              and isinstance(n.value, ast.Name) and n.value.id == "self"}
    return {n for n in names if _is_private(n)}


def private_names_elsewhere() -> set[str]:
    """Private names that other classes of the package define too (``_get``, ``_parties``...)."""
    names: set[str] = set()
    for path in PACKAGE_DIR.rglob("*.py"):
        if path == FEDERATION_PY:
            continue
        for cls in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(cls, ast.ClassDef):
                names |= {n.name for n in cls.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
                names |= {n.attr for n in ast.walk(cls) if isinstance(n, ast.Attribute)
                          and isinstance(n.value, ast.Name) and n.value.id == "self"}
    return {n for n in names if _is_private(n)}


def _names_a_federation(node: ast.expr) -> bool:
    """``fed``, ``federation``, ``self._fed``, ``run.federation``...: a receiver named as a federation."""
    name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""
    return "fed" in name.lower()


def private_accesses(source: str, private: set[str], shared: set[str]) -> list[tuple[int, str]]:
    """``obj._name`` for a private Federation name, except on ``self``/``cls`` (their own members).

    A name only Federation defines counts on any object; a name other classes
    define too (``shared``) counts on a receiver named as a federation.
    """
    out = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Attribute) or node.attr not in private:
            continue
        if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
            continue
        if node.attr not in shared or _names_a_federation(node.value):
            out.append((node.lineno, node.attr))
    return out


def test_the_scan_knows_federations_private_members_and_finds_an_access():
    private = federation_private_names()
    assert {"_coordinator", "_parties", "_insert", "_get", "_agree", "_keys"} <= private
    assert not {"_repr_html_", "__init__", "coordinator"} & private
    shared = private_names_elsewhere()
    assert "_get" in shared and "_coordinator" not in shared
    src = ("def f(fed, backend):\n    self._parties = 1\n    backend._get(1)\n"
           "    return fed._coordinator.keys, fed.coordinator, self.federation._get('a')\n")
    assert private_accesses(src, private, shared) == [(4, "_coordinator"), (4, "_get")]


def test_no_module_outside_federation_py_touches_a_private_member_of_federation():
    private, shared = federation_private_names(), private_names_elsewhere()
    found = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        if path == FEDERATION_PY:
            continue
        for line, name in private_accesses(path.read_text(encoding="utf-8"), private, shared):
            found.append(f"{path.relative_to(PACKAGE_DIR)}:{line}: .{name}")
    assert not found, "private members of Federation used outside federation.py:\n" + "\n".join(found)


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for nxt in graph[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


def test_no_learn_module_imports_federation_even_indirectly():
    graph = import_graph()
    learn = [m for m in graph if m.startswith("fedbench.learn.")]
    assert "fedbench.learn.api" in learn and "fedbench.learn.vertical.api" in learn
    bad = {m: "fedbench.federation" for m in learn if "fedbench.federation" in _reachable(graph, m)}
    assert not bad, f"these learn modules reach fedbench.federation: {sorted(bad)}"
    # Only the package's lazy re-exports point to the modules above Federation.
    assert {"fedbench.partition", "fedbench.estimators"} <= graph["fedbench.learn"]
    assert "fedbench.federation" in graph["fedbench.partition"]
    assert "fedbench.learn.api" in graph["fedbench.federation"]


def test_importing_learn_does_not_import_federation():
    code = ("import sys, fedbench.learn; assert 'fedbench.federation' not in sys.modules, 'federation loaded'; "
            "fedbench.learn.to_federation; assert 'fedbench.federation' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=PACKAGE_DIR.parent)


def test_moved_names_are_still_reachable_from_fedbench_learn():
    import fedbench.learn as learn

    for name in ("partition", "to_federation", "iid_partition", "dirichlet_partition", "quantity_partition",
                 "natural_partition"):
        assert getattr(learn, name) is getattr(fedbench.partition, name)
        assert name in learn.__all__ and name in dir(learn)
    for name in ("FedAvgClassifier", "FedAvgRegressor"):
        assert getattr(learn, name) is getattr(fedbench.estimators, name)
    assert callable(learn.partition)
    ns: dict[str, object] = {}
    exec("from fedbench.learn import *", ns)
    assert ns["to_federation"] is fedbench.partition.to_federation
    try:
        learn.no_such_name  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("unknown attribute did not raise")


def test_learn_does_not_even_type_against_federation():
    """Not even under ``TYPE_CHECKING``: learn annotates with the FederationView protocol."""
    learn_dir = PACKAGE_DIR / "learn"
    found = []
    for path in sorted(learn_dir.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").endswith("federation"):
                found.append(f"{path.relative_to(PACKAGE_DIR)}:{node.lineno}")
            if isinstance(node, ast.Import) and any(a.name == "fedbench.federation" for a in node.names):
                found.append(f"{path.relative_to(PACKAGE_DIR)}:{node.lineno}")
    assert not found, found


def test_a_federation_is_a_federation_view():
    from fedbench.coordinator import FederationView

    from .conftest import make_fed

    assert isinstance(make_fed(), FederationView)
