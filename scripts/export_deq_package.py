#!/usr/bin/env python
"""Export your DEQ model to a DEQ Studio package: ``contract.json`` and one ONNX program per part.

Run it next to your own code, with your own torch (it imports torch, onnx and your code; not deqstudio;
onnxruntime, when installed, checks the exported programs):

    python export_deq_package.py my_spec.py --out my_model          # a folder
    python export_deq_package.py my_spec.py --out my_model.zip      # one zip file

where ``my_spec.py`` defines ``package()`` returning the keyword arguments of ``export_package``. Or call it:

    from export_deq_package import export_package
    export_package("my_model", f=..., head=..., example={...}, blocks=[...], class_names=[...])

What you give (every callable in eval mode, run under no_grad; the state is a tuple of blocks, or one tensor
when there is one block):

- ``f(state, *x) -> state``: one application of your fixed-point map (DEQ Studio's solvers find z* = f(z*));
- ``head(state) -> logits`` (B, C);
- ``example``: {modality: one example batch} in the dataset's order (B, ...): sizes, kinds and the check;
- ``blocks``: [(name, shape), ...], the state's blocks (a 2-D block such as a 50×50 attention map is
  flattened, its shape recorded); ``fused_block``: the name of the fused one;
- optional ``encode(*raw) -> x`` (one tensor or a tuple; then corruptions act on the raw inputs and
  ``features`` names its outputs), ``gates(state, *x) -> (B, M)`` or ``(gates, gate_share)``,
  ``unimodal(*x) -> [logits per modality]``, ``noise(*x) -> (sigma_hat, weights[, pe])`` (each (B, M)),
  ``jvp(state, *x, v) -> J_f(state)·v`` (v shaped like the state);
- ``modules``: the torch modules your callables use, when the exporter cannot see them (it finds modules that
  a callable is, is a method of, or closes over); they are put in eval mode.

Each program is exported with ``torch.onnx.export`` (a dynamic batch dimension on every input and output),
then run with onnxruntime on the example batch (all rows, and one row) beside your eager callables; the largest
difference of each program is printed and returned.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import math
import shutil
import sys
import tempfile
import warnings
import zipfile
from pathlib import Path

import torch

FORMAT = "deqstudio-package"
VERSION = 1
STATE, TANGENT = "z", "v"


class ExportProblem(ValueError):
    """Something in the spec that cannot be exported; the message says what."""


def _flat(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1)


def _as_tuple(value) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


class _Layout:
    """The state's blocks: flattening a tuple of (B, *shape) tensors into (B, D) and back."""

    def __init__(self, blocks) -> None:
        self.names, self.shapes = [], []
        for name, shape in blocks:
            shape = (int(shape),) if isinstance(shape, int) else tuple(int(s) for s in shape)
            self.names.append(str(name))
            self.shapes.append(shape)
        if not self.names:
            raise ExportProblem("blocks: the state needs at least one block")
        self.sizes = [math.prod(s) for s in self.shapes]
        self.dim = sum(self.sizes)

    def unflatten(self, z: torch.Tensor):
        parts = torch.split(z, self.sizes, dim=1)
        blocks = tuple(p.reshape(z.shape[0], *s) for p, s in zip(parts, self.shapes))
        return blocks if len(blocks) > 1 else blocks[0]

    def flatten(self, state) -> torch.Tensor:
        parts = _as_tuple(state)
        if len(parts) != len(self.sizes):
            raise ExportProblem(f"the state has {len(self.sizes)} blocks, a callable returned {len(parts)}")
        return torch.cat([_flat(p) for p in parts], dim=1)

    def contract(self) -> list[dict]:
        return [{"name": n, "size": s, **({"shape": list(sh)} if len(sh) > 1 else {})}
                for n, s, sh in zip(self.names, self.sizes, self.shapes)]


def _modules_of(callables) -> list:
    """The modules the callables are, are bound to, or close over: their parameters become the weights."""
    found, seen = [], set()

    def visit(obj, depth=0):
        if isinstance(obj, torch.nn.Module):
            if id(obj) not in seen:
                seen.add(id(obj))
                found.append(obj)
            return
        if depth > 3 or obj is None:
            return
        visit(getattr(obj, "__self__", None), depth + 1)
        for cell in getattr(obj, "__closure__", None) or ():
            with contextlib.suppress(ValueError):  # an empty cell
                visit(cell.cell_contents, depth + 1)

    for fn in callables:
        visit(fn)
    return found


class _Program(torch.nn.Module):
    """One program as a module of flat (B, size) tensors, around the user's callable; the modules it uses are
    held as submodules, so that their parameters are exported as weights."""

    def __init__(self, fn, modules=()) -> None:
        super().__init__()
        self.fn = fn
        self.held = torch.nn.ModuleList(modules)

    def forward(self, *flat):
        out = self.fn(*flat)
        return tuple(out) if isinstance(out, (tuple, list)) else out


