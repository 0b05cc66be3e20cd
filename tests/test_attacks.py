"""Attack lab: each attack succeeds where it must and fails where the protection holds."""

from __future__ import annotations

import math
import warnings

import numpy as np
import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fedbench as fb
import fedbench.attacks as atk
from fedbench.samples import sample_dir

from .conftest import make_fed

HOSPITALS = sample_dir("hospitals")
FEATURES = ["mean_radius", "mean_texture", "mean_smoothness", "age"]


# -- differencing ------------------------------------------------------------------------------------
def test_differencing_recovers_exact_sum_and_real_dp_error_at_least_laplace_scale(fed, hospitals):
    runs_before, ledger_before = len(fed.history), fed.budget.parties
    res = atk.differencing(fed, "age", target_party="south", bounds=(0, 120), epsilons=[1, 8], n_releases=60)
    truth = float(hospitals["south"]["age"].sum())
    # Exact releases: integer ages, so the difference must be exact up to float rounding (1e-6).
    assert abs(res.reconstructed - truth) < 1e-6
    assert "reveals the target's sum exactly" in res.verdict(math.inf)
    # The study's release policy warned before the second exact release, and the result says so.
    assert res.policy_warning is not None and "'south'" in res.policy_warning
    for e in (1, 8):
        # Real DP sums, distributed Laplace: the difference carries 5 full shares of scale b = 120 / e, so its
        # mean |.| is about 2.5 b with a standard error of about 0.25 b over 60 pairs; the measure
        # (error >= b) holds by 6 standard errors.
        assert res.laplace_scale_at[e] == pytest.approx(120 / e)
        assert res.error_at[e] >= res.laplace_scale_at[e]
    assert "not touched" in repr(res) and "<table>" in res._repr_html_()
    # The DP releases ran on a throwaway coordinator: the study has only the two exact runs, and no ledger.
    assert len(fed.history) == runs_before + 2
    assert fed.budget.parties == ledger_before == ()


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
    # The study's release policy (min_group_size 5) warned before releasing the counts; the result says so.
    assert res.policy_warning is not None and "min_group_size" in repr(res)
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


def _risk(caught) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, atk.DisclosureRiskWarning)]


def _samples_fed(**kwargs) -> fb.Federation:
    return fb.Federation.from_dir(HOSPITALS, key_bits=512, allow_insecure_key_size=True, ledger_path=":memory:",
                                  **kwargs)


def test_workbench_warns_on_a_differencing_pair_before_releasing(fed, hospitals):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        total = fed.sum("age")
        assert _risk(caught) == []
        rest = fed.sum("age", parties=["north", "east"])
    (msg,) = _risk(caught)
    assert "'south'" in msg and "'age'" in msg and "epsilon=" in msg
    # The warning points at the caller's line, and quotes no value computed from the data.
    assert next(w for w in caught if issubclass(w.category, atk.DisclosureRiskWarning)).filename == __file__
    for v in (int(total), int(rest), int(total) - int(rest)):
        assert str(v) not in msg
    # Another statistic of the same column sums (a mean over all but one after the sum) is a pair too.
    with pytest.warns(atk.DisclosureRiskWarning, match="'north'"):
        fed.mean("age", parties=["south", "east"])


def test_no_warning_on_an_ordinary_analysis_of_the_samples():
    # Notebooks 01/02/05 style: statistics over all parties, a histogram whose cells all hold >= 5 rows,
    # group counts, a correlation, a function sum, DP releases (also over a subset).
    f = _samples_fed()
    f.set_budget(5.0, 1e-6)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        f.stats(["age", "mean_radius", "mean_texture", "mean_area"])
        f.secure_sum(["age", "mean_radius"])
        float(f.mean("age"))
        f.histogram("age", bins=[20, 30, 40, 50, 60, 70, 80, 100])
        f.group_counts(["referral", "diagnosis"])
        f.corr(["mean_radius", "mean_area", "worst_concave_points", "age"])
        f.secure_sum(lambda df: {"n": float(df.height)})
        f.mean("age", epsilon=0.1, bounds=(0, 120))
        f.sum("age", epsilon=0.1, bounds=(0, 120), parties=["east", "north", "south"])
        f.histogram("age", bins=7, range=(20, 90), epsilon=0.2)
    assert _risk(caught) == []
    # Learning is not a statistics release: a fit over a subset after one over everyone does not warn.
    from sklearn.linear_model import LogisticRegression

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for parties in (None, ["east", "north", "south"]):
            f.fit(LogisticRegression(), target="diagnosis", features=["age", "mean_radius"], parties=parties,
                  rounds=2)
    assert _risk(caught) == []


