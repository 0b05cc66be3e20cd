"""Attack lab: each attack succeeds where it must and fails where the protection holds."""

from __future__ import annotations

import math
import warnings

import numpy as np
import polars as pl
import pytest

import fedbench as fb
import fedbench.attacks as atk
from fedbench.samples import sample_dir

from .conftest import make_fed

HOSPITALS = sample_dir("hospitals")
FEATURES = ["mean_radius", "mean_texture", "mean_smoothness", "age"]


# -- differencing ------------------------------------------------------------------------------------
def test_differencing_recovers_exact_sum_and_dp_error_at_least_laplace_scale(fed, hospitals):
    budget_before = fed.budget.describe() if hasattr(fed.budget, "describe") else None
    res = atk.differencing(fed, "age", target_party="south", bounds=(0, 120), epsilons=[0.5, 1, 8], n_releases=400)
    truth = float(hospitals["south"]["age"].sum())
    # Exact releases: integer ages, so the difference must be exact up to float rounding (1e-6).
    assert abs(res.reconstructed - truth) < 1e-6
    assert "reveals the target's sum exactly" in res.verdict(math.inf)
    for e in (0.5, 1, 8):
        # Difference of two Laplace(b) draws has mean |.| = 1.5 b; require >= b (the measure),
        # which 400 draws clear by many standard errors.
        assert res.laplace_scale_at[e] == pytest.approx(120 / e)
        assert res.error_at[e] >= res.laplace_scale_at[e]
    assert "not touched" in repr(res) and "<table>" in res._repr_html_()
    if budget_before is not None:
        assert fed.budget.describe() == budget_before


def test_differencing_bad_input(fed):
    with pytest.raises(fb.UnknownPartyError, match="nowhere"):
        atk.differencing(fed, "age", target_party="nowhere")
    with pytest.raises(fb.ColumnError, match="weight"):
        atk.differencing(fed, "weight", target_party="south")
    with pytest.raises(fb.ConfigurationError, match="epsilon"):
        atk.differencing(fed, "age", target_party="south", bounds=(0, 120), epsilons=[0.0])
    with pytest.raises(fb.ConfigurationError, match="bounds"):
        atk.differencing(fed, "age", target_party="south", epsilons=[1.0])
    # A grid beyond the simulation budget is refused (and says the study's budget is not used).
    with pytest.raises(atk.SimulationBudgetError, match="never used"):
        atk.differencing(fed, "age", target_party="south", bounds=(0, 120), epsilons=[8.0],
                         budget=atk.SimulationBudget(epsilon=10.0))


def test_differencing_needs_three_parties_since_one_party_release_is_refused(hospitals):
    f = make_fed()
    f.add_party("north", hospitals["north"])
    f.add_party("south", hospitals["south"])
    # The workbench itself refuses an aggregate over one party: with two parties this attack is blocked.
    with pytest.raises(fb.TooFewPartiesError):
        atk.differencing(f, "age", target_party="south", epsilons=[])


def test_small_groups_flags_a_group_of_one():
    f = make_fed()
    f.add_party("a", pl.DataFrame({"ward": ["x", "x", "x", "y"]}))
    f.add_party("b", pl.DataFrame({"ward": ["x", "x", "x"]}))
    res = atk.small_groups(f, "ward", min_group_size=2)
    assert res.small_groups == [{"ward": "y"}]
    # And no group flagged when all counts reach the threshold.
    assert atk.small_groups(f, "ward", min_group_size=1).small_groups == []


