"""Torch files from elsewhere — state dicts, wrapped ones, whole pickled models — read without running them.

A torch file is a zip archive holding a pickle (``*/data.pkl``) and one member per tensor storage. The pickle
is read by a restricted unpickler:

- only torch's tensor-rebuild functions resolve, each to a function of ours that checks its arguments
  (storage type, offset, sizes and strides within the storage) and records a lazy ``TensorRef``; torch's own
  rebuild code never runs, so nothing from the file can set hooks, metadata or subclasses on a tensor;
- a few plain types resolve to themselves (``collections.OrderedDict``, ``set``, ``frozenset``, torch's dtypes,
  ``torch.Size`` as a tuple, ``torch.device`` as its name);
- every other global the file names becomes an inert ``Placeholder`` subclass that records its class path; a
  placeholder "called" or rebuilt records its arguments and state. Nothing is imported and no callable from
  the file is ever called.

A whole pickled ``nn.Module`` so becomes a tree of placeholders whose recorded state holds ``_parameters``,
``_buffers`` and ``_modules`` (``deqstudio.io.foreign`` flattens them into state dicts). Storages are read only
when a tensor is materialised (``TensorRef.tensor``). ``load`` is the entry point.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from ..errors import CheckpointError, printable

MAX_PICKLE = 256 * 1024**2  # bytes of the pickle itself (tensors live beside it)
MAX_EXPANSION = 16  # archive members may declare at most this many times the archive's size
MAX_CLASSES = 20_000  # distinct globals a file may name
_STORAGE_DTYPES = {
    "FloatStorage": "float32", "DoubleStorage": "float64", "HalfStorage": "float16", "BFloat16Storage": "bfloat16",
    "LongStorage": "int64", "IntStorage": "int32", "ShortStorage": "int16", "CharStorage": "int8",
    "ByteStorage": "uint8", "BoolStorage": "bool", "ComplexFloatStorage": "complex64",
    "ComplexDoubleStorage": "complex128", "UntypedStorage": "uint8",
}
_DTYPES = ("float32", "float64", "float16", "bfloat16", "int64", "int32", "int16", "int8", "uint8", "bool",
           "complex64", "complex128", "float", "double", "half", "long", "int", "short")


class Placeholder:
    """An object the file names but that is never built: its class path, arguments and state, recorded."""

    class_path = ""

    def __new__(cls, *args, **kwargs):
        obj = object.__new__(cls)
        obj.__dict__.update(args=args, kwargs=kwargs, state=None, items={}, appended=[])
        return obj

    def __init__(self, *args, **kwargs) -> None:  # a REDUCE "call": already recorded by __new__
        pass

    def __setstate__(self, state) -> None:
        self.__dict__["state"] = state

    def __setitem__(self, key, value) -> None:
        self.__dict__["items"][key] = value

    def append(self, value) -> None:
        self.__dict__["appended"].append(value)

    def extend(self, values) -> None:
        self.__dict__["appended"].extend(values)

    def __repr__(self) -> str:
        return f"<placeholder {self.class_path}>"

    @property
    def module_state(self) -> dict | None:
        """The recorded state when it looks like an ``nn.Module``'s (it has ``_parameters`` and ``_modules``)."""
        state = self.__dict__["state"]
        if isinstance(state, tuple) and state and isinstance(state[0], dict):
            state = state[0]
        if isinstance(state, dict) and isinstance(state.get("_parameters"), dict) and isinstance(
                state.get("_modules"), dict):
            return state
        return None


@dataclass(frozen=True)
class StorageType:
    dtype: str


class StorageRef:
    """One storage of the archive: its dtype, key and element count (bytes read on demand)."""

    def __init__(self, reader: "_Archive", dtype: str, key: str, numel: int) -> None:
        self.reader, self.dtype, self.key, self.numel = reader, dtype, key, numel


class TensorRef:
    """A tensor the file holds: a checked view of a storage, materialised on demand."""

    def __init__(self, storage: StorageRef, offset: int, size: tuple[int, ...], stride: tuple[int, ...]) -> None:
        self.storage, self.offset, self.shape, self.stride = storage, offset, size, stride

    def __setstate__(self, state) -> None:  # a BUILD on a tensor: ignored (nothing may alter what was read)
        pass

    @property
    def dtype(self) -> str:
        return self.storage.dtype

    def tensor(self):
        """A new contiguous CPU tensor with the values the file holds."""
        import torch

        dtype = getattr(torch, self.storage.dtype)
        numel = 1
        for s in self.shape:
            numel *= s
        if numel == 0:
            return torch.empty(self.shape, dtype=dtype)
        base = self.storage.reader.storage_tensor(self.storage)
        return torch.as_strided(base, self.shape, self.stride, self.offset).clone()


