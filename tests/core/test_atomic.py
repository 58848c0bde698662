"""The one atomic writer: the old file or the whole new one, and no temporary file left behind."""
import pytest

from sparkad.core.atomic import atomic_path, write_json_atomic, write_text_atomic


def test_a_complete_write_replaces_the_file(tmp_path):
    p = tmp_path / "a.json"
    write_text_atomic("old", p)
    write_json_atomic({"x": 1}, p)
    assert p.read_text() == '{\n  "x": 1\n}\n'
    assert [q.name for q in tmp_path.iterdir()] == ["a.json"]


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing(tmp_path):
    p = tmp_path / "plot.png"
    p.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(p) as tmp:
            assert tmp.parent == tmp_path and tmp.suffix == ".png" and tmp.name.startswith(".")
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert p.read_text() == "old"
    assert [q.name for q in tmp_path.iterdir()] == ["plot.png"]


def test_keep_only_removes_attempt_leftovers_and_names_a_missing_file(tmp_path):
    from sparkad.core.atomic import keep_only
    from sparkad.core.errors import SparkadError
    (tmp_path / "dataset=w").mkdir()
    final = tmp_path / "dataset=w" / "part-00000.parquet"
    final.write_bytes(b"done")
    (tmp_path / "dataset=w" / ".part-00000.parquet.1a2b.tmp").write_bytes(b"half")  # a killed attempt's
    assert keep_only(tmp_path, [final]) == 1
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == ["part-00000.parquet"]
    with pytest.raises(SparkadError, match=r"1 chunk file\(s\) missing after the pass, e.g. .*part-00001"):
        keep_only(tmp_path, [final, tmp_path / "dataset=w" / "part-00001.parquet"], "chunk file")
    assert final.read_bytes() == b"done"  # nothing removed when the check fails