# -- release policy ----------------------------------------------------------------------------------
def test_policy_fires_on_differencing_pair_and_not_on_ordinary_analysis():
    everyone = ["north", "south", "east"]
    history = [atk.Release.of("sum", "age", everyone)]
    pair = atk.Release.of("sum", "age", ["north", "east"])
    msgs = atk.check_release(history, pair)
    assert len(msgs) == 1 and "'south'" in msgs[0]
    # Ordinary analysis: same parties for another column, a mean over all, a DP release of the pair.
    assert atk.check_release(history, atk.Release.of("sum", "chol", everyone)) == []
    assert atk.check_release(history, atk.Release.of("mean", "age", everyone)) == []
    assert atk.check_release(history, atk.Release.of("sum", "age", ["north", "east"], exact=False)) == []
    # Two parties fewer is not a single-party difference.
    assert atk.check_release(history, atk.Release.of("sum", "age", ["north"])) == []
    small = atk.Release("group_counts", "ward", frozenset(everyone), group_sizes_below=1)
    assert atk.check_release([], small)
    assert atk.check_release([], small, atk.ReleasePolicy(min_group_size=1)) == []
    with pytest.warns(atk.DisclosureRiskWarning):
        for m in msgs:
            warnings.warn(m, atk.DisclosureRiskWarning, stacklevel=1)


# -- gradient reconstruction -------------------------------------------------------------------------
def test_gradient_reconstruction_exact_without_protection():
    res = atk.gradient_reconstruction(HOSPITALS, FEATURES, "diagnosis", protection="none", trials=50)
    assert res.error[math.inf] < 1e-6  # the tolerance
    assert res.identified[math.inf] == 1.0


def test_gradient_reconstruction_secure_aggregate_is_chance():
    res = atk.gradient_reconstruction(HOSPITALS, FEATURES, "diagnosis", protection="secure_aggregation",
                                      trials=400, seed=1)
    # Chance = 1/4 parties; parties are exchangeable, so the identification rate is binomial(400, 1/4):
    # 3 standard errors (0.065) is the stated tolerance.
    assert res.chance == 0.25
    assert abs(res.identified[math.inf] - 0.25) <= 3 * math.sqrt(0.25 * 0.75 / 400)
    assert res.error[math.inf] > 0.5  # far from the example (exact would be ~1e-16)


def test_gradient_reconstruction_dp_error_grows_as_epsilon_shrinks():
    res = atk.gradient_reconstruction(HOSPITALS, FEATURES, "diagnosis", protection="dp",
                                      epsilons=[0.5, 8, 1e6, math.inf], trials=200)
    assert res.error[math.inf] < 1e-6
    # At 1e6 the noise (sigma ~ 5e-6 x clip) is tiny: still close; at 0.5 and 8 it swamps the update
    # (single-example updates have norm <= lr * |[x, 1]|, well below sigma).
    assert res.error[1e6] < 0.05
    assert res.error[0.5] > 0.5 and res.error[8] > 0.5


def test_gradient_reconstruction_bad_input():
    with pytest.raises(fb.ConfigurationError, match="logistic"):
        atk.gradient_reconstruction(HOSPITALS, FEATURES, "diagnosis", model="mlp")
    with pytest.raises(fb.ConfigurationError, match="protection"):
        atk.gradient_reconstruction(HOSPITALS, FEATURES, "diagnosis", protection="prayer")
    with pytest.raises(fb.ColumnError, match="height"):
        atk.gradient_reconstruction(HOSPITALS, ["height"], "diagnosis")


# -- membership inference ----------------------------------------------------------------------------
def _overfit_parties() -> dict[str, pl.DataFrame]:
    # Random labels and more features (200) than training rows (160): a non-private model can only
    # memorise, the regime where membership inference must succeed.
    rng = np.random.default_rng(3)
    out = {}
    for name in ("a", "b", "c", "d"):
        x = rng.normal(size=(80, 200))
        df = pl.DataFrame({f"f{i}": x[:, i] for i in range(200)}).with_columns(
            pl.Series("y", rng.integers(0, 2, 80)))
        out[name] = df
    return out


def test_membership_succeeds_on_memorising_fedavg_and_dp_closes_the_gap():
    parts = _overfit_parties()
    feats = [f"f{i}" for i in range(200)]
    res = atk.membership_inference(parts, feats, "y", epsilons=[0.5, math.inf], rounds=30, epochs=50, seed=0)
    # 160 members vs 160 non-members: the standard error of an advantage is at most sqrt(0.5 / 160)
    # ~ 0.056. Tolerance: without protection the advantage exceeds 3 SE (and AUC > 0.6); at epsilon 0.5
    # it stays within 3 SE of zero.
    se = math.sqrt(0.5 / res.n_members)
    assert res.n_members == 160
    assert res.advantage[math.inf] > 3 * se and res.auc[math.inf] > 0.6
    assert abs(res.advantage[0.5]) < 3 * se
    assert "no measurable" in res.verdict(0.5)


