#!/usr/bin/env python3
"""Regenerates the XGBoost fixtures the score plugin's tests compare against.

The tests only read the files this writes; CI has no XGBoost. Run it from this
directory with a Python that has xgboost and numpy (Debian: apt-get install
python3-xgboost), then commit the outputs:

    /usr/bin/python3 gen_xgboost.py

It trains tiny models on deterministic data, saves each with
Booster.save_model("<name>.json") (XGBoost's JSON model format), and writes
xgb_expected.json: for every model, the rows it was asked about (null marks a
missing value, passed to XGBoost as NaN) and XGBoost's own predictions
(Booster.predict: probabilities for classifiers, one list per row for
multi:softprob).
"""
import json

import numpy as np
import xgboost as xgb

FEATURES = ["event_count", "unique_event_types", "total_value", "is_purchase_event"]


def data(seed, n):
    rng = np.random.RandomState(seed)
    x = np.column_stack([
        rng.randint(0, 30, n).astype(float),          # event_count
        rng.randint(1, 6, n).astype(float),           # unique_event_types
        np.round(rng.exponential(120.0, n), 2),       # total_value
        rng.randint(0, 2, n).astype(float),           # is_purchase_event
    ])
    # Missing values in training make XGBoost learn a default direction
    # per split, which the tests must follow.
    x[rng.rand(n, 4) < 0.1] = np.nan
    return x


def probe_rows(x):
    rows = [list(r) for r in x[:12]]
    rows += [
        [np.nan, np.nan, np.nan, np.nan],   # every feature missing
        [0.0, 0.0, 0.0, 0.0],               # zeros are values, not missing
        [1e6, 1e6, 1e6, 1.0],               # far outside the training range
        [-5.0, 3.0, np.nan, 1.0],
    ]
    return rows


def on_split_rows(booster):
    # Rows exactly on split thresholds: XGBoost goes right when the value
    # equals the condition.
    gb = json.loads(booster.save_raw("json"))["learner"]["gradient_booster"]
    trees = gb.get("gbtree", gb)["model"]["trees"]  # dart wraps a gbtree
    rows = []
    for tree in trees:
        for i, left in enumerate(tree["left_children"]):
            if left != -1 and len(rows) < 3:
                r = [5.0, 2.0, 100.0, 0.0]
                r[tree["split_indices"][i]] = float(np.float32(tree["split_conditions"][i]))
                rows.append(r)
    return rows


def jsonable(rows):
    return [[None if np.isnan(v) else float(v) for v in r] for r in rows]


def main():
    x = data(7, 400)
    value = (0.08 * np.nan_to_num(x[:, 0], nan=10) + 0.3 * np.nan_to_num(x[:, 1], nan=2)
             + 0.004 * np.nan_to_num(x[:, 2], nan=100) + 0.6 * np.nan_to_num(x[:, 3], nan=0))
    rng = np.random.RandomState(11)
    noisy = value + rng.normal(0, 0.3, len(value))
    models = {
        # Named features; base_score away from 0.5 so logit(base_score) matters.
        "xgb_binary": dict(params={"objective": "binary:logistic", "max_depth": 3, "eta": 0.3,
                                   "base_score": 0.3},
                           label=(noisy > 3.0).astype(float), rounds=12, names=True),
        # No feature names: the config maps names to indices.
        "xgb_reg": dict(params={"objective": "reg:squarederror", "max_depth": 4, "eta": 0.2,
                                "base_score": 1.5},
                        label=noisy, rounds=15, names=False),
        "xgb_multi": dict(params={"objective": "multi:softprob", "num_class": 3, "max_depth": 3,
                                  "eta": 0.3},
                          label=np.digitize(noisy, [2.5, 3.5]).astype(float), rounds=8,
                          names=True),
        # reg:logistic: a regression onto [0, 1], through the same sigmoid.
        "xgb_reglogistic": dict(params={"objective": "reg:logistic", "max_depth": 2, "eta": 0.3,
                                        "base_score": 0.2},
                                label=np.clip((noisy - 1.0) / 4.0, 0, 1), rounds=5, names=True),
        # dart: trees scaled by weight_drop at prediction.
        "xgb_dart": dict(params={"objective": "binary:logistic", "booster": "dart", "max_depth": 2,
                                 "eta": 0.3, "rate_drop": 0.3, "skip_drop": 0.0},
                         label=(noisy > 3.0).astype(float), rounds=6, names=True),
        "xgb_poisson": dict(params={"objective": "count:poisson", "max_depth": 3, "eta": 0.3},
                            label=np.floor(np.clip(noisy, 0, None)), rounds=6, names=True),
    }
    expected = {"xgboost_version": xgb.__version__, "models": {}}
    for name, spec in models.items():
        params = dict(spec["params"], nthread=1, seed=0, tree_method="exact")
        dtrain = xgb.DMatrix(x, label=spec["label"], missing=np.nan,
                             feature_names=FEATURES if spec["names"] else None)
        booster = xgb.train(params, dtrain, num_boost_round=spec["rounds"])
        booster.save_model(name + ".json")
        rows = probe_rows(x) + on_split_rows(booster)
        dtest = xgb.DMatrix(np.array(rows, dtype=float), missing=np.nan,
                            feature_names=FEATURES if spec["names"] else None)
        pred = booster.predict(dtest)
        expected["models"][name] = {
            "objective": params["objective"],
            "rows": jsonable(rows),
            "predict": pred.astype(float).tolist(),
        }
    with open("xgb_expected.json", "w") as f:
        json.dump(expected, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
