"""The bench's own arithmetic: targets decide the exit code, imports are attributed right."""

from __future__ import annotations

from typing import Any

import pytest

from tools.bench.__main__ import add_ratios, import_breakdown, render, targets

pytestmark = pytest.mark.unit


def journey_row(p50: float, p99: float) -> dict[str, Any]:
    return {
        "p50_ms": p50,
        "p99_ms": p99,
        "calls": {"stripe": {"median": 1, "max": 1, "background_median": 0}},
    }


def report(returning_p50: float, webhook_ratio: float, worker_rate: float) -> dict[str, Any]:
    return {
        "journey": {
            "delays_ms": {"stripe": 250},
            "floors": {"stripe_round_trip": {"p50_ms": 250.0}, "sqs_send": {"p50_ms": 20.0}},
            "checkout_returning_member": journey_row(returning_p50, returning_p50),
            "webhook_ack": journey_row(20.0, 20.0 * webhook_ratio),
        },
        "cold_start": {
            "webhook": {
                "ratio": 0.1,
                "cpu_ms": _s(80),
                "cpu_naive_ms": _s(800),
                "wall_ratio": 0.11,
                "first_answer_cpu_ms": _s(80),
                "first_answer_cpu_ratio": 0.11,
                "ours_ms": _s(80),
                "naive_ms": _s(800),
                "first_answer_ours_ms": _s(90),
                "first_answer_ratio": 0.11,
                "largest_imports": [],
            },
            "catalog": {
                "ratio": 0.31,
                "cpu_ms": _s(150),
                "cpu_naive_ms": _s(480),
                "wall_ratio": 0.32,
                "first_answer_cpu_ms": _s(150),
                "first_answer_cpu_ratio": 0.32,
                "ours_ms": _s(150),
                "naive_ms": _s(480),
                "first_answer_ours_ms": _s(160),
                "first_answer_ratio": 0.32,
                "largest_imports": [],
            },
        },
        "worker": {"events_per_s": {"median": worker_rate, "iqr": 10}},
    }


def _s(median: float) -> dict[str, float]:
    return {"median": median, "iqr": 1.0, "min": median, "max": median, "n": 1}


def test_a_figure_past_its_target_is_missed_and_one_within_is_met() -> None:
    run = report(returning_p50=300, webhook_ratio=1.6, worker_rate=1200)
    add_ratios(run)

    found = targets(run)

    assert run["journey"]["checkout_returning_member"]["ratio_p50"] == pytest.approx(1.2)
    assert found["journey.checkout_returning_member"].met
    assert not found["journey.webhook_ack"].met  # p99 1.6 × one SQS send
    assert found["cold.webhook"].met  # 0.1 ≤ 0.15
    assert not found["cold.catalog"].met  # 0.31 > 0.3
    assert found["worker"].met  # at least 1,000 events/s
    assert "MISSED" in render(run)


def test_importtime_output_is_summed_by_top_level_package() -> None:
    stderr = "\n".join(
        [
            "import time: self [us] | cumulative | imported package",
            "import time:      1000 |       1000 |     pydantic.fields",
            "import time:      2000 |       3000 |   pydantic",
            "import time:       500 |        500 |   payments.settings",
            "import time:      4000 |       4000 | site",
            "import time:       700 |       1200 | functions.webhook.app",
        ]
    )

    assert import_breakdown(stderr) == [
        {"package": "pydantic", "ms": 3.0},
        {"package": "payments, functions", "ms": 1.2},
    ]