def _ints(value, what: str) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)) or not all(type(v) is int and v >= 0 for v in value):
        raise pickle.UnpicklingError(f"a tensor's {what} must be non-negative integers")
    if len(value) > 32:
        raise pickle.UnpicklingError(f"a tensor's {what} has {len(value)} dimensions")
    return tuple(value)


def _tensor(storage, offset, size, stride, *_ignored) -> TensorRef:
    """torch._utils._rebuild_tensor(_v2): checked, never handed to torch's own rebuild code."""
    if not isinstance(storage, StorageRef):
        raise pickle.UnpicklingError("a tensor is rebuilt from something other than a storage of the file")
    size, stride = _ints(size, "sizes"), _ints(stride, "strides")
    if type(offset) is not int or offset < 0 or len(size) != len(stride):
        raise pickle.UnpicklingError("a tensor's offset, sizes and strides do not fit together")
    if all(s > 0 for s in size):
        last = offset + sum((s - 1) * st for s, st in zip(size, stride))
        if last >= storage.numel:
            raise pickle.UnpicklingError(f"a tensor of shape {size} reaches past the end of its storage "
                                         f"({storage.numel} values)")
        numel = 1
        for s in size:
            numel *= s
        if numel > 16 * storage.numel + 16:  # a broadcast view: a tiny storage declaring enormous weights
            raise pickle.UnpicklingError(f"a tensor of shape {size} has far more values than its storage holds")
    return TensorRef(storage, offset, size, stride)


def _tensor_v3(storage, offset, size, stride, requires_grad, hooks, dtype, *_ignored) -> TensorRef:
    return _tensor(storage, offset, size, stride)


def _parameter(data, *_ignored):
    """torch._utils._rebuild_parameter(_with_state): the data only (no hooks, no state)."""
    return data


def _from_type(func, new_type, args, state):
    """torch._tensor._rebuild_from_type_v2: the plain tensor, when its rebuild function is one of ours."""
    if func in (_tensor, _tensor_v3, _parameter) and isinstance(args, tuple):
        return func(*args)
    return Placeholder.__new__(_placeholder_type("torch._tensor._rebuild_from_type_v2"), func, new_type, args, state)


def _device(*args) -> str:
    return ":".join(str(a) for a in args if isinstance(a, (str, int)))


def _size(*args) -> tuple:
    return tuple(args[0]) if args and isinstance(args[0], (tuple, list)) else ()


def _reconstructor(cls, base, state=None):
    """copyreg._reconstructor (protocol 0/1 objects): a placeholder's instance, never any other class's."""
    if isinstance(cls, type) and issubclass(cls, Placeholder):
        obj = Placeholder.__new__(cls)
        obj.__setstate__(state)
        return obj
    return Placeholder.__new__(_placeholder_type("copyreg._reconstructor"), cls, base, state)


_ALLOWED = {
    ("torch._utils", "_rebuild_tensor"): _tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _tensor,
    ("torch._utils", "_rebuild_tensor_v3"): _tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _from_type,
    ("collections", "OrderedDict"): OrderedDict,
    ("builtins", "set"): set, ("__builtin__", "set"): set,
    ("builtins", "frozenset"): frozenset, ("__builtin__", "frozenset"): frozenset,
    ("torch", "Size"): _size,
    ("torch", "device"): _device,
    ("copyreg", "_reconstructor"): _reconstructor, ("copy_reg", "_reconstructor"): _reconstructor,
}
_TYPES: dict[str, type] = {}


def _placeholder_type(path: str) -> type:
    kind = _TYPES.get(path)
    if kind is None:
        if len(_TYPES) > MAX_CLASSES:  # shared across files: cleared rather than grown without bound
            _TYPES.clear()
        kind = type("Placeholder", (Placeholder,), {"class_path": path, "__module__": __name__})
        _TYPES[path] = kind
    return kind


