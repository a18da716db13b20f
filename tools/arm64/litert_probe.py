"""Load each committed .tflite with whatever LiteRT is installed, allocate, invoke, report.

Needs only numpy and ai-edge-litert (or tflite-runtime), not the appliance package, so it
runs in a venv of any LiteRT version. Prints one JSON line: runtime version, machine and,
per model, the output tensors' shapes and a few summary numbers, so two runs (x86_64 and
aarch64 under qemu) can be compared. A crash (segfault in allocate_tensors, say) shows as
the process's exit status; the last stage reached goes to stderr first, unbuffered.

    python tools/arm64/litert_probe.py models/*.tflite
"""

from __future__ import annotations

import json
import platform
import sys
from importlib import metadata

import numpy as np


def stage(msg: str) -> None:
    print(f"stage: {msg}", file=sys.stderr, flush=True)


def main(paths: list[str]) -> int:
    try:
        from ai_edge_litert.interpreter import Interpreter

        dist = "ai-edge-litert"
    except ImportError:
        from tflite_runtime.interpreter import Interpreter

        dist = "tflite-runtime"
    out = {
        "runtime": f"{dist} {metadata.version(dist)}",
        "numpy": np.__version__,
        "machine": platform.machine(),
        "python": platform.python_version(),
        "models": {},
    }
    rng = np.random.default_rng(0)
    for path in paths:
        name = path.rsplit("/", 1)[-1]
        stage(f"{name}: load")
        it = Interpreter(model_path=path, num_threads=1)
        stage(f"{name}: allocate_tensors")
        it.allocate_tensors()
        (inp,) = it.get_input_details()
        dtype = np.dtype(inp["dtype"])
        shape = tuple(int(d) for d in inp["shape"])
        if dtype == np.int8:
            x = rng.integers(-128, 128, size=shape, dtype=np.int8)
        elif dtype == np.uint8:
            x = rng.integers(0, 256, size=shape, dtype=np.uint8)
        else:
            x = rng.uniform(-1, 1, size=shape).astype(dtype)
        it.set_tensor(inp["index"], x)
        stage(f"{name}: invoke")
        it.invoke()
        res = {}
        for o in it.get_output_details():
            y = it.get_tensor(o["index"]).astype(np.float64)
            res[o["name"]] = {
                "shape": list(y.shape),
                "sum": float(y.sum()),
                "abs_sum": float(np.abs(y).sum()),
                "head": [float(v) for v in y.ravel()[:8]],
            }
        out["models"][name] = res
    stage("done")
    print(json.dumps(out, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
