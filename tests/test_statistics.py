"""Study statistics: identity with scipy, scikit-posthocs, statsmodels; hand checks; NaN/degenerate rules."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
import scikit_posthocs
from scipy import stats
from statsmodels.stats.contingency_tables import cochrans_q

from spinekit.errors import InputError
from spinekit.evaluation.statistics import (
    compare_groups,
    describe,
    format_p,
    holm_adjust,
    paired_setting_tests,
    per_unit_means,
    statistics_markdown,
)

MODELS = ("unet", "maskrcnn", "deeplab")
CONTINUOUS = ["dice", "hd95"]


def _long_table(seed: int = 0, n_images: int = 14, folds: int = 3) -> pd.DataFrame:
    """3 models x ``folds`` folds x ``n_images`` images; dice shifted per model, one NaN pattern."""
    rng = np.random.default_rng(seed)
    rows = []
    for shift, model in zip((0.0, 0.06, 0.12), MODELS, strict=True):
        for fold in range(folds):
            for image in range(n_images):
                dice = 0.6 + shift + 0.02 * image / n_images + rng.normal(0, 0.05)
                rows.append({"model": model, "fold": fold, "image_id": image,
                             "file_name": f"img{image:02d}.png",
                             "dice": np.nan if (image == 0 and model == "deeplab") else dice,
                             "hd95": rng.gamma(2.0, 3.0),
                             "recognised": float(rng.random() < 0.5 + 2 * shift)})
    return pd.DataFrame(rows)


def _units(table: pd.DataFrame, metric: str) -> dict[str, np.ndarray]:
    """Per-image fold means by hand (numpy), NaN images left out."""
    out = {}
    for model in MODELS:
        sub = table[table["model"] == model]
        means = np.array([np.nanmean(sub.loc[sub["image_id"] == i, metric]) if
                          sub.loc[sub["image_id"] == i, metric].notna().any() else np.nan
                          for i in sorted(sub["image_id"].unique())])
        out[model] = means
    return out


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return _long_table()


@pytest.fixture(scope="module")
def results(table: pd.DataFrame) -> dict[str, pd.DataFrame]:
    return compare_groups(table, group="model", metrics=[*CONTINUOUS, "recognised"])


# ----------------------------------------------------------------------------- Holm, units, describe

def test_holm_matches_hand_computation() -> None:
    # Holm: sort ascending, multiply the i-th smallest (0-based) by (m - i), running max, cap at 1.
    p = [0.01, 0.04, 0.03, 0.005]
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    hand = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        hand[i] = running
    assert hand == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm_adjust(p) == pytest.approx(hand)
    # NaN stays NaN and is not counted in the family (m = 2): 0.01 * 2, max(0.04 * 1, 0.02)
    adjusted = holm_adjust([0.01, np.nan, 0.04])
    assert adjusted[0] == pytest.approx(0.02) and np.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.04)


def test_per_unit_means_average_folds_and_skip_nan() -> None:
    table = pd.DataFrame({"model": ["a"] * 6, "fold": [0, 1, 2, 0, 1, 2], "image_id": [1, 1, 1, 2, 2, 2],
                          "dice": [0.5, np.nan, 0.7, np.nan, np.nan, np.nan]})
    units = per_unit_means(table, group="model", metrics=["dice"])
    assert list(units["image_id"]) == [1, 2]
    assert units["dice"].iloc[0] == pytest.approx(0.6)  # NaN fold skipped, not read as 0
    assert np.isnan(units["dice"].iloc[1])
    assert list(units["n_rows"]) == [3, 3]


def test_describe_excludes_and_counts_nan() -> None:
    values = [0.2, 0.4, np.nan, 0.9, 0.5, np.nan]
    table = pd.DataFrame({"model": ["a"] * 6, "dice": values})
    row = describe(table, group="model", metrics=["dice"]).iloc[0]
    finite = np.array([0.2, 0.4, 0.9, 0.5])
    assert (row["n"], row["n_nan"]) == (4, 2)
    assert row["mean"] == pytest.approx(0.5)
    assert row["sd"] == pytest.approx(np.std(finite, ddof=1))
    # linear-interpolated quartiles of [0.2, 0.4, 0.5, 0.9]: Q1 = 0.35, median 0.45, Q3 = 0.6
    assert (row["q1"], row["median"], row["q3"]) == pytest.approx((0.35, 0.45, 0.6))
    assert row["iqr"] == pytest.approx(0.25)


# ----------------------------------------------------------------------------- identity with the libraries

def test_kruskal_shapiro_friedman_equal_scipy(table: pd.DataFrame,
                                               results: dict[str, pd.DataFrame]) -> None:
    units = _units(table, "dice")
    samples = [v[~np.isnan(v)] for v in units.values()]
    omnibus = results["omnibus"].set_index(["metric", "test"])
    expected = stats.kruskal(*samples)
    row = omnibus.loc[("dice", "Kruskal-Wallis")]
    assert row["statistic"] == pytest.approx(expected.statistic)
    assert row["p"] == pytest.approx(expected.pvalue)
    assert (row["df"], row["n"]) == (2, sum(len(s) for s in samples))
    complete = np.column_stack(list(units.values()))
    complete = complete[~np.isnan(complete).any(axis=1)]
    friedman = stats.friedmanchisquare(*complete.T)
    row = omnibus.loc[("dice", "Friedman")]
    assert row["p"] == pytest.approx(friedman.pvalue) and row["n"] == len(complete) == 13
    assert "1 image(s) without a value in every group" in row["note"]
    normality = results["normality"].set_index(["group", "metric"])
    for model, sample in zip(MODELS, samples, strict=True):
        shapiro = stats.shapiro(sample)
        assert normality.loc[(model, "dice"), "W"] == pytest.approx(shapiro.statistic)
        assert normality.loc[(model, "dice"), "p"] == pytest.approx(shapiro.pvalue)
    assert normality.loc[("deeplab", "dice"), "n"] == 13


def test_pairwise_wilcoxon_and_dunn_equal_libraries(table: pd.DataFrame,
                                                    results: dict[str, pd.DataFrame]) -> None:
    units = _units(table, "dice")
    pairs = results["pairwise"]
    wilcoxon = pairs[(pairs["metric"] == "dice") & (pairs["test"] == "Wilcoxon signed-rank")]
    complete = np.column_stack(list(units.values()))
    complete = complete[~np.isnan(complete).any(axis=1)]
    raw = [stats.wilcoxon(complete[:, i], complete[:, j]).pvalue for i, j in ((0, 1), (0, 2), (1, 2))]
    assert list(wilcoxon["p"]) == pytest.approx(raw)
    assert list(wilcoxon["p_holm"]) == pytest.approx(list(holm_adjust(raw)))
    assert wilcoxon["effect"].iloc[0] == pytest.approx(np.median(complete[:, 0] - complete[:, 1]))
    long = pd.DataFrame([(model, value) for model, values in units.items() for value in values
                         if not np.isnan(value)], columns=["model", "dice"])
    direct = scikit_posthocs.posthoc_dunn(long, val_col="dice", group_col="model", p_adjust="holm")
    dunn = pairs[(pairs["metric"] == "dice") & (pairs["test"] == "Dunn")]
    for row in dunn.itertuples():
        assert row.p_holm == pytest.approx(direct.loc[row.group_a, row.group_b])
    assert set(dunn["group_a"] + "/" + dunn["group_b"]) == {"unet/maskrcnn", "unet/deeplab",
                                                            "maskrcnn/deeplab"}


def test_dunn_hand_checked_two_groups() -> None:
    # a = 1, 2, 3 and b = 4, 5, 6: mean ranks 2 and 5, N = 6, no ties:
    # z = |2 - 5| / sqrt(N (N + 1) / 12 * (1/3 + 1/3)) = 3 / sqrt(3.5 * 2 / 3); p = erfc(z / sqrt 2)
    table = pd.DataFrame({"model": ["a"] * 3 + ["b"] * 3, "image_id": [0, 1, 2, 0, 1, 2],
                          "iou": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]})
    z = 3.0 / math.sqrt(3.5 * 2.0 / 3.0)
    hand = math.erfc(z / math.sqrt(2.0))
    assert hand == pytest.approx(0.04953, abs=1e-5)
    pairs = compare_groups(table, group="model", metrics=["iou"])["pairwise"]
    dunn = pairs[pairs["test"] == "Dunn"].iloc[0]
    assert dunn["p"] == pytest.approx(hand) and dunn["p_holm"] == pytest.approx(hand)  # one pair
    assert dunn["effect"] == pytest.approx(-3.0)
    assert bool(dunn["below_alpha"]) is True


def test_binary_metrics_use_cochran_and_exact_mcnemar() -> None:
    # image i, folds 0..2: model a recognises all; b recognises images 0-2 in only one fold of three
    rows = []
    for image in range(6):
        for fold in range(3):
            rows.append({"model": "a", "fold": fold, "image_id": image, "recognised": 1.0})
            hit_b = 1.0 if image >= 3 or fold == 0 else 0.0
            rows.append({"model": "b", "fold": fold, "image_id": image, "recognised": hit_b})
    out = compare_groups(pd.DataFrame(rows), group="model", metrics=["recognised"])
    assert list(out["omnibus"]["test"]) == ["Cochran's Q"]
    matrix = np.array([[1, 0]] * 3 + [[1, 1]] * 3)  # b: 1 of 3 folds -> 0 (less than half)
    assert out["omnibus"]["p"].iloc[0] == pytest.approx(cochrans_q(matrix).pvalue)
    pair = out["pairwise"].iloc[0]
    assert pair["test"] == "McNemar (exact)"
    assert pair["p"] == pytest.approx(2 * 0.5 ** 3)  # b = 3 discordant, c = 0: exact binomial
    assert pair["effect"] == pytest.approx(0.5)
    assert out["normality"].empty  # no Shapiro-Wilk for binary metrics
    proportions = out["describe"].set_index("group")["mean"]
    assert proportions["b"] == pytest.approx((3 * (1 / 3) + 3 * 1.0) / 6)


# ----------------------------------------------------------------------------- degenerate inputs

@pytest.mark.filterwarnings("error")
def test_degenerate_inputs_give_nan_with_reason() -> None:
    table = pd.DataFrame({
        "model": ["a"] * 4 + ["b"] * 4 + ["c"] * 2,
        "image_id": [0, 1, 2, 3, 0, 1, 2, 3, 0, 1],
        "const": [0.5] * 10,
        "recognised": [1.0] * 10,
    })
    out = compare_groups(table, group="model", metrics=["const", "recognised"])
    normality = out["normality"].set_index("group")
    assert normality["p"].isna().all()
    assert normality.loc["a", "reason"] == "all values are equal"
    assert normality.loc["c", "reason"] == "n = 2 < 3"
    omnibus = out["omnibus"].set_index("test")
    assert np.isnan(omnibus.loc["Kruskal-Wallis", "p"])
    assert omnibus.loc["Kruskal-Wallis", "reason"] == "all values are equal"
    assert "same value" in omnibus.loc["Friedman", "reason"]
    assert np.isnan(omnibus.loc["Cochran's Q", "p"])
    assert "no image differs" in omnibus.loc["Cochran's Q", "reason"]
    pairs = out["pairwise"]
    assert pairs["p"].isna().all() and pairs["p_holm"].isna().all()
    assert (pairs["reason"] != "").all()
    assert pairs["below_alpha"].isna().all()
    mcnemar_reasons = set(pairs.loc[pairs["test"] == "McNemar (exact)", "reason"])
    assert mcnemar_reasons == {"no discordant images (b + c = 0)"}


@pytest.mark.filterwarnings("error")
def test_single_group_has_no_between_group_tests() -> None:
    table = pd.DataFrame({"model": ["only"] * 5, "image_id": range(5), "dice": [0.1, 0.4, 0.3, 0.8, 0.6],
                          "recognised": [1.0, 0, 1, 1, 0]})
    out = compare_groups(table, group="model", metrics=["dice", "recognised"])
    assert out["pairwise"].empty
    assert out["omnibus"]["p"].isna().all()
    assert set(out["omnibus"]["reason"]) == {"only one group: no between-group test"}
    assert out["normality"]["p"].notna().all()  # Shapiro-Wilk still runs within the group
    text = statistics_markdown(out)
    assert "Only one group: no between-group tests." in text


def test_bad_inputs_raise_input_error(table: pd.DataFrame) -> None:
    with pytest.raises(InputError, match="no column 'iou'"):
        compare_groups(table, group="model", metrics=["iou"])
    bad = table.assign(dice=table["dice"].astype(object))
    bad.loc[3, "dice"] = "high"
    with pytest.raises(InputError, match="non-numeric value 'high'"):
        describe(bad, group="model", metrics=["dice"])
    with pytest.raises(InputError, match="binary metric 'recognised'"):
        compare_groups(table.assign(recognised=0.5), group="model", metrics=["recognised"])


# ----------------------------------------------------------------------------- paired settings

def _fold_table(values: dict[str, list[float]]) -> pd.DataFrame:
    return pd.DataFrame([{"setting": name, "fold": fold, "segm_AP50": value}
                         for name, series in values.items() for fold, value in enumerate(series)])


def test_two_settings_equal_scipy_and_note_small_k() -> None:
    on = [0.81, 0.77, 0.85, 0.79, 0.83]
    off = [0.74, 0.75, 0.80, 0.70, 0.77]  # differences all distinct: no ties
    row = paired_setting_tests(_fold_table({"aug on": on, "aug off": off}), group="setting",
                               metrics=["segm_AP50"]).iloc[0]
    t = stats.ttest_rel(on, off)
    w = stats.wilcoxon(on, off, method="exact")
    assert (row["t"], row["p_t"]) == pytest.approx((t.statistic, t.pvalue))
    assert (row["wilcoxon_W"], row["p_wilcoxon"]) == pytest.approx((w.statistic, w.pvalue))
    assert row["p_wilcoxon"] == pytest.approx(0.0625)  # all 5 differences positive: 2 / 2**5
    d = np.subtract(on, off)
    half = stats.t.ppf(0.975, 4) * d.std(ddof=1) / math.sqrt(5)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((d.mean() - half, d.mean() + half))
    assert (row["mean_a"], row["mean_b"], row["mean_diff"]) == pytest.approx((np.mean(on), np.mean(off),
                                                                             d.mean()))
    assert row["wilcoxon_min_p"] == pytest.approx(0.0625)
    assert "cannot be below 0.0625" in row["note"]
    assert row["p_t_holm"] == pytest.approx(row["p_t"])
    six = paired_setting_tests(_fold_table({"a": [*on, 0.9], "b": [*off, 0.8]}), group="setting",
                               metrics=["segm_AP50"]).iloc[0]
    assert "cannot be below" not in six["note"] and six["wilcoxon_min_p"] == pytest.approx(1 / 32)
    assert row["wilcoxon_method"] == "exact"


def test_tied_differences_use_all_sign_flips() -> None:
    # differences 1, 1, 2, -1, 2, 1, 3 (ties): the exact p enumerates all 2^7 sign flips
    base = [3.0, 2.0, 5.0, 1.0, 4.0, 6.0, 7.0]
    diff = [1.0, 1.0, 2.0, -1.0, 2.0, 1.0, 3.0]
    on = [b + d for b, d in zip(base, diff, strict=True)]
    row = paired_setting_tests(_fold_table({"on": on, "off": base}), group="setting",
                               metrics=["segm_AP50"]).iloc[0]
    ranks = stats.rankdata(np.abs(diff))
    observed = ranks[np.asarray(diff) > 0].sum()
    flips = np.array([[(mask >> i) & 1 for i in range(7)] for mask in range(2 ** 7)], dtype=bool)
    t_plus = (flips * ranks).sum(axis=1)
    total = ranks.sum()
    extreme = np.maximum(t_plus, total - t_plus) >= max(observed, total - observed) - 1e-9
    hand = extreme.mean()  # two-sided: as or more extreme than observed, either direction
    assert row["wilcoxon_method"] == "exact (all sign flips; ties)"
    assert row["p_wilcoxon"] == pytest.approx(hand)
    assert row["p_wilcoxon"] == pytest.approx(
        stats.wilcoxon(on, base, method=stats.PermutationMethod(n_resamples=np.inf)).pvalue)


def test_three_settings_friedman_and_holm() -> None:
    values = {"full": [0.8, 0.7, 0.9, 0.85, 0.75, 0.82], "local": [0.7, 0.72, 0.8, 0.8, 0.7, 0.74],
              "none": [0.6, 0.5, 0.7, 0.66, 0.58, 0.61]}
    out = paired_setting_tests(_fold_table(values), group="setting", metrics=["segm_AP50"])
    assert len(out) == 3
    friedman = stats.friedmanchisquare(*values.values())
    assert out["friedman_p"].tolist() == pytest.approx([friedman.pvalue] * 3)
    raw_t = [stats.ttest_rel(values[a], values[b]).pvalue for a, b in
             (("full", "local"), ("full", "none"), ("local", "none"))]
    assert out["p_t"].tolist() == pytest.approx(raw_t)
    assert out["p_t_holm"].tolist() == pytest.approx(list(holm_adjust(raw_t)))
    assert out["p_wilcoxon_holm"].tolist() == pytest.approx(list(holm_adjust(out["p_wilcoxon"])))


@pytest.mark.filterwarnings("error")
def test_identical_settings_give_nan_with_reason() -> None:
    same = [0.5, 0.6, 0.7]
    row = paired_setting_tests(_fold_table({"a": same, "b": same}), group="setting",
                               metrics=["segm_AP50"]).iloc[0]
    assert np.isnan(row["p_t"]) and np.isnan(row["p_wilcoxon"]) and np.isnan(row["ci_low"])
    assert "zero variance" in row["reason"] and "all paired differences are zero" in row["reason"]
    with pytest.raises(InputError, match="more than one row"):
        paired_setting_tests(_fold_table({"a": same}).assign(fold=0), group="setting",
                             metrics=["segm_AP50"])


# ----------------------------------------------------------------------------- markdown

def test_format_p() -> None:
    assert [format_p(p) for p in (0.003, 0.0004, 0.0625, 1.0, np.nan)] == [
        "0.003", "<0.001", "0.063", "1.000", "n/a"]


def test_markdown_has_the_tables(results: dict[str, pd.DataFrame]) -> None:
    settings = paired_setting_tests(_fold_table({"on": [0.8, 0.7, 0.9], "off": [0.7, 0.6, 0.85]}),
                                    group="setting", metrics=["segm_AP50"])
    text = statistics_markdown(results, settings)
    for heading in ("### Descriptive statistics", "### Normality (Shapiro-Wilk)",
                    "### Tests across all groups", "### Pairwise comparisons",
                    "### Settings compared across folds"):
        assert heading in text
    assert "**How to read.**" in text and "Holm" in text and "alpha = 0.05" in text
    assert "`image_id`" in text
    lines = text.splitlines()
    assert sum(line.startswith("| dice | Dunn | ") for line in lines) == 3
    assert sum(line.startswith("| recognised | McNemar (exact) | ") for line in lines) == 3
    kruskal = next(line for line in lines if line.startswith("| dice | Kruskal-Wallis |"))
    p = results["omnibus"].set_index(["metric", "test"]).loc[("dice", "Kruskal-Wallis"), "p"]
    assert f"| {format_p(p)} |" in kruskal
    assert "| deeplab | dice | 13 | 1 |" in text  # n and NaN count of the per-image values


def test_no_warning_escapes_on_normal_data(table: pd.DataFrame) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compare_groups(table, group="model", metrics=CONTINUOUS)


def test_holm_equals_statsmodels_on_random_families() -> None:
    from statsmodels.stats.multitest import multipletests

    rng = np.random.default_rng(3)
    for size in (2, 3, 7, 20):
        p = rng.random(size) ** 3
        p[rng.integers(0, size)] = p[0]  # a tie
        assert holm_adjust(p) == pytest.approx(multipletests(p, method="holm")[1], abs=1e-15)
