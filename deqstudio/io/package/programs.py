"""The ONNX programs of a package: parsed as data, checked, made self-contained, then run by onnxruntime.

Parsing a protobuf runs no Python. Before any program runs it must:

- name only the standard operator domains (``""``, ``ai.onnx``, ``ai.onnx.ml``), in every graph, subgraph and
  function: a custom-op domain needs a native library, which DEQ Studio never loads;
- keep its external data inside the package: each location a relative path without ``..``, read through the
  package's own file reader and copied into the model in memory, so onnxruntime never opens a file;
- read and return exactly what the contract names, float32, batch first and dynamic, with the declared sizes.

``Program.trial`` then runs it once on a batch of zeros and checks that the outputs are finite and of the
declared shapes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from .archive import PackageFiles
from .contract import ProgramSpec

STANDARD_DOMAINS = ("", "ai.onnx", "ai.onnx.ml")
_FLOAT = 1
_FLOAT_KINDS = (1, 10, 11, 16)  # float32, float16, float64, bfloat16
TRIAL_BATCH = 2


class ProgramError(ValueError):
    """A program that cannot be used; the message names the program and the problem."""


def _walk_graph(graph, visit_node, visit_tensor) -> None:
    for t in graph.initializer:
        visit_tensor(t)
    for s in graph.sparse_initializer:
        visit_tensor(s.values)
        visit_tensor(s.indices)
    _walk_nodes(graph.node, visit_node, visit_tensor)


def _walk_nodes(nodes, visit_node, visit_tensor) -> None:
    """Every node, its tensor attributes and its subgraphs (an If's branches, a Loop's body), depth first."""
    from onnx import AttributeProto

    for node in nodes:
        visit_node(node)
        for a in node.attribute:
            if a.type == AttributeProto.TENSOR:
                visit_tensor(a.t)
            elif a.type == AttributeProto.TENSORS:
                for t in a.tensors:
                    visit_tensor(t)
            elif a.type == AttributeProto.SPARSE_TENSOR:
                visit_tensor(a.sparse_tensor.values)
                visit_tensor(a.sparse_tensor.indices)
            elif a.type == AttributeProto.GRAPH:
                _walk_graph(a.g, visit_node, visit_tensor)
            elif a.type == AttributeProto.GRAPHS:
                for g in a.graphs:
                    _walk_graph(g, visit_node, visit_tensor)


def parse(data: bytes, spec: ProgramSpec, files: PackageFiles):
    """The program's ``ModelProto``, checked, with its external data inlined."""
    import onnx

    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except Exception as exc:  # noqa: BLE001 — a protobuf decode error of any kind is a refusal
        raise ProgramError(f"{spec.file} is not an ONNX model ({type(exc).__name__})") from None
    if not model.HasField("graph"):
        raise ProgramError(f"{spec.file} is not an ONNX model (it has no graph)")
    for imp in model.opset_import:
        _check_domain(imp.domain, spec, "imports operators from")

    def visit_node(node):
        _check_domain(node.domain, spec, f"uses operator {node.op_type[:80]!r} from")

    def visit_tensor(t):
        if t.data_location == onnx.TensorProto.EXTERNAL or len(t.external_data):
            _inline(t, spec, files)

    for fn in model.functions:
        _check_domain(fn.domain, spec, "defines a function in")
        for imp in fn.opset_import:
            _check_domain(imp.domain, spec, "imports operators from")
        _walk_nodes(fn.node, visit_node, visit_tensor)
    _walk_graph(model.graph, visit_node, visit_tensor)
    _check_signature(model.graph, spec)
    try:
        onnx.checker.check_model(model)
    except Exception as exc:  # noqa: BLE001 — the checker's complaint, in one line
        raise ProgramError(f"{spec.file} is not a valid ONNX model ({str(exc).splitlines()[0][:160]})") from None
    return model


def _check_domain(domain: str, spec: ProgramSpec, what: str) -> None:
    if domain not in STANDARD_DOMAINS:
        raise ProgramError(f"{spec.file} {what} the custom domain {domain[:80]!r}; only the standard ONNX operators "
                           "run (a custom domain needs a native library, which is never loaded)")


def _inline(t, spec: ProgramSpec, files: PackageFiles) -> None:
    """Copy an external tensor's bytes from inside the package into the tensor itself."""
    from onnx import TensorProto

    info = {e.key: e.value for e in t.external_data}
    location = info.get("location", "")
    if not location or os.path.isabs(location) or location.startswith(("/", "\\")) or (
            len(location) > 1 and location[1] == ":"):
        raise ProgramError(f"{spec.file}: tensor {t.name[:80]!r} keeps its data at the absolute path "
                           f"{location[:120]!r}; external data must lie inside the package")
    if ".." in location.replace("\\", "/").split("/"):
        raise ProgramError(f"{spec.file}: tensor {t.name[:80]!r} keeps its data at {location[:120]!r}, outside the "
                           "package (..); external data must lie inside the package")
    base = os.path.dirname(spec.file)
    name = f"{base}/{location}" if base else location
    try:
        offset = int(info.get("offset", 0) or 0)
        length = int(info["length"]) if "length" in info else None
    except ValueError:
        raise ProgramError(f"{spec.file}: tensor {t.name[:80]!r} has a malformed external-data offset or length") from None
    try:
        blob = files.read(name)
    except ValueError as exc:
        raise ProgramError(f"{spec.file}: external data of tensor {t.name[:80]!r}: {exc}") from None
    end = len(blob) if length is None else offset + length
    if offset < 0 or end > len(blob) or end < offset:
        raise ProgramError(f"{spec.file}: tensor {t.name[:80]!r} asks for bytes {offset}..{end} of {location[:120]!r}, "
                           f"which holds {len(blob)}")
    t.raw_data = blob[offset:end]
    del t.external_data[:]
    t.data_location = TensorProto.DEFAULT


