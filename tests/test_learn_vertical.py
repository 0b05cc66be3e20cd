"""Vertical logistic regression after PSI: correct arithmetic under encryption, and what crosses in the clear."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import fedbench as fb
from fedbench.errors import MissingColumnError, TooFewPartiesError, UnsupportedEstimatorError

from .conftest import make_fed

_KEYS = make_fed().keys


@pytest.fixture(scope="module")
def fed() -> fb.Federation:
    f = fb.Federation.from_dir("data_samples/vertical", key_bits=512, allow_insecure_key_size=True, audit=True)
    f._keys = _KEYS
    return f


@pytest.fixture(scope="module")
def vrun(fed):
    return fed.fit_vertical(LogisticRegression(C=1.0), label_party="hospital", target="outcome", on="patient_id",
                            rounds=12, tol=0.0)


def plaintext_reference(fed, vrun, c: float, rounds: int):
    """The same algorithm (Taylor loss, Nesterov, step 1/L) on the joined, standardised rows, in the clear."""
    pos = vrun.psi.positions
    test = vrun.test_mask
    mats, lams = [], []
    for name, icpt in ((vrun.guest, True), (vrun.host, False)):
        df = pl.read_csv(f"data_samples/vertical/{name}.csv")
        x = df.select(vrun.features_by_party[name]).to_numpy()[pos[name]][~test]
        z = (x - x.mean(axis=0)) / x.std(axis=0)
        g = np.hstack([z, np.ones((len(z), 1))]) if icpt else z
        lams.append(np.linalg.eigvalsh(g.T @ g / len(z))[-1])
        mats.append(z)
    y = pl.read_csv("data_samples/vertical/hospital.csv")["outcome"].to_numpy()[pos[vrun.guest]][~test]
    t = np.where(y == 1, 1.0, -1.0)
    z = np.hstack(mats)
    m = len(t)
    step = 1.0 / (0.25 * c * sum(lams) + 1.0 / m)
    w = w_prev = np.zeros(z.shape[1])
    b = b_prev = 0.0
    losses = []
    for it in range(1, rounds + 1):
        beta = (it - 1) / (it + 2)
        yw, yb = w + beta * (w - w_prev), b + beta * (b - b_prev)
        u = z @ yw + yb
        losses.append(float(np.mean(np.log(2) - t * u / 2 + u**2 / 8)))
        d = u / 4 - t / 2
        w_prev, w = w, yw - step * (c * (z.T @ d) + yw) / m
        b_prev, b = b, yb - step * c * d.sum() / m
    return w, losses


def test_encrypted_protocol_computes_the_plaintext_iterates(fed, vrun):
    w_ref, losses = plaintext_reference(fed, vrun, 1.0, 12)
    setups = np.concatenate([vrun.coef_by_party[vrun.guest], vrun.coef_by_party[vrun.host]])
    # coef_by_party is on the original scale: bring the reference there too.
    scales = []
    pos = vrun.psi.positions
    test = vrun.test_mask
    for name in (vrun.guest, vrun.host):
        df = pl.read_csv(f"data_samples/vertical/{name}.csv")
        scales.append(df.select(vrun.features_by_party[name]).to_numpy()[pos[name]][~test].std(axis=0))
    w_orig = w_ref / np.concatenate(scales)
    # Fixed point: 16 fractional bits for scores, 12 for standardised features.
    np.testing.assert_allclose(setups, w_orig, rtol=2e-3, atol=2e-3 * np.abs(w_orig).max())
    np.testing.assert_allclose(vrun.history["loss"].to_numpy(), losses, rtol=1e-3, atol=1e-4)


def test_vertical_beats_the_label_holder_alone(vrun):
    tab = vrun.compare()
    score = dict(zip(tab["model"], tab["score"], strict=True))
    assert score[f"local:{vrun.host}"] is None  # the insurer holds no labels
    assert score["federated"] >= score[f"local:{vrun.guest}"]
    assert score["federated"] >= score["centralized"] - 0.03
    assert vrun.n_aligned == 455 and vrun.n_train + vrun.n_test == 455
    assert 0.15 < vrun.n_test / 455 < 0.35
    x = pl.read_csv("data_samples/vertical/hospital.csv").select(vrun.features_by_party[vrun.guest]).head(3)
    x = pl.concat([x, pl.read_csv("data_samples/vertical/insurer.csv").select(
        vrun.features_by_party[vrun.host]).head(3)], how="horizontal")
    assert vrun.model.predict_proba(x).shape == (3, 2)
    assert type(vrun.plot()).__name__ == "Figure" and "VerticalRun" in repr(vrun)
    assert "who learns what" in vrun._repr_html_()


def test_labels_and_scores_only_cross_encrypted(fed, vrun):
    t = vrun.transcript
    from_guest = t.filter(sender=vrun.guest)
    assert {m.kind for m in from_guest} == {"split-mask", "curvature-bound", "encrypted-residuals", "padded-gradient"}
    assert all(m.encrypted for m in from_guest if m.kind not in ("split-mask", "curvature-bound"))
    to_host = {m.kind for m in t.filter(receiver=vrun.host)}
    assert to_host == {"split-mask", "public-key", "step-size", "encrypted-residuals", "padded-gradient-plain",
                       "loss"}
    mask = t.filter(kind="split-mask")[0]
    assert mask.nbytes == (vrun.n_aligned + 7) // 8  # one bit per aligned row, derived from identifiers only
    from_host = t.filter(sender=vrun.host)
    assert all(m.encrypted for m in from_host if m.kind not in ("curvature-bound", "intercept-offset"))
    # The guest's labels never appear as bytes in anything the host received.
    y = pl.read_csv("data_samples/vertical/hospital.csv")["outcome"].to_numpy()[vrun.psi.positions[vrun.guest]]
    for enc in (np.asarray(y[:16], dtype="<f8").tobytes(), np.asarray(y[:16], dtype=np.int64).tobytes()):
        assert all(enc not in p for p in t.received_by(vrun.host))


def test_a_given_learning_rate_sends_no_curvature_bound(fed, vrun):
    # Without a rate, each party's bound goes to the coordinator (the step size needs it) ...
    assert {m.sender for m in vrun.transcript.filter(kind="curvature-bound")} == {vrun.guest, vrun.host}
    # ... with one, no party computes or sends its bound, and both receive exactly the given rate.
    run = fed.fit_vertical(LogisticRegression(C=1.0), label_party="hospital", target="outcome", on="patient_id",
                           rounds=2, tol=0.0, learning_rate=0.05)
    assert len(run.transcript.filter(kind="curvature-bound")) == 0
    steps = run.transcript.filter(kind="step-size")
    assert {m.receiver for m in steps} == {run.guest, run.host}
    assert all(np.frombuffer(m.payload, dtype=np.float64)[0] == 0.05 for m in steps)
    assert "curvature bounds unless learning_rate is given" in run.leakage


def test_pipeline_reproducible_split_and_errors(fed, vrun):
    run = fed.fit_vertical(make_pipeline(StandardScaler(), LogisticRegression()), label_party="hospital",
                           target="outcome", on="patient_id", rounds=3)
    assert run.model[0].mean_.shape == (len(run.features),)
    # Same seed, same held-out patients, although each PSI run lists the shared rows in a fresh random order.
    ids = pl.read_csv("data_samples/vertical/hospital.csv")["patient_id"].to_numpy()

    def held_out(r):
        return set(ids[r.psi.positions["hospital"][r.test_mask]])

    assert held_out(run) == held_out(vrun)
    with pytest.raises(UnsupportedEstimatorError, match="LogisticRegression"):
        fed.fit_vertical(SGDClassifier(), label_party="hospital", target="outcome", on="patient_id")
    with pytest.raises(MissingColumnError, match="'hospital' has no target column 'premium'"):
        fed.fit_vertical(LogisticRegression(), label_party="hospital", target="premium", on="patient_id")
    three = make_fed()
    for name in ("a", "b", "c"):
        three.add_party(name, pl.DataFrame({"id": [1, 2, 3], "x": [0.1, 0.2, 0.3], "y": [0, 1, 0]}))
    with pytest.raises(TooFewPartiesError, match="exactly two"):
        three.fit_vertical(LogisticRegression(), label_party="a", target="y", on="id")
