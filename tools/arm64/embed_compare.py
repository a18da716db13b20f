"""Compare two embed_dump.py results: same faces found, same boxes, same embeddings.

Faces are paired by best IoU within each photo. Every stage is also compared bit for bit
(decoded photo, detector input, detector output, aligned crop, embedding), which tells
where a difference starts: OpenCV before the model, or the TFLite runtime itself.

Exits 1 unless:
- every photo has the same number of faces on both machines and every face pairs up;
- the runtime is exact: wherever the detector's input, or an embedder's crop, is
  bit-equal, its output is bit-equal too;
- every face agrees at cosine >= --min-cosine (0.999), end to end.

Until 2026-11-22 only faces whose detector input was bit-equal were held to 0.999: the
letterbox used cv2.resize with INTER_AREA, which rounds some pixels differently on
aarch64, and the int8 detector turned that into keypoints a fraction of a pixel away
(FaceNet min 0.878). The letterbox now uses pyrDown and bilinear, integer kernels that
agree bit for bit (tools/arm64/resize_probe.py), and every stage is equal.

    python tools/arm64/embed_compare.py build/arm64/x86_64.json build/arm64/aarch64-bookworm.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def compare(a: dict, b: dict, name: str, same_input=None) -> dict:
    cos, cos_same, box_diff, problems = [], [], [], []
    photos = sorted(set(a) | set(b))
    for key in photos:
        fa, fb = a.get(key), b.get(key)
        if fa is None or fb is None:
            problems.append(f"{key}: only in one run")
            continue
        if len(fa) != len(fb):
            problems.append(f"{key}: {len(fa)} faces vs {len(fb)}")
        used: set[int] = set()
        for f in fa:
            ba = np.array(f["box"])
            cands = [(iou(ba, np.array(g["box"])), j) for j, g in enumerate(fb) if j not in used]
            if not cands:
                continue
            best, j = max(cands)
            if best < 0.5:
                problems.append(f"{key}: a face has no partner (best IoU {best:.2f})")
                continue
            used.add(j)
            ea, eb = np.array(f["embedding"]), np.array(fb[j]["embedding"])
            cos.append(float(ea @ eb / (np.linalg.norm(ea) * np.linalg.norm(eb))))
            if same_input is not None and same_input(key):
                cos_same.append(cos[-1])
            box_diff.append(float(np.abs(ba - np.array(fb[j]["box"])).max()))
    return {
        "embedder": name,
        "photos": len(photos),
        "faces_paired": len(cos),
        "cosine_min": min(cos) if cos else None,
        "cosine_mean": float(np.mean(cos)) if cos else None,
        "identical_embeddings": sum(c >= 1 - 1e-7 for c in cos),
        "faces_same_detector_input": len(cos_same),
        "cosine_min_same_detector_input": min(cos_same) if cos_same else None,
        "box_max_abs_px": max(box_diff) if box_diff else None,
        "problems": problems,
    }


def stages(ra: dict, rb: dict, name: str) -> dict:
    """Where differences start: counts of photos/faces whose stage outputs are bit-equal.

    `*_given_same_input` separates the TFLite runtime from what feeds it (OpenCV's decode,
    resize and warpAffine): equal inputs with unequal outputs point at the runtime.
    """
    sa, sb = ra.get("stages", {}), rb.get("stages", {})
    keys = sorted(set(sa) & set(sb))
    same = {
        k: [sa[p][k] == sb[p][k] for p in keys]
        for k in ("decoded", "detector_input", "detector_output")
    }
    det_given = [
        o for i, o in zip(same["detector_input"], same["detector_output"], strict=True) if i
    ]
    crops = emb_given = 0
    n_faces = 0
    for p in keys:
        fa, fb = ra["embedders"][name][p], rb["embedders"][name][p]
        if not same["detector_output"][keys.index(p)] or len(fa) != len(fb):
            continue
        for f, g in zip(fa, fb, strict=True):  # same detector output: same faces, same order
            n_faces += 1
            if f.get("aligned") == g.get("aligned"):
                crops += 1
                emb_given += f["embedding"] == g["embedding"]
    return {
        "photos": len(keys),
        "decoded_equal": sum(same["decoded"]),
        "detector_input_equal": sum(same["detector_input"]),
        "detector_output_equal": sum(same["detector_output"]),
        "detector_output_equal_given_same_input": f"{sum(det_given)}/{len(det_given)}",
        "faces_after_equal_detection": n_faces,
        "aligned_crop_equal": crops,
        "embedding_equal_given_same_crop": f"{emb_given}/{crops}",
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("reference", type=Path)
    ap.add_argument("other", type=Path)
    ap.add_argument("--min-cosine", type=float, default=0.999)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    ra, rb = json.loads(args.reference.read_text()), json.loads(args.other.read_text())
    head = [f"{r['machine']} py{r['python']} {r['runtime']}" for r in (ra, rb)]
    print(f"{head[0]}  vs  {head[1]}")
    ok, out = True, []
    sa, sb = ra.get("stages", {}), rb.get("stages", {})

    def same_input(key: str) -> bool:
        return key in sa and key in sb and sa[key]["detector_input"] == sb[key]["detector_input"]

    for name in sorted(set(ra["embedders"]) & set(rb["embedders"])):
        s = compare(ra["embedders"][name], rb["embedders"][name], name, same_input)
        out.append(s)
        print(
            f"  {name}: {s['photos']} photos, {s['faces_paired']} faces paired, "
            f"cosine min {s['cosine_min']:.6f} mean {s['cosine_mean']:.6f}, "
            f"{s['identical_embeddings']} bit-identical, "
            f"max box difference {s['box_max_abs_px']:.3f} px"
        )
        good = not s["problems"] and s["faces_paired"] > 0
        if s["faces_paired"] and s["cosine_min"] < args.min_cosine:
            s["problems"].append(f"cosine min {s['cosine_min']:.6f} < {args.min_cosine}")
        if sa and sb:
            st = s["stages"] = stages(ra, rb, name)
            print("    bit-equal stages: " + ", ".join(f"{k} {v}" for k, v in st.items()))
            print(
                f"    faces whose detector input was bit-equal: {s['faces_same_detector_input']},"
                f" cosine min {s['cosine_min_same_detector_input']}"
            )
            exact = all(
                int(a) == int(b)
                for a, b in (
                    st["detector_output_equal_given_same_input"].split("/"),
                    st["embedding_equal_given_same_crop"].split("/"),
                )
            )
            if not exact:
                s["problems"].append("the runtime is not exact: equal inputs, unequal outputs")
            good &= exact and (
                s["cosine_min_same_detector_input"] is None
                or s["cosine_min_same_detector_input"] >= args.min_cosine
            )
        for p in s["problems"]:
            print(f"    {p}")
        ok &= good
    if args.json:
        args.json.write_text(
            json.dumps({"reference": head[0], "other": head[1], "embedders": out}, indent=1)
        )
    print("agreement: " + ("ok" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