def _dims(value_info) -> list | None:
    tt = value_info.type.tensor_type
    if not tt.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]


def _check_signature(graph, spec: ProgramSpec) -> None:
    initialisers = {t.name for t in graph.initializer}
    graph_inputs = {v.name: v for v in graph.input if v.name not in initialisers}
    graph_outputs = {v.name: v for v in graph.output}
    extra = sorted(set(graph_inputs) - set(spec.inputs))
    if extra:
        raise ProgramError(f"{spec.file} reads input(s) {', '.join(repr(e[:60]) for e in extra[:5])} its contract does "
                           f"not name (the contract lists {', '.join(spec.inputs)})")
    missing = [o for o in spec.outputs if o not in graph_outputs]
    if missing:
        raise ProgramError(f"{spec.file} has no output(s) {', '.join(repr(m[:60]) for m in missing)} named by its "
                           f"contract (it returns {', '.join(repr(n[:60]) for n in graph_outputs) or 'nothing'})")
    for names, sizes, table, what in ((spec.inputs, spec.input_sizes, graph_inputs, "input"),
                                      (spec.outputs, spec.output_sizes, graph_outputs, "output")):
        for name, size in zip(names, sizes):
            if name not in table:
                continue  # an input the program does not read (exporters drop unused inputs)
            elem = table[name].type.tensor_type.elem_type
            if (what == "input" and elem != _FLOAT) or (what == "output" and elem not in _FLOAT_KINDS):
                raise ProgramError(f"{spec.file}: {what} {name!r} is not a float32 tensor")
            dims = _dims(table[name])
            if dims is None:
                continue
            if len(dims) != 2:
                raise ProgramError(f"{spec.file}: {what} {name!r} has {len(dims)} dimensions; every {what} is "
                                   f"(batch, features) with {size} features")
            if dims[0] is not None and what == "input":
                raise ProgramError(f"{spec.file}: {what} {name!r} has a fixed batch size {dims[0]}; export it with a "
                                   "dynamic batch dimension")
            if dims[1] is not None and dims[1] != size:
                raise ProgramError(f"{spec.file}: {what} {name!r} has {dims[1]} features, its contract says {size}")


@dataclass
class Program:
    """One checked program and its onnxruntime session."""

    spec: ProgramSpec
    model_bytes: bytes
    graph_inputs: frozenset
    session: object = None

    def build(self, providers) -> None:
        self.session = self.make_session(providers)

    def make_session(self, providers):
        """A new onnxruntime session of this program on these execution providers."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 4  # nothing on stderr: a failure is an exception, said in one line
        options.add_session_config_entry("session.load_model_format", "ONNX")
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        options.intra_op_num_threads = _threads()
        options.inter_op_num_threads = 1
        try:
            return ort.InferenceSession(self.model_bytes, options, providers=providers)
        except Exception as exc:  # noqa: BLE001 — onnxruntime's refusal of a graph, in one line
            raise ProgramError(f"{self.spec.file}: onnxruntime cannot run it ({_first_line(exc)})") from None

    def __call__(self, arrays) -> list[np.ndarray]:
        """Outputs (float32, in contract order) for inputs in contract order, each (B, size)."""
        import onnxruntime as ort

        feed = {n: np.ascontiguousarray(a, dtype=np.float32) for n, a in zip(self.spec.inputs, arrays)
                if n in self.graph_inputs}
        run_options = ort.RunOptions()
        run_options.log_severity_level = 4
        try:
            outputs = self.session.run(list(self.spec.outputs), feed, run_options)
        except Exception as exc:  # noqa: BLE001 — onnxruntime's failure on these inputs, in one line
            raise ProgramError(f"program {self.spec.name} ({self.spec.file}) failed: {_first_line(exc)}") from None
        batch = len(arrays[0]) if len(arrays) else 0
        out = []
        for name, size, value in zip(self.spec.outputs, self.spec.output_sizes, outputs):
            value = np.asarray(value)
            if value.shape != (batch, size):
                raise ProgramError(f"program {self.spec.name} ({self.spec.file}) returned {name!r} of shape "
                                   f"{tuple(value.shape)}, its contract says ({batch}, {size})")
            out.append(value.astype(np.float32, copy=False))
        return out

    def trial(self, arrays) -> list[np.ndarray]:
        """Run on a small batch and insist on finite outputs of the declared shapes."""
        outputs = self(arrays)
        for name, value in zip(self.spec.outputs, outputs):
            if not np.isfinite(value).all():
                raise ProgramError(f"program {self.spec.name} ({self.spec.file}) returns non-finite values in {name!r} "
                                   "on a batch of zeros")
        return outputs


def load_program(spec: ProgramSpec, files: PackageFiles, providers) -> Program:
    data = files.read(spec.file)
    model = parse(data, spec, files)
    initialisers = {t.name for t in model.graph.initializer}
    inputs = frozenset(v.name for v in model.graph.input if v.name not in initialisers)
    program = Program(spec, model.SerializeToString(), inputs)
    program.build(providers)
    return program


def _threads() -> int:
    try:
        import torch

        return max(1, int(torch.get_num_threads()))
    except Exception:  # noqa: BLE001 — torch is always there; a count is only a hint
        return 1


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200] if text else type(exc).__name__
