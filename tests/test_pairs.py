"""PreferencePairs: validation (every message names the pair), views, splits by prompt, npz I/O."""

from __future__ import annotations

import os
import re
import zipfile

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fairl_opt.exceptions import DataError
from fairl_opt.pairs import KINDS, PreferencePairs, load_npz


def random_arrays(n=30, d=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)), rng.normal(size=(n, d))


def grouped_pairs(n=40, d=3, n_prompts=10, seed=0):
    chosen, rejected = random_arrays(n, d, seed)
    prompt_ids = np.random.default_rng(seed + 100).integers(0, n_prompts, size=n)
    prompt_ids[:n_prompts] = np.arange(n_prompts)  # every prompt has at least one pair
    return PreferencePairs(chosen, rejected, prompt_ids=prompt_ids)


# -- construction and views ----------------------------------------------------------------------
def test_construction_delta_and_shape():
    chosen, rejected = random_arrays(12, 5)
    pairs = PreferencePairs(chosen, rejected)
    assert pairs.n_pairs == len(pairs) == 12
    assert pairs.dim == 5
    np.testing.assert_array_equal(pairs.delta, chosen - rejected)
    np.testing.assert_array_equal(pairs.chosen, chosen)
    np.testing.assert_array_equal(pairs.rejected, rejected)
    assert pairs.delta.dtype == np.float64
    assert "n=12" in repr(pairs) and "d=5" in repr(pairs)


def test_float32_storage():
    chosen, rejected = random_arrays(6, 3)
    pairs = PreferencePairs(chosen, rejected, dtype=np.float32)
    assert pairs.chosen.dtype == pairs.delta.dtype == np.float32


@pytest.mark.parametrize("name", ["chosen", "rejected", "delta"])
def test_arrays_are_read_only(name):
    pairs = PreferencePairs(*random_arrays(5, 3))
    arr = getattr(pairs, name)
    assert not arr.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        arr[0, 0] = 123.0


def test_callers_arrays_are_not_frozen_or_shared():
    chosen, rejected = random_arrays(5, 3)
    pairs = PreferencePairs(chosen, rejected)
    assert chosen.flags.writeable and rejected.flags.writeable
    # A later write by the caller must not reach the validated pairs (that would bypass checks such
    # as "chosen equals rejected" and leave delta stale).
    chosen[0] = rejected[0]
    assert not np.array_equal(pairs.chosen[0], rejected[0])
    np.testing.assert_array_equal(pairs.delta[0], pairs.chosen[0] - pairs.rejected[0])


def test_kinds_accept_ascii_and_arrow_forms():
    chosen, rejected = random_arrays(8, 3)
    kinds = ["T->NT", "T→NT", "NT->NT", "NT→NT", "T->T", "T→T", "NT->T", "NT→T"]
    pairs = PreferencePairs(chosen, rejected, kinds=kinds)
    assert pairs.kinds.tolist() == ["T->NT", "T->NT", "NT->NT", "NT->NT", "T->T", "T->T", "NT->T", "NT->T"]
    assert set(pairs.kinds.tolist()) <= set(KINDS)


def test_prompt_ids_become_int64():
    chosen, rejected = random_arrays(4, 3)
    pairs = PreferencePairs(chosen, rejected, prompt_ids=[3.0, 3.0, 1.0, 7.0])
    assert pairs.prompt_ids.dtype == np.int64
    assert pairs.prompt_ids.tolist() == [3, 3, 1, 7]
    pairs = PreferencePairs(chosen, rejected, prompt_ids=np.array([0, 1, 2, 3], dtype=np.int32))
    assert pairs.prompt_ids.dtype == np.int64


# -- validation: each error names the pair -------------------------------------------------------
def test_nan_in_chosen_names_pair_17():
    chosen, rejected = random_arrays(30, 4)
    chosen[17, 2] = np.nan
    with pytest.raises(DataError, match=r"pair 17\b"):
        PreferencePairs(chosen, rejected)


def test_inf_in_rejected_names_pair():
    chosen, rejected = random_arrays(30, 4)
    rejected[5, 0] = -np.inf
    with pytest.raises(DataError, match=r"pair 5\b.*rejected\[5, 0\]"):
        PreferencePairs(chosen, rejected)


def test_difference_overflow_names_pair():
    chosen, rejected = random_arrays(6, 2)
    chosen[4, 1], rejected[4, 1] = 1e308, -1e308
    with pytest.raises(DataError, match=r"pair 4\b.*overflow"):
        PreferencePairs(chosen, rejected)