def _modality_entry(name: str, example: torch.Tensor, given: dict | None) -> dict:
    entry = {"name": name, "size": int(_flat(example).shape[1]), "kind": "vector"}
    trailing = tuple(example.shape[1:])
    if given:
        entry.update({k: (list(v) if isinstance(v, tuple) else v) for k, v in given.items()})
    elif len(trailing) == 2 or (len(trailing) == 3 and trailing[0] == 1):
        entry.update(kind="image", image_shape=list(trailing[-2:]))
    return entry


def _eval(modules) -> None:
    for module in modules:
        module.eval()


def export_package(out, *, f, head, example: dict, blocks, class_names, fused_block=None, task="multiclass",
                   encode=None, features=None, gates=None, unimodal=None, noise=None, jvp=None, modalities=None,
                   solver=None, name="DEQ model", description="", dependency=None, metrics=None, dataset=None,
                   modules=(), opset=17, check=True, quiet=False) -> dict:
    """Write the package to ``out`` (a folder, or a ``.zip`` file); returns {program: largest difference}."""
    out = Path(out)
    users = [f, head, encode, gates, unimodal, noise, jvp, *modules]
    held = _modules_of(users)
    _eval(held)
    names = [str(n) for n in example]
    raw_examples = [torch.as_tensor(example[n]).float() for n in names]
    raw_shapes = [tuple(t.shape[1:]) for t in raw_examples]
    layout = _Layout(blocks)
    if fused_block is not None and fused_block not in layout.names:
        raise ExportProblem(f"fused_block {fused_block!r} is not one of the blocks {layout.names}")
    modality_entries = [_modality_entry(n, t, (modalities or {}).get(n)) for n, t in zip(names, raw_examples)]

    def raw_view(flat):
        return [x.reshape(x.shape[0], *s) for x, s in zip(flat, raw_shapes)]

    with torch.no_grad():
        if encode is not None:
            x_examples = [t.float() for t in _as_tuple(encode(*raw_examples))]
            feature_names = list(features or [f"x{i}" for i in range(len(x_examples))])
            if len(feature_names) != len(x_examples):
                raise ExportProblem(f"features names {len(feature_names)} outputs, encode returns {len(x_examples)}")
        else:
            x_examples, feature_names = raw_examples, names
        x_shapes = [tuple(t.shape[1:]) for t in x_examples]
    taken = {STATE, TANGENT}
    clash = taken & (set(names) | set(feature_names))
    if clash or (encode is not None and set(names) & set(feature_names)):
        raise ExportProblem(f"rename: {sorted(clash or set(names) & set(feature_names))} names both an input and "
                            "another part of the package")

    def x_view(flat):
        return [x.reshape(x.shape[0], *s) for x, s in zip(flat, x_shapes)]

    programs = {
        "f": ([STATE, *feature_names], ["z_next"],
              lambda z, *x: layout.flatten(f(layout.unflatten(z), *x_view(x)))),
        "head": ([STATE], ["logits"], lambda z: head(layout.unflatten(z))),
    }
    if encode is not None:
        programs["encode"] = (names, feature_names, lambda *raw: tuple(_flat(t) for t in _as_tuple(encode(*raw_view(raw)))))
    if gates is not None:
        with torch.no_grad():
            two = len(_as_tuple(gates(layout.unflatten(torch.zeros(1, layout.dim)), *[t[:1] for t in x_examples]))) == 2
        programs["gates"] = ([STATE, *feature_names], ["gates", "gate_share"] if two else ["gates"],
                             lambda z, *x: gates(layout.unflatten(z), *x_view(x)))
    if unimodal is not None:
        programs["unimodal"] = (feature_names, [f"logits_{n}" for n in names], lambda *x: tuple(unimodal(*x_view(x))))
    if noise is not None:
        with torch.no_grad():
            count = len(_as_tuple(noise(*[t[:1] for t in x_examples])))
        programs["noise"] = (feature_names, ["sigma_hat", "weights", "pe"][:count], lambda *x: tuple(noise(*x_view(x))))
    if jvp is not None:
        programs["jvp"] = ([STATE, *feature_names, TANGENT], ["jv"], lambda z, *rest: layout.flatten(
            jvp(layout.unflatten(z), *x_view(rest[:-1]), layout.unflatten(rest[-1]))))

    flat_x = [_flat(t) for t in x_examples]
    flat_raw = [_flat(t) for t in raw_examples]
    with torch.no_grad():
        z0 = torch.zeros(len(flat_raw[0]), layout.dim)
        z1 = programs["f"][2](z0, *flat_x)
    tangent = torch.randn(z0.shape, generator=torch.Generator().manual_seed(0))

    def args_for(program, z):
        inputs = {STATE: z, TANGENT: tangent, **dict(zip(feature_names, flat_x)), **dict(zip(names, flat_raw))}
        return tuple(inputs[n] for n in programs[program][0])

    folder = Path(tempfile.mkdtemp(prefix="deqpkg-")) if out.suffix == ".zip" else out
    folder.mkdir(parents=True, exist_ok=True)
    contract_programs = {}
    for pname, (inputs, outputs, fn) in programs.items():
        module = _Program(fn, held).eval()  # exporting restores the mode it finds: eval, for every module held
        file = f"{pname}.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            kwargs = dict(input_names=inputs, output_names=outputs, opset_version=opset,
                          dynamic_axes={n: {0: "batch"} for n in [*inputs, *outputs]})
            try:
                torch.onnx.export(module, args_for(pname, z1), str(folder / file), dynamo=False, **kwargs)
            except TypeError:  # a torch without the dynamo switch exports this way already
                torch.onnx.export(module, args_for(pname, z1), str(folder / file), **kwargs)
        contract_programs[pname] = {"file": file, "inputs": inputs, "outputs": outputs}
    contract = {
        "format": FORMAT, "version": VERSION, "name": name, "description": description, "task": task,
        "class_names": [str(c) for c in class_names], "modalities": modality_entries, "blocks": layout.contract(),
        "fused_block": fused_block, "programs": contract_programs,
    }
    if encode is not None:
        contract["features"] = [{"name": n, "size": int(t.shape[1])} for n, t in zip(feature_names, flat_x)]
    if solver:
        contract["solver"] = solver
    for key, value in (("dependency", dependency), ("metrics", metrics), ("dataset", dataset)):
        if value:
            contract[key] = value
    (folder / "contract.json").write_text(json.dumps(contract, indent=2))
    differences = _check(folder, programs, args_for, (z0, z1), quiet) if check else {}
    if out.suffix == ".zip":
        out.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
            for p in sorted(folder.iterdir()):
                z.write(p, p.name)
        shutil.rmtree(folder)
    if not quiet:
        print(f"wrote {out} ({', '.join(programs)})")
    return differences


