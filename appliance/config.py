"""config.yaml -> typed, validated settings; every error names the key and its line.

Parsing is strict: an unknown key is an error (a typo must not silently fall back to a
default on a door lock). YAML nodes keep their line numbers, which the errors quote.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class CameraConfig:
    source: str = "auto"  # auto | demo | <V4L2 index or /dev/videoN> | <URL> | <file>


@dataclass(frozen=True)
class ModelsConfig:
    embedder: str = "facenet"
    threads: int = 2
    flip: bool = False


@dataclass(frozen=True)
class DetectorConfig:
    score_threshold: float = 0.5


@dataclass(frozen=True)
class RecognitionConfig:
    threshold: float = 0.6


@dataclass(frozen=True)
class Config:
    camera: CameraConfig = field(default_factory=CameraConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    recognition: RecognitionConfig = field(default_factory=RecognitionConfig)


_RANGES = {
    ("models", "threads"): (1, 64),
    ("detector", "score_threshold"): (0.05, 0.99),
    ("recognition", "threshold"): (-1.0, 1.0),
}
_CHOICES = {("models", "embedder"): ("facenet", "mobilefacenet")}


def _scalar(node: yaml.Node, typ: type, where: str) -> tuple[Any, str | None]:
    if not isinstance(node, yaml.ScalarNode):
        return None, f"{where}: expected a {typ.__name__}, got a {node.id}"
    value = yaml.safe_load(yaml.serialize(node))
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if typ is str and value is not None and not isinstance(value, str):
        value = str(value)
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        return None, f"{where}: expected a {typ.__name__}, got {value!r}"
    return value, None


def parse(text: str, name: str = "config.yaml") -> Config:
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        raise ConfigError([f"{name}:{line}: invalid YAML: {getattr(exc, 'problem', exc)}"]) \
            from exc
    if root is None:
        return Config()
    problems: list[str] = []
    if not isinstance(root, yaml.MappingNode):
        raise ConfigError([f"{name}: line {root.start_mark.line + 1}: top level must be a mapping"])
    sections = {f.name: f.type for f in fields(Config)}
    built: dict[str, Any] = {}
    for knode, vnode in root.value:
        key = knode.value
        line = knode.start_mark.line + 1
        if key not in sections:
            problems.append(f"{name}: line {line}: unknown key '{key}' "
                            f"(known: {', '.join(sections)})")
            continue
        cls = {"camera": CameraConfig, "models": ModelsConfig, "detector": DetectorConfig,
               "recognition": RecognitionConfig}[key]
        if not isinstance(vnode, yaml.MappingNode):
            problems.append(f"{name}: line {line}: '{key}' must be a mapping")
            continue
        types = {f.name: type(f.default) for f in fields(cls)}
        values: dict[str, Any] = {}
        for k2, v2 in vnode.value:
            sub = k2.value
            l2 = k2.start_mark.line + 1
            where = f"{name}: line {l2}: '{key}.{sub}'"
            if sub not in types:
                problems.append(f"{where}: unknown key (known: {', '.join(types)})")
                continue
            value, err = _scalar(v2, types[sub], where)
            if err:
                problems.append(err)
                continue
            rng = _RANGES.get((key, sub))
            if rng and not rng[0] <= value <= rng[1]:
                problems.append(f"{where}: {value} is outside {rng[0]}..{rng[1]}")
                continue
            choices = _CHOICES.get((key, sub))
            if choices and value not in choices:
                problems.append(f"{where}: {value!r} is not one of {', '.join(choices)}")
                continue
            values[sub] = value
        built[key] = cls(**values)
    if problems:
        raise ConfigError(problems)
    return Config(**built)


def load(path: str | Path) -> Config:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from exc
    return parse(text, str(path))
