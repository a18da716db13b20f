"""summary: what is derived from a pipeline run rather than timed (accuracy beside the
ratios, the Pi projection), and the table printed for it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tools.benchmarks.accuracy import lfw_accuracy
from tools.benchmarks.common import STAGES
from tools.benchmarks.projection import PI_PEAKS, projection

PAIRS = (
    ("face_recognition", "vs_face_recognition"),
    ("classic", "vs_classic"),
    ("appliance_float", "vs_float"),
)


def ratios_by(
    systems: dict[str, Any], speed: Callable[[dict[str, Any]], float | None]
) -> dict[str, float | None]:
    """How many times faster than each peer we are at 1 thread with one face, by `speed`
    of a system's 1-face figure (higher is faster): FaceNet alone, and with `fused_` the
    device default (against the peers only)."""

    def of(system: str) -> float | None:
        r = systems.get(system, {}).get("threads_1", {})
        one = r.get("end_to_end", {}).get("1")
        return speed(one) if one else None

    out: dict[str, float | None] = {}
    for ours, prefix in (("appliance_int8", ""), ("appliance_fused", "fused_")):
        mine = of(ours)
        for name, key in PAIRS:
            if prefix and name == "appliance_float":
                continue
            other = of(name)
            out[prefix + key] = round(mine / other, 2) if mine and other else None
    return out


def cpu_ratios(systems: dict[str, Any]) -> dict[str, float | None]:
    """By CPU time per frame. Wall-clock ratios swing with the other jobs on a shared
    machine; at 1 thread the CPU time per frame is the work itself, so its ratio is the
    steadier comparison."""
    return ratios_by(systems, lambda e: 1.0 / e["cpu_ms"] if e.get("cpu_ms") else None)


def speed_ratios(systems: dict[str, Any]) -> dict[str, float | None]:
    """By frames/s, wall clock."""
    return ratios_by(systems, lambda e: e.get("fps"))


def annotate(result: dict[str, Any]) -> dict[str, Any]:
    """Add what is derived, not timed: each system's LFW accuracy from build/eval beside
    the speed ratios, and the Pi projection. `tools/bench.py summary` reruns only this on
    a written pipeline.json, for evaluations that finish after the benchmark."""
    embedder = result["embedder"]
    accuracy = {name: lfw_accuracy(name, embedder) for name in result["systems"]}

    def lfw(system: str) -> float | None:
        a = accuracy[system]["lfw"]
        return a["accuracy_mean"] if a else None

    result["cpu_ratios"] = cpu_ratios(result["systems"])
    result["accuracy"] = accuracy
    result["ratios_with_accuracy"] = {
        key: {
            "speed_ratio": result["ratios"][key],
            "cpu_ratio": result["cpu_ratios"][key],
            "lfw_accuracy_ours": lfw("appliance_int8"),
            "lfw_accuracy_other": lfw(name),
        }
        for name, key in PAIRS
    }
    fused = result["systems"].get("appliance_fused", {}).get("threads_1", {})
    prefix = "embed_invoke_"
    members = {
        k[len(prefix) :]: v["cpu_ms"]
        for k, v in fused.get("stages_ms", {}).items()
        if k.startswith(prefix)
    }
    result["projection"] = projection(
        result["macs"],
        result["systems"]["appliance_int8"]["threads_1"],
        embedder,
        result["machine"]["flags"],
        members,
        result.get("host_peak_measured"),
    )
    return result


def table(result: dict[str, Any]) -> str:
    """The human-readable table: per-stage medians and end-to-end frames/s per system."""
    lines = []
    m = result["machine"]
    lines.append(
        f"{m['cpu']} | {m['cores']} cores | flags {','.join(m['flags'])} | load {m['load_average']}"
    )
    head = (
        f"{'system':<17}{'thr':>3} "
        + "".join(f"{s:>8}" for s in STAGES)
        + f"{'fps0':>8}{'fps1':>8}{'fps3':>8}{'cpu1 ms':>9}  e2e1 min-max ms"
    )
    lines += [head, "-" * len(head)]
    for name, per in result["systems"].items():
        for key, r in per.items():
            t = key.split("_")[1]
            if "error" in r:
                lines.append(f"{name:<17}{t:>3}  not run: {r['error'][:90]}")
                continue
            st = "".join(f"{r['stages_ms'][s]['median_ms']:>8.2f}" for s in STAGES)
            e = r["end_to_end"]
            lines.append(
                f"{name:<17}{t:>3} {st}"
                + "".join(f"{e[k]['fps']:>8.1f}" for k in ("0", "1", "3"))
                + f"{e['1']['cpu_ms']:>9.1f}  "
                f"{e['1']['min_ms']:.1f}-{e['1']['max_ms']:.1f}"
            )
    lines.append(
        "stages: ms median, 1-face frame, match = 1,000 templates; fpsN: frames/s with N faces"
    )
    r = result["ratios"]
    lines.append(
        f"ratios at 1 thread, 1 face: vs face_recognition {r['vs_face_recognition']}x,"
        f" vs classic {r['vs_classic']}x, vs float {r['vs_float']}x | outside models "
        f"{result['outside_models_share']}% | RSS {result['rss_mb']} MB | "
        f"time-to-event p50/p95 ms {result['time_to_event_ms']['p50']}/"
        f"{result['time_to_event_ms']['p95']}"
    )
    if r.get("fused_vs_face_recognition") or r.get("fused_vs_classic"):
        lines.append(
            f"fused (the device default) at 1 thread, 1 face: vs face_recognition "
            f"{r.get('fused_vs_face_recognition')}x, vs classic "
            f"{r.get('fused_vs_classic')}x"
        )
    for key, s in result.get("ratio_spread", {}).items():
        if s["median"] is not None and len(s["runs"]) > 1:
            c = result["cpu_ratio_spread"][key]
            lines.append(
                f"  {key} over {len(s['runs'])} runs: {s['runs']} (min {s['min']}, max "
                f"{s['max']}); CPU-time ratio {c['runs']}"
            )
    for name, o in result.get("outside_models", {}).items():
        lines.append(
            f"outside the model invokes, {name}, 1 face, 1 thread: {o['wall']}% of the wall "
            f"time, {o['cpu']}% of the CPU time"
        )
    real = result["time_to_event_ms"].get("real_clip")
    if real:
        lines.append(
            f"time-to-event on {real['what']}: p50/p95 ms {real['p50']}/{real['p95']} "
            f"over {real['appearances']}"
        )
    idle = result.get("idle", {})
    if idle.get("idle_cpu_percent") is not None:
        lines.append(
            f"daemon on an empty scene: {idle['idle_cpu_percent']} % of one core ({idle['source']})"
        )
    lines += accuracy_lines(result)
    lines += projection_lines(result["projection"])
    return "\n".join(lines)


def accuracy_lines(result: dict[str, Any]) -> list[str]:
    """LFW accuracy of each system beside its speed ratio, with where each figure came from."""
    lines = ["LFW (6,000 pairs, 150x150 crops padded, 10-fold) beside the speed ratios:"]
    ratio_of = {
        "face_recognition": "vs_face_recognition",
        "classic": "vs_classic",
        "appliance_float": "vs_float",
    }
    for name, acc in result["accuracy"].items():
        r = result["ratios"].get(ratio_of.get(name, ""))
        c = result["cpu_ratios"].get(ratio_of.get(name, ""))
        speed = (
            "ours"
            if name == "appliance_int8"
            else f"{r}x the wall time of ours, {c}x its CPU time"
            if r
            else "-"
        )
        a = acc["lfw"]
        if a:
            lines.append(
                f"  {name:<17} {a['accuracy_mean']:.2f} ± {a['accuracy_std']:.2f} %  "
                f"TAR@FAR1e-3 {a['tar_at_far_1e-3']} %  EER {a['eer']} %  "
                f"no face {a['detection_failures']}  [{speed}]  ({acc['source']})"
            )
        else:
            lines.append(f"  {name:<17} n/a  [{speed}]  ({acc['reason']})")
    return lines


def projection_lines(proj: dict[str, Any]) -> list[str]:
    """The Pi projection as a small table, labelled as what it is."""
    lines = [f"{proj['label']}"]
    peak, eff = proj["host_peak"], proj["efficiency"]
    if peak:
        shares = ", ".join(
            f"{e['model']} {e['share_of_peak']} ({e['achieved_gmacs']} GMAC/s)"
            for e in eff.values()
        )
        nominal = nominal_beside(proj)
        lines.append(
            f"  host int8 peak {peak['gmacs_per_core']} GMAC/s/core, "
            f"{proj.get('host_peak_source', 'nominal')} ({peak['basis']}){nominal}; "
            f"share reached at 1 thread: {shares}"
        )
    cols = ("ideal 1c", "ideal 4c", "real 1c", "real 4c")
    keys = ("ideal_{}_1_core", "ideal_{}_4_cores", "realistic_{}_1_core", "realistic_{}_4_cores")

    def cells(get: Any, unit: str) -> str:
        return "".join(f"{_num(get(pi, k.format(unit))):>16}" for pi in PI_PEAKS for k in keys)

    header = "".join(f"{pi + ' ' + k:>16}" for pi in PI_PEAKS for k in cols)
    lines.append(f"  {'model':<14}{'GMAC':>7}{header}   (ms)")
    for name, m in proj["models"].items():
        row = cells(lambda pi, k, m=m: m[pi][k], "ms")
        lines.append(f"  {name:<14}{m['gmac']:>7.3f}{row}")
    lines.append(f"  {'frame':<21}{header}   (fps)")
    for name, f in proj["frames"].items():
        lines.append(f"  {name:<21}{cells(lambda pi, k, f=f: f[f'{pi}_{k}'], 'fps')}")
    return lines


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1f}"


def nominal_beside(proj: dict[str, Any]) -> str:
    """The nominal peak beside a measured one, so the gap between them stays visible."""
    n = proj.get("host_peak_nominal")
    if proj.get("host_peak_source") != "measured" or not n:
        return ""
    return f"; nominal {n['gmacs_per_core']} GMAC/s/core ({n['basis']}, {n['ghz']} GHz)"
