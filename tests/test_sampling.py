"""Clip plans: official test-mode indices (reference produced by running the official code, see
tests/reference/make_pipeline_reference.py), SSv2 uniform indices, sliding windows and clip times."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vswin_cli.protocol import KINETICS, STHV2, Protocol
from vswin_cli.sampling import (
    Clip,
    official_clip_indices,
    plan_clips,
    shortfall_warning,
    sliding_window_indices,
    uniform_indices,
)

REFERENCE = json.loads((Path(__file__).parent / "reference" / "sampling.json").read_text())


def _clip_cases():
    for config, by_count in REFERENCE["clips"].items():
        clip_len, interval, num_clips = map(int, config.split("x"))
        for count, expected in by_count.items():
            yield pytest.param(int(count), clip_len, interval, num_clips, expected, id=f"{config}-T{count}")


@pytest.mark.parametrize("count, clip_len, interval, num_clips, expected", list(_clip_cases()))
def test_official_clip_indices_equal_sampleframes_test_mode(count, clip_len, interval, num_clips, expected):
    assert official_clip_indices(count, clip_len, interval, num_clips) == expected


@pytest.mark.parametrize("clip_len", [int(k) for k in REFERENCE["uniform"]])
def test_uniform_indices_equal_sampleframes_frame_uniform(clip_len):
    for count, expected in REFERENCE["uniform"][str(clip_len)].items():
        assert uniform_indices(int(count), clip_len) == expected, f"T={count}"


def test_reference_covers_the_counts_the_issue_names():
    needed = {1, 5, 31, 32, 33, 63, 64, 65, 300, 1000}
    assert needed <= {int(c) for c in REFERENCE["clips"]["32x2x4"]}
    assert needed <= {int(c) for c in REFERENCE["uniform"]["32"]}


def test_plan_clips_kinetics_uses_official_indices_and_frame_times():
    clips = plan_clips(300, None, 30.0, KINETICS)
    assert [clip.frames for clip in clips] == REFERENCE["clips"]["32x2x4"]["300"]
    # avg = (300 - 64 + 1) / 4 = 59.25 -> starts int(k*59.25 + 29.625) = 29, 88, 148, 207 (by hand)
    assert [clip.frames[0] for clip in clips] == [29, 88, 148, 207]
    first = clips[0]
    assert first.start == pytest.approx(29 / 30)
    assert first.end == pytest.approx((29 + 62 + 1) / 30)  # the frame after the last one used


def test_plan_clips_uniform_for_sthv2():
    clips = plan_clips(1000, None, 25.0, STHV2)
    assert len(clips) == 1
    assert clips[0].frames == REFERENCE["uniform"]["32"]["1000"]


def test_short_video_wraps_and_warns():
    clips = plan_clips(5, None, 25.0, KINETICS)
    assert len(clips) == 4
    assert all(clip.frames[:6] == [0, 2, 4, 1, 3, 0] for clip in clips)
    assert clips[0].start == 0.0 and clips[0].end == pytest.approx(5 / 25)
    assert "5 frames" in shortfall_warning(5, KINETICS)
    assert shortfall_warning(63, KINETICS) is None  # a clip spans (32-1)*2+1 = 63 frames
    assert shortfall_warning(62, KINETICS) is not None
    assert shortfall_warning(32, STHV2) is None and shortfall_warning(31, STHV2) is not None


def test_times_follow_timestamps_of_variable_frame_rate():
    times = [0.0, 0.1, 0.2, 1.0, 2.0]
    clip = plan_clips(5, times, 10.0, Protocol(clip_len=2, frame_interval=1, num_clips=1))[0]
    # T=5 > 1: avg = 4, start int(2.0) = 2 -> frames 2, 3
    assert clip == Clip(frames=[2, 3], start=0.2, end=2.0)


def test_sliding_windows_constant_rate():
    times = [i / 30 for i in range(300)]  # 10 s at 30 fps
    windows = sliding_window_indices(times, clip_len=32, frame_interval=2, stride=2.0)
    # Grid 0, 2, 4, 6, 8 s -> frames 0, 60, 120, 180, 240; a window spans 63 frames, so the last
    # start that fits is 299 - 62 = 237 and the 8 s window becomes the end-aligned one.
    assert [w[0] for w in windows] == [0, 60, 120, 180, 237]
    assert windows[-1][-1] == 299
    assert windows[0] == list(range(0, 64, 2))


def test_sliding_windows_use_true_times_on_variable_frame_rate():
    # 10 frames in the first second, then one frame per second.
    times = [i * 0.1 for i in range(10)] + [1.0 + i for i in range(10)]
    windows = sliding_window_indices(times, clip_len=2, frame_interval=1, stride=2.0)
    # t=0 -> frame 0; t=2 -> frame 11 (stamped 2.0); t=4 -> 13; ... t=10 -> 19 is past the last
    # start that fits (18), so it is the end-aligned window [18, 19].
    assert [w[0] for w in windows] == [0, 11, 13, 15, 17, 18]


def test_sliding_window_tail_appears_once_and_short_video_wraps():
    times = [i / 10 for i in range(12)]
    assert sliding_window_indices(times, clip_len=4, frame_interval=2, stride=0.1)[-1] == [5, 7, 9, 11]
    starts = [w[0] for w in sliding_window_indices(times, clip_len=4, frame_interval=2, stride=0.1)]
    assert starts == sorted(set(starts))
    assert sliding_window_indices(times[:5], clip_len=4, frame_interval=2, stride=1.0) == [[0, 2, 4, 1]]


def test_plan_clips_with_stride_gives_window_times():
    times = [i / 30 for i in range(300)]
    clips = plan_clips(300, times, 30.0, KINETICS, stride=2.0)
    assert clips[1].start == pytest.approx(2.0)
    assert clips[1].end == pytest.approx((60 + 62 + 1) / 30)
    assert clips[-1].end == pytest.approx(10.0)


@pytest.mark.parametrize("call", [
    lambda: official_clip_indices(0, 32, 2, 4),
    lambda: uniform_indices(10, 0),
    lambda: sliding_window_indices([0.0, 1.0], 2, 1, 0.0),
    lambda: plan_clips(10, None, 0.0, KINETICS),
    lambda: plan_clips(10, [0.0], 25.0, KINETICS),
])
def test_invalid_arguments_raise(call):
    with pytest.raises(ValueError):
        call()


def _windows_grid_time_by_grid_time(times, clip_len, frame_interval, stride):
    """The windows' definition taken literally: every grid time k * stride, one after another."""
    last_offset = (clip_len - 1) * frame_interval
    latest_start = len(times) - 1 - last_offset
    starts, k = [], 0
    while k == 0 or times[0] + k * stride <= times[-1] + 1e-6:
        showing = max(i for i, t in enumerate(times) if t <= times[0] + k * stride + 1e-6)
        start = min(showing, latest_start)
        if not starts or start != starts[-1]:
            starts.append(start)
        if start == latest_start:
            break
        k += 1
    return [[s + i * frame_interval for i in range(clip_len)] for s in starts]


