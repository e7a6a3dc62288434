"""Checkpoint conversion: the torch-free reader, the key mapping per family, converted folders, the CLI.

The reader is checked against ``torch.load`` on the real NanoTrack files and on tensors of every kind saved by
torch 2.13 in both formats. Conversion is checked end to end: a PyTorch twin of each network (jaxtrack/testing/torch_twins.py,
the reference state-dict schema, random weights) is saved with ``torch.save`` in the layouts real checkpoints
use, converted with the torch-free reader, and our tracker's template embedding / raw head outputs / decoded box
must match the twin's forward pass.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import pickle
import pickletools
import struct
import time
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from jaxtrack.testing import torch_twins as tt  # noqa: E402
from reference_impls import ref_pysot_anchor, ref_pysot_track, ref_siamfcpp_track  # noqa: E402

from jaxtrack import checkpoint, tracking  # noqa: E402
from jaxtrack.cli import main  # noqa: E402
from jaxtrack.convert import (  # noqa: E402
    CHECKPOINT_KINDS,
    UnsafeCheckpointError,
    abstract_variables,
    load_torch_file,
    state_dict_to_variables,
)
from jaxtrack.convert.reader import LEGACY_MAGIC_NUMBER  # noqa: E402
from jaxtrack.weights import compatible_kinds, convert_checkpoint, load_path, read_card  # noqa: E402

torch.set_num_threads(2)
RTOL = 1e-4


@pytest.fixture(autouse=True)
def _highest_precision():
    with jax.default_matmul_precision("highest"):
        yield


def nchw(x) -> torch.Tensor:
    x = np.asarray(x, np.float32)
    x = x[None] if x.ndim == 3 else x
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def to_nhwc(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy().transpose(0, 2, 3, 1)


def rel_err(got, want) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    return float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-6))


def assert_same_as_torch(ours, ref, path="") -> int:
    """``ours`` (reader output) equals ``ref`` (torch.load output) exactly; returns the number of arrays."""
    if isinstance(ref, torch.Tensor):
        r = ref.detach().resolve_conj().resolve_neg()
        assert isinstance(ours, np.ndarray), (path, type(ours))
        assert ours.shape == tuple(r.shape), (path, ours.shape, r.shape)
        if r.dtype == torch.bfloat16:
            assert ours.dtype.name == "bfloat16", path
            ours, r = ours.astype(np.float32), r.float()
        assert ours.dtype == r.numpy().dtype, (path, ours.dtype, r.dtype)
        assert np.array_equal(ours, r.numpy()), path
        assert ours.flags.c_contiguous and ours.flags.writeable, path  # owns a plain copy
        return 1
    if isinstance(ref, dict):
        assert type(ours) is type(ref) and list(ours) == list(ref), (path, type(ours), type(ref))
        return sum(assert_same_as_torch(ours[k], v, f"{path}/{k}") for k, v in ref.items())
    if isinstance(ref, (list, tuple)):
        assert isinstance(ours, (list, tuple)) and len(ours) == len(ref), path
        return sum(assert_same_as_torch(a, b, f"{path}[{i}]") for i, (a, b) in enumerate(zip(ours, ref)))
    assert type(ours) is type(ref) and ours == ref, (path, ours, ref)
    return 0


# ---------------------------------------------------------------------------------------------------- reader


@pytest.mark.parametrize("version,num_keys,epoch", [("v2", 298, 34), ("v3", 438, 35)])
def test_reader_matches_torch_on_real_nanotrack(data_dir, version, num_keys, epoch):
    path = data_dir / "weights/nanotrack" / f"nanotrack{version}.pth"
    t0 = time.perf_counter()
    ours = load_torch_file(path)
    t_ours = time.perf_counter() - t0
    # The files pickle the optimizer's learning rate as a numpy.float64: torch's own weights_only loader needs
    # these globals allowed explicitly (our allow-list has stand-ins for them).
    allowed = [(np._core.multiarray.scalar, "numpy.core.multiarray.scalar"), np.dtype, np.dtypes.Float64DType]
    t0 = time.perf_counter()
    with torch.serialization.safe_globals(allowed):
        ref = torch.load(path, map_location="cpu", weights_only=True)
    t_torch = time.perf_counter() - t0
    assert list(ours) == ["epoch", "state_dict", "optimizer"]
    assert ours["epoch"] == epoch and len(ours["state_dict"]) == num_keys
    assert isinstance(ours["state_dict"], collections.OrderedDict)
    assert isinstance(ours["optimizer"]["param_groups"][0]["lr"], np.float64)
    n = assert_same_as_torch(ours, ref)
    assert n > num_keys  # the optimizer's momentum buffers too
    dtypes = collections.Counter(a.dtype.name for a in ours["state_dict"].values())
    assert set(dtypes) == {"float32", "int64"}  # int64: BatchNorm num_batches_tracked
    print(f"\n{path.name}: {n} arrays, reader {t_ours * 1e3:.1f} ms, torch.load {t_torch * 1e3:.1f} ms")


def _assorted_tensors(g: torch.Generator, new_dtypes: bool) -> dict:
    w = torch.randn(4, 3, 5, 5, generator=g)
    big = torch.randn(100, generator=g)
    base = torch.randn(6, 7, generator=g)
    obj = {
        "non_contiguous": w.permute(3, 2, 1, 0).contiguous().permute(3, 2, 1, 0),
        "offset_view": big[10:40].view(5, 6),
        "transposed": base.t(),
        "shares_storage_a": base[1:3],
        "shares_storage_b": base[:, 2],
        "expanded": torch.randn(3, 1, generator=g).expand(3, 4),
        "fp16": torch.randn(3, 4, generator=g).half(),
        "bf16": torch.randn(3, 4, generator=g).bfloat16(),
        "fp64": torch.randn(2, dtype=torch.float64, generator=g),
        "int64_0d": torch.tensor(7),
        "float_0d": torch.tensor(2.5),
        "bool": torch.tensor([True, False]),
        "uint8": torch.arange(5, dtype=torch.uint8),
        "empty": torch.zeros(0, 3),
        "negated_view": torch.randn(3, generator=g).neg(),
        "conj_view": torch.randn(3, dtype=torch.complex64, generator=g).conj(),
        "param": torch.nn.Parameter(torch.randn(2, 2, generator=g)),
        "size": torch.Size([2, 3]),
        "nested": [torch.ones(2), (torch.zeros(1), 3, "x", None, 1.5)],
        "ordered": collections.OrderedDict(a=torch.ones(1)),
    }
    if new_dtypes:  # saved as UntypedStorage + an explicit dtype (_rebuild_tensor_v3); zip format only
        obj["uint16"] = torch.tensor([1, 2, 3]).to(torch.uint16)
    return obj


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_reader_matches_torch_on_every_tensor_kind(tmp_path, zip_format):
    obj = _assorted_tensors(torch.Generator().manual_seed(0), new_dtypes=zip_format)
    path = tmp_path / "assorted.pt"
    torch.save(obj, path, _use_new_zipfile_serialization=zip_format)
    ours = load_torch_file(path)
    ref = torch.load(path, weights_only=True)
    if zip_format:
        assert ours["uint16"].dtype == np.uint16
        np.testing.assert_array_equal(ours.pop("uint16"), ref.pop("uint16").to(torch.int32).numpy())
    assert assert_same_as_torch(ours, ref) == 20
    assert ours["size"] == (2, 3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.int64, torch.float16, torch.bfloat16, torch.complex64])
def test_reader_honours_big_endian_byteorder_record(tmp_path, dtype):
    """A zip written on a big-endian machine (byteorder record 'big'): rebuilt here by swapping the bytes."""
    t = (torch.arange(12, dtype=torch.float64) * 1.37 - 5).to(dtype).reshape(3, 4)
    little, big = tmp_path / "little.pt", tmp_path / "big.pt"
    torch.save({"t": t}, little)
    unit = t.element_size() // (2 if t.is_complex() else 1)
    with zipfile.ZipFile(little) as src, zipfile.ZipFile(big, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            if name.endswith("/data/0"):
                data = np.frombuffer(data, f"<u{unit}").astype(f">u{unit}").tobytes()
            dst.writestr(name.replace("little/", "big/"), b"big" if name.endswith("/byteorder") else data)
    ours = load_torch_file(big)["t"]
    assert ours.dtype == load_torch_file(little)["t"].dtype and ours.dtype.isnative
    assert_same_as_torch(ours, t)


def test_reader_refuses_truncated_and_corrupt_files(data_dir, tmp_path):
    real = (data_dir / "weights/nanotrack/nanotrackv2.pth").read_bytes()
    half = tmp_path / "half.pth"
    half.write_bytes(real[: len(real) // 2])
    with pytest.raises(ValueError, match="half.pth.*(truncated|corrupt)"):
        load_torch_file(half)
    flipped = bytearray(real)  # storages are stored uncompressed: a flipped byte breaks a record's CRC
    flipped[len(real) // 2 : len(real) // 2 + 8] = bytes(255 - b for b in flipped[len(real) // 2 : len(real) // 2 + 8])
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match="corrupt.pth"):
        load_torch_file(corrupt)
    legacy = tmp_path / "legacy.pth"
    torch.save({"w": torch.randn(64, 64)}, legacy, _use_new_zipfile_serialization=False)
    data = legacy.read_bytes()
    for cut in (len(data) - 100, len(data) // 3, 40):
        short = tmp_path / f"legacy_cut{cut}.pth"
        short.write_bytes(data[:cut])
        with pytest.raises(ValueError, match=f"legacy_cut{cut}.pth.*(truncated|corrupt)"):
            load_torch_file(short)
    for name, content in [("empty.pth", b""), ("text.pth", b"hello world")]:
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match=name):
            load_torch_file(tmp_path / name)
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        load_torch_file(tmp_path / "missing.pth")


def _os_system_pickle(command: str) -> bytes:
    """A protocol-2 pickle calling os.system(command) when loaded by an unrestricted unpickler."""
    cmd = command.encode()
    payload = b"\x80\x02cos\nsystem\n" + b"X" + struct.pack("<I", len(cmd)) + cmd + b"\x85R."
    ops = [(op.name, arg) for op, arg, _ in pickletools.genops(payload)]  # parsed, not executed
    assert ("GLOBAL", "os system") in ops and ("REDUCE", None) in ops
    return payload


class _Evil:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def test_reader_refuses_code_execution(tmp_path):
    marker = tmp_path / "pwned"
    payload = _os_system_pickle(f"touch {marker}")
    zipped = tmp_path / "evil_zip.pth"  # torch zip layout around the payload
    with zipfile.ZipFile(zipped, "w") as z:
        z.writestr("evil_zip/data.pkl", payload)
        z.writestr("evil_zip/version", "3\n")
        z.writestr("evil_zip/byteorder", "little")
    legacy = tmp_path / "evil_legacy.pth"  # legacy layout: magic, protocol, sys info, then the object
    legacy.write_bytes(
        pickle.dumps(LEGACY_MAGIC_NUMBER, protocol=2) + pickle.dumps(1001, protocol=2)
        + pickle.dumps({"protocol_version": 1001, "little_endian": True}, protocol=2) + payload
    )
    for path in (zipped, legacy):
        with pytest.raises(UnsafeCheckpointError, match=rf"{path.name}.*refused to unpickle os\.system"):
            load_torch_file(path)
    # a real torch.save file whose state dict carries an object reducing to os.system (posix.system on Linux)
    real = tmp_path / "evil_torch.pth"
    torch.save({"state_dict": {"w": torch.ones(2)}, "extra": _Evil(f"touch {marker}")}, real)
    posix_system = rf"{os.system.__module__}\.system"
    with pytest.raises(UnsafeCheckpointError, match=rf"evil_torch.pth.*refused to unpickle {posix_system}"):
        load_torch_file(real)
    assert not marker.exists()
    # other code-reaching globals are refused too
    for module, name in [("builtins", "eval"), ("torch", "load"), ("numpy.core.multiarray", "_reconstruct")]:
        p = tmp_path / f"{name}.pth"
        with zipfile.ZipFile(p, "w") as z:
            z.writestr(f"{name}/data.pkl", b"\x80\x02c" + f"{module}\n{name}\n".encode() + b")R.")
        with pytest.raises(UnsafeCheckpointError, match=rf"{module}\.{name}"):
            load_torch_file(p)


# ---------------------------------------------------------------------------------------------------- renaming


def test_state_dict_to_variables_renaming_and_wrappers():
    sds = jax.ShapeDtypeStruct
    target = {
        "params": {
            "conv": {"kernel": sds((3, 3, 2, 4), jnp.float32), "bias": sds((4,), jnp.float32)},
            "bn": {"scale": sds((4,), jnp.float32), "bias": sds((4,), jnp.float32)},
            "fc": {"kernel": sds((4, 5), jnp.float32)},
            "si": sds((), jnp.float32),
        },
        "batch_stats": {"bn": {"mean": sds((4,), jnp.float32), "var": sds((4,), jnp.float32)}},
    }
    rng = np.random.default_rng(0)
    sd = collections.OrderedDict(
        [
            ("conv.weight", rng.normal(size=(4, 2, 3, 3)).astype(np.float32)),
            ("conv.bias", rng.normal(size=4).astype(np.float16)),
            ("bn.weight", rng.normal(size=4).astype(np.float32)),
            ("bn.bias", rng.normal(size=4).astype(np.float32)),
            ("bn.running_mean", rng.normal(size=4).astype(np.float32)),
            ("bn.running_var", rng.uniform(size=4).astype(np.float32)),
            ("bn.num_batches_tracked", np.array(3, np.int64)),
            ("fc.weight", rng.normal(size=(5, 4)).astype(np.float32)),
            ("si", np.array(0.5, np.float32)),
            ("neck.unused.weight", np.zeros((2, 2), np.float32)),
        ]
    )
    wrapped = [
        sd,
        {"state_dict": {"module." + k: v for k, v in sd.items()}, "epoch": 3, "optimizer": {"state": {}}},
        {"model_state_dict": sd},
    ]
    for obj in wrapped:
        v = state_dict_to_variables(obj, target, ignore_prefixes=("neck.",))
        np.testing.assert_array_equal(v["params"]["conv"]["kernel"], sd["conv.weight"].transpose(2, 3, 1, 0))
        np.testing.assert_array_equal(v["params"]["fc"]["kernel"], sd["fc.weight"].T)
        np.testing.assert_array_equal(v["params"]["bn"]["scale"], sd["bn.weight"])
        np.testing.assert_array_equal(v["batch_stats"]["bn"]["var"], sd["bn.running_var"])
        assert v["params"]["conv"]["bias"].dtype == np.float32  # fp16 upcast
        assert v["params"]["si"].shape == ()
    with pytest.raises(ValueError) as err:  # without ignoring neck.: reported as unexpected
        state_dict_to_variables(sd, target, source="my.pth")
    assert "my.pth" in str(err.value) and "unexpected keys (1): params/neck/unused/kernel" in str(err.value)
    assert "neck.unused.weight" in str(err.value)
    bad = dict(sd, **{"fc.weight": np.zeros((5, 3), np.float32)})
    del bad["conv.bias"]
    with pytest.raises(ValueError) as err:
        state_dict_to_variables(bad, target, ignore_prefixes=("neck.",), source="bad.pth")
    msg = str(err.value)
    assert "missing keys (1): params/conv/bias" in msg and "conv.bias" in msg
    assert "params/fc/kernel expected (4, 5) found (3, 5)" in msg
    with pytest.raises(ValueError, match="no state dict found"):
        state_dict_to_variables({"epoch": 3, "optimizer": {}}, target)


# ---------------------------------------------------------------------------------------------------- families

# family -> (twin builder, how the file is written, search size of the comparison)
CASES = {
    # video_analyst: {'model_state_dict': ...}, zip, one non-contiguous and one storage-offset tensor
    "siamfcpp_alexnet": (tt.siamfcpp_alexnet, "model_state_dict+views", None),
    # pysot AlexNet: {'epoch', 'state_dict' (module.), 'optimizer'}, legacy format, float16 tensors
    "siamrpn_alex": (tt.siamrpn_alex, "pysot+legacy+fp16", None),
    # SiamRPN++ VOT: {'epoch', 'state_dict' (module.), 'optimizer'}, zip, full size (the one full R50 forward)
    "siamrpnpp_r50": (lambda: tt.siamrpn_r50_l234(True), "pysot", None),
    # SiamRPN++ OTB: bare state dict, zip; head compared on a smaller search crop (search map 21x21, not cropped)
    "siamrpnpp_r50_otb": (lambda: tt.siamrpn_r50_l234(False), "bare", 175),
}


def _save(twin, layout: str, path):
    sd = twin.state_dict()
    if "views" in layout:
        sd = collections.OrderedDict(sd)
        w = sd["basemodel.conv2.conv.weight"]
        sd["basemodel.conv2.conv.weight"] = w.permute(3, 2, 1, 0).contiguous().permute(3, 2, 1, 0)
        assert not sd["basemodel.conv2.conv.weight"].is_contiguous()
        b = sd["head.bbox_offsets_p5.conv.bias"]
        holder = torch.cat([torch.full((13,), 99.0), b, torch.full((5,), -99.0)])
        sd["head.bbox_offsets_p5.conv.bias"] = holder[13 : 13 + b.numel()]
        assert sd["head.bbox_offsets_p5.conv.bias"].storage_offset() == 13
    if "fp16" in layout:  # the twin runs the rounded weights, so outputs stay comparable
        rounded = {k: v.half().float() if v.is_floating_point() else v for k, v in sd.items()}
        twin.load_state_dict(rounded)
        sd = collections.OrderedDict((k, v.half() if v.is_floating_point() else v) for k, v in sd.items())
    if layout.startswith("model_state_dict"):
        obj = {"model_state_dict": sd}
    elif layout.startswith("pysot"):
        sgd = torch.optim.SGD(twin.parameters(), lr=0.01, momentum=0.9)
        obj = {"epoch": 19, "state_dict": collections.OrderedDict(("module." + k, v) for k, v in sd.items()),
               "optimizer": sgd.state_dict()}
    else:
        obj = sd
    torch.save(obj, path, _use_new_zipfile_serialization="legacy" not in layout)


@pytest.fixture(scope="module")
def r50_weights():
    """One calibrated random R50 twin state, shared by the VOT and OTB families (they differ by the fusion)."""
    rng = np.random.default_rng(4)
    z, x = rng.uniform(0, 255, (1, 127, 127, 3)), rng.uniform(0, 255, (1, 175, 175, 3))
    twin = tt.siamrpn_r50_l234(True)
    tt.randomize_(twin, lambda m: m(nchw(z), nchw(x)), seed=4)
    return twin.state_dict()


@pytest.fixture(scope="module", params=sorted(CASES))
def converted(request, tmp_path_factory):
    """(family, tracker, twin, converted folder, source file, variables restored from the folder)."""
    family = request.param
    build, layout, _ = CASES[family]
    tracker = tracking.create(CHECKPOINT_KINDS[family].tracker)
    c = tracker.config
    twin = build()
    if family.startswith("siamrpnpp"):
        sd = request.getfixturevalue("r50_weights")
        twin.load_state_dict({k: v for k, v in sd.items() if k in twin.state_dict()})
    else:
        rng = np.random.default_rng(0)
        z = rng.uniform(0, 255, (2, c.exemplar_size, c.exemplar_size, 3))
        x = rng.uniform(0, 255, (2, c.instance_size, c.instance_size, 3))
        tt.randomize_(twin, lambda m: m(nchw(z), nchw(x)), seed=0)
    with torch.no_grad():  # random RPN heads saturate (logits ~50): scale the last convs to trained-like ranges
        for key, value in twin.state_dict().items():
            if key.startswith("rpn_head.") and ".head.3." in key:
                value.mul_(0.05)
    root = tmp_path_factory.mktemp(family)
    src = root / f"{family}.pth"
    _save(twin, layout, src)
    dst = convert_checkpoint(family, src, root / "converted")
    variables = load_path(tracker, dst).variables
    return family, tracker, twin.eval(), dst, src, variables


def test_converted_folder_and_card(converted):
    family, tracker, twin, dst, src, variables = converted
    card = read_card(dst)
    assert card["kind"] == family and card["tracker"] == tracker.name
    assert card["source"]["file"] == src.name and len(card["source"]["sha256"]) == 64
    assert card["source"]["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert sorted(os.listdir(dst)) == ["card.json", "variables"]
    assert not [p for p in os.listdir(dst.parent) if p.startswith(".")]  # no temporary folders left
    # exactly the arrays of the generic renaming of the twin's state dict (float16 files: the rounded values)
    want = tt.torch_to_flax(twin.state_dict())
    got = jax.tree_util.tree_map(np.asarray, variables)
    assert jax.tree_util.tree_structure(got) == jax.tree_util.tree_structure(want)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)))
    n = len(jax.tree_util.tree_leaves(want))
    assert card["num_arrays"] == n
    assert card["num_parameters"] == sum(a.size for a in jax.tree_util.tree_leaves(want["params"]))
    assert card["dropped_keys"]["num_batches_tracked"] == len(jax.tree_util.tree_leaves(want["batch_stats"])) // 2


def test_converted_outputs_match_twin(converted):
    family, tracker, twin, dst, src, variables = converted
    c = tracker.config
    x_size = CASES[family][2] or c.instance_size
    rng = np.random.default_rng(7)
    z = rng.uniform(0, 255, (c.exemplar_size, c.exemplar_size, 3)).astype(np.float32)
    x = rng.uniform(0, 255, (x_size, x_size, 3)).astype(np.float32)
    errors = {}
    with torch.no_grad():
        if family == "siamrpnpp_r50_otb":  # same backbone + neck as the VOT model (compared there): head only
            zf_t = twin.template(nchw(z))
            zf = tuple(jnp.asarray(to_nhwc(t)) for t in zf_t)
        else:
            zf = jax.jit(tracker.embed_template)(variables, z)
        raw = jax.jit(tracker.head)(variables, zf, x)
        if family.startswith("siamfcpp"):
            zf_t = twin.feature(nchw(z))
            cls_t, ctr_t, box_t = twin.track(nchw(x), *zf_t)
            n = raw["cls"].shape[1]
            errors["c_z_k"] = rel_err(zf[0], to_nhwc(zf_t[0]))
            errors["r_z_k"] = rel_err(zf[1], to_nhwc(zf_t[1]))
            errors["cls"] = rel_err(raw["cls"], cls_t.numpy().reshape(1, n, n))
            errors["ctr"] = rel_err(raw["ctr"], ctr_t.numpy().reshape(1, n, n))
            errors["box"] = rel_err(raw["box"], box_t.numpy().reshape(1, n, n, 4))
        else:
            zf_t = twin.template(nchw(z))
            out_t = twin.track(nchw(x))
            if family != "siamrpnpp_r50_otb":
                zf_list = zf_t if isinstance(zf_t, list) else [zf_t]
                for i, (a, b) in enumerate(zip(jax.tree_util.tree_leaves(zf), zf_list)):
                    errors[f"zf{i}"] = rel_err(a, to_nhwc(b))
            errors["cls"] = rel_err(raw["cls"], to_nhwc(out_t["cls"]))
            errors["loc"] = rel_err(raw["loc"], to_nhwc(out_t["loc"]))
    print(f"\n{family}: max relative errors " + ", ".join(f"{k} {v:.1e}" for k, v in errors.items()))
    assert max(errors.values()) < RTOL, errors

    if family == "siamrpnpp_r50":  # decoding of the full-size raw outputs vs pysot's, on the twin's outputs
        center, size, hw = np.array([150.0, 120.0]), np.array([60.0, 40.0]), (240, 320)
        ctx = 0.5 * size.sum()
        scale_z = c.exemplar_size / np.sqrt((size[0] + ctx) * (size[1] + ctx))
        new_center, new_size, _ = tracker.decode(raw, jnp.asarray(center, jnp.float32),
                                                 jnp.asarray(size, jnp.float32), jnp.float32(scale_z), hw)
        ref = _pysot_reference_decode(tracker, out_t, center, size, hw)
        np.testing.assert_allclose(np.asarray(new_center), ref["center"], atol=0.02)
        np.testing.assert_allclose(np.asarray(new_size), ref["size"], atol=0.02)


def _pysot_reference_decode(tracker, out_t, center, size, hw):
    c = tracker.config
    anchors = ref_pysot_anchor(c.anchor_stride, list(c.anchor_ratios), list(c.anchor_scales), c.score_size)
    hanning = np.hanning(c.score_size)
    window = np.tile(np.outer(hanning, hanning).flatten(), c.num_anchors)
    return ref_pysot_track(out_t["cls"].numpy(), out_t["loc"].numpy(), anchors, window, center, size, hw,
                           c.penalty_k, c.window_influence, c.lr)


def _frames(h=240, w=320, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    f0, f1 = base.copy(), base.copy()
    f0[100:140, 120:170] = (200, 220, 40)
    f1[104:144, 126:176] = (200, 220, 40)
    return f0, f1, np.array([120, 100, 50, 40], np.float32)


def test_converted_tracker_step_matches_reference_decode(converted):
    """One jitted ``tracker.step`` with the converted weights vs the twin + the reference decoding (same crops)."""
    family, tracker, twin, dst, src, variables = converted
    if family.startswith("siamrpnpp"):
        pytest.skip("R50: decoding is checked on the raw outputs in test_converted_outputs_match_twin (a jitted "
                    "R50 step would cost one more full compile)")
    c = tracker.config
    f0, f1, box0 = _frames()
    state = tracker.init(variables, f0, box0)
    _, box, _ = tracker.step(variables, state, f1)
    center, size = tracker.box_to_center_size(jnp.asarray(box0))
    z = tracker.template_crop(jnp.asarray(f0), center, size, state.channel_avg)
    x, scale = tracker.search_crop(jnp.asarray(f1), center, size, state.channel_avg)
    center, size = np.asarray(center, np.float64), np.asarray(size, np.float64)
    with torch.no_grad():
        if family == "siamrpn_alex":
            twin.template(nchw(z))
            ref = _pysot_reference_decode(tracker, twin.track(nchw(x)), center, size, f1.shape[:2])
        else:
            cls, ctr, boxes = twin.track(nchw(x), *twin.feature(nchw(z)))
            score = (torch.sigmoid(cls) * torch.sigmoid(ctr))[0, :, 0].numpy()
            hanning = np.hanning(c.score_size)
            ref = ref_siamfcpp_track(score, boxes[0].numpy(), np.outer(hanning, hanning).reshape(-1), center, size,
                                     float(scale), c.instance_size, f1.shape[:2], c.penalty_k, c.window_influence, c.lr)
    assert np.abs(ref["bbox"] - box0).max() > 0.5  # the box moved
    np.testing.assert_allclose(np.asarray(box), ref["bbox"], atol=0.02)


# ---------------------------------------------------------------------------------------------------- errors


@pytest.fixture(scope="module")
def alex_files(tmp_path_factory):
    """Small real-schema files: SiamRPN AlexNet and SiamFC++ AlexNet state dicts (random, calibrated)."""
    root = tmp_path_factory.mktemp("alex")
    rng = np.random.default_rng(1)
    z, x = rng.uniform(0, 255, (1, 127, 127, 3)), rng.uniform(0, 255, (1, 287, 287, 3))
    files = {}
    for family, build in [("siamrpn_alex", tt.siamrpn_alex), ("siamfcpp_alexnet", tt.siamfcpp_alexnet)]:
        twin = tt.randomize_(build(), lambda m: m(nchw(z), nchw(x)), seed=1)
        files[family] = root / f"{family}.pth"
        torch.save({"state_dict": twin.state_dict()}, files[family])
    return files


def test_wrong_family_lists_missing_and_unexpected_keys(alex_files, tmp_path):
    dst = tmp_path / "out"
    with pytest.raises(ValueError) as err:
        convert_checkpoint("siamfcpp_alexnet", alex_files["siamrpn_alex"], dst)
    msg = str(err.value)
    assert "siamrpn_alex.pth" in msg and "siamfcpp_alexnet" in msg
    assert "missing keys (" in msg and "unexpected keys (" in msg
    assert "params/basemodel/conv1/conv/kernel" in msg and "backbone.features.0.weight" in msg  # both namings
    assert not dst.exists() and not os.listdir(tmp_path)  # nothing written
    with pytest.raises(ValueError, match="unknown checkpoint kind 'nope'"):
        convert_checkpoint("nope", alex_files["siamrpn_alex"], dst)


def test_vot_weights_do_not_fit_the_otb_family(r50_weights):
    target = abstract_variables(tracking.create("siamrpnpp_r50_otb"))  # cached: shared with the OTB fixture
    sd = {k: v.numpy() for k, v in r50_weights.items()}
    unexpected = r"unexpected keys \(2\): params/rpn_head/cls_weight, params/rpn_head/loc_weight"
    with pytest.raises(ValueError, match=unexpected):
        state_dict_to_variables(sd, target)


def test_overwrite_and_checkpoint_kind_checks(alex_files, tmp_path):
    dst = tmp_path / "siamfcpp"
    convert_checkpoint("siamfcpp_alexnet", alex_files["siamfcpp_alexnet"], dst)
    first = read_card(dst)["created"]
    with pytest.raises(FileExistsError, match="already exists"):
        convert_checkpoint("siamfcpp_alexnet", alex_files["siamfcpp_alexnet"], dst)
    convert_checkpoint("siamfcpp_alexnet", alex_files["siamfcpp_alexnet"], dst, overwrite=True)
    assert read_card(dst)["created"] >= first and sorted(os.listdir(tmp_path)) == ["siamfcpp"]
    other = tmp_path / "precious"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a weights folder"):
        convert_checkpoint("siamfcpp_alexnet", alex_files["siamfcpp_alexnet"], other, overwrite=True)
    assert (other / "notes.txt").read_text() == "keep me"
    # the SiamFC++ weights serve every SiamFC++ AlexNet tracker configuration, and nothing else
    assert compatible_kinds("siamfcpp_alexnet_vot") == ["siamfcpp_alexnet"]
    loaded = load_path(tracking.create("siamfcpp_alexnet_vot"), dst)
    vot = loaded.variables
    assert not loaded.is_random and set(vot) == {"params", "batch_stats"}
    assert (loaded.card["format"], loaded.card["what"], loaded.card["kind"]) == (
        "jaxtrack-weights", "tracker", "siamfcpp_alexnet")
    with pytest.raises(ValueError, match="kind 'siamfcpp_alexnet'.*tracker 'siamrpn_alex'.*'siamrpn_alex'"):
        load_path(tracking.create("siamrpn_alex"), dst)
    # a folder converted by an earlier release (its own card format, "family" for the kind) loads unchanged
    card = json.loads((dst / "card.json").read_text())
    card["family"] = card.pop("kind")
    card["format"] = "jaxtrack-converted-checkpoint"
    del card["what"]
    (dst / "card.json").write_text(json.dumps(card))
    assert read_card(dst)["kind"] == "siamfcpp_alexnet"
    old = load_path(tracking.create("siamfcpp_alexnet_vot"), dst).variables
    assert max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
               for a, b in zip(jax.tree_util.tree_leaves(old), jax.tree_util.tree_leaves(vot))) == 0.0
    # a bare orbax variables directory still loads; a .pth file converts in memory to the same arrays
    tracker = tracking.create("siamfcpp_alexnet")
    bare = checkpoint.save_variables(tmp_path / "bare", jax.tree_util.tree_map(np.asarray, vot))
    assert load_path(tracker, bare).is_random is False
    direct_loaded = load_path(tracker, alex_files["siamfcpp_alexnet"])
    direct = direct_loaded.variables
    assert not direct_loaded.is_random and direct_loaded.card["kind"] == "siamfcpp_alexnet"
    jax.tree_util.tree_map(np.testing.assert_array_equal, direct, jax.tree_util.tree_map(np.asarray, vot))
    with pytest.raises(ValueError, match="not a PyTorch checkpoint"):
        load_path(tracker, dst / "card.json")


# ---------------------------------------------------------------------------------------------------- CLI


def _otb_folder(root):
    try:
        from jaxtrack.data.synthetic import SyntheticConfig, generate_sequence, write_otb_sequence
    except ImportError:  # the synthetic data module is not available: write a tiny OTB folder by hand
        import cv2

        folder = root / "toy"
        (folder / "img").mkdir(parents=True)
        f0, f1, box = _frames()
        for i, f in enumerate([f0, f1, f1, f0, f1, f0, f1], start=1):
            cv2.imwrite(str(folder / "img" / f"{i:04d}.jpg"), f)
        (folder / "groundtruth_rect.txt").write_text(",".join(str(int(v) + (i < 2)) for i, v in enumerate(box)) + "\n")
        return folder
    frames, boxes = generate_sequence(SyntheticConfig(num_frames=7), seed=3)
    return write_otb_sequence(root, "toy", frames, boxes)


def test_cli_convert_then_track(alex_files, tmp_path, capsys):
    src, dst = alex_files["siamrpn_alex"], tmp_path / "weights"
    assert main(["convert", "--kind", "siamrpn_alex", str(src), str(dst)]) == 0
    out = capsys.readouterr().out
    card = json.loads(out[: out.index("\n}\n") + 2])
    assert card["kind"] == "siamrpn_alex" and card["source"]["file"] == src.name
    assert f"converted {card['num_arrays']} arrays ({card['num_parameters']:,} parameters" in out
    assert main(["convert", "--family", "siamrpn_alex", str(src), str(dst)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["convert", "--family", "siamrpn_alex", str(src), str(dst), "--overwrite"]) == 0
    capsys.readouterr()
    half = tmp_path / "half.pth"
    half.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    assert main(["convert", "--family", "siamrpn_alex", str(half), str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "half.pth" in err and not (tmp_path / "x").exists()
    assert main(["convert", "--family", "siamfcpp_alexnet", str(src), str(tmp_path / "y")]) == 2
    assert "missing keys" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: unknown family
        main(["convert", "--family", "nope", str(src), str(tmp_path / "z")])
    assert "invalid choice: 'nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["convert", "--help"])
    help_text = capsys.readouterr().out
    assert exit_info.value.code == 0 and all(f in help_text for f in CHECKPOINT_KINDS)

    folder = _otb_folder(tmp_path / "seq")
    boxes = tmp_path / "boxes.txt"
    assert main(["track", "--model", "siamrpn_alex", "--weights", str(dst), "--sequence", str(folder),
                 "--out", str(boxes), "--chunk-size", "4"]) == 0
    assert "RANDOM" not in capsys.readouterr().out
    lines = boxes.read_text().splitlines()
    assert len(lines) == 7 and all(np.isfinite([float(v) for v in line.split(",")]).all() for line in lines)
    assert main(["track", "--model", "siamfcpp_alexnet", "--weights", str(dst), "--sequence", str(folder),
                 "--out", str(boxes)]) == 2
    assert "kind 'siamrpn_alex'" in capsys.readouterr().err