def test_membership_on_hospitals_reports_all_epsilons():
    cols = [c for c in pl.read_csv(HOSPITALS / "north.csv").columns if c.startswith(("mean_", "worst_"))]
    for attack in ("loss_threshold", "shadow"):
        res = atk.membership_inference(HOSPITALS, cols, "diagnosis", attack=attack)
        assert res.epsilons == [0.5, 1.0, 2.0, 4.0, 8.0, math.inf]
        assert all(0 <= res.auc[e] <= 1 and 0.5 <= res.accuracy[e] <= 1 for e in res.epsilons)
        assert "epsilon" in repr(res)


def test_membership_bad_input():
    with pytest.raises(fb.ConfigurationError, match="logistic"):
        atk.membership_inference(HOSPITALS, FEATURES, "diagnosis", model="forest")
    with pytest.raises(fb.ConfigurationError, match="attack"):
        atk.membership_inference(HOSPITALS, FEATURES, "diagnosis", attack="guess")
    with pytest.raises(fb.ConfigurationError, match="0/1"):
        atk.membership_inference(HOSPITALS, FEATURES, "age")
    with pytest.raises(atk.SimulationBudgetError):
        atk.membership_inference(HOSPITALS, FEATURES, "diagnosis", budget=atk.SimulationBudget(epsilon=1.0))


def test_simulation_from_federation_files_and_refuses_in_memory(fed):
    with pytest.raises(fb.ConfigurationError, match="in-memory"):
        atk.gradient_reconstruction(fed, ["age"], "smoker")
    f = fb.Federation.from_dir(HOSPITALS, key_bits=512, allow_insecure_key_size=True, ledger_path=":memory:")
    res = atk.gradient_reconstruction(f, FEATURES, "diagnosis", trials=10)
    assert res.error[math.inf] < 1e-6


# -- dashboard ---------------------------------------------------------------------------------------
def test_attack_lab_dashboard_runs_headless(fed):
    from fedbench.widgets.attacks import AttackLab

    lab = AttackLab(HOSPITALS, FEATURES, "diagnosis", fed=fed, column="age", target_party="south",
                    bounds=(0, 120), epsilons=[1.0, 8.0], figure_backend="static")
    assert "no attack run yet" in lab.header.value
    lab.attack.value = "gradient reconstruction"
    lab.run_button.click()
    assert list(lab.figures["success"].data[0].y) == [1.0]  # unprotected: identified every time
    assert "exactly" in lab.verdicts.value
    lab.protection.value = "dp"
    lab.run_button.click()
    assert len(lab.figures["success"].data[0].y) == 3 and lab.log.outputs == ()
    lab.attack.value = "membership (loss threshold)"
    lab.run_button.click()
    assert len(lab.figures["utility"].data[0].x) == 3  # accuracy for epsilon 1, 8 and no DP
    lab.attack.value = "differencing"
    lab.protection.value = "secure_aggregation"
    lab.run_button.click()
    assert "differencing works" in lab.verdicts.value
    assert "differencing" in repr(lab) and "Attack lab" in lab._repr_html_()


def test_attack_lab_differencing_without_column_is_refused(fed):
    from fedbench.widgets.attacks import AttackLab

    lab = AttackLab(HOSPITALS, FEATURES, "diagnosis", fed=fed, target_party="south", figure_backend="static")
    lab.attack.value = "differencing"
    with pytest.raises(fb.ConfigurationError, match="needs column="):
        lab.run()
    assert lab.result is None  # nothing ran
    lab.run_button.click()  # from the button the error goes to the log
    assert "needs column=" in "".join(o.get("text", "") for o in lab.log.outputs)
