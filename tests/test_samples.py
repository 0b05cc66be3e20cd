"""The bundled sample data: reproducible, small, and shaped as documented."""

from __future__ import annotations

import hashlib
from pathlib import Path

import polars as pl
import pytest

from fedbench.errors import ConfigurationError
from fedbench.samples import (
    BANK_OVERLAP,
    BANK_SIZES,
    HOSPITALS,
    MEASUREMENTS,
    SAMPLE_FILES,
    VERTICAL_SPLIT,
    main,
    make_samples,
    normalize_identifier,
    sample_dir,
)

COMMITTED = Path(__file__).resolve().parent.parent / "data_samples"
HOSPITAL_COLUMNS = ["patient_id", "age", "sex", "referral", *MEASUREMENTS, "diagnosis"]


def _digests(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[Path]]]:
    out = tmp_path_factory.mktemp("samples")
    return out, make_samples(out)


def _read(kind: str, name: str) -> pl.DataFrame:
    return pl.read_csv(COMMITTED / kind / name)


def test_regeneration_is_byte_identical_to_committed(generated):
    out, _ = generated
    expected = _digests(COMMITTED)
    assert expected, "data_samples/ is empty: run `python -m fedbench.samples data_samples`"
    # Same file set and same bytes; on mismatch, regenerate and commit data_samples/.
    assert _digests(out) == expected


def test_returned_paths_cover_every_file(generated):
    out, files = generated
    assert set(files) == {"hospitals", "banks", "vertical", "readme"}
    for kind, names in SAMPLE_FILES.items():
        assert [p.name for p in files[kind]] == list(names)
    returned = {p.resolve() for paths in files.values() for p in paths}
    assert returned == {p.resolve() for p in out.rglob("*") if p.is_file()}


def test_total_size_under_5_mb():
    assert sum(p.stat().st_size for p in COMMITTED.rglob("*") if p.is_file()) < 5_000_000


def test_different_seed_gives_different_data(tmp_path):
    main([str(tmp_path), "--seed", "1"])
    assert (tmp_path / "banks" / "bank_a.csv").read_bytes() != (COMMITTED / "banks" / "bank_a.csv").read_bytes()


@pytest.mark.parametrize("name", list(HOSPITALS))
def test_hospital_file_schema_and_missingness(name):
    df = _read("hospitals", f"{name}.csv")
    assert df.columns == HOSPITAL_COLUMNS
    n_mal, n_ben = HOSPITALS[name]
    assert df.height == n_mal + n_ben
    assert df["diagnosis"].sum() == n_mal
    assert df.schema["age"] == pl.Int64 and df.schema["diagnosis"] == pl.Int64
    assert all(df.schema[c] == pl.Float64 for c in MEASUREMENTS)
    assert set(df["sex"].unique()) <= {"F", "M"}
    assert set(df["referral"].unique()) <= {"gp", "screening", "specialist"}
    assert df["patient_id"].str.contains(r"^P\d{6}$").all()
    assert df["patient_id"].is_sorted()
    # Some, but only a few percent, of measurements are missing; identity and label never are.
    nulls = df.null_count()
    assert nulls.select(MEASUREMENTS).sum_horizontal().item() > 0
    assert max(nulls[c].item() for c in MEASUREMENTS) <= 0.06 * df.height
    assert nulls.select("patient_id", "age", "sex", "referral", "diagnosis").sum_horizontal().item() == 0


def test_hospitals_differ_in_case_mix_and_missing_columns():
    frames = {name: _read("hospitals", f"{name}.csv") for name in HOSPITALS}
    rates = sorted(df["diagnosis"].mean() for df in frames.values())
    assert rates[0] < 0.2 and rates[-1] > 0.7
    missing = {name: frozenset(c for c in MEASUREMENTS if df[c].null_count()) for name, df in frames.items()}
    assert len(set(missing.values())) == len(HOSPITALS)


def test_patient_ids_unique_across_hospitals():
    ids = pl.concat([_read("hospitals", f"{name}.csv")["patient_id"] for name in HOSPITALS])
    assert ids.len() == 569
    assert ids.n_unique() == 569


