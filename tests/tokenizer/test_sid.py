import numpy as np
import pytest

from data.errors import DataError
from tokenizer import SemanticIDs, SIDParseError, code_token, find_sids, format_sid, parse_sid


def test_format_and_parse_round_trip():
    s = format_sid((12, 3, 200))
    assert s == "<|sid_begin|><s_a_12><s_b_3><s_c_200><|sid_end|>"
    assert parse_sid(s) == (12, 3, 200)
    assert parse_sid(f"  {s}\n") == (12, 3, 200)
    assert code_token(3, 0) == "<s_d_0>"


@pytest.mark.parametrize("bad", [
    "", "<s_a_1>", "<|sid_begin|><|sid_end|>", "<|sid_begin|><s_a_1>", "<|sid_begin|><s_b_1><|sid_end|>",
    "<|sid_begin|><s_a_1><s_c_2><|sid_end|>", "<|sid_begin|><s_a_-1><|sid_end|>", "x<|sid_begin|><s_a_1><|sid_end|>",
])
def test_parse_rejects_malformed(bad):
    with pytest.raises(SIDParseError):
        parse_sid(bad)


def test_find_sids_in_model_output():
    text = ('<think>...</think>{"recommendations": ["<|sid_begin|><s_a_1><s_b_2><|sid_end|>", '
            '"<|sid_begin|><s_a_7><s_b_0><|sid_end|>", "<s_a_9>"]}')
    assert find_sids(text) == [(1, 2), (7, 0)]


def test_semantic_ids_mapping_and_files(tmp_path):
    codes = np.array([[0, 1, 0], [0, 1, 1], [2, 0, 0]])
    sem = SemanticIDs(codes, (3, 2, 2), ["x", "y", "z"])
    assert sem.sid(1) == "<|sid_begin|><s_a_0><s_b_1><s_c_1><|sid_end|>"
    assert [sem.item_index(s) for s in sem.sids()] == [0, 1, 2]
    assert sem.item_index((2, 0, 0)) == 2
    assert "".join(sem.tokens_of(1)) == sem.sid(1) and len(sem.tokens_of(1)) == 5
    with pytest.raises(SIDParseError, match="no item"):
        sem.item_index((1, 1, 1))
    toks = sem.tokens()
    assert toks[:2] == ["<|sid_begin|>", "<|sid_end|>"] and len(toks) == 2 + 3 + 2 + 2
    sem.save(tmp_path)
    back = SemanticIDs.load(tmp_path)
    assert np.array_equal(back.codes, codes) and back.level_sizes == (3, 2, 2) and back.item_ids == ["x", "y", "z"]
    assert (tmp_path / "sids.tsv").read_text().splitlines()[2] == f"1\ty\t{sem.sid(1)}"


def test_semantic_ids_reject_bad_codes(tmp_path):
    with pytest.raises(DataError, match="not unique"):
        SemanticIDs(np.array([[0, 1], [0, 1]]), (2, 2))
    with pytest.raises(DataError, match="outside"):
        SemanticIDs(np.array([[0, 2]]), (2, 2))
    with pytest.raises(DataError, match="do not match"):
        SemanticIDs(np.array([[0, 1]]), (2, 2, 2))
    with pytest.raises(DataError, match="missing file"):
        SemanticIDs.load(tmp_path)
    SemanticIDs(np.array([[0, 1]]), (2, 2)).save(tmp_path)
    (tmp_path / "codes.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(DataError, match="corrupt codes"):
        SemanticIDs.load(tmp_path)
