"""Filesets (dataset → files, cross section, normalisation, is_data, label) and the pre-flight
inspection of every input file, which turns bad input into one clear reason per file."""
from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from pathlib import Path

from sparkad.core.config import as_number, check_keys, load_yaml, name_problem, require_mapping
from sparkad.core.errors import ConfigError, InputFileError
from sparkad.extract.formats import FORMATS, FormatInfo, branch_type_problem, default_treename, describe, detect_format
from sparkad.extract.remote import expand_url, is_url, remote_size

_DATASET_KEYS = {"files", "xsec", "n_gen", "sum_w", "is_data", "label", "golden_json", "treename", "format"}


@dataclass
class DatasetSpec:
    name: str
    files: list[str]
    is_data: bool = False
    label: str = ""
    xsec: float | None = None  # pb
    n_gen: float | None = None
    sum_w: float | None = None
    golden_json: str | None = None
    treename: str | None = None
    format: str | None = None


@dataclass
class Fileset:
    datasets: dict[str, DatasetSpec]
    luminosity: float | None = None  # pb^-1
    source: str = "command line"
    generator: dict | None = None  # provenance of generated samples (sparkad generate)


def _resolve_files(entries, base: Path, where: str) -> list[str]:
    if isinstance(entries, str):
        entries = [entries]
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{where}.files: expected a non-empty list of paths")
    out = []
    for e in entries:
        if not isinstance(e, str):
            raise ConfigError(f"{where}.files: expected paths, got {e!r}")
        if is_url(e):  # remote: root:// wildcards listed on the server, other URLs passed to uproot unchanged
            out.extend(expand_url(e, f"{where}.files"))
            continue
        p = Path(os.path.expanduser(e))
        p = p if p.is_absolute() else base / p
        if any(ch in e for ch in "*?["):
            matches = sorted(glob.glob(str(p)))
            if not matches:
                raise ConfigError(f"{where}.files: pattern {e!r} matches no file")
            out.extend(matches)
        else:
            out.append(str(p))
    return out


def load_fileset(path: str | Path) -> Fileset:
    """Read a fileset YAML (format in examples/filesets/README.md); paths are relative to the YAML file."""
    path = Path(path)
    doc = require_mapping(load_yaml(path), str(path))
    check_keys(doc, {"luminosity", "datasets", "golden_json", "description", "generator"}, str(path))  # generator: provenance of generated samples
    lumi = as_number(doc.get("luminosity"), f"{path}: luminosity", positive=True, allow_none=True)
    datasets = require_mapping(doc.get("datasets"), f"{path}: datasets")
    if not datasets:
        raise ConfigError(f"{path}: datasets is empty")
    out = {}
    golden_top = doc.get("golden_json")
    if golden_top is not None and not isinstance(golden_top, str):
        raise ConfigError(f"{path}: golden_json: expected a path, got {golden_top!r}")
    for name, d in datasets.items():
        where = f"{path}: datasets.{name}"
        problem = name_problem(str(name))
        if problem:
            raise ConfigError(f"{where}: dataset name {problem}")
        if str(name) in out:
            raise ConfigError(f"{where}: dataset {str(name)!r} is given twice (as {name!r} and as a string)")
        d = require_mapping(d, where)
        check_keys(d, _DATASET_KEYS, where)
        is_data = d.get("is_data", False)
        if not isinstance(is_data, bool):
            raise ConfigError(f"{where}.is_data: expected true or false, got {is_data!r}")
        fmt = d.get("format")
        if fmt is not None and fmt not in FORMATS:
            raise ConfigError(f"{where}.format: {fmt!r} is not one of {', '.join(FORMATS)}")
        golden = d.get("golden_json", golden_top)
        if golden is not None and not isinstance(golden, str):
            raise ConfigError(f"{where}.golden_json: expected a path, got {golden!r}")
        if golden is not None and is_data:
            golden = str(Path(golden) if Path(golden).is_absolute() else path.parent / golden)
        spec = DatasetSpec(
            name=str(name),
            files=_resolve_files(d.get("files"), path.parent, where),
            is_data=is_data,
            label=str(d.get("label") if d.get("label") is not None else ("data" if is_data else name)),
            xsec=as_number(d.get("xsec"), f"{where}.xsec", positive=True, allow_none=True),
            n_gen=as_number(d.get("n_gen"), f"{where}.n_gen", positive=True, allow_none=True),
            sum_w=as_number(d.get("sum_w"), f"{where}.sum_w", positive=True, allow_none=True),
            golden_json=golden if is_data else None,
            treename=d.get("treename"),
            format=fmt,
        )
        if not is_data and spec.xsec is not None and lumi is None:
            raise ConfigError(f"{where}: MC with xsec needs a top-level luminosity (pb^-1) for its weights")
        out[spec.name] = spec
    gen = doc.get("generator")
    return Fileset(out, lumi, str(path), gen if isinstance(gen, dict) else None)


