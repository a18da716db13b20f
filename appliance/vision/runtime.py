"""The TFLite runtime adapter: the only module that imports a TFLite interpreter.

`ai_edge_litert` is the maintained runtime and has wheels for Python 3.11-3.13 on aarch64;
`tflite_runtime` is a fallback for images that already carry it (it has no 3.12/3.13 wheels,
does not run with numpy 2, and its XNNPACK does not take int8 graphs).

Outputs are looked up by tensor name and checked against the shape the caller expects,
never by position: converters reorder outputs freely.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


def _interpreter_class() -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # pragma: no cover - exercised only where litert is absent
        from tflite_runtime.interpreter import Interpreter  # type: ignore[no-redef]
    return Interpreter


def runtime_version() -> str:
    """Name and version of the runtime in use, for manifests and benchmarks."""
    from importlib import metadata

    for dist in ("ai-edge-litert", "tflite-runtime"):
        try:
            return f"{dist} {metadata.version(dist)}"
        except metadata.PackageNotFoundError:
            continue
    return "unknown"


@dataclass(frozen=True)
class Quant:
    """Affine int8 quantisation of one tensor; scale 0 means the tensor is float."""

    scale: float
    zero_point: int

    @property
    def is_int8(self) -> bool:
        return self.scale != 0.0


class ModelError(RuntimeError):
    """A model file is missing, unreadable or not the model the caller expects."""


class TfliteModel:
    """One interpreter with a single image input and named outputs.

    `run` takes a batch already in the input's dtype (see `input_quant`) and returns
    float32 outputs keyed by name, dequantised when the model emits int8.
    """

    def __init__(self, path: str | Path, num_threads: int = 1) -> None:
        path = Path(path)
        if not path.is_file():
            raise ModelError(f"model file not found: {path}")
        try:
            self._it = _interpreter_class()(model_path=str(path), num_threads=num_threads)
        except ValueError as exc:
            raise ModelError(f"cannot load model {path}: {exc}") from exc
        self.path = path
        inputs = self._it.get_input_details()
        if len(inputs) != 1:
            raise ModelError(f"{path.name}: expected one input, found {len(inputs)}")
        self._input = inputs[0]
        self.input_shape = tuple(int(d) for d in self._input["shape"])
        self.input_dtype = np.dtype(self._input["dtype"])
        scale, zp = self._input["quantization"]
        self.input_quant = Quant(float(scale), int(zp))
        self._outputs = {d["name"]: d for d in self._it.get_output_details()}
        self._batch = self.input_shape[0]
        self._it.allocate_tensors()

    @property
    def output_names(self) -> list[str]:
        return list(self._outputs)

    def output_shape(self, name: str) -> tuple[int, ...]:
        return tuple(int(d) for d in self._outputs[name]["shape"])

    def require_output(self, name: str, trailing_shape: tuple[int, ...]) -> None:
        """Fail at load time if the named output is missing or has the wrong shape."""
        if name not in self._outputs:
            raise ModelError(f"{self.path.name}: no output named {name!r} ({self.output_names})")
        shape = self.output_shape(name)
        if shape[1:] != trailing_shape:
            raise ModelError(
                f"{self.path.name}: output {name!r} has shape {shape}, expected (N, "
                f"{', '.join(map(str, trailing_shape))})"
            )

    def delegate_partitions(self) -> tuple[int, bool]:
        """(number of delegate partitions, whether one partition spans input to outputs).

        A graph XNNPACK cannot take whole is cut into partitions with ops between them
        running on the slow reference kernels; one partition from input to outputs means
        the whole graph runs in XNNPACK.
        """
        ops = self._it._get_ops_details()
        delegates = [o for o in ops if o["op_name"] == "DELEGATE"]
        outputs = {int(d["index"]) for d in self._outputs.values()}
        whole = len(delegates) == 1 and set(map(int, delegates[0]["outputs"])) == outputs
        return len(delegates), whole

    def _set_batch(self, n: int) -> None:
        if n != self._batch:
            self._it.resize_tensor_input(self._input["index"], [n, *self.input_shape[1:]])
            self._it.allocate_tensors()
            self._batch = n
            # Quantisation params survive a resize, but output details may change shape.
            self._outputs = {d["name"]: d for d in self._it.get_output_details()}

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        if batch.dtype != self.input_dtype:
            raise TypeError(f"input must be {self.input_dtype}, got {batch.dtype}")
        self._set_batch(batch.shape[0])
        self._it.set_tensor(self._input["index"], np.ascontiguousarray(batch))
        self._it.invoke()
        out: dict[str, np.ndarray] = {}
        for name, d in self._outputs.items():
            v = self._it.get_tensor(d["index"])
            scale, zp = d["quantization"]
            if v.dtype != np.float32:
                v = (v.astype(np.float32) - zp) * np.float32(scale)
            out[name] = v
        return out


def pixel_lut(quant: Quant, dtype: np.dtype, mean: float, std: float) -> np.ndarray | None:
    """A 256-entry table from uint8 pixel to the model's input value.

    The normalisation (p - mean) / std and the int8 quantisation are both affine, so a
    table lookup does them in one pass over the image (`cv2.LUT`), with no float copy.
    Returns None for float models, which take the normalised float directly.
    """
    if not quant.is_int8:
        return None
    p = np.arange(256, dtype=np.float64)
    q = np.round((p - mean) / std / quant.scale + quant.zero_point)
    info = np.iinfo(dtype)
    return np.clip(q, info.min, info.max).astype(dtype)
