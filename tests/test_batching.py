"""Flattening a dynamic batch, splitting answers back, and planning micro-batches."""

from __future__ import annotations

import pytest
import torch

from handler.batching import (
    DEFAULT_LIMITS,
    flatten_pairs,
    micro_batch_limits,
    pad_rows,
    plan_micro_batches,
    split_by_request,
)
from handler.request_parsing import EmbeddingRequest
from handler.settings import EngineName, HandlerSettings, Precision

REQUESTS = [
    EmbeddingRequest((("a", "1"),), single=True),
    None,
    EmbeddingRequest((("b", "2"), ("c", "3"), ("d", "4")), single=False),
    None,
    EmbeddingRequest((("e", "5"),), single=False),
]


def test_flatten_keeps_request_order_and_skips_rejected() -> None:
    assert flatten_pairs(REQUESTS) == [("a", "1"), ("b", "2"), ("c", "3"), ("d", "4"), ("e", "5")]


def test_split_gives_each_request_its_own_rows() -> None:
    answers = split_by_request(REQUESTS, ["v1", "v2", "v3", "v4", "v5"])
    assert answers == [["v1"], None, ["v2", "v3", "v4"], None, ["v5"]]


def test_split_refuses_a_row_count_mismatch() -> None:
    with pytest.raises(ValueError, match="expected 5 rows, got 4"):
        split_by_request(REQUESTS, ["v1", "v2", "v3", "v4"])


def test_plan_covers_every_row_once_longest_first() -> None:
    lengths = [5, 40, 12, 40, 7, 300, 3]
    plan = plan_micro_batches(lengths, max_rows=2, max_tokens=10_000)
    assert sorted(index for batch in plan for index in batch) == list(range(len(lengths)))
    assert plan[0] == [5, 1]
    assert all(len(batch) <= 2 for batch in plan)


def test_plan_respects_token_budget() -> None:
    lengths = [100, 100, 100, 60, 60, 10]
    plan = plan_micro_batches(lengths, max_rows=32, max_tokens=200)
    for batch in plan:
        assert len(batch) * max(lengths[index] for index in batch) <= 200
    assert plan == [[0, 1], [2, 3], [4, 5]]


def test_plan_always_fits_one_row_over_budget() -> None:
    assert plan_micro_batches([600], max_rows=4, max_tokens=512) == [[0]]


def test_plan_of_nothing_is_empty() -> None:
    assert plan_micro_batches([], max_rows=4, max_tokens=512) == []


def test_plan_bounds_padding_waste() -> None:
    lengths = [256, 240, 210, 64, 60, 16, 15]
    plan = plan_micro_batches(lengths, max_rows=32, max_tokens=16384, max_padding_pct=20)
    assert plan == [[0, 1, 2], [3, 4], [5, 6]]
    for batch in plan:
        longest = max(lengths[index] for index in batch)
        assert all(lengths[index] >= 0.8 * longest for index in batch)
    assert plan_micro_batches(lengths, max_rows=32, max_tokens=16384, max_padding_pct=100) == [list(range(7))]


def test_limits_follow_the_engine_and_precision_the_worker_computes_in() -> None:
    unset = HandlerSettings.from_mapping({"instruction_mode": "exclude"})
    openvino_int8 = micro_batch_limits(unset, EngineName.OPENVINO, Precision.INT8)
    assert (openvino_int8.padding_pct, openvino_int8.rows) == (40, 8)
    assert openvino_int8.source == "openvino int8 default"
    torch_fp32 = micro_batch_limits(unset, EngineName.TORCH, Precision.FP32)
    assert (torch_fp32.padding_pct, torch_fp32.rows, torch_fp32.source) == (*DEFAULT_LIMITS, "default")
    assert torch_fp32.tokens == unset.micro_batch_tokens


def test_limits_set_in_the_archive_win_over_the_engine_defaults() -> None:
    mapping = {"instruction_mode": "exclude", "micro_batch_padding_pct": 0, "micro_batch_rows": None}
    limits = micro_batch_limits(HandlerSettings.from_mapping(mapping), EngineName.OPENVINO, Precision.BF16)
    assert (limits.padding_pct, limits.rows, limits.source) == (0, 8, "handler settings")


@pytest.mark.parametrize(
    ("longest", "max_length", "width"),
    [(17, 512, 32), (32, 512, 32), (500, 512, 512), (600, 512, 600), (30, 20, 30), (10, 20, 16), (18, 20, 20)],
)
def test_widths_round_up_to_the_multiple_within_max_length(longest: int, max_length: int, width: int) -> None:
    limits = micro_batch_limits(
        HandlerSettings.from_mapping(
            {
                "instruction_mode": "exclude",
                "micro_batch_length_multiple": 16,
                "max_length": max_length,
                "micro_batch_tokens": 1024,
            }
        ),
        EngineName.TORCH,
        Precision.FP32,
    )
    assert limits.padded_width(longest, max_length) == width


def test_pad_rows_right_pads_ids_and_masks_the_padding() -> None:
    input_ids, attention_mask = pad_rows([[5, 6, 7], [8]], width=4, pad_token_id=0)
    assert input_ids.dtype == attention_mask.dtype == torch.long
    assert input_ids.tolist() == [[5, 6, 7, 0], [8, 0, 0, 0]]
    assert attention_mask.tolist() == [[1, 1, 1, 0], [1, 0, 0, 0]]
