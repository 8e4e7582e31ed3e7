"""Pure pieces of the ML jobs on tiny in-memory data: windows, labels, metrics, retention."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from ray_jobs.features import label_and_keys, trailing
from ray_jobs.train import log_loss, roc_auc


def test_trailing_windows_never_include_the_day_itself() -> None:
    daily = pd.DataFrame(
        {
            "carrier": ["UA"] * 3,
            "flight_date": [dt.date(2013, 1, 1), dt.date(2013, 1, 2), dt.date(2013, 1, 4)],
            "n": [10, 10, 10], "delayed": [1, 9, 5], "delay_sum": [10.0, 90.0, 50.0], "delay_n": [10, 10, 10],
        }
    )  # fmt: skip
    out = trailing(daily, "carrier", "carrier", dt.date(2013, 1, 5)).set_index("feature_date")
    assert list(out.index) == [dt.date(2013, 1, d) for d in range(1, 6)]
    assert out.loc[dt.date(2013, 1, 1), "carrier_flights_7d"] == 0
    assert np.isnan(out.loc[dt.date(2013, 1, 1), "carrier_delay_rate_7d"])
    assert out.loc[dt.date(2013, 1, 2), "carrier_delay_rate_7d"] == pytest.approx(0.1)  # day 1 only
    assert out.loc[dt.date(2013, 1, 4), "carrier_delay_rate_7d"] == pytest.approx(0.5)  # days 1-3, 3 empty
    assert out.loc[dt.date(2013, 1, 5), "carrier_delay_rate_7d"] == pytest.approx(15 / 30)
    assert out.loc[dt.date(2013, 1, 5), "carrier_mean_delay_7d"] == pytest.approx(5.0)
    assert str(out["event_ts"].dt.tz) == "UTC"


def test_label_counts_cancelled_and_diverted_as_late() -> None:
    batch = pd.DataFrame(
        {"origin": ["EWR"] * 4, "dest": ["BOS"] * 4, "carrier": ["UA"] * 4,
         "arr_delay": [16.0, 15.0, None, None], "cancelled": [False, False, True, False],
         "diverted": [False, False, False, True]}
    )  # fmt: skip
    out = label_and_keys(batch, 15)
    assert out["delayed"].tolist() == [1, 0, 1, 1]
    assert out["carrier_route"].iloc[0] == "UA:EWR-BOS"
    assert out["has_delay"].tolist() == [1, 1, 0, 0]


def test_auc_and_log_loss() -> None:
    y = np.array([0, 0, 1, 1])
    assert roc_auc(y, np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    assert roc_auc(y, np.array([0.5, 0.5, 0.5, 0.5])) == 0.5
    assert roc_auc(y, np.array([0.1, 0.4, 0.35, 0.8])) == 0.75
    assert log_loss(y, np.full(4, 0.5)) == pytest.approx(np.log(2))
    with pytest.raises(ValueError, match="both classes"):
        roc_auc(np.array([1, 1]), np.array([0.2, 0.3]))