def check_unique_files(datasets: dict, where: str) -> None:
    """A file listed twice in one dataset (also through overlapping globs) would be read once by coffea
    but counted twice by the pre-flight: refuse it before any work. The same file in two datasets is
    allowed (e.g. two normalisations of one sample)."""
    for ds in datasets.values():
        seen: set[str] = set()
        for f in ds.files:
            key = f if "://" in f else os.path.realpath(f)
            if key in seen:
                raise ConfigError(f"{where}: {f} is listed twice in dataset {ds.name}")
            seen.add(key)


@dataclass
class FileCheck:
    """Result of inspecting one input file before processing."""

    dataset: str
    path: str
    treename: str | None = None
    entries: int | None = None
    info: FormatInfo | None = None
    genweight: bool = False
    runs_sumw: float | None = None
    runs_count: float | None = None
    error: str | None = None
    notes: list = field(default_factory=list)


def inspect_file(dataset: DatasetSpec, path: str, btag_conf: dict, analysis: str = "single_lepton") -> FileCheck:
    """Open a file and check tree, entries and branches (those of the analysis: the single-lepton objects,
    or the large-R jets of the dijet one); raise InputFileError with the reason."""
    import uproot

    from sparkad.core.root_zlib import use_isal

    use_isal()

    if is_url(path):
        size = remote_size(path)  # None where the server does not say (https://)
    else:
        p = Path(path)
        if not p.exists():
            raise InputFileError(path, "file not found")
        if not os.access(p, os.R_OK) or p.is_dir():
            raise InputFileError(path, "cannot be read (permission denied or not a file)")
        size = p.stat().st_size
    try:
        f = uproot.open(path)
    except Exception as e:  # uproot raises many types for corrupt files
        raise InputFileError(path, f"not a readable ROOT file ({type(e).__name__}: {str(e).splitlines()[0][:160]})") from None
    with f:
        end = int(getattr(f.file, "fEND", 0) or 0)
        if size is not None and size < end:  # the header says where the file ends: an interrupted copy or write
            raise InputFileError(path, f"truncated ROOT file ({size} of {end} bytes: incomplete copy or write)")
        try:
            keys = f.keys(cycle=False)
        except Exception as e:
            raise InputFileError(path, f"cannot list the file's keys ({type(e).__name__}: {e})") from None
        if not keys:
            raise InputFileError(path, "file has no keys (empty or incompletely written ROOT file)")
        treename = dataset.treename or default_treename(keys)
        if treename is None or treename not in keys:
            want = treename or "Events"
            raise InputFileError(path, f"no tree '{want}' in file (keys: {', '.join(sorted(set(keys)))})")
        try:
            tree = f[treename]
            if not hasattr(tree, "num_entries"):
                cls = getattr(tree, "classname", type(tree).__name__)
                raise InputFileError(path, f"'{treename}' is a {cls}, not a TTree")
            entries = int(tree.num_entries)
            branches = tree.keys(recursive=True)
        except InputFileError:
            raise
        except Exception as e:
            raise InputFileError(path, f"tree '{treename}' cannot be read ({type(e).__name__}: {str(e)[:160]})") from None
        if entries == 0:
            raise InputFileError(path, f"tree '{treename}' is empty (0 entries)", entries=0)
        if analysis == "dijet":
            info = _dijet_info(dataset, path, treename, branches, entries)
        else:
            try:
                fmt = dataset.format or detect_format(treename, branches)
            except ValueError as e:
                raise InputFileError(path, str(e), entries=entries) from None
            info = describe(fmt, branches, btag_conf)
        if info.missing_branches:
            raise InputFileError(
                path, f"missing branch{'es' if len(info.missing_branches) > 1 else ''} "
                      f"{', '.join(info.missing_branches)} (needed for "
                      f"{'the dijet analysis' if analysis == 'dijet' else 'format ' + info.name})", entries=entries)
        problem = None if analysis == "dijet" else branch_type_problem(tree, info)
        if problem:
            raise InputFileError(path, f"{problem} (format {info.name})", entries=entries)
        check = FileCheck(dataset.name, path, treename, entries, info, genweight="genWeight" in branches)
        if not dataset.is_data and "Runs" in keys:
            try:
                runs = f["Runs"]
                for sumw_name, count_name in (("genEventSumw", "genEventCount"), ("genEventSumw_", "genEventCount_")):
                    if sumw_name in runs.keys():
                        check.runs_sumw = float(runs[sumw_name].array(library="np").sum())
                        if count_name in runs.keys():
                            check.runs_count = float(runs[count_name].array(library="np").sum())
                        break
            except Exception as e:  # corrupt baskets raise many types
                raise InputFileError(path, f"tree 'Runs' cannot be read ({type(e).__name__}: "
                                           f"{str(e).splitlines()[0][:160]})", entries=entries) from None
        return check