def test_dp_releases_never_trigger_the_policy(fed):
    fed.set_budget(10.0, 1e-6)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fed.sum("age", epsilon=1.0, bounds=(0, 120))
        fed.sum("age", epsilon=1.0, bounds=(0, 120), parties=["north", "east"])  # DP pair
        fed.sum("age")
        fed.sum("age", parties=["north", "east"], epsilon=1.0, bounds=(0, 120))  # exact then DP
    assert _risk(caught) == []


def test_small_cells_warn_without_saying_which():
    f = _samples_fed()
    # Ages run to 92: with range (20, 90) the 'above' cell holds one patient.
    with pytest.warns(atk.DisclosureRiskWarning) as rec:
        f.histogram("age", bins=7, range=(20, 90))
    (msg,) = _risk(rec)
    assert "fewer than 5 rows" in msg and "above" not in msg and "90" not in msg
    with pytest.warns(atk.DisclosureRiskWarning) as rec:
        f.group_counts(["sex", "referral"])  # three groups of men hold 2, 2 and 3 patients
    (msg,) = _risk(rec)
    assert "'referral, sex'" in msg
    for label in ("M", "gp", "screening", "specialist"):
        assert repr(label) not in msg
    # min_group_size is configurable.
    f.release_policy = atk.ReleasePolicy(min_group_size=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        f.group_counts(["sex", "referral"])
    assert _risk(caught) == []


def test_refuse_differencing_changes_nothing(fed):
    fed.release_policy = atk.ReleasePolicy(action="refuse")
    fed.set_budget(5.0, 1e-6)
    total = fed.sum("age")
    def state() -> tuple:
        return (len(fed.transcript), len(fed.history), fed.budget.summary().to_dicts(),
                len(fed.coordinator.release_guard.history))

    before = state()
    with pytest.raises(fb.DisclosureRiskError, match="'south'") as exc:
        fed.sum("age", parties=["north", "east"])
    assert isinstance(exc.value, fb.PrivacyError) and str(int(total)) not in str(exc.value)
    assert "nothing was computed or sent" in str(exc.value).lower()
    assert state() == before
    # A DP release of the same pair is still allowed.
    fed.sum("age", parties=["north", "east"], epsilon=1.0, bounds=(0, 120))


def _wards(counts: dict[str, int]) -> pl.DataFrame:
    return pl.DataFrame({"ward": [w for w, n in counts.items() for _ in range(n)]})


def test_a_small_group_refusal_under_masking_names_the_aggregator_not_a_key_holder():
    # Under masking there is no key holder: the aggregator unmasked the counts and withholds them.
    f = make_fed(audit=True, secagg="masking")
    for name, counts in (("a", {"x": 10, "y": 1}), ("b", {"x": 7}), ("c", {"x": 6})):
        f.add_party(name, _wards(counts))
    f.release_policy = atk.ReleasePolicy(action="refuse")
    messages = len(f.transcript)
    with pytest.raises(fb.DisclosureRiskError, match=r"The aggregator \(which computed the aggregate\) withheld"):
        f.group_counts("ward", categories={"ward": ["x", "y"]})
    new = list(f.transcript)[messages:]
    assert "unmask" in {m.kind for m in new} and not [m for m in new if m.receiver == "analyst"]


@pytest.mark.parametrize("small", [{"y": 1}, {"y": 3, "z": 2}])
def test_refuse_small_groups_withholds_the_release_and_says_only_that(small):
    f = make_fed(audit=True)
    f.add_party("a", _wards({"x": 10, **small}))
    f.add_party("b", _wards({"x": 7}))
    f.release_policy = atk.ReleasePolicy(action="refuse")
    runs, messages = len(f.history), len(f.transcript)
    with pytest.raises(fb.DisclosureRiskError) as exc:
        f.group_counts("ward", categories={"ward": ["x", "y", "z"]})
    # The message is the same whichever groups are small and however many rows they hold.
    assert str(exc.value) == ("refused by the release policy: exact group_counts of 'ward' has at least one "
                              "non-empty group with fewer than 5 rows (min_group_size): small counts single out "
                              "people. The key holder (which computed the aggregate) withheld the release from "
                              "the analyst; to release anyway set "
                              "fed.release_policy = fb.attacks.ReleasePolicy(action='warn')")
    # The parties' ciphertexts went to the aggregator and key holder, but the analyst received nothing.
    new = list(f.transcript)[messages:]
    assert new and not [m for m in new if m.receiver == "analyst"]
    assert len(f.history) == runs and f.coordinator.release_guard.history == []
    # With the policy off the same release goes through.
    f.release_policy = atk.ReleasePolicy(action="off")
    assert f.group_counts("ward", categories={"ward": ["x", "y", "z"]}).to_polars()["count"].sum() == 17 + sum(
        small.values())


_PARTIES = ["a", "b", "c", "d", "e"]
_shapes = st.tuples(st.sampled_from(["age", "chol"]), st.sets(st.sampled_from(_PARTIES), min_size=2), st.booleans())


@given(history=st.lists(_shapes, max_size=6), request=_shapes)
def test_policy_warns_exactly_on_one_party_differences(history, request):
    # Plaintext reference: a request warns iff it is exact and some earlier exact release of the same column
    # covers a set of parties that contains it or is contained in it, differing by exactly one party.
    releases = [atk.Release.of("sum", c, sorted(p), exact=x) for c, p, x in history]
    column, parties, exact = request
    msgs = atk.check_release(releases, atk.Release.of("sum", column, sorted(parties), exact=exact))
    expected = exact and any(
        x and c == column and len(p ^ parties) == 1 for c, p, x in history)
    assert bool(msgs) == expected
    if msgs:  # the message names the one party, and nothing else identifying
        (who,) = next(p ^ parties for c, p, x in history if x and c == column and len(p ^ parties) == 1)
        assert f"party {who!r}" in msgs[0]


def test_every_statistic_release_is_judged_by_the_policy(fed):
    # The policy reads the shape of a release from the statistic's local function: if one is renamed
    # and no longer recognised, its releases would escape the policy; this catches that.
    fed.set_budget(5.0, 1e-6)
    fed.sum("age")
    fed.count()
    fed.stats(["age"])
    fed.corr(["age", "chol"])
    fed.group_counts("sex")
    fed.histogram("age", bins=[0, 50, 100])
    fed.secure_sum(lambda df: {"n": float(df.height)})
    fed.mean("age", epsilon=0.5, bounds=(0, 120))
    fed.histogram("age", bins=[0, 50, 100], epsilon=0.5)
    shapes = fed.coordinator.release_guard.history
    assert {r.statistic for r in shapes} == {
        "column sums", "row count", "squared deviations", "complete-case sums", "cross deviations",
        "group_counts", "histogram", "function sum", "clamped sums"}
    assert [r.exact for r in shapes][-2:] == [False, False]  # the DP releases are recorded as DP
    assert all(r.parties == frozenset(fed.party_names) for r in shapes)


def test_release_policy_bad_input(fed):
    with pytest.raises(fb.ConfigurationError, match="action"):
        atk.ReleasePolicy(action="maybe")
    with pytest.raises(fb.ConfigurationError, match="min_group_size"):
        atk.ReleasePolicy(min_group_size=0)
    with pytest.raises(fb.ConfigurationError, match="release_policy"):
        fed.release_policy = {"min_group_size": 5}
    assert fed.release_policy == atk.ReleasePolicy()  # unchanged


# -- gradient reconstruction (real workbench runs) ------------------------------------------------
def test_gradient_reconstruction_exact_from_the_real_plaintext_update():
    res = atk.gradient_reconstruction(HOSPITALS, FEATURES, "diagnosis", protection="none", trials=5, key_bits=512)
    assert res.error[math.inf] < 1e-6  # the tolerance
    assert res.identified[math.inf] == 1.0
    assert "real run of the workbench" in res.note


@pytest.mark.slow
def test_gradient_reconstruction_secure_aggregate_is_chance_and_ciphertext_only():
    res = atk.gradient_reconstruction(HOSPITALS, FEATURES, "diagnosis", protection="secure_aggregation",
                                      trials=60, seed=1, key_bits=512)
    # The aggregator received only ciphertexts and public layout, read from the real transcript.
    assert res.aggregator_blind[math.inf] is True
    # Chance = 1/4 parties; parties are exchangeable, so the identification rate is binomial(60, 1/4):
    # 3 standard errors (0.168) is the stated tolerance.
    assert res.chance == 0.25
    assert abs(res.identified[math.inf] - 0.25) <= 3 * math.sqrt(0.25 * 0.75 / 60)
    assert res.error[math.inf] > 0.5  # far from the example (exact would be ~1e-16)


@pytest.mark.slow
def test_gradient_reconstruction_under_dp_fedavg_fails():
    budget = atk.SimulationBudget(epsilon=100.0)
    res = atk.gradient_reconstruction(HOSPITALS, FEATURES, "diagnosis", protection="dp", epsilons=[0.5, 8],
                                      trials=8, key_bits=512, budget=budget)
    assert budget.spent == pytest.approx(8 * 8.5)  # charged to the lab's budget: trials x sum of epsilons
    for e in (0.5, 8):
        # The attacker sees a noisy aggregate of four clipped updates: far from the example (exact: 1e-16).
        assert res.error[e] > 0.5 and res.aggregator_blind[e]


def test_gradient_reconstruction_bad_input():
    with pytest.raises(fb.ConfigurationError, match="logistic"):
        atk.gradient_reconstruction(HOSPITALS, FEATURES, "diagnosis", model="mlp")
    with pytest.raises(fb.ConfigurationError, match="protection"):
        atk.gradient_reconstruction(HOSPITALS, FEATURES, "diagnosis", protection="prayer")
    with pytest.raises(fb.ColumnError, match="height"):
        atk.gradient_reconstruction(HOSPITALS, ["height"], "diagnosis")
    with pytest.raises(fb.ConfigurationError, match="at most 100"):
        atk.gradient_reconstruction(HOSPITALS, FEATURES, "diagnosis", protection="dp", epsilons=[1e6])
    with pytest.raises(fb.ConfigurationError, match="trials"):
        atk.gradient_reconstruction(HOSPITALS, FEATURES, "diagnosis", trials=0)


# -- membership inference (models trained by the workbench) ------------------------------------------
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


@pytest.mark.slow
def test_membership_succeeds_on_memorising_fedavg_and_dp_closes_the_gap():
    parts = _overfit_parties()
    feats = [f"f{i}" for i in range(200)]
    res = atk.membership_inference(parts, feats, "y", epsilons=[0.5, math.inf], C=100.0, epochs=5, seed=0,
                                   key_bits=512)
    # 160 members vs 160 non-members: the standard error of an advantage is at most sqrt(0.5 / 160)
    # ~ 0.056. Tolerance: without protection the advantage exceeds 3 SE (and AUC > 0.6); at epsilon 0.5
    # (real DP-FedAvg, CSPRNG noise) it stays within 3 SE of zero.
    se = math.sqrt(0.5 / res.n_members)
    assert res.n_members == 160
    assert res.advantage[math.inf] > 3 * se and res.auc[math.inf] > 0.6
    assert abs(res.advantage[0.5]) < 3 * se
    assert "no measurable" in res.verdict(0.5)
    assert "fed.fit" in res.note


@pytest.mark.slow
def test_membership_on_hospitals_reports_all_epsilons():
    cols = [c for c in pl.read_csv(HOSPITALS / "north.csv").columns if c.startswith(("mean_", "worst_"))]
    for attack, grid in (("loss_threshold", [0.5, 1.0, 2.0, 4.0, 8.0, math.inf]), ("shadow", [8.0, math.inf])):
        res = atk.membership_inference(HOSPITALS, cols, "diagnosis", attack=attack, epsilons=grid, key_bits=512)
        assert res.epsilons == grid
        assert all(0 <= res.auc[e] <= 1 and 0 <= res.accuracy[e] <= 1 for e in res.epsilons)
        # Non-private FedAvg generalises on these hospitals (the notebook's honest reading).
        assert res.accuracy[math.inf] > 0.9
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
    res = atk.gradient_reconstruction(f, FEATURES, "diagnosis", trials=3, key_bits=512)
    assert res.error[math.inf] < 1e-6


# -- dashboard ---------------------------------------------------------------------------------------
@pytest.mark.slow
def test_attack_lab_dashboard_runs_headless(fed):
    from fedbench.widgets.attacks import AttackLab

    lab = AttackLab(HOSPITALS, FEATURES, "diagnosis", fed=fed, column="age", target_party="south",
                    bounds=(0, 120), epsilons=[1.0, 8.0], figure_backend="static", trials=5, n_releases=5,
                    key_bits=512)
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
