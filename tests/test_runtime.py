"""Entry points own the process environment: importing jaxtrack changes nothing, the XLA:CPU defaults follow their
stated rules, and the command's persistent compilation cache makes a second identical run compile nothing."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from jaxtrack import runtime

_IMPORT_ALL = textwrap.dedent(
    """
    import json, os, pkgutil, importlib
    # the third-party libraries jaxtrack builds on may set variables of their own (jax sets TF_CPP_MIN_LOG_LEVEL):
    # import them first, so that what is compared is what jaxtrack adds
    import jax, flax, optax, orbax.checkpoint, chex, cv2, numpy, grain
    before = dict(os.environ)
    import jaxtrack
    names = [m.name for m in pkgutil.walk_packages(jaxtrack.__path__, "jaxtrack.")
             if not m.name.startswith("jaxtrack.testing")]
    for name in names:
        importlib.import_module(name)
    after = dict(os.environ)
    print(json.dumps({"modules": len(names), "changed": sorted(set(before.items()) ^ set(after.items()))}))
    """
)


def _clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAXTRACK_")}
    env.pop("XLA_FLAGS", None)
    env.update(extra)
    return env


def test_importing_every_module_leaves_the_environment_untouched():
    out = subprocess.run([sys.executable, "-c", _IMPORT_ALL], env=_clean_env(), capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["modules"] > 40  # the walk really imported the package
    assert report["changed"] == []


def test_xla_defaults_only_for_checked_jaxlib_and_never_over_the_callers_choice():
    assert runtime.default_xla_flags((0, 10)) == [runtime.YNN_FLAG]
    assert runtime.default_xla_flags((0, 9)) == []
    assert runtime.default_xla_flags((0, 12)) == []
    expected = runtime.default_xla_flags()  # for the installed jaxlib
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    flags = runtime.apply_xla_defaults(env)
    assert flags == env["XLA_FLAGS"] == " ".join(["--xla_force_host_platform_device_count=2", *expected])
    assert runtime.apply_xla_defaults(env) == flags  # idempotent
    own = {"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type=individual_convolution"}
    assert runtime.apply_xla_defaults(own) == own["XLA_FLAGS"]  # the caller's value of the same option wins
    off = {"JAXTRACK_NO_XLA_DEFAULTS": "1"}
    assert runtime.apply_xla_defaults(off) == "" and "XLA_FLAGS" not in off


_PROBE = textwrap.dedent(
    """
    import collections, json, sys
    import jax
    counts = collections.Counter()
    jax.monitoring.register_event_listener(lambda e, **k: counts.update([e]))
    from jaxtrack.cli import main
    rc = main(sys.argv[1:])
    print(json.dumps({"rc": rc, "misses": counts["/jax/compilation_cache/cache_misses"],
                      "hits": counts["/jax/compilation_cache/cache_hits"],
                      "requests": counts["/jax/compilation_cache/compile_requests_use_cache"]}))
    """
)


def test_second_run_of_a_command_compiles_nothing(tmp_path, data_dir):
    seq = data_dir / "sequences" / "OTB" / "Crossing"
    if not seq.is_dir():
        pytest.skip("no shared OTB Crossing")
    env = _clean_env(JAXTRACK_CACHE_DIR=str(tmp_path / "cache"))

    def run(*flags, env=env):
        cmd = [sys.executable, "-c", _PROBE, *flags, "track", "--model", "siamfcpp_tiny", "--sequence", str(seq),
               "--out", str(tmp_path / "boxes.txt")]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
        return json.loads(out.stdout.strip().splitlines()[-1])

    first, second = run(), run()
    assert first["rc"] == 0 and first["misses"] > 0  # compiled, and written to the cache
    assert any((tmp_path / "cache").iterdir())
    assert second["misses"] == 0 and second["hits"] == first["misses"]  # every program read back
    off_dir = tmp_path / "cache-off"
    off = run("--no-compile-cache", env=_clean_env(JAXTRACK_CACHE_DIR=str(off_dir)))
    assert off["hits"] == 0 and not off_dir.exists()  # nothing read, nothing written
