"""The package's structure: the module import graph (function-level imports included) has no cycle, and a tracker
family is added through the registry alone."""

import ast
import dataclasses
from pathlib import Path

import numpy as np
import pytest

import jaxtrack
from jaxtrack import losses, tracking
from jaxtrack.tracking import registry
from jaxtrack.tracking.configs import SiamFCppConfig
from jaxtrack.tracking.families import SiamFCppTracker

PACKAGE = Path(jaxtrack.__file__).resolve().parent


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
        variables = tracker.init_variables(__import__("jax").random.key(0))
        raw = tracker.head(variables, tracker.embed_template(variables, np.zeros((1, 127, 127, 3), np.float32)),
                           np.zeros((1, 255, 255, 3), np.float32))
        assert raw["cls"].shape[1:3] == (config.score_size, config.score_size)
    finally:
        registry.FAMILIES.pop("toy_siamfcpp", None)
    with pytest.raises(ValueError, match="no tracker family 'toy_siamfcpp' registered.*known: nanotrack"):
        registry.family_of(config)
    with pytest.raises(ValueError, match="family is 'siamfcpp'"):
        registry.register(dataclasses.replace(toy, config_class=SiamFCppConfig))