def test_pair_count_mismatch():
    chosen, rejected = random_arrays(10, 4)
    with pytest.raises(DataError, match=r"chosen has 10 pairs but rejected has 9"):
        PreferencePairs(chosen, rejected[:9])


def test_dimension_mismatch():
    chosen, rejected = random_arrays(10, 4)
    with pytest.raises(DataError, match=r"dimension mismatch.*d=4.*d=3"):
        PreferencePairs(chosen, rejected[:, :3])


def test_empty_rejected():
    with pytest.raises(DataError, match=r"no pairs.*0 rows"):
        PreferencePairs(np.zeros((0, 3)), np.zeros((0, 3)))


def test_zero_features_rejected():
    with pytest.raises(DataError, match=r"dimension 0"):
        PreferencePairs(np.zeros((3, 0)), np.zeros((3, 0)))


@pytest.mark.parametrize("which", ["chosen", "rejected"])
def test_one_dimensional_input_rejected(which):
    chosen, rejected = random_arrays(5, 3)
    args = {"chosen": chosen, "rejected": rejected}
    args[which] = args[which][:, 0]
    with pytest.raises(DataError, match=rf"{which} must be 2-D"):
        PreferencePairs(args["chosen"], args["rejected"])


def test_non_numeric_input_rejected():
    with pytest.raises(DataError, match=r"chosen must be a numeric array"):
        PreferencePairs([["a", "b"]], [[0.0, 1.0]])


def test_zero_difference_row_names_pair():
    chosen, rejected = random_arrays(10, 3)
    rejected[6] = chosen[6]
    with pytest.raises(DataError, match=r"pair 6\b.*chosen equals rejected"):
        PreferencePairs(chosen, rejected)


def test_duplicate_pair_names_both_indices_and_allow_accepts():
    chosen, rejected = random_arrays(10, 3)
    chosen[8], rejected[8] = chosen[2], rejected[2]
    with pytest.raises(DataError, match=r"pair 8 duplicates pair 2"):
        PreferencePairs(chosen, rejected)
    pairs = PreferencePairs(chosen, rejected, duplicates="allow")
    assert pairs.n_pairs == 10
    np.testing.assert_array_equal(pairs.delta[8], pairs.delta[2])


def test_duplicate_detection_ignores_signed_zero():
    chosen, rejected = random_arrays(4, 2)
    chosen[3], rejected[3] = chosen[1], rejected[1]
    chosen[1, 0], chosen[3, 0] = 0.0, -0.0
    with pytest.raises(DataError, match=r"pair 3 duplicates pair 1"):
        PreferencePairs(chosen, rejected)


def test_bad_duplicates_option():
    with pytest.raises(DataError, match=r"duplicates must be"):
        PreferencePairs(*random_arrays(3, 2), duplicates="maybe")


def test_bad_kind_label_names_index():
    chosen, rejected = random_arrays(5, 3)
    kinds = ["T->NT", "NT->NT", "T->T", "toxic", "NT->T"]
    with pytest.raises(DataError, match=r"kinds\[3\] = 'toxic' \(pair 3\)"):
        PreferencePairs(chosen, rejected, kinds=kinds)


def test_kinds_wrong_length():
    chosen, rejected = random_arrays(5, 3)
    with pytest.raises(DataError, match=r"kinds must be 1-D with one label per pair \(5\)"):
        PreferencePairs(chosen, rejected, kinds=["T->NT"] * 4)


def test_prompt_ids_wrong_length():
    chosen, rejected = random_arrays(5, 3)
    with pytest.raises(DataError, match=r"prompt_ids must be 1-D with one id per pair \(5\)"):
        PreferencePairs(chosen, rejected, prompt_ids=[0, 1, 2])


@pytest.mark.parametrize(
    "ids, match",
    [
        ([0, 1, 2.5, 3, 4], r"prompt_ids\[2\] = 2.5 is not an integer"),
        ([0, 1, 2, np.nan, 4], r"prompt_ids\[3\].*not an integer"),
        ([0, np.inf, 2, 3, 4], r"prompt_ids\[1\].*not an integer"),
        (["a", "b", "c", "d", "e"], r"prompt_ids must be integers"),
    ],
)
def test_non_integer_prompt_ids(ids, match):
    chosen, rejected = random_arrays(5, 3)
    with pytest.raises(DataError, match=match):
        PreferencePairs(chosen, rejected, prompt_ids=ids)


