import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from bench.protocol.split import (H_IN, H_OUT, ProtocolError, Scaler, check_ratio, prepare,
                            split_steps, volume_buckets, window_starts)
from tests.conftest import synthetic


def test_split_boundaries_on_nyctaxi_length():
    s = split_steps(2880, 0.4)
    assert (s.train_start, s.val_start, s.test_start, s.total) == (1152, 2304, 2592, 2880)
    assert split_steps(2880, 0.8).train_start == 0
    assert split_steps(2880, 0.1).train_start == 2304 - 288


def test_ratios_share_validation_and_test_windows():
    a, b = split_steps(2880, 0.1), split_steps(2880, 0.7)
    for part in ("val", "test"):
        assert np.array_equal(window_starts(a, part), window_starts(b, part))
    assert len(window_starts(a, "train")) < len(window_starts(b, "train"))


def test_no_target_leaks_between_parts():
    s = split_steps(2880, 0.5)
    tr, va, te = (window_starts(s, p) for p in ("train", "val", "test"))
    assert tr.min() >= s.train_start and tr.max() + H_IN + H_OUT <= s.val_start   # inputs and targets in train
    assert (va + H_IN).min() >= s.val_start and (va + H_IN + H_OUT).max() <= s.test_start
    assert (te + H_IN).min() >= s.test_start and (te + H_IN + H_OUT).max() == s.total


@pytest.mark.parametrize("bad", [0, 0.0, -0.1, 0.81, 1.0, "abc", None])
def test_bad_ratio_is_refused_with_range(bad):
    with pytest.raises(ProtocolError, match=r"\(0, 0.8\]|not a number"):
        check_ratio(bad)


def test_too_short_training_part_is_refused():
    with pytest.raises(ProtocolError, match="training steps"):
        split_steps(100, 0.1)


def test_scaler_is_fitted_on_training_steps_only():
    data = synthetic(T=600)
    split = split_steps(600, 0.3)
    before = Scaler.fit(data.flow, split)
    changed = data.flow.copy()
    changed[split.val_start:] += 1000.0              # validation and test change wildly
    changed[:split.train_start] -= 5.0               # so does the unused past
    after = Scaler.fit(changed, split)
    np.testing.assert_allclose(before.mean, after.mean)
    np.testing.assert_allclose(before.std, after.std)
    part = data.flow[split.train_start:split.val_start]
    np.testing.assert_allclose(before.mean, part.mean(axis=(0, 1)), rtol=1e-5)


def test_windows_gather_the_right_steps_and_normalise_inputs_only():
    data = synthetic(T=600)
    split, scaler, parts = prepare(data, 0.3)
    w = parts["val"]
    batch = w.batch([0, 3])
    s = w.starts[3]
    np.testing.assert_allclose(batch["y"][1].numpy(), data.flow[s + H_IN:s + H_IN + H_OUT])
    np.testing.assert_allclose(batch["x"][1].numpy(), scaler.transform(data.flow[s:s + H_IN]), rtol=1e-5, atol=1e-5)
    assert batch["tod"].shape == (2, H_IN) and batch["tod"][1, 0] == data.tod[s]
    assert w.flow_norm.shape == data.flow.shape        # one normalised copy, windows are gathered per batch
    assert parts["train"].flow_norm is w.flow_norm and parts["test"].flow is w.flow   # shared by all parts


def test_volume_buckets_are_equal_sized_and_ordered_by_training_mean():
    data = synthetic(T=600, N=8)
    flow = data.flow.copy()
    flow[:, :, :] += np.arange(8)[::-1][None, :, None] * 100.0       # region 0 busiest
    split = split_steps(600, 0.3)
    b = volume_buckets(flow, split, q=4)
    assert b.tolist() == [3, 3, 2, 2, 1, 1, 0, 0]


def test_teacher_predictions_must_match_windows():
    data = synthetic(T=600)
    _, _, parts = prepare(data, 0.3)
    with pytest.raises(ProtocolError, match="teacher predictions have shape"):
        parts["train"].attach_teacher(np.zeros((3, H_OUT, 6, 2)))


@settings(max_examples=200, deadline=None)
@given(total=st.integers(60, 20000), ratio=st.floats(0.01, 0.8), h_in=st.integers(1, 24), h_out=st.integers(1, 24))
def test_split_and_window_arithmetic(total, ratio, h_in, h_out):
    try:
        s = split_steps(total, ratio)
    except ProtocolError:
        return
    assert 0 <= s.train_start < s.val_start < s.test_start < s.total
    assert s.total - s.test_start == round(total * 0.1)
    for part, lo, hi in (("train", s.train_start, s.val_start), ("val", s.val_start, s.test_start),
                         ("test", s.test_start, s.total)):
        starts = window_starts(s, part, h_in, h_out)
        if len(starts):
            assert (starts + h_in).min() >= lo and (starts + h_in + h_out).max() <= hi   # targets inside
            assert starts.min() >= 0 and np.all(np.diff(starts) == 1)
        if part == "train" and len(starts):
            assert starts.min() >= s.train_start                                       # inputs inside too


def test_num_batches_counts_what_batches_yields():
    from bench.protocol.split import MixedWindows
    target = prepare(synthetic(T=600), 0.3)[2]["train"]
    other = prepare(synthetic(T=900, seed=1), 0.8)[2]["train"]
    empty = target.subset(0)                                   # a target with no windows: the others' batches
    for windows in (target, MixedWindows(target, [other]), MixedWindows(target, []), MixedWindows(empty, [other])):
        for batch_size in (7, 32):
            assert windows.num_batches(batch_size) == len(list(windows.batches(batch_size))) > 0