def _dijet_info(dataset: DatasetSpec, path: str, treename: str, branches, entries: int) -> FormatInfo:
    """The dijet analysis reads NanoAOD-style large-R jets (FatJet, + PFNano constituents)."""
    from sparkad.extract.dijet import capabilities

    if treename == "Delphes" or dataset.format == "delphes":
        raise InputFileError(path, "the dijet analysis reads NanoAOD FatJet collections; Delphes FatJet input is "
                                   "not supported yet", entries=entries)
    caps, missing = capabilities(branches)
    return FormatInfo("pfnano" if "constituents" in caps else "nanoaod", None, "", caps, missing, "none", "none")


def dataset_weighting(ds: DatasetSpec, checks: list[FileCheck], luminosity: float | None) -> dict:
    """Per-event weight recipe of a dataset: weight = scale (× genWeight when use_genweight).

    MC: xsec × luminosity / N, with N the fileset's sum_w, else its n_gen, else the sum of the
    Runs trees' genEventSumw over the files that are processed. Data: 1.
    """
    if ds.is_data:
        return {"scale": 1.0, "use_genweight": False, "normalisation": "data"}
    if ds.xsec is None:
        return {"scale": 1.0, "use_genweight": False,
                "normalisation": "none: no cross section in the fileset (weights are 1)"}
    all_genw = bool(checks) and all(c.genweight for c in checks)
    if ds.sum_w is not None:
        n, how, genw = ds.sum_w, "sum_w from fileset", all_genw
    elif ds.n_gen is not None:
        n, how, genw = ds.n_gen, "n_gen from fileset", False
    elif checks and all(c.runs_sumw is not None for c in checks):
        n, how, genw = sum(c.runs_sumw for c in checks), "sum of Runs.genEventSumw", all_genw
    else:
        raise ConfigError(f"dataset {ds.name}: MC needs n_gen or sum_w in the fileset, or files with a Runs tree holding genEventSumw")
    if not n > 0:
        raise ConfigError(f"dataset {ds.name}: normalisation {how} is {n}, must be > 0")
    return {"scale": ds.xsec * luminosity / n, "use_genweight": genw, "normalisation": how, "n": n,
            "xsec_pb": ds.xsec, "luminosity_pb": luminosity}
