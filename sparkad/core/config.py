"""Configuration is data: YAML files in conf/, validated on load with one-line errors."""
from __future__ import annotations

import copy
import math
import os
import re
from pathlib import Path
from typing import Any

import yaml

from sparkad.core.errors import ConfigError


#: the default configuration, shipped inside the package (package data of the wheel)
PACKAGED_CONF = Path(__file__).resolve().parents[1] / "conf"


def conf_dirs() -> list[Path]:
    """Where configuration files are looked up, first match wins: $SPARKAD_CONF (a folder laid out
    like sparkad/conf/, holding only the files it overrides), then the packaged defaults. A file given
    by path on the command line (--config, --selection, --preset FILE) is read as it is, before both."""
    env = os.environ.get("SPARKAD_CONF")
    if env:
        path = Path(env)
        if not path.is_dir():
            raise ConfigError(f"{path}: SPARKAD_CONF is not a folder")
        return [path, PACKAGED_CONF]
    return [PACKAGED_CONF]


def conf_file(relative: str) -> Path:
    """The configuration file ``relative`` (e.g. ``train.yaml``, ``generate/demo.yaml``) by the order of
    ``conf_dirs``; the packaged path when none has it (reading it then names what is missing)."""
    for d in conf_dirs():
        if (d / relative).is_file():
            return d / relative
    return PACKAGED_CONF / relative


def conf_files(folder: str, pattern: str = "*.yaml") -> dict[str, Path]:
    """{file stem: path} of the files in ``folder`` of every configuration folder (SPARKAD_CONF first)."""
    out: dict[str, Path] = {}
    for d in conf_dirs():
        for p in sorted((d / folder).glob(pattern)) if (d / folder).is_dir() else []:
            out.setdefault(p.stem, p)
    return dict(sorted(out.items()))


def load_yaml(path: str | Path) -> Any:
    """Read a YAML file; a missing or malformed file is a ConfigError naming it."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read configuration ({e.strerror or e})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: invalid YAML{where}: {getattr(e, 'problem', e)}") from None


def load_conf(name: str) -> Any:
    """Load <name>.yaml from the configuration folders (``conf_file``)."""
    return load_yaml(conf_file(f"{name}.yaml"))


def merge_config(base: dict, *overrides: dict | None, whole: tuple[str, ...] = ()) -> dict:
    """The one merge rule of configuration layers (packaged defaults ← user file ← flags): mappings
    merge key by key, recursively; any other value (lists included) replaces the one below. A mapping
    whose dotted path is in ``whole`` (``*`` matches one key, e.g. ``histograms.*``: a binning given
    as ``{edges}`` must not inherit ``bins/lo/hi``) replaces as one value too. Inputs are not modified."""
    return _merge_into(copy.deepcopy(base), overrides, whole, "")


def _merge_into(out: dict, overrides, whole, prefix: str) -> dict:
    for over in overrides:
        for k, v in (over or {}).items():
            path = f"{prefix}{k}"
            is_whole = any(_path_matches(path, w) for w in whole)
            if isinstance(v, dict) and isinstance(out.get(k), dict) and not is_whole:
                out[k] = _merge_into(out[k], (v,), whole, path + ".")
            else:
                out[k] = copy.deepcopy(v)
    return out


def _path_matches(path: str, pattern: str) -> bool:
    p, q = path.split("."), pattern.split(".")
    return len(p) == len(q) and all(b in ("*", a) for a, b in zip(p, q))


def given(flags: dict) -> dict:
    """The command-line flags the user gave: a flag left out arrives as None and overrides nothing."""
    return {k: v for k, v in flags.items() if v is not None}


def require_mapping(value, where: str) -> dict:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
    return value


def check_keys(mapping: dict, allowed, where: str) -> None:
    unknown = sorted(set(mapping) - set(allowed))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(map(str, unknown))} (allowed: {', '.join(sorted(allowed))})")


def as_number(value, where: str, *, positive: bool = False, allow_none: bool = False):
    if value is None and allow_none:
        return None
    if isinstance(value, str):  # PyYAML reads 1.0e6 (no sign in the exponent) as a string
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if not math.isfinite(value):  # .inf / .nan would make every weight inf, 0 or NaN downstream
        raise ConfigError(f"{where}: must be a finite number, got {value!r}")
    if positive and not value > 0:
        raise ConfigError(f"{where}: must be > 0, got {value!r}")
    return float(value)


_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


def name_problem(name) -> str | None:
    """Why `name` cannot name a dataset or sample (it becomes a folder or file name under the output
    folder: `..`, `a/b` or `_staging` would write outside it or over sparkad's own entries), or None."""
    if not isinstance(name, str):
        return f"must be a string, got {name!r}"
    if not _PLAIN_NAME.fullmatch(name):
        return (f"{name!r} is not a plain name (letters, digits and _ . + -, starting with a letter or "
                f"digit)")
    return None
