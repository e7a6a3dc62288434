"""The package's structure: the module import graph (function-level imports included) has no cycle, a tracker
family is added through the registry alone, no library file is over 600 lines, importing the package leaves the
environment alone, scripts import only the installed package, and no module keeps a cache of objects."""

import ast
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import jaxtrack
from jaxtrack import losses, tracking
from jaxtrack.tracking import registry
from jaxtrack.tracking.configs import SiamFCppConfig
from jaxtrack.tracking.families import SiamFCppTracker

PACKAGE = Path(jaxtrack.__file__).resolve().parent
REPO = PACKAGE.parent


def _module_names() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def import_graph() -> dict[str, set[str]]:
    """``{module: modules it imports}`` over every ``import`` statement of the package, wherever it stands.
    ``from P import name`` is an edge to the sub-module ``P.name`` when there is one, else to ``P``."""
    modules = _module_names()
    graph = {m: set() for m in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                           for a in node.names]
            else:
                continue
            for t in targets:
                while t and t not in modules:
                    t = t.rpartition(".")[0]
                if t and t != name:
                    graph[name].add(t)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_finds_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_import_graph_sees_function_level_imports():
    graph = import_graph()
    # jaxtrack.weights.pytorch imports the converter inside functions only
    assert "jaxtrack.convert.convert" in graph["jaxtrack.weights.pytorch"]
    # the converter knows no tracker: it maps a state dict onto a tree it is given
    assert not any(m.startswith("jaxtrack.tracking") or m.startswith("jaxtrack.weights")
                   for m in graph["jaxtrack.convert.convert"] | graph["jaxtrack.convert.reader"])


def test_no_import_cycle():
    assert cycles(import_graph()) == []


# ----------------------------------------------------------------------------------------------- registry
def test_every_named_configuration_has_a_registered_family():
    for name, config in tracking.CONFIGS.items():
        family = tracking.family_of(config)
        assert isinstance(config, family.config_class), name
        tracker = tracking.create(name)
        assert isinstance(tracker, family.tracker_class(config)) and tracker.model == family.build_model(config)
        assert losses.family_module(config) is family.losses()


@dataclasses.dataclass(frozen=True)
class _ToyConfig(SiamFCppConfig):
    family = "toy_siamfcpp"


def test_a_new_family_is_one_registry_entry():
    toy = registry.TrackerFamily(
        "toy_siamfcpp", _ToyConfig, lambda config: SiamFCppTracker,
        registry.FAMILIES["siamfcpp"].build_model, "jaxtrack.losses.siamfcpp")
    registry.register(toy)
    try:
        with pytest.raises(ValueError, match="already registered"):
            registry.register(toy)
        config = _ToyConfig("toy", instance_size=255, width_mult=0.125)
        tracker = tracking.from_config(config)
        assert isinstance(tracker, SiamFCppTracker) and tracker.config is config
        # its training loss and default weights come from the entry
        assert losses.family_module(config) is losses.siamfcpp
        assert losses.LOSS_WEIGHTS["toy_siamfcpp"] == losses.siamfcpp.DEFAULT_WEIGHTS
        # the network the entry builds, traced for shapes only (run op by op it compiles every layer: ~20 s)
        jax = __import__("jax")
        variables = jax.eval_shape(tracker.init_variables, jax.random.key(0))
        raw = jax.eval_shape(lambda v, z, x: tracker.head(v, tracker.embed_template(v, z), x), variables,
                             np.zeros((1, 127, 127, 3), np.float32), np.zeros((1, 255, 255, 3), np.float32))
        assert raw["cls"].shape[1:3] == (config.score_size, config.score_size)
    finally:
        registry.FAMILIES.pop("toy_siamfcpp", None)
    with pytest.raises(ValueError, match="no tracker family 'toy_siamfcpp' registered.*known: nanotrack"):
        registry.family_of(config)
    with pytest.raises(ValueError, match="family is 'siamfcpp'"):
        registry.register(dataclasses.replace(toy, config_class=SiamFCppConfig))


def test_no_library_file_over_600_lines():
    long = {str(p.relative_to(REPO)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 600}
    assert long == {}


def test_importing_the_package_leaves_the_environment_alone():
    """``os.environ`` after importing every jaxtrack module equals the one before (the third-party libraries,
    imported first, set variables of their own: JAX ``TPU_SKIP_MDS_QUERY``, OpenCV ``LD_LIBRARY_PATH``; the entry
    points set XLA flags when they run, not on import)."""
    modules = sorted(m for m in _module_names() if m != "jaxtrack.__main__")
    code = (
        "import importlib, json, os, sys\n"
        "import jax, jax.numpy as jnp, cv2, numpy, optax, flax, orbax.checkpoint\n"
        "jnp.zeros(1)\n"
        "before = dict(os.environ)\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module(m)\n"
        "after = dict(os.environ)\n"
        "print(json.dumps({k: [before.get(k), after.get(k)] for k in set(before) | set(after)"
        " if before.get(k) != after.get(k)}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {}


def test_scripts_do_not_edit_sys_path():
    edits = [str(p.relative_to(REPO)) for folder in ("experiments", "benchmarks", "scripts", "jaxtrack")
             for p in (REPO / folder).rglob("*.py") if "sys.path" in p.read_text(encoding="utf-8")]
    assert edits == []


def _module_level_caches(tree: ast.Module) -> list[str]:
    """Module-level names bound to an empty dict/list (a table filled at run time) and functions under
    ``functools.lru_cache`` / ``functools.cache``."""
    found = []
    for node in tree.body:
        targets, value = [], None
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        empty = (isinstance(value, ast.Dict) and not value.keys) or (isinstance(value, ast.List) and not value.elts) or (
            isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id in ("dict", "list")
            and not value.args and not value.keywords)
        if empty:
            found += [t.id for t in targets if isinstance(t, ast.Name) and t.id != "__all__"]
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            for d in node.decorator_list:
                text = ast.unparse(d)
                if "lru_cache" in text or text.endswith("cache"):
                    found.append(f"@{text} {node.name}")
    return found


def test_cache_finder_finds_planted_caches():
    tree = ast.parse("import functools\n_CACHE = {}\n_T: dict = dict()\n@functools.lru_cache(8)\ndef f(x): pass\n"
                     "@functools.cache\ndef g(x): pass\nTABLE = {'a': 1}\n")
    assert _module_level_caches(tree) == ["_CACHE", "_T", "@functools.lru_cache(8) f", "@functools.cache g"]


def test_no_module_level_cache_of_objects():
    """Trackers, wrappers and train-step settings compare by value and are static jit arguments, so no module
    keeps a table to hand back the same object. The one memo left is the abstract variables tree of a tracker
    (a trace of its init, keyed by the tracker's value); the two registries are filled by ``register`` calls."""
    allowed = {("jaxtrack/convert/convert.py", "@functools.lru_cache(maxsize=16) abstract_variables"),
               ("jaxtrack/convert/convert.py", "CHECKPOINT_KINDS"), ("jaxtrack/tracking/registry.py", "FAMILIES")}
    found = {(str(p.relative_to(REPO)), c) for p in PACKAGE.rglob("*.py")
             for c in _module_level_caches(ast.parse(p.read_text(encoding="utf-8")))}
    assert found - allowed == set()