@pytest.mark.parametrize("value, what", [
    (np.eye(3) + 1j, "complex"),
    (np.eye(3).astype(object), "object"),
    (np.full((3, 3), "1.5"), "strings"),
    (np.full((3, 3), b"1"), "bytes"),
])
def test_non_real_feature_arrays_name_the_argument(value, what):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # complex used to be cast with a ComplexWarning
        with pytest.raises(DataError, match=rf"rejected must be a numeric array of real numbers, got {what}"):
            PreferencePairs(np.eye(3), value)


def test_bool_and_integer_features_are_cast_to_float():
    pairs = PreferencePairs(np.eye(3, dtype=bool), np.zeros((3, 3), dtype=np.int8))
    assert pairs.chosen.dtype == np.float64 and pairs.delta.tolist() == np.eye(3).tolist()


def test_storage_dtype_must_be_a_float():
    for dtype in (complex, np.int64, "no-such-type"):
        with pytest.raises(DataError, match="dtype must be a float type"):
            PreferencePairs(np.eye(2), np.zeros((2, 2)), dtype=dtype)


@pytest.mark.parametrize("ids, match", [
    (np.array([0, 1, 2**64 - 1], dtype=np.uint64), r"prompt_ids\[2\] = 18446744073709551615 \(pair 2\) does not fit"),
    ([0, 1, 1e19], r"prompt_ids\[2\] = 1e\+19 \(pair 2\) does not fit"),
    ([0, -4, 1], r"prompt_ids\[1\] = -4 \(pair 1\) is negative"),
    ([0.0, 1.0, -2.0], r"prompt_ids\[2\] = -2.0 \(pair 2\) is negative"),
    ([True, False, True], r"prompt_ids must be integers, got bool"),
    (np.array([0, 1, 2], dtype=complex), r"prompt_ids must be integers, got complex"),
    (np.array([0, 1, 2], dtype=object), r"prompt_ids must be integers, got object"),
])
def test_prompt_ids_must_fit_int64_and_be_non_negative(ids, match):
    with pytest.raises(DataError, match=match):
        PreferencePairs(np.eye(3), np.zeros((3, 3)), prompt_ids=ids)


def test_unsigned_prompt_ids_in_range_are_kept():
    pairs = PreferencePairs(np.eye(3), np.zeros((3, 3)), prompt_ids=np.array([0, 7, 2**63 - 1], np.uint64))
    assert pairs.prompt_ids.dtype == np.int64 and pairs.prompt_ids.tolist() == [0, 7, 2**63 - 1]


@pytest.mark.parametrize("index", [[], np.array([], dtype=np.int64), np.zeros(3, dtype=bool)])
def test_empty_subset_is_a_data_error(index):
    pairs = PreferencePairs(np.eye(3), np.zeros((3, 3)))
    with pytest.raises(DataError, match="subset needs at least one pair"):
        pairs.subset(index)


def test_load_errors_name_the_file(tmp_path):
    path = tmp_path / "c.npz"
    np.savez(path, chosen=np.eye(3) + 1j, rejected=np.zeros((3, 3)))
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}: chosen must be a numeric array of real numbers, got complex"):
        load_npz(path)


def test_save_appends_npz_and_returns_the_path_written(tmp_path):
    pairs = PreferencePairs(np.eye(3), np.zeros((3, 3)))
    assert pairs.save(tmp_path / "p") == tmp_path / "p.npz"
    assert pairs.save(tmp_path / "q.npz") == tmp_path / "q.npz"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.npz", "q.npz"]  # no temporary file left
    assert PreferencePairs.load(tmp_path / "p.npz").n_pairs == 3


# -- contradictions ------------------------------------------------------------------------------
def test_contradictions_finds_reversed_pair():
    chosen, rejected = random_arrays(6, 3)
    chosen[4], rejected[4] = rejected[1], chosen[1]
    pairs = PreferencePairs(chosen, rejected)
    assert pairs.contradictions() == [(1, 4)]


def test_no_contradictions_in_random_pairs():
    assert PreferencePairs(*random_arrays(20, 3)).contradictions() == []


