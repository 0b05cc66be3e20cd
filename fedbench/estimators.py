"""scikit-learn estimators that train federatedly: ``fit(X, y, parties=groups)``.

:class:`FedAvgClassifier` and :class:`FedAvgRegressor` wrap a FedAvg-capable
estimator (default: ``SGDClassifier(loss="log_loss")`` / ``SGDRegressor``).
``parties`` plays the role of ``groups`` in scikit-learn's splitters: one
label per row saying which party holds it.  ``fit`` builds an in-memory
:class:`~fedbench.Federation` with one party per label and runs
:func:`fedbench.learn.fit` on it, so every update goes through secure
aggregation when there are at least two parties.  Without ``parties`` all rows
belong to one party and training is the same round loop without encryption
(an aggregate over one party would be its own data).  After ``fit`` the
fitted inner estimator is ``estimator_`` and prediction delegates to it.

They build a Federation, so they live above ``federation.py`` rather than in
:mod:`fedbench.learn` (which re-exports them lazily): learn never imports Federation.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
from sklearn.base import BaseEstimator, ClassifierMixin, MetaEstimatorMixin, RegressorMixin, clone
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .errors import ConfigurationError
from .federation import Federation
from .learn.fedavg import FedAvg, FedProx

__all__ = ["FedAvgClassifier", "FedAvgRegressor"]


class _FedAvgBase(MetaEstimatorMixin, BaseEstimator):
    def __init__(
        self,
        estimator: Any = None,
        *,
        rounds: int = 20,
        local_epochs: int = 1,
        proximal_mu: float = 0.0,
        fraction_fit: float = 1.0,
        min_parties: int | None = None,
        secure: bool = True,
        key_bits: int = 2048,
        allow_insecure_key_size: bool = False,
        random_state: int | None = 0,
    ) -> None:
        self.estimator = estimator
        self.rounds = rounds
        self.local_epochs = local_epochs
        self.proximal_mu = proximal_mu
        self.fraction_fit = fraction_fit
        self.min_parties = min_parties
        self.secure = secure
        self.key_bits = key_bits
        self.allow_insecure_key_size = allow_insecure_key_size
        self.random_state = random_state

    def _default(self) -> Any:
        raise NotImplementedError

    def _names(self) -> list[str]:
        names = getattr(self, "feature_names_in_", None)
        if names is not None:
            return [str(c) for c in names]
        return [f"x{i}" for i in range(self.n_features_in_)]

    def _frame(self, x: np.ndarray) -> pl.DataFrame:
        return pl.DataFrame({c: x[:, i] for i, c in enumerate(self._names())})

    def _fit(self, x: np.ndarray, y: np.ndarray, parties: Any) -> Any:
        est = clone(self.estimator) if self.estimator is not None else self._default()
        if "random_state" in est.get_params(deep=False) and est.get_params(deep=False)["random_state"] is None:
            est.set_params(random_state=self.random_state)
        groups = np.zeros(len(y), dtype=np.int64) if parties is None else np.asarray(parties)
        if groups.shape[0] != x.shape[0]:
            raise ConfigurationError(f"parties has {groups.shape[0]} labels for {x.shape[0]} rows")
        labels = list(dict.fromkeys(groups.tolist()))
        secure = bool(self.secure) and len(labels) >= 2
        fed = Federation(self.key_bits, allow_insecure_key_size=self.allow_insecure_key_size)
        frame = self._frame(x).with_columns(pl.Series("__target__", y))
        for i, g in enumerate(labels):
            fed.add_party(f"party_{i}", frame.filter(pl.Series(groups == g)))
        seed = int(self.random_state) if isinstance(self.random_state, int | np.integer) else 0
        strategy = (FedAvg if self.proximal_mu == 0 else FedProx)(
            local_epochs=self.local_epochs, proximal_mu=self.proximal_mu, fraction_fit=self.fraction_fit,
            min_parties=self.min_parties, evaluate_every=0, rounds=self.rounds)
        run = fed.fit(est, target="__target__", features=self._names(), strategy=strategy, secure=secure,
                      test_size=0.0, seed=seed, party_metrics=False)
        self.estimator_ = run.model
        self.history_ = run.history
        self.n_parties_ = len(labels)
        return self

    def _x(self, x: Any) -> pl.DataFrame:
        check_is_fitted(self)
        arr = validate_data(self, x, reset=False)
        return self._frame(np.asarray(arr, dtype=np.float64))

    def predict(self, X: Any) -> np.ndarray:
        """Predict with the federatedly trained estimator."""
        x = self._x(X)
        return self.estimator_.predict(x)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        tags.input_tags.allow_nan = False
        return tags


class FedAvgClassifier(ClassifierMixin, _FedAvgBase):
    """A classifier trained by FedAvg over the row groups given as ``parties``.

    Parameters
    ----------
    estimator : classifier, optional
        ``SGDClassifier``, ``Perceptron``, ``MLPClassifier``, ``LogisticRegression``...;
        default ``SGDClassifier(loss="log_loss")``.
    rounds : int, default 20
        FedAvg rounds.
    local_epochs : int, default 1
        Local passes per round.
    proximal_mu : float, default 0.0
        FedProx proximal weight.
    fraction_fit : float, default 1.0
        Fraction of parties sampled per round.
    min_parties : int, optional
        Fewest parties per round after dropouts.
    secure : bool, default True
        Secure aggregation (used whenever there are at least two parties).
    key_bits : int, default 2048
        Paillier key size.
    allow_insecure_key_size : bool, default False
        Allow keys below 2048 bits (tests only).
    random_state : int or None, default 0
        Seed of splits, sampling and initialisation.

    Attributes
    ----------
    estimator_ : estimator
        The federatedly trained estimator.
    classes_ : numpy.ndarray
    history_ : polars.DataFrame
    n_parties_ : int
    n_features_in_ : int
    """

    def _default(self) -> Any:
        from sklearn.linear_model import SGDClassifier

        return SGDClassifier(loss="log_loss", random_state=self.random_state)

    def fit(self, X: Any, y: Any, parties: Any = None) -> FedAvgClassifier:
        """Train across the row groups ``parties`` (one party label per row).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training rows.
        y : array-like of shape (n_samples,)
            Labels.
        parties : array-like of shape (n_samples,), optional
            Which party holds each row (like ``groups``); default: one party.

        Returns
        -------
        self
        """
        x, yy = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(yy)
        self.classes_ = np.unique(yy)
        if self.classes_.size < 2:
            raise ValueError(f"Classifier can't train when only one class is present: {self.classes_[0]!r}")
        return self._fit(x, yy, parties)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities (when the inner estimator has them)."""
        x = self._x(X)
        return self.estimator_.predict_proba(x)

    def decision_function(self, X: Any) -> np.ndarray:
        """Decision function of the inner estimator."""
        x = self._x(X)
        return self.estimator_.decision_function(x)


class FedAvgRegressor(RegressorMixin, _FedAvgBase):
    """A regressor trained by FedAvg over the row groups given as ``parties``.

    Parameters are those of :class:`FedAvgClassifier`; the default estimator is
    ``SGDRegressor``.

    Attributes
    ----------
    estimator_ : estimator
    history_ : polars.DataFrame
    n_parties_ : int
    n_features_in_ : int
    """

    def _default(self) -> Any:
        from sklearn.linear_model import SGDRegressor

        return SGDRegressor(random_state=self.random_state)

    def fit(self, X: Any, y: Any, parties: Any = None) -> FedAvgRegressor:
        """Train across the row groups ``parties`` (one party label per row).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training rows.
        y : array-like of shape (n_samples,)
            Targets.
        parties : array-like of shape (n_samples,), optional
            Which party holds each row (like ``groups``); default: one party.

        Returns
        -------
        self
        """
        x, yy = validate_data(self, X, y, dtype=np.float64, y_numeric=True)
        return self._fit(x, np.asarray(yy, dtype=np.float64), parties)
