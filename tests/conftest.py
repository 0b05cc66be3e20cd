from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, settings

import fedbench as fb

settings.register_profile(
    "ci", deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
settings.load_profile("ci")

#: Small keys keep the suite fast; production code refuses them without this explicit opt-in.
TEST_KEY_BITS = 512


def make_fed(**kwargs) -> fb.Federation:
    kwargs.setdefault("allow_insecure_key_size", True)
    return fb.Federation(kwargs.pop("key_bits", TEST_KEY_BITS), **kwargs)


@pytest.fixture
def hospitals() -> dict[str, pl.DataFrame]:
    rng = np.random.default_rng(7)
    out = {}
    for name, n in [("north", 40), ("south", 25), ("east", 60)]:
        df = pl.DataFrame(
            {
                "age": rng.integers(18, 95, n),
                "chol": rng.normal(240, 45, n).round(1),
                "sex": rng.choice(["f", "m"], n),
                "smoker": rng.random(n) < 0.3,
            }
        )
        # A few missing cholesterol readings, as in real hospital files.
        df = df.with_columns(pl.when(pl.col("age") % 11 == 0).then(None).otherwise(pl.col("chol")).alias("chol"))
        out[name] = df
    return out


@pytest.fixture
def fed(hospitals) -> fb.Federation:
    f = make_fed(audit=True)
    for name, df in hospitals.items():
        f.add_party(name, df)
    return f