# -- subset --------------------------------------------------------------------------------------
def test_subset_by_index_and_mask_keeps_kinds_and_prompts():
    chosen, rejected = random_arrays(6, 2)
    kinds = ["T->NT", "NT->NT", "T->T", "NT->T", "T->NT", "NT->NT"]
    pairs = PreferencePairs(chosen, rejected, kinds=kinds, prompt_ids=[0, 0, 1, 1, 2, 2])
    sub = pairs.subset([4, 1])
    np.testing.assert_array_equal(sub.delta, pairs.delta[[4, 1]])
    assert sub.kinds.tolist() == ["T->NT", "NT->NT"]
    assert sub.prompt_ids.tolist() == [2, 0]
    mask = np.array([True, False, False, True, False, False])
    np.testing.assert_array_equal(pairs.subset(mask).delta, pairs.delta[[0, 3]])


# -- splits --------------------------------------------------------------------------------------
def _check_prompts_one_side(pairs, train, test):
    assert np.intersect1d(train, test).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([train, test])), np.arange(pairs.n_pairs))
    assert np.intersect1d(pairs.prompt_ids[train], pairs.prompt_ids[test]).size == 0


def test_train_test_split_by_prompt():
    pairs = grouped_pairs()
    train, test = pairs.train_test_split(test_fraction=0.3, seed=4)
    assert train.size and test.size
    _check_prompts_one_side(pairs, train, test)
    assert np.unique(pairs.prompt_ids[test]).size == 3  # round(0.3 * 10) prompts held out
    again = pairs.train_test_split(test_fraction=0.3, seed=4)
    np.testing.assert_array_equal(again[0], train)
    np.testing.assert_array_equal(again[1], test)
    splits = {tuple(pairs.train_test_split(0.3, seed=s)[1]) for s in range(6)}
    assert len(splits) > 1  # the seed matters


def test_train_test_split_errors():
    pairs = grouped_pairs()
    with pytest.raises(DataError, match="test_fraction"):
        pairs.train_test_split(test_fraction=1.0)
    one_prompt = PreferencePairs(*random_arrays(4, 2), prompt_ids=[7, 7, 7, 7])
    with pytest.raises(DataError, match="at least 2 prompts"):
        one_prompt.train_test_split()


def test_split_without_prompt_ids_treats_each_pair_as_a_prompt():
    pairs = PreferencePairs(*random_arrays(10, 2))
    train, test = pairs.train_test_split(test_fraction=0.2, seed=0)
    assert test.size == 2 and train.size == 8
    assert np.intersect1d(train, test).size == 0


@pytest.mark.parametrize("k", [2, 3, 5])
def test_kfold_by_prompt(k):
    pairs = grouped_pairs()
    folds = pairs.kfold(k, seed=1)
    assert len(folds) == k
    tests = [test for _, test in folds]
    np.testing.assert_array_equal(np.sort(np.concatenate(tests)), np.arange(pairs.n_pairs))
    for train, test in folds:
        assert test.size > 0
        _check_prompts_one_side(pairs, train, test)
    again = pairs.kfold(k, seed=1)
    for (tr_a, te_a), (tr_b, te_b) in zip(folds, again):
        np.testing.assert_array_equal(tr_a, tr_b)
        np.testing.assert_array_equal(te_a, te_b)


def test_kfold_errors():
    pairs = grouped_pairs(n_prompts=4)
    for bad in (1, 0, -3, 2.0):
        with pytest.raises(DataError, match="k must be an integer >= 2"):
            pairs.kfold(bad)
    with pytest.raises(DataError, match=r"k=5 folds need at least 5 prompts, have 4"):
        pairs.kfold(5)


# -- npz I/O -------------------------------------------------------------------------------------
def test_save_load_roundtrip(tmp_path):
    chosen, rejected = random_arrays(9, 3)
    kinds = ["T→NT", "NT->NT", "T->T"] * 3
    pairs = PreferencePairs(chosen, rejected, kinds=kinds, prompt_ids=[0, 0, 1, 1, 2, 2, 3, 3, 4])
    path = tmp_path / "pairs.npz"
    theta = np.arange(3.0)
    pairs.save(path, theta_true=theta, label=np.array(["a", "bb"]))
    # The file needs no pickle.
    with np.load(path, allow_pickle=False) as data:
        assert set(data.files) == {"chosen", "rejected", "kinds", "prompt_ids", "theta_true", "label"}
        assert data["kinds"].dtype.kind == "U"
    back = PreferencePairs.load(path)
    np.testing.assert_array_equal(back.chosen, chosen)
    np.testing.assert_array_equal(back.rejected, rejected)
    np.testing.assert_array_equal(back.delta, pairs.delta)
    assert back.kinds.tolist() == pairs.kinds.tolist()
    assert back.prompt_ids.tolist() == pairs.prompt_ids.tolist()
    loaded, extra = load_npz(path)
    assert sorted(extra) == ["label", "theta_true"]
    np.testing.assert_array_equal(extra["theta_true"], theta)
    assert extra["label"].tolist() == ["a", "bb"]
    np.testing.assert_array_equal(loaded.delta, pairs.delta)