class _Unpickler(pickle.Unpickler):
    """Resolves only the names in ``_ALLOWED`` (and storages, dtypes); everything else is a placeholder."""

    def __init__(self, fh, archive: "_Archive") -> None:
        super().__init__(fh)
        self.archive = archive
        self.storages: dict[str, StorageRef] = {}
        self.named: set[str] = set()

    def find_class(self, module, name):
        module, name = str(module), str(name)
        allowed = _ALLOWED.get((module, name))
        if allowed is not None:
            return allowed
        if (module == "torch" and name in _STORAGE_DTYPES) or (module, name) == ("torch.storage", "UntypedStorage"):
            return StorageType(_STORAGE_DTYPES[name])
        if module == "torch" and name in _DTYPES:
            import torch

            return getattr(torch, name)
        path = f"{module}.{name}"
        self.named.add(path)
        if len(self.named) > MAX_CLASSES:
            raise pickle.UnpicklingError(f"the file names more than {MAX_CLASSES} classes")
        return _placeholder_type(path)

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError("an unknown kind of external object (not a tensor storage)")
        _, kind, key, _location, numel = pid
        if not isinstance(kind, StorageType) or not isinstance(key, str) or type(numel) is not int or numel < 0:
            raise pickle.UnpicklingError("a storage record that is not torch's (type, key, location, size)")
        ref = self.storages.get(key)
        if ref is None:
            ref = self.storages[key] = StorageRef(self.archive, kind.dtype, key, numel)
        elif ref.dtype != kind.dtype or ref.numel != numel:
            raise pickle.UnpicklingError(f"storage {key!r} is declared twice with different types or sizes")
        return ref


class _Archive:
    """The zip archive of a torch file: its pickle and storages, sizes checked before anything is read."""

    def __init__(self, path: Path, data: bytes) -> None:
        self.path = path
        self.zip = zipfile.ZipFile(io.BytesIO(data))
        members = self.zip.infolist()
        declared = sum(m.file_size for m in members)
        if declared > MAX_EXPANSION * len(data) + (1 << 20):
            raise CheckpointError(f"{path.name}: its archive members declare {declared:,} bytes in a file of "
                                  f"{len(data):,} (a decompression bomb); refused before reading")
        pickles = [m for m in members if m.filename.endswith("/data.pkl") and m.filename.count("/") == 1]
        if len(pickles) != 1:
            raise CheckpointError(f"{path.name}: not a torch file (a zip archive without one data.pkl)")
        self.prefix = pickles[0].filename[: -len("data.pkl")]
        self.pickle_info = pickles[0]
        self.names = {m.filename for m in members}
        self._cache: dict[str, object] = {}
        order = self.prefix + "byteorder"
        if order in self.names and self.zip.read(order).strip() not in (b"little", b""):
            raise CheckpointError(f"{path.name}: saved on a big-endian machine; re-save it on a little-endian one")

    def pickle_bytes(self) -> bytes:
        if self.pickle_info.file_size > MAX_PICKLE:
            raise CheckpointError(f"{self.path.name}: its pickle declares {self.pickle_info.file_size:,} bytes, "
                                  "more than any model's structure needs")
        return self.zip.read(self.pickle_info)

    def storage_tensor(self, ref: StorageRef):
        import torch

        cached = self._cache.get(ref.key)
        if cached is not None:
            return cached
        name = f"{self.prefix}data/{ref.key}"
        if name not in self.names:
            raise CheckpointError(f"{self.path.name}: storage {printable(ref.key)!r} is missing from the archive")
        dtype = getattr(torch, ref.dtype)
        itemsize = torch.empty((), dtype=dtype).element_size()
        raw = self.zip.read(name)
        if len(raw) < ref.numel * itemsize:
            raise CheckpointError(f"{self.path.name}: storage {printable(ref.key)!r} holds {len(raw)} bytes, "
                                  f"{ref.numel * itemsize} are declared")
        base = torch.frombuffer(bytearray(raw[: ref.numel * itemsize]), dtype=dtype)
        self._cache[ref.key] = base
        return base


def load(path: Path, data: bytes) -> tuple[object, tuple[str, ...]]:
    """The object a torch zip archive's pickle holds (placeholders for every class it names) and those class
    paths. Raises ``CheckpointError`` for archive problems, ``pickle.UnpicklingError`` (and the like) for a
    pickle that is not tensors and plain data."""
    archive = _Archive(path, data)
    unpickler = _Unpickler(io.BytesIO(archive.pickle_bytes()), archive)
    root = unpickler.load()
    return root, tuple(sorted(unpickler.named))