def test_banks_overlap_by_documented_count_and_need_normalisation():
    a, b = _read("banks", "bank_a.csv"), _read("banks", "bank_b.csv")
    assert (a.height, b.height) == (BANK_SIZES["bank_a"], BANK_SIZES["bank_b"])
    assert a.columns == b.columns == [
        "customer_id", "first_name", "last_name", "dob", "email", "balance", "n_products", "defaulted",
    ]
    assert a["customer_id"].n_unique() == a.height and b["customer_id"].n_unique() == b.height
    shared = a.join(b, on="customer_id", suffix="_b")
    assert shared.height == BANK_OVERLAP
    assert f"Exactly **{BANK_OVERLAP}**" in (COMMITTED / "README.md").read_text(encoding="utf-8")
    assert (shared["dob"] == shared["dob_b"]).all()

    for col in ("first_name", "last_name", "email"):
        raw = list(zip(shared[col], shared[f"{col}_b"], strict=True))
        # Spellings differ for some shared customers, yet all agree once normalised.
        assert any(x != y for x, y in raw), col
        assert all(normalize_identifier(x) == normalize_identifier(y) for x, y in raw), col
    names = pl.concat([a["first_name"], a["last_name"], b["first_name"], b["last_name"]]).to_list()
    assert {"José", "Zoë", "Müller", "Øster", "Łukasz"} <= set(names)
    assert any(n != n.strip() for n in names)  # padded names survive the CSV round trip


def test_vertical_files_overlap_partially():
    hospital, insurer = _read("vertical", "hospital.csv"), _read("vertical", "insurer.csv")
    assert hospital.columns == ["patient_id", *MEASUREMENTS[:10], "outcome"]
    assert insurer.columns == ["patient_id", *MEASUREMENTS[10:], "n_claims", "premium"]
    h_ids, i_ids = set(hospital["patient_id"]), set(insurer["patient_id"])
    assert len(h_ids & i_ids) == VERTICAL_SPLIT["both"]
    assert len(h_ids - i_ids) == VERTICAL_SPLIT["hospital_only"]
    assert len(i_ids - h_ids) == VERTICAL_SPLIT["insurer_only"]
    common = h_ids & i_ids
    order_h = [p for p in hospital["patient_id"] if p in common]
    order_i = [p for p in insurer["patient_id"] if p in common]
    assert order_h != order_i  # rows must be aligned, not merely zipped


def test_normalize_identifier_examples():
    assert normalize_identifier("  JOSE\u0301   van\u00a0Dijk ") == "josé van dijk"
    assert normalize_identifier("Gri\ufb03n") == normalize_identifier("GRIFFIN")
    assert normalize_identifier("Weiß") == normalize_identifier("WEISS")


def test_sample_dir_prefers_checkout(monkeypatch):
    monkeypatch.chdir(COMMITTED.parent / "tests")  # a sub-folder, like notebooks/
    assert sample_dir() == COMMITTED / "hospitals"
    assert sample_dir("banks") == COMMITTED / "banks"


def test_sample_dir_rejects_unknown_kind():
    with pytest.raises(ConfigurationError, match="unknown sample kind"):
        sample_dir("patients")


def test_sample_dir_generates_into_cache_without_checkout(tmp_path, monkeypatch):
    import fedbench.samples as samples

    # Pretend to be an installed wheel: no data_samples/ anywhere, cache under tmp_path.
    monkeypatch.setattr(samples, "_checkout_roots", lambda: [tmp_path])
    monkeypatch.setattr(samples, "_cache_roots", lambda: [tmp_path / "cache"])
    first = sample_dir("vertical")
    assert first.parent.parent == tmp_path / "cache"
    assert _digests(first) == _digests(COMMITTED / "vertical")
    assert sample_dir("vertical") == first  # reused, not regenerated
    assert sample_dir("banks").parent == first.parent
    assert not list((tmp_path / "cache").glob(".samples-*"))  # no staging folder left behind


def test_path_reaches_every_bundled_scenario_from_any_folder(tmp_path, monkeypatch):
    import fedbench as fb

    monkeypatch.chdir(tmp_path)  # not a checkout: the documented helper still finds the samples
    for kind, names in SAMPLE_FILES.items():
        folder = fb.samples.path(kind)
        assert folder.is_dir() and [n for n in names if (folder / n).is_file()] == list(names)
    assert fb.samples.path("hospitals") == sample_dir("hospitals")


def test_path_rejects_an_unknown_name_listing_the_samples():
    import fedbench as fb

    with pytest.raises(ConfigurationError, match=r"no bundled sample called 'patients'; the samples are: "
                       r"hospitals, banks, vertical"):
        fb.samples.path("patients")
