"""Cosine similarity, written once.

Embeddings are L2-normalised where they are made (`embed.py`), so cosine is a dot
product; these helpers normalise anyway when asked, for vectors from elsewhere.
"""

from __future__ import annotations

import numpy as np


def l2_normalize(x: np.ndarray, axis: int = -1) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=axis, keepdims=True)
    return x / np.maximum(n, 1e-12)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of two vectors."""
    return float(l2_normalize(a) @ l2_normalize(b))


def cosine_matrix(queries: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """All cosines between normalised queries (Q, D) and gallery (G, D): one matrix product."""
    return np.asarray(queries, np.float32) @ np.asarray(gallery, np.float32).T
