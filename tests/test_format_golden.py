"""The format module writes what the writers before it wrote, byte for byte (issue 13's hard rule).

tests/format_golden.py builds an artifact, its packed form and a TP=2 cut from CPU-independent tensors;
the golden table was produced by the code before runtime/format existed."""
import json

import pytest

from format_golden import GOLDEN, VARIES, build, cut_json_core, table


@pytest.fixture(scope="module")
def built(tmp_path_factory, data_dir):
    root = tmp_path_factory.mktemp("golden")
    build(root, data_dir)
    return root


def test_writers_are_byte_identical_to_the_previous_code(built):
    tmp_path = built
    golden = json.loads(GOLDEN.read_text())
    got = {k: v for k, v in table(tmp_path).items() if k not in VARIES}
    assert sorted(got) == sorted(golden["files"])  # same files, none missing or extra
    differ = [k for k in got if got[k] != golden["files"][k]]
    assert not differ, f"files that changed: {differ}"
    assert cut_json_core(tmp_path) == golden["cut_json"]


def test_every_golden_directory_verifies(built):
    from runtime.format.verify import verify_dir

    tmp_path = built
    kinds = {}
    for d in ("art", "packed", "cut"):
        kind, _m, problems = verify_dir(tmp_path / d)
        assert problems == [], (d, problems)
        kinds[d] = kind
    assert kinds == {"art": "artifact", "packed": "packed artifact", "cut": "cut"}
