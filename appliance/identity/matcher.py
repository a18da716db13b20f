"""Open-set matching: one matrix product against every template, then a decision that
prefers `unknown` to a wrong name.

A face is accepted only when its best person scores at or above the accept threshold AND
beats the second-best person by the margin. Every result carries the raw cosine, the
threshold and the margin, so a person reading an event can see why it was decided.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from appliance.store.gallery import TemplateSet

COMBINE = ("best", "centroid")


@dataclass(frozen=True)
class Thresholds:
    accept: float
    margin: float
    why: str = ""  # how they were chosen, shown in status and results

    def as_dict(self) -> dict[str, Any]:
        return {"accept": round(self.accept, 4), "margin": round(self.margin, 4), "why": self.why}


@dataclass(frozen=True)
class Match:
    person_id: str | None  # None: unknown
    name: str | None
    score: float  # raw cosine of the best person
    candidate: str | None  # best person, even when not accepted
    second: float  # raw cosine of the second-best person (0 if there is none)
    thresholds: Thresholds

    @property
    def accepted(self) -> bool:
        return self.person_id is not None

    @property
    def margin(self) -> float:
        return self.score - self.second

    def as_dict(self) -> dict[str, Any]:
        return {
            "person": self.name if self.accepted else "unknown",
            "person_id": self.person_id,
            "candidate": self.candidate,
            "score": round(self.score, 4),
            "second": round(self.second, 4),
            "margin": round(self.margin, 4),
            "threshold": round(self.thresholds.accept, 4),
            "margin_required": round(self.thresholds.margin, 4),
        }


class Matcher:
    """All templates of one embedder version in one contiguous (T, dim) matrix.

    Templates are kept grouped by person (`starts` marks each group), so per-person
    scores are a `reduceat` over the columns of one matrix product: no Python loop
    over people. Enrol and delete update it in place; no restart needed.
    """

    def __init__(self, templates: TemplateSet, combine: str = "best") -> None:
        if combine not in COMBINE:
            raise ValueError(f"combine must be one of {COMBINE}")
        self.combine = combine
        self._load(templates.person_ids, templates.names, templates.owner, templates.matrix)

    def _load(
        self, ids: list[str], names: list[str], owner: np.ndarray, matrix: np.ndarray
    ) -> None:
        order = np.argsort(owner, kind="stable")
        self.person_ids = list(ids)
        self.names = list(names)
        self.owner = np.ascontiguousarray(owner[order], dtype=np.int32)
        self.matrix = np.ascontiguousarray(matrix[order], dtype=np.float32)
        counts = np.bincount(self.owner, minlength=len(ids)) if len(ids) else np.zeros(0, int)
        self.starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.intp)
        self.counts = counts
        if self.combine == "centroid" and len(ids):
            sums = np.add.reduceat(self.matrix, self.starts, axis=0)
            self.centroids = sums / np.linalg.norm(sums, axis=1, keepdims=True)

    @property
    def size(self) -> int:
        return len(self.person_ids)

    @property
    def template_count(self) -> int:
        return int(self.matrix.shape[0])

    def set_person(self, person_id: str, name: str, vectors: np.ndarray) -> None:
        """Replace (or add) one person's templates."""
        self.remove(person_id)
        vectors = np.atleast_2d(np.asarray(vectors, np.float32))
        if vectors.shape[0] == 0:
            return
        base = self.matrix if self.matrix.shape[0] else self.matrix.reshape(0, vectors.shape[1])
        owner = np.concatenate([self.owner, np.full(len(vectors), self.size, np.int32)])
        matrix = np.concatenate([base, vectors], axis=0)
        self._load([*self.person_ids, person_id], [*self.names, name], owner, matrix)

    def remove(self, person_id: str) -> None:
        if person_id not in self.person_ids:
            return
        j = self.person_ids.index(person_id)
        mask = self.owner != j
        owner = self.owner[mask]
        owner = owner - (owner > j).astype(np.int32)
        ids = self.person_ids[:j] + self.person_ids[j + 1 :]
        names = self.names[:j] + self.names[j + 1 :]
        self._load(ids, names, owner, self.matrix[mask])

    def rename(self, person_id: str, name: str) -> None:
        if person_id in self.person_ids:
            self.names[self.person_ids.index(person_id)] = name

    def person_scores(self, queries: np.ndarray) -> np.ndarray:
        """(N, dim) unit queries -> (N, P) per-person cosine."""
        q = np.atleast_2d(np.asarray(queries, np.float32))
        if self.size == 0:
            return np.zeros((q.shape[0], 0), np.float32)
        if self.combine == "centroid":
            return q @ self.centroids.T
        s = q @ self.matrix.T
        return np.maximum.reduceat(s, self.starts, axis=1)

    def match(self, queries: np.ndarray, thresholds: Thresholds) -> list[Match]:
        scores = self.person_scores(queries)
        return decide(scores, self.person_ids, self.names, thresholds)


def decide(
    scores: np.ndarray, ids: list[str], names: list[str], thresholds: Thresholds
) -> list[Match]:
    """Open-set rule over (N, P) per-person scores."""
    out = []
    for row in np.atleast_2d(scores):
        if row.size == 0:
            out.append(Match(None, None, -1.0, None, -1.0, thresholds))
            continue
        if row.size > 2:
            top = np.argpartition(row, -2)[-2:]
            top = top[np.argsort(row[top])[::-1]]
        else:
            top = np.argsort(row)[::-1]
        best = float(row[top[0]])
        # With nobody else enrolled, the margin is measured against 0 (unrelated faces).
        second = float(row[top[1]]) if row.size > 1 else 0.0
        j = int(top[0])
        ok = best >= thresholds.accept and best - second >= thresholds.margin
        out.append(
            Match(
                ids[j] if ok else None, names[j] if ok else None, best, names[j], second, thresholds
            )
        )
    return out
