"""The restricted reader of .pth files: tensors only, never code from the file."""

import collections
import io
import os
import pickle
import zipfile

import numpy as np
import pytest

from alexnet_tf import errors
from alexnet_tf.pretrained import torch_pickle


class _RunsACommand:
    """Unpickling this calls os.system, as a hostile .pth would."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _zip_pth(path, payload: bytes) -> str:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", payload)
        archive.writestr("archive/byteorder", "little")
    return str(path)


@pytest.mark.parametrize("layout", ["zip", "legacy"])
def test_a_pickle_that_runs_code_is_refused_before_it_runs(tmp_path, layout):
    marker = tmp_path / "ran"
    payload = pickle.dumps(collections.OrderedDict(weight=_RunsACommand(str(marker))),
                           protocol=2)
    if layout == "zip":
        path = _zip_pth(tmp_path / "hostile.pth", payload)
    else:  # The legacy header (magic number, protocol, system info), then the payload.
        path = tmp_path / "hostile.pth"
        header = b"".join(pickle.dumps(value, protocol=2) for value in (
                0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}))
        path.write_bytes(header + payload)
    assert pickle.loads(payload) is not None and marker.exists()  # What plain pickle does.
    marker.unlink()
    with pytest.raises(errors.InvalidInputError,
                       match=r"hostile\.pth: refused to load (posix|os|nt)\.system: only a "
                             r"state dict of tensors is read"):
        torch_pickle.load_state_dict(str(path))
    assert not marker.exists()


def test_values_that_are_not_tensors_and_missing_storages(tmp_path):
    path = _zip_pth(tmp_path / "numbers.pth",
                    pickle.dumps(collections.OrderedDict(weight=[1.0, 2.0]), protocol=2))
    with pytest.raises(errors.InvalidInputError, match="entry 'weight' is a list, not a tensor"):
        torch_pickle.load_state_dict(path)
    path = _zip_pth(tmp_path / "list.pth", pickle.dumps([1, 2], protocol=2))
    with pytest.raises(errors.InvalidInputError, match="holds a list, not a state dict"):
        torch_pickle.load_state_dict(path)


def test_strided_and_offset_tensors_are_read_as_torch_lays_them_out(tmp_path, torchvision_fixture):
    """A tensor is (storage, offset, shape, strides): a transposed view reads transposed."""
    with zipfile.ZipFile(torchvision_fixture["pth"]) as archive:
        names = archive.namelist()
        prefix = next(name for name in names if name.endswith("data.pkl"))[:-len("data.pkl")]
        pickled = archive.read(prefix + "data.pkl")
    state = torch_pickle.load_state_dict(torchvision_fixture["pth"])
    # fc7's weight, stored contiguous (8, 8): read as its transpose through the strides.
    original = state["classifier.4.weight"]
    ref = torch_pickle._RestrictedUnpickler(io.BytesIO(pickled), "x").load()[
            "classifier.4.weight"]
    transposed = torch_pickle._TensorRef(ref.storage, ref.offset, ref.shape[::-1],
                                         ref.stride[::-1])
    storage = np.asarray(state["classifier.4.weight"]).reshape(-1)
    got = torch_pickle._tensor_array(transposed, {ref.storage.key: storage}, "t", "x")
    np.testing.assert_array_equal(got, original.T)
    beyond = torch_pickle._TensorRef(ref.storage, 60, (8,), (1,))
    with pytest.raises(errors.InvalidInputError, match=r"reaches element 67 of a storage of 64"):
        torch_pickle._tensor_array(beyond, {ref.storage.key: storage}, "t", "x")
