"""zlib baskets through ISA-L: on by default for reading and writing, standard zlib both ways (a file
written by one library reads identically with the other), and SPARKAD_ZLIB=zlib keeps Python's zlib."""
import os
import subprocess
import sys

import awkward as ak
import uproot
import uproot.compression

from sparkad.generate.api import generate
from sparkad.core.root_zlib import ENV


def _write(tmp_path, name, library, monkeypatch):
    monkeypatch.setattr(uproot.ZLIB, "library", library)
    cfg = {"name": name, "sqrt_s": 8000, "seed": 7, "compression": "zlib:4",
           "samples": {"wjets": {"process": "wjets", "events": 3000}}}
    generate(cfg, out_dir=tmp_path / name, progress=False)
    (path,) = (tmp_path / name).glob("wjets_*.root")
    return path


def _read(path, library, monkeypatch):
    monkeypatch.setattr(uproot.compression._decompress_ZLIB, "library", library)
    with uproot.open(path, array_cache=None, object_cache=None) as f:
        assert f.file.compression.name == "ZLIB"
        return f["Events"].arrays()


def test_isal_is_the_default():
    assert uproot.ZLIB.library == "isal"
    assert uproot.compression._decompress_ZLIB.library == "isal"


def test_files_are_standard_zlib_both_ways(tmp_path, monkeypatch):
    by_isal = _write(tmp_path, "isal", "isal", monkeypatch)
    by_zlib = _write(tmp_path, "zlib", "zlib", monkeypatch)
    # the switch really changes the writer (ISA-L level 1 vs zlib level 4: other bytes, same arrays)
    assert by_isal.read_bytes() != by_zlib.read_bytes()
    reference = _read(by_zlib, "zlib", monkeypatch)
    for path in (by_isal, by_zlib):
        for library in ("zlib", "isal"):
            arrays = _read(path, library, monkeypatch)
            assert arrays.fields == reference.fields
            for field in reference.fields:
                assert ak.array_equal(arrays[field], reference[field]), (path.name, library, field)


def test_env_keeps_pythons_zlib():
    code = ("import uproot, uproot.compression, sparkad.generate.layout\n"
            "print(uproot.ZLIB.library, uproot.compression._decompress_ZLIB.library)\n")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, ENV: "zlib"},
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == ["zlib", "zlib"]
