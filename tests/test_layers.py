"""docs/architecture.md stays true: the dom0 package's and the client's imports go down the
layers the page draws (read from the page itself; imports inside functions count), the pack
tools stand alone, and the simulator's modules import one another without a cycle. Static
(ast), so it runs in `make lint` too."""

import ast
import os
import re

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(REPO, "docs", "architecture.md")
PLUGINS = os.path.join(REPO, "dom0_plugins", "etc", "xapi.d", "plugins")
DOM0 = os.path.join(PLUGINS, "xenvol_dom0")
SIM = os.path.join(REPO, "simulator", "xapisim")
CLIENT = os.path.join(REPO, "client", "xenvol")
PACK = os.path.join(REPO, "client", "xenvol_pack")


def doc_block(name):
    """The lines of the page's fenced block that follows `<!-- name -->`."""
    text = open(DOC).read()
    m = re.search(r"<!-- %s -->\s*```[a-z]*\n(.*?)```" % re.escape(name), text, re.S)
    assert m, "docs/architecture.md lost its %s block" % name
    return [
        line.split("#")[0].split() for line in m.group(1).splitlines() if line.split("#")[0].strip()
    ]


def modules(root, package):
    """Dotted module names (relative to the package) -> file path."""
    found = {}
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            if f.endswith(".py"):
                rel = os.path.relpath(os.path.join(dirpath, f), root)[:-3].replace(os.sep, ".")
                if rel.endswith("__init__"):
                    rel = rel[: -len("__init__")].rstrip(".")
                found[rel] = os.path.join(dirpath, f)
    return found


def imports(path, rel, known, package):
    """(imported module, at module level?) for each import of a module of the package."""
    tree = ast.parse(open(path).read(), path)
    pkg_parts = rel.split(".")[:-1] if not path.endswith("__init__.py") else rel.split(".")
    pkg_parts = [p for p in pkg_parts if p]
    out = []

    def resolve(base, names, found):
        # `from .x import name`: module x; `from . import x`: module x (names may be modules).
        for full in sorted(set(".".join([p for p in (base, name) if p]) for name in names)):
            if full in known:
                found.append(full)
            elif base in known and base not in found:
                found.append(base)

    def visit(node, top):
        for child in ast.iter_child_nodes(node):
            inner = top and not isinstance(
                child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
            )
            if isinstance(child, ast.ImportFrom):
                if child.level:
                    base_parts = pkg_parts[: len(pkg_parts) - (child.level - 1)]
                    base = ".".join(base_parts + ([child.module] if child.module else []))
                elif child.module and (
                    child.module == package or child.module.startswith(package + ".")
                ):
                    base = child.module[len(package) + 1 :]
                else:
                    continue
                found = []
                resolve(base, [a.name for a in child.names], found)
                out.extend((m, top) for m in found)
            elif isinstance(child, ast.Import):
                for a in child.names:
                    if a.name.startswith(package + "."):
                        out.append((a.name[len(package) + 1 :], top))
            visit(child, inner)

    visit(tree, True)
    return [(m, top) for m, top in out if m and m != rel]


def dom0_graph():
    known = modules(DOM0, "xenvol_dom0")
    graph = dict((rel, imports(path, rel, known, "xenvol_dom0")) for rel, path in known.items())
    # The plugin file xapi execs: it imports the package.
    graph["xenvol"] = imports(os.path.join(PLUGINS, "xenvol"), "xenvol", known, "xenvol_dom0")
    return graph


def layer_of(layers):
    def find(module):
        for i, names in enumerate(layers):
            for name in names:
                if module == name or module.startswith(name + "."):
                    return i
        return None

    return find


def test_every_dom0_module_is_on_the_page():
    layer = layer_of(doc_block("layers"))
    missing = sorted(m for m in dom0_graph() if m and layer(m) is None)
    assert not missing, "add these modules to docs/architecture.md's layers: %s" % missing


def test_dom0_imports_go_down_the_layers():
    # issue 23: an import inside a function counts as a module-level one (no late-bound
    # exception); loading drivers by path (importlib in registry.py) is no import statement.
    layer = layer_of(doc_block("layers"))
    up = [
        "%s imports %s%s" % (module, dep, "" if top else " (in a function)")
        for module, deps in dom0_graph().items()
        for dep, top in deps
        if layer(dep) is not None and layer(module) is not None and layer(dep) < layer(module)
    ]
    assert not up, "imports going up docs/architecture.md's layers: %s" % up


def cycles(graph):
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, found = {}, {}, [], set(), []

    def strong(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in list(graph):
        if v not in index:
            strong(v)
    return found


def test_dom0_imports_have_no_cycle_even_inside_functions():
    graph = dict((m, [d for d, _top in deps]) for m, deps in dom0_graph().items())
    assert graph["recovery"] and cycles(graph) == []


def test_simulator_module_level_imports_have_no_cycle():
    # messages.py imports the api_* modules, which register through handlers.py (not messages).
    known = modules(SIM, "xapisim")
    graph = dict(
        (rel, [d for d, top in imports(path, rel, known, "xapisim") if top])
        for rel, path in known.items()
    )
    assert graph["messages"] and "handlers" in graph["api_vm"]
    assert cycles(graph) == []


def test_simulator_imports_in_functions_make_no_cycle_either():
    # issue 23: the test controls live in admin.py, which sim.py calls; admin imports neither
    # sim nor messages, even inside a function.
    known = modules(SIM, "xapisim")
    graph = dict(
        (rel, [d for d, _top in imports(path, rel, known, "xapisim")])
        for rel, path in known.items()
    )
    assert "admin" in graph["sim"] and not {"sim", "messages"} & set(graph["admin"])
    assert cycles(graph) == []


def client_graph():
    known = modules(CLIENT, "xenvol")
    return dict((rel, imports(path, rel, known, "xenvol")) for rel, path in known.items())


def test_every_client_module_is_on_the_page():
    layer = layer_of(doc_block("client-layers"))
    missing = sorted(m for m in client_graph() if m and layer(m) is None)
    assert not missing, "add these modules to docs/architecture.md's client layers: %s" % missing


def test_client_imports_go_down_the_layers():
    # No late-bound exception here: an import inside a function goes down too.
    layer = layer_of(doc_block("client-layers"))
    up = [
        "%s imports %s" % (module, dep)
        for module, deps in client_graph().items()
        if module
        for dep, _top in deps
        if layer(dep) < layer(module)
    ]
    assert not up, "imports going up docs/architecture.md's client layers: %s" % up


def test_client_module_level_imports_have_no_cycle():
    graph = dict((m, [d for d, top in deps if top]) for m, deps in client_graph().items())
    assert graph["client"] and cycles(graph) == []


def test_nothing_above_the_client_reaches_into_private_members():
    # issue 23: the CLI, its commands, check and the adapters use Client's public API (a
    # `something._name` on anything but self is a private member).
    layers = doc_block("client-layers")
    layer = layer_of(layers)
    known = modules(CLIENT, "xenvol")
    above = sorted(m for m in known if m and layer(m) < layer("client"))
    assert {"cli", "commands", "check", "adapter"} <= set(above)
    reach = []
    for module in above:
        for node in ast.walk(ast.parse(open(known[module]).read())):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
            ):
                reach.append("%s:%d .%s" % (module, node.lineno, node.attr))
    assert not reach, reach


def test_the_pack_tools_import_nothing_of_the_client():
    client = modules(CLIENT, "xenvol")
    found = dict(
        (rel, imports(path, rel, client, "xenvol"))
        for rel, path in modules(PACK, "xenvol_pack").items()
    )
    assert found and not any(found.values()), found
