"""The Raspberry Pi 4 / 5 PROJECTION: frame rates from model MAC counts, published int8
peaks and the share of this host's peak each model reaches. Arithmetic, never measured."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np


def model_macs(path: Path) -> int:
    """Multiply-accumulates of one inference, from the graph's conv/FC shapes.

    Read with the reference op resolver (no XNNPACK), so the ops are not hidden inside a
    delegate node; used for the Pi projection and the share of the int8 peak.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(model_path=str(path), experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    it.allocate_tensors()
    shapes = {int(t["index"]): tuple(int(d) for d in t["shape"]) for t in it.get_tensor_details()}
    macs = 0
    for op in it._get_ops_details():
        name, ins, outs = op["op_name"], list(op["inputs"]), list(op["outputs"])
        if not outs or len(ins) < 2:
            continue
        out, w = shapes.get(int(outs[0]), ()), shapes.get(int(ins[1]), ())
        if name == "CONV_2D" and len(w) == 4:
            macs += int(np.prod(out)) * w[1] * w[2] * w[3]
        elif name == "DEPTHWISE_CONV_2D" and len(w) == 4:
            macs += int(np.prod(out)) * w[1] * w[2]
        elif name == "FULLY_CONNECTED" and len(w) == 2:
            macs += int(np.prod(out)) * w[1]
    return macs


# Published int8 peaks (4 cores): the Pi 5's Cortex-A76 at 2.4 GHz has the SDOT int8 dot
# product (16 MACs per 128-bit instruction, 2 pipes); the Pi 4's Cortex-A72 at 1.5 GHz has
# none, so int8 goes through widening multiply-accumulates at about a quarter of that.
PI_PEAKS = {
    "pi4": {
        "gmacs_4_cores": 48.0,
        "cores": 4,
        "basis": "Cortex-A72 1.5 GHz, no int8 dot product: ~12 GMAC/s per core",
    },
    "pi5": {
        "gmacs_4_cores": 307.0,
        "cores": 4,
        "basis": "Cortex-A76 2.4 GHz, SDOT: 32 int8 MAC/cycle/core, 76.8 GMAC/s per core",
    },
}


# int8 MACs per cycle per core at peak on this host, by the widest int8 instruction.
HOST_INT8_MACS_PER_CYCLE = (
    ("avx512_vnni", 128, "2 x 512-bit VPDPBUSD (64 MACs each) per cycle"),
    ("avx_vnni", 64, "2 x 256-bit VPDPBUSD (32 MACs each) per cycle"),
    ("avx2", 32, "VPMADDUBSW + VPMADDWD pairs, ~32 MACs per cycle"),
    ("asimddp", 32, "2 x 128-bit SDOT (16 MACs each) per cycle"),
)


def host_int8_peak(flags: list[str]) -> dict[str, Any] | None:
    """Nominal int8 peak of one core here: MACs per cycle from the CPU flags times the
    clock /proc/cpuinfo (or cpufreq) reports. Nominal, not turbo: a VM reports its base."""
    ghz = None
    with contextlib.suppress(OSError, ValueError):
        khz = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").read_text()
        ghz = int(khz) / 1e6
    if ghz is None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("cpu MHz"):
                    ghz = float(line.split(":", 1)[1]) / 1e3
                    break
    for flag, per_cycle, basis in HOST_INT8_MACS_PER_CYCLE:
        if flag in flags and ghz:
            return {
                "ghz": round(ghz, 3),
                "int8_macs_per_cycle": per_cycle,
                "gmacs_per_core": round(per_cycle * ghz, 1),
                "basis": f"{flag}: {basis}",
            }
    return None


def projection(
    macs: dict[str, int],
    int8_1t: dict[str, Any],
    embedder: str,
    flags: list[str],
    members: dict[str, float] | None = None,
    measured_peak: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Pi 4 / Pi 5 frame rates projected from MAC counts (never measured here).

    ideal ms = MACs / peak; realistic ms = ideal / share of peak, the share being what
    each of our int8 models reaches on this host at 1 thread (MACs over its median invoke
    CPU time, against the host's nominal int8 peak). `members` maps each member of the
    fused embedder to its own invoke CPU ms; a model timed nowhere takes the embedder's
    share. 4 cores assume perfect scaling. A frame is the detector plus one embedding per
    face (fused: one per member); "with outside" adds the non-model work (convert,
    decode, align, match) at the share of the frame it takes here.
    """
    nominal = host_int8_peak(flags)
    # The measured peak (peak.measure_peak) when the run has one: the nominal one rests on
    # a flags table and a reported clock, and a model once reached "more than 100 %" of it.
    peak = measured_peak or nominal
    # CPU time, not wall: at 1 thread the invoke runs on the calling thread, and on a
    # shared machine the wall clock also counts the time other jobs held the core.
    invoke = {
        "detector": int8_1t["stages_ms"]["detect_invoke"]["cpu_ms"],
        "embedder": int8_1t["stages_ms"]["embed_invoke"]["cpu_ms"],
    }
    role_macs = {"detector": macs["detector"], "embedder": macs[embedder]}
    eff: dict[str, Any] = {}
    for role, ms in invoke.items():
        achieved = role_macs[role] / (ms * 1e6)
        eff[role] = {
            "model": "detector" if role == "detector" else embedder,
            "macs": role_macs[role],
            "invoke_cpu_ms": ms,
            "achieved_gmacs": round(achieved, 1),
            "share_of_peak": round(achieved / peak["gmacs_per_core"], 3) if peak else None,
        }
    members = {m: ms for m, ms in (members or {}).items() if m in macs}
    for name, ms in members.items():
        if name == embedder:
            continue  # measured above, in the system that runs it alone
        achieved = macs[name] / (ms * 1e6)
        eff[name] = {
            "model": name,
            "macs": macs[name],
            "invoke_cpu_ms": ms,
            "achieved_gmacs": round(achieved, 1),
            "share_of_peak": round(achieved / peak["gmacs_per_core"], 3) if peak else None,
        }
    outside = int8_1t["outside_models_share"] / 100
    models: dict[str, Any] = {}
    for name, n in macs.items():
        role = name if name in eff else "detector" if name == "detector" else "embedder"
        share = eff[role]["share_of_peak"]
        per = {"macs": n, "gmac": round(n / 1e9, 3), "efficiency_from": eff[role]["model"]}
        for pi, spec in PI_PEAKS.items():
            core = spec["gmacs_4_cores"] / spec["cores"]
            ideal1 = n / (core * 1e6)
            per[pi] = {
                "ideal_ms_1_core": round(ideal1, 2),
                "ideal_ms_4_cores": round(ideal1 / spec["cores"], 2),
                "realistic_ms_1_core": round(ideal1 / share, 1) if share else None,
                "realistic_ms_4_cores": round(ideal1 / share / spec["cores"], 1) if share else None,
            }
        models[name] = per

    def frame(pi: str, faces: int, key: str, embs: list[str]) -> float | None:
        parts = [models["detector"][pi][key]] + [faces * models[e][pi][key] for e in embs]
        return None if any(p is None for p in parts) else sum(parts)

    frames: dict[str, Any] = {}
    embedders = [[n] for n in sorted(macs, key=lambda n: n != embedder) if n != "detector"]
    if len(members) > 1:
        embedders.append(sorted(members))  # the fused embedder: every member per face
    for embs in embedders:
        label = embs[0] if len(embs) == 1 else "fused"
        for faces in (1, 3):
            row: dict[str, Any] = {"macs": macs["detector"] + faces * sum(macs[e] for e in embs)}
            for pi in PI_PEAKS:
                for key in (
                    "ideal_ms_1_core",
                    "ideal_ms_4_cores",
                    "realistic_ms_1_core",
                    "realistic_ms_4_cores",
                ):
                    ms = frame(pi, faces, key, embs)
                    row[f"{pi}_{key.replace('_ms_', '_fps_')}"] = round(1e3 / ms, 1) if ms else None
                ms = frame(pi, faces, "realistic_ms_1_core", embs)
                row[f"{pi}_realistic_fps_1_core_with_outside"] = (
                    round(1e3 * (1 - outside) / ms, 1) if ms else None
                )
            frames[f"{label}_{faces}_face{'s' if faces > 1 else ''}"] = row
    return {
        "label": "PROJECTION, not measured: arithmetic from MAC counts and published peaks",
        "formula": "ms = MACs / (peak GMAC/s per core x cores x share of peak) / 1e6; "
        "fps = 1000 / (detector ms + faces x embedder ms)",
        "pi_peaks": PI_PEAKS,
        "host_peak": peak,
        "host_peak_source": "measured" if measured_peak else "nominal" if nominal else None,
        "host_peak_nominal": nominal,
        "efficiency": eff,
        "outside_models_share_here": round(100 * outside, 1),
        "assumptions": [
            "each model reaches on the Pi the share of int8 peak it reaches on this host "
            "at 1 thread (median invoke CPU time; the machine is shared)",
            "the host peak is measured (the best one-op int8 convolution through the same "
            "runtime at 1 thread): a lower bound, so a share may be slightly optimistic"
            if measured_peak
            else "the host peak is nominal (reported clock x MACs/cycle from its flags); a "
            "turbo clock would lower the share and the realistic Pi figures",
            "4 cores scale perfectly (optimistic: memory bandwidth and the Pi's thermal "
            "throttling are not modelled)",
            "an embedder not timed alone takes the measured embedder's share"
            + ("" if members else " (no fused system in this run: mobilefacenet does)"),
        ],
        "models": models,
        "frames": frames,
        "host_efficiency_note": None
        if peak
        else "no int8 peak known for this CPU: realistic figures are null",
    }
