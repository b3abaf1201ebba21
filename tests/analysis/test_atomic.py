"""`write_atomic`: whole content or the old file, never a part, and no temporary file left behind."""

from __future__ import annotations

import os

import pytest

from vla_core.atomic import write_atomic


def _leftovers(folder):
    return [p.name for p in folder.iterdir() if ".tmp" in p.name]


def test_writes_text_and_bytes_and_makes_the_folder(tmp_path):
    target = tmp_path / "new" / "dir" / "out.json"
    assert write_atomic(target, '{"a": 1}\n') == target
    assert target.read_text() == '{"a": 1}\n'
    write_atomic(str(target), b"\x00\x01binary")  # str paths work too; overwrite
    assert target.read_bytes() == b"\x00\x01binary"
    assert _leftovers(target.parent) == []


def test_text_is_written_verbatim_as_utf8(tmp_path):
    target = tmp_path / "t.csv"
    write_atomic(target, "a,b\r\n1,2\r\nmu: \u03bc\n")
    assert target.read_bytes() == "a,b\r\n1,2\r\nmu: \u03bc\n".encode("utf-8")


def test_wrong_type_leaves_the_old_file(tmp_path):
    target = tmp_path / "keep.txt"
    target.write_text("old")
    with pytest.raises(TypeError):
        write_atomic(target, {"not": "text"})
    assert target.read_text() == "old"
    assert _leftovers(tmp_path) == []


def test_failed_rename_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "keep.txt"
    target.write_text("old")

    def broken_replace(src, dst):
        assert os.path.basename(src) == f".keep.txt.tmp-{os.getpid()}"  # hidden, beside the target
        assert open(src).read() == "new"  # the whole content was written before the rename
        raise OSError("disk went away")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk went away"):
        write_atomic(target, "new")
    assert target.read_text() == "old"
    assert _leftovers(tmp_path) == []