def _check(folder: Path, programs: dict, args_for, states, quiet: bool) -> dict:
    """Each exported program beside its eager callable, on the example batch and on its first row."""
    try:
        import numpy as np
        import onnxruntime as ort
    except ImportError:
        if not quiet:
            print("onnxruntime is not installed: the exported programs were not checked")
        return {}
    differences = {}
    for pname, (inputs, outputs, fn) in programs.items():
        session = ort.InferenceSession(str(folder / f"{pname}.onnx"), providers=["CPUExecutionProvider"])
        wanted = {i.name for i in session.get_inputs()}
        worst = 0.0
        for z in states:
            for rows in (slice(None), slice(0, 1)):
                args = [a[rows] for a in args_for(pname, z)]
                with torch.no_grad():
                    eager = [_flat(t).numpy() for t in _as_tuple(fn(*args))]
                got = session.run(outputs, {n: a.numpy() for n, a in zip(inputs, args) if n in wanted})
                for e, g in zip(eager, got):
                    if e.shape != g.shape:
                        raise ExportProblem(f"{pname}: the exported program returns shape {g.shape}, eager {e.shape}")
                    both = np.isfinite(e) & np.isfinite(g)
                    if not (np.isfinite(e) == np.isfinite(g)).all():
                        raise ExportProblem(f"{pname}: the exported program and the eager one differ in where they "
                                            "are finite")
                    if both.any():
                        worst = max(worst, float(np.abs(e[both] - g[both]).max()))
        differences[pname] = worst
        if not quiet:
            print(f"  {pname:<9} largest difference from eager: {worst:.3g}")
    if not quiet and differences:
        print(f"largest difference over every program: {max(differences.values()):.3g}")
    return differences


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("spec", help="a Python file defining package() -> export_package's keyword arguments")
    parser.add_argument("--out", required=True, help="the package to write: a folder, or a .zip file")
    parser.add_argument("--no-check", action="store_true", help="do not compare the programs with onnxruntime")
    args = parser.parse_args(argv)
    spec_path = Path(args.spec)
    loader = importlib.util.spec_from_file_location(spec_path.stem, spec_path)
    if loader is None:
        print(f"error: {spec_path} is not a Python file", file=sys.stderr)
        return 2
    module = importlib.util.module_from_spec(loader)
    folder = str(spec_path.resolve().parent)
    sys.path.insert(0, folder)  # the spec may import its neighbours
    try:
        loader.loader.exec_module(module)  # the user's own code, run by the user, at home
        export_package(args.out, check=not args.no_check, **module.package())
    except ExportProblem as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        sys.path.remove(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
