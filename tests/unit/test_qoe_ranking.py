"""QoE demotion: the order moves the expected way, and NDCG@10 stays within 0.01 at weight 0.2."""

import polars as pl
import pytest

from models.qoe.ranking import DemotionSetup, demote, evaluate_demotion

RECS = pl.DataFrame(
    {
        "user_id": ["u"] * 3,
        "rank": [1, 2, 3],
        "media_id": ["stalls", "fine", "unknown"],
        "score": [0.9, 0.85, 0.8],
    }
)
QOE = pl.DataFrame(
    {
        "media_id": ["stalls", "fine", "stalls", "fine"],
        "device_class": ["mobile", "mobile", "tv", "tv"],
        "qoe_score": [30.0, 90.0, 95.0, 90.0],
    }
)


def test_a_title_that_plays_badly_on_the_device_class_moves_down() -> None:
    # Scores scale to 1, 0.5, 0 first; the penalty is weight * (1 - qoe / 100).
    mobile = demote(RECS, QOE, "mobile", weight=1.0)
    assert mobile["media_id"].to_list() == ["fine", "stalls", "unknown"]
    assert mobile["rank"].to_list() == [1, 2, 3]
    assert mobile["score"].to_list() == pytest.approx([0.4, 0.3, 0.0])  # unknown QoE: no penalty
    assert demote(RECS, QOE, "tv", weight=1.0)["media_id"].to_list() == ["stalls", "fine", "unknown"]
    unchanged = demote(RECS, QOE, "mobile", weight=0.0)
    assert unchanged.select("rank", "media_id").equals(RECS.select("rank", "media_id"))
    with pytest.raises(ValueError, match="weight"):
        demote(RECS, QOE, "mobile", weight=-1)


def test_demotion_raises_expected_qoe_on_mobile_at_little_ndcg_cost() -> None:
    rows = {(r["device_class"], r["weight"]): r for r in evaluate_demotion(DemotionSetup(), (0.0, 0.2))}
    plain, demoted = rows["mobile", 0.0], rows["mobile", 0.2]
    assert demoted["expected_qoe"] >= plain["expected_qoe"] + 3  # type: ignore[operator]
    assert abs(demoted["ndcg_at_10"] - plain["ndcg_at_10"]) <= 0.01  # type: ignore[operator]
    tv_gain = rows["tv", 0.2]["expected_qoe"] - rows["tv", 0.0]["expected_qoe"]  # type: ignore[operator]
    assert tv_gain < 1  # titles play alike on TV: demotion barely moves the lists
