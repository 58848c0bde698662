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