@pytest.mark.parametrize("seed", range(6))
def test_sliding_windows_match_their_definition_on_irregular_times(seed):
    import random

    rng = random.Random(seed)
    times, t = [], rng.uniform(0, 2)  # streams need not start at 0
    for _ in range(rng.randint(20, 120)):
        times.append(round(t, 3))
        t += rng.choice([1 / 30, 1 / 25, 0.5, 0.001, 2.0])
    for stride in (0.01, 1 / 30, 0.1, 0.37, 1.0, 5.0):
        expected = _windows_grid_time_by_grid_time(times, 4, 2, stride)
        assert sliding_window_indices(times, clip_len=4, frame_interval=2, stride=stride) == expected, stride


def test_a_stride_far_below_a_frame_costs_a_step_per_frame(monkeypatch):
    # Stepping through every grid time made --stride 1e-9 take 10^10 steps on a 10 s video; at
    # 1e-4 that would be 10^5 lookups here.
    import vswin_cli.sampling as sampling

    times = [i / 30 for i in range(300)]
    lookups = 0
    real = sampling.bisect.bisect_right

    def counted(*args, **kwargs):
        nonlocal lookups
        lookups += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(sampling.bisect, "bisect_right", counted)
    windows = sliding_window_indices(times, clip_len=4, frame_interval=2, stride=1e-4)
    assert [w[0] for w in windows] == list(range(300 - 6))  # one window at every frame that fits
    assert lookups <= 2 * 300


@pytest.mark.parametrize("stride", [float("inf"), float("nan"), -1.0])
def test_a_stride_that_is_not_a_finite_positive_number_is_refused(stride):
    with pytest.raises(ValueError, match="positive number of seconds"):
        sliding_window_indices([0.0, 1.0, 2.0], 2, 1, stride)