def test_roundtrip_without_optional_arrays(tmp_path):
    pairs = PreferencePairs(*random_arrays(4, 2))
    pairs.save(tmp_path / "p.npz")
    back = PreferencePairs.load(tmp_path / "p.npz")
    assert back.kinds is None and back.prompt_ids is None
    np.testing.assert_array_equal(back.delta, pairs.delta)


def test_save_rejects_bad_extra(tmp_path):
    pairs = PreferencePairs(*random_arrays(4, 2))
    with pytest.raises(DataError, match="clashes"):
        pairs.save(tmp_path / "p.npz", kinds=np.zeros(4))
    with pytest.raises(DataError, match="dtype object"):
        pairs.save(tmp_path / "p.npz", meta=np.array([{"a": 1}], dtype=object))


def test_load_validates_like_the_constructor(tmp_path):
    chosen, rejected = random_arrays(20, 3)
    chosen[17, 0] = np.nan
    np.savez(tmp_path / "nan.npz", chosen=chosen, rejected=rejected)
    with pytest.raises(DataError, match=r"pair 17\b"):
        PreferencePairs.load(tmp_path / "nan.npz")


def test_load_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"no such file"):
        PreferencePairs.load(tmp_path / "nope.npz")


def test_load_missing_key(tmp_path):
    np.savez(tmp_path / "p.npz", rejected=np.ones((3, 2)))
    with pytest.raises(DataError, match=r"missing array 'chosen'"):
        PreferencePairs.load(tmp_path / "p.npz")


@pytest.mark.parametrize("content", [b"hello, not a zip", b""])
def test_load_not_an_npz(tmp_path, content):
    path = tmp_path / "p.npz"
    path.write_bytes(content)
    with pytest.raises(DataError, match=r"not a .npz file") as info:
        PreferencePairs.load(path)
    assert "pickle" not in str(info.value)  # a text file is not "pickled data"


def test_load_npy_is_not_an_npz(tmp_path):
    np.save(tmp_path / "p.npy", np.ones((3, 2)))
    with pytest.raises(DataError, match=r"not a"):
        PreferencePairs.load(tmp_path / "p.npy")


def test_load_corrupt_zip(tmp_path):
    path = tmp_path / "p.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("chosen.npy", b"garbage")
    with pytest.raises(DataError):
        PreferencePairs.load(path)


class _Tripwire:
    """Unpickling this creates a directory: proof that the loader ran pickle."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_load_object_array_raises_without_unpickling(tmp_path):
    marker = str(tmp_path / "unpickled")
    chosen = np.empty(2, dtype=object)
    chosen[0], chosen[1] = _Tripwire(marker), _Tripwire(marker)
    path = tmp_path / "evil.npz"
    np.savez(path, chosen=chosen, rejected=np.zeros((2, 2)), allow_pickle=True)
    with pytest.raises(DataError, match=r"pickle"):
        PreferencePairs.load(path)
    assert not os.path.exists(marker)


# -- property ------------------------------------------------------------------------------------
finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


@st.composite
def pairs_and_index(draw):
    n = draw(st.integers(1, 12))
    d = draw(st.integers(1, 5))
    chosen = draw(hnp.arrays(np.float64, (n, d), elements=finite))
    rejected = draw(hnp.arrays(np.float64, (n, d), elements=finite))
    index = draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=2 * n))
    return chosen, rejected, np.array(index)


@given(pairs_and_index())
def test_subset_delta_equals_delta_rows(data):
    chosen, rejected, index = data
    assume((chosen != rejected).any(axis=1).all())
    rows = np.hstack([chosen, rejected]) + 0.0
    assume(np.unique(rows, axis=0).shape[0] == rows.shape[0])
    pairs = PreferencePairs(chosen, rejected)
    np.testing.assert_array_equal(pairs.delta, chosen - rejected)
    np.testing.assert_array_equal(pairs.subset(index).delta, pairs.delta[index])
