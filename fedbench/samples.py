"""Bundled sample data and its reproducible generator.

``python -m fedbench.samples data_samples`` writes three small scenarios as CSV:

``hospitals/``
    Four hospitals (``north``, ``south``, ``east``, ``west``) splitting the 569
    patients of the Breast Cancer Wisconsin (Diagnostic) data that ships with
    scikit-learn, each with its own case mix, referral pattern and missing values,
    plus synthetic ``age``, ``sex`` and ``referral`` columns.
``banks/``
    Two synthetic customer tables sharing exactly :data:`BANK_OVERLAP` customers,
    whose names and e-mail addresses differ in case, whitespace and Unicode form
    between the banks, so that identifiers must be normalised before a private set
    intersection.
``vertical/``
    The same patients split by *columns*: a hospital with the ``mean_*``
    measurements and the label, an insurer with the other measurements and
    claims data; about 80% of patients appear in both, in different row orders.

The output is byte-identical for a given seed: every random draw comes from
:class:`random.Random.random` (the one stream Python promises to keep stable),
floats are formatted explicitly, rows are in a fixed order and nothing records a
time.  :func:`sample_dir` finds the committed copy of a checkout, or generates
one into a cache directory when fedbench runs from an installed wheel.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import random
import shutil
import tempfile
import unicodedata
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

from .errors import ConfigurationError

__all__ = [
    "BANK_OVERLAP",
    "BANK_SIZES",
    "HOSPITALS",
    "KINDS",
    "MEASUREMENTS",
    "SAMPLE_FILES",
    "VERTICAL_SPLIT",
    "copy_samples",
    "main",
    "make_samples",
    "normalize_identifier",
    "path",
    "sample_dir",
]

T = TypeVar("T")

#: The scenarios :func:`make_samples` writes, one sub-directory each.
KINDS: tuple[str, ...] = ("hospitals", "banks", "vertical")

#: Hospital name -> (malignant cases, benign cases).  The counts add up to the
#: 212 malignant and 357 benign patients of the source data.
HOSPITALS: dict[str, tuple[int, int]] = {
    "north": (35, 195),  # large general hospital: 230 patients, 15% malignant
    "south": (60, 90),  # regional hospital running a screening programme: 40%
    "east": (69, 60),  # university hospital: 53%
    "west": (48, 12),  # small specialist cancer centre: 60 patients, 80%
}

#: Rows in ``bank_a.csv`` and ``bank_b.csv``.
BANK_SIZES: dict[str, int] = {"bank_a": 2000, "bank_b": 3000}

#: Number of ``customer_id`` values present in both bank files.
BANK_OVERLAP = 600

#: Patients in both vertical files, only at the hospital, only at the insurer
#: (455 of 569 = 80% are in both).
VERTICAL_SPLIT: dict[str, int] = {"both": 455, "hospital_only": 57, "insurer_only": 57}

#: File names each scenario holds; :func:`sample_dir` uses them to tell a
#: complete sample folder from an unrelated one.
SAMPLE_FILES: dict[str, tuple[str, ...]] = {
    "hospitals": tuple(f"{name}.csv" for name in HOSPITALS),
    "banks": tuple(f"{name}.csv" for name in BANK_SIZES),
    "vertical": ("hospital.csv", "insurer.csv"),
}

# The 30 measurement columns, in the source order, as snake_case:
# "mean radius" -> mean_radius, "radius error" -> radius_error, ...
_FEATURES = ("radius", "texture", "perimeter", "area", "smoothness", "compactness",
             "concavity", "concave_points", "symmetry", "fractal_dimension")
MEASUREMENTS: tuple[str, ...] = (
    tuple(f"mean_{f}" for f in _FEATURES)
    + tuple(f"{f}_error" for f in _FEATURES)
    + tuple(f"worst_{f}" for f in _FEATURES)
)

# Referral routes per hospital, as (gp, screening, specialist) probabilities.
_REFERRALS = ("gp", "screening", "specialist")
_REFERRAL_MIX: dict[str, tuple[float, float, float]] = {
    "north": (0.70, 0.20, 0.10),
    "south": (0.30, 0.60, 0.10),
    "east": (0.45, 0.25, 0.30),
    "west": (0.10, 0.10, 0.80),
}

# Missing measurements per hospital: (columns, fraction of rows).  Columns in one
# group go missing on the *same* rows, as when one imaging step was skipped.
_MISSING: dict[str, tuple[tuple[tuple[str, ...], float], ...]] = {
    "north": ((("mean_smoothness", "smoothness_error", "worst_smoothness"), 0.03),
              (("symmetry_error",), 0.02)),
    "south": ((("mean_concavity",), 0.04), (("mean_concave_points",), 0.04),
              (("worst_concavity",), 0.02)),
    "east": ((("mean_texture", "texture_error", "worst_texture"), 0.02),),
    "west": ((("fractal_dimension_error",), 0.05), (("mean_fractal_dimension",), 0.02)),
}

# Fixed "today" for ages and dates of birth, so that nothing depends on the clock.
_REFERENCE_DATE = date(2024, 12, 31)


# ---------------------------------------------------------------------------
# Randomness
# ---------------------------------------------------------------------------


class _Rng:
    """Seeded draws built only on :meth:`random.Random.random`.

    Python guarantees that ``random()`` yields the same sequence for the same seed
    in every version; ``randrange``, ``shuffle``, ``gauss`` and numpy's
    ``Generator`` methods carry no such promise, and the committed files must
    stay byte-identical across upgrades.
    """

    def __init__(self, seed: int, stream: str) -> None:
        # A string seed is hashed (SHA-512), so each stream is independent and
        # adding a stream never shifts the draws of another.
        self._random = random.Random(f"fedbench-samples/{seed}/{stream}").random

    def below(self, n: int) -> int:
        """Integer in ``[0, n)``."""
        return min(int(self._random() * n), n - 1)

    def bernoulli(self, p: float) -> bool:
        return self._random() < p

    def shuffle(self, items: list[Any]) -> None:
        for i in range(len(items) - 1, 0, -1):
            j = self.below(i + 1)
            items[i], items[j] = items[j], items[i]

    def sample(self, items: Sequence[T], k: int) -> list[T]:
        pool = list(items)
        self.shuffle(pool)
        return pool[:k]

    def choice(self, items: Sequence[T]) -> T:
        return items[self.below(len(items))]

    def weighted(self, items: Sequence[T], weights: Sequence[float]) -> T:
        u = self._random() * sum(weights)
        for item, w in zip(items, weights, strict=True):
            u -= w
            if u < 0:
                return item
        return items[-1]

    def normal(self, mean: float = 0.0, sd: float = 1.0) -> float:
        # Box-Muller; 1 - u keeps the logarithm's argument in (0, 1].
        u1, u2 = 1.0 - self._random(), self._random()
        return mean + sd * math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)

    def poisson(self, lam: float) -> int:
        # Knuth's method: fine for the small rates used here.
        limit, k, p = math.exp(-lam), 0, self._random()
        while p > limit:
            k += 1
            p *= self._random()
        return k

    def distinct_ints(self, n: int, low: int, high: int) -> list[int]:
        """``n`` distinct integers in ``[low, high]``, in draw order."""
        seen: set[int] = set()
        out: list[int] = []
        while len(out) < n:
            x = low + self.below(high - low + 1)
            if x not in seen:
                seen.add(x)
                out.append(x)
        return out


# ---------------------------------------------------------------------------
# CSV output
# ---------------------------------------------------------------------------


def _float(x: float) -> str:
    """Shortest round-trip form, e.g. ``0.07871`` or ``1001.0``.

    The source data has four significant digits and was parsed from text, so
    ``repr`` gives back exactly the published value.  The trailing ``.0`` keeps
    whole numbers from being read as integers.
    """
    s = repr(float(x))
    if "e" in s or "n" in s:  # exponent, nan or inf: none occur in the source data
        raise ValueError(f"unexpected float {s} in sample data")
    return s


def _cell(value: str | int | None) -> str:
    if value is None:
        return ""  # an empty cell is a null to polars and pandas
    if isinstance(value, bool) or not isinstance(value, str | int):
        # Floats must be formatted by the caller so that the precision is explicit.
        raise TypeError(f"format {value!r} before writing it")
    s = str(value)
    # Quote separators, quotes and leading/trailing whitespace (which is data here:
    # the bank files deliberately carry padded names).
    if any(c in s for c in ',"\n\r') or s != s.strip():
        return '"' + s.replace('"', '""') + '"'
    return s


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[str | int | None]]) -> Path:
    lines = [",".join(_cell(h) for h in header)]
    lines.extend(",".join(_cell(v) for v in row) for row in rows)
    # write_bytes: UTF-8 without BOM and "\n" line ends on every platform.
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(("\n".join(lines) + "\n").encode("utf-8"))
    return path


# ---------------------------------------------------------------------------
# Patients (hospitals and vertical)
# ---------------------------------------------------------------------------


class _Patients:
    """The 569 source patients with their synthetic identity and demographics."""

    def __init__(self, seed: int) -> None:
        from sklearn.datasets import load_breast_cancer  # bundled with scikit-learn, no download

        data = load_breast_cancer()
        if len(data.feature_names) != len(MEASUREMENTS):
            raise RuntimeError("unexpected breast cancer data layout in this scikit-learn version")
        self.n = int(data.data.shape[0])
        self.values: list[list[str]] = [[_float(v) for v in row] for row in data.data.tolist()]
        # scikit-learn codes malignant as 0; the samples use 1 = malignant.
        self.malignant: list[int] = [1 - int(t) for t in data.target.tolist()]

        rng = _Rng(seed, "patients")
        # Random six-digit ids, so that an id says nothing about source row or hospital.
        self.ids = [f"P{k:06d}" for k in rng.distinct_ints(self.n, 1, 999_999)]
        self.age: list[int] = []
        self.sex: list[str] = []
        for m in self.malignant:
            # Malignant cases skew older; nobody under 21 or over 92.
            age = rng.normal(58.0, 11.0) if m else rng.normal(49.0, 12.0)
            self.age.append(min(92, max(21, round(age))))
            # Roughly 1% of breast cancer patients are men.
            self.sex.append("M" if rng.bernoulli(0.01) else "F")


def _hospital_files(out: Path, patients: _Patients, seed: int) -> list[Path]:
    rng = _Rng(seed, "hospitals")
    malignant = [i for i in range(patients.n) if patients.malignant[i]]
    benign = [i for i in range(patients.n) if not patients.malignant[i]]
    if (sum(m for m, _ in HOSPITALS.values()), sum(b for _, b in HOSPITALS.values())) != (
        len(malignant),
        len(benign),
    ):
        raise RuntimeError("hospital case counts do not add up to the source data")
    rng.shuffle(malignant)
    rng.shuffle(benign)

    header = ["patient_id", "age", "sex", "referral", *MEASUREMENTS, "diagnosis"]
    paths = []
    for name, (n_mal, n_ben) in HOSPITALS.items():
        members = malignant[:n_mal] + benign[:n_ben]
        malignant, benign = malignant[n_mal:], benign[n_ben:]
        members.sort(key=lambda i: patients.ids[i])

        rows: list[list[str | int | None]] = []
        for i in members:
            referral = rng.weighted(_REFERRALS, _REFERRAL_MIX[name])
            rows.append([patients.ids[i], patients.age[i], patients.sex[i], referral,
                         *patients.values[i], patients.malignant[i]])
        # Exact counts per group (not a per-cell coin flip) so each file has the
        # documented rate.
        for columns, fraction in _MISSING[name]:
            blank = rng.sample(range(len(rows)), max(1, round(fraction * len(rows))))
            for c in columns:
                j = header.index(c)
                for r in blank:
                    rows[r][j] = None
        paths.append(_write_csv(out / "hospitals" / f"{name}.csv", header, rows))
    return paths


def _vertical_files(out: Path, patients: _Patients, seed: int) -> list[Path]:
    rng = _Rng(seed, "vertical")
    if sum(VERTICAL_SPLIT.values()) != patients.n:
        raise RuntimeError("vertical split does not add up to the source data")
    order = list(range(patients.n))
    rng.shuffle(order)
    n_both, n_hosp = VERTICAL_SPLIT["both"], VERTICAL_SPLIT["hospital_only"]
    both, hosp_only, ins_only = order[:n_both], order[n_both:n_both + n_hosp], order[n_both + n_hosp:]

    n_mean = len(_FEATURES)  # the hospital holds the mean_* columns, the insurer the rest
    hospital = sorted(both + hosp_only, key=lambda i: patients.ids[i])
    hospital_rows: list[list[str | int | None]] = [
        [patients.ids[i], *patients.values[i][:n_mean], patients.malignant[i]] for i in hospital]

    insured = both + ins_only
    rng.shuffle(insured)  # the insurer's own order, unrelated to the hospital's
    insurer_rows: list[list[str | int | None]] = []
    for i in insured:
        age, m = patients.age[i], patients.malignant[i]
        # Claims rise with age and, through treatment, with a malignant diagnosis:
        # realistic leakage that makes the insurer's columns worth joining.
        n_claims = rng.poisson(0.5 + 0.02 * (age - 30) + 1.4 * m)
        premium = max(250.0, 380.0 + 12.5 * age + 45.0 * n_claims + rng.normal(0.0, 70.0))
        insurer_rows.append([patients.ids[i], *patients.values[i][n_mean:], n_claims, f"{premium:.2f}"])

    return [
        _write_csv(out / "vertical" / "hospital.csv",
                   ["patient_id", *MEASUREMENTS[:n_mean], "outcome"], hospital_rows),
        _write_csv(out / "vertical" / "insurer.csv",
                   ["patient_id", *MEASUREMENTS[n_mean:], "n_claims", "premium"], insurer_rows),
    ]


# ---------------------------------------------------------------------------
# Banks
# ---------------------------------------------------------------------------

# Common given and family names from many countries.  Several carry diacritics,
# letters without an ASCII decomposition (Ł, Ø, ß), spaces or the letter pairs
# fi/fl/ff that have compatibility ligatures: all of them change under NFC/NFKC,
# case folding or whitespace clean-up.  Turkish dotted/dotless i is left out
# because Unicode case folding does not round-trip it.
_FIRST_NAMES = (
    "James", "Mary", "John", "Patricia", "Robert", "Jennifer", "Michael", "Linda", "David", "Elizabeth",
    "William", "Susan", "Sarah", "Thomas", "Emma", "Oliver", "Sophie", "Daniel", "Laura", "Anna",
    "Peter", "Grace", "Mohammed", "Fatima", "Aisha", "Omar", "Wei", "Mei", "Hiroshi", "Yuki",
    "Priya", "Arjun", "Luca", "Giulia", "Olga", "Ivan", "Sean", "Niamh", "Lars", "Ingrid",
    "Pieter", "Femke", "Fiona", "Florence", "Steffen", "Raffaella", "Filip", "Finn", "Flavia", "Effie",
    "José", "Zoë", "Łukasz", "Søren", "Chloé", "Renée", "Björn", "Jürgen", "François", "Siobhán",
    "Małgorzata", "Inès", "Joël", "Ákos", "Hélène", "Bartłomiej", "Åsa", "María", "Zoé", "Anne Marie",
)
_LAST_NAMES = (
    "Smith", "Jones", "Williams", "Brown", "Taylor", "Wilson", "Evans", "Johnson", "Clarke", "Walker",
    "Patel", "Khan", "Singh", "Chen", "Wang", "Li", "Zhang", "Kim", "Park", "Tanaka",
    "Sato", "Rossi", "Bianchi", "Romano", "Nowak", "Kowalski", "Novak", "Jansen", "Bakker", "Larsen",
    "Griffin", "Fischer", "Duffy", "Schaeffer", "Clifford", "Flynn", "Fleming", "Hoffmann", "Wolff", "Steffens",
    "Müller", "Schäfer", "Weiß", "Schröder", "Groß", "Øster", "Søndergaard", "Jørgensen", "Åberg", "Wiśniewski",
    "Dvořák", "García", "Martínez", "Núñez", "Pérez", "Fernández", "López", "Çelik", "Öztürk", "Nguyễn",
    "O'Brien", "O'Connor", "van Dijk", "van der Berg", "de la Cruz", "Da Silva", "MacDonald", "Łukasiewicz",
)
_EMAIL_DOMAINS = ("example.com", "example.net", "example.org")  # reserved for documentation (RFC 2606)
_LIGATURES = (("ffi", "\ufb03"), ("ffl", "\ufb04"), ("ff", "\ufb00"), ("fi", "\ufb01"), ("fl", "\ufb02"))
# Letters with no ASCII decomposition, for e-mail local parts.
_ASCII_EXTRA = str.maketrans({"ß": "ss", "ø": "o", "Ø": "O", "ł": "l", "Ł": "L", "æ": "ae", "Æ": "AE",
                              "đ": "d", "Đ": "D", "þ": "th", "Þ": "Th"})


def normalize_identifier(text: str) -> str:
    """Normalise a name or e-mail address the way the bank samples expect.

    NFKC (which also folds ligatures and no-break spaces), Unicode case folding,
    and whitespace collapsed to single spaces with the ends stripped.  Every
    spelling variant in ``data_samples/banks`` maps to the same string as the
    canonical spelling under this function.

    Parameters
    ----------
    text : str
        Raw identifier.

    Returns
    -------
    str
        The normalised identifier.

    Examples
    --------
    >>> normalize_identifier("  JOSE\u0301   van\u00a0Dijk ")
    'josé van dijk'
    """
    # The same step PSI applies with normalize="standard": the samples are checked against what users call.
    from .psi.normalize import _standard

    return _standard(text)


def _ascii(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.translate(_ASCII_EXTRA))
    return "".join(c for c in decomposed.lower() if c.isascii() and c.isalnum())


def _name_variant(rng: _Rng, name: str) -> str:
    """Return a spelling that differs from ``name`` but normalises to the same string."""
    options = ["upper", "lower", "pad"]
    if " " in name:
        options += ["double_space", "nbsp"]
    if unicodedata.normalize("NFD", name) != name:
        options.append("nfd")
    if any(pair in name for pair, _ in _LIGATURES):
        options.append("ligature")
    kind = rng.choice(options)
    if kind == "upper":
        variant = name.upper()
    elif kind == "lower":
        variant = name.lower()
    elif kind == "pad":
        variant = rng.choice((f" {name}", f"{name} ", f"  {name}  "))
    elif kind == "double_space":
        variant = name.replace(" ", "  ")
    elif kind == "nbsp":
        variant = name.replace(" ", "\u00a0")
    elif kind == "nfd":  # combining accents, as typed on some systems
        variant = unicodedata.normalize("NFD", name)
    else:  # ligature, as pasted from a PDF
        variant = name
        for pair, lig in _LIGATURES:
            variant = variant.replace(pair, lig)
    if variant == name:  # e.g. "lower" of an all-lower-case name
        variant = f" {name}"
    assert normalize_identifier(variant) == normalize_identifier(name), (name, variant)
    return variant


def _email_variant(rng: _Rng, email: str) -> str:
    local, domain = email.split("@")
    kind = rng.below(3)
    if kind == 0:
        return ".".join(p.capitalize() for p in local.split(".")) + "@" + domain
    if kind == 1:
        return email.upper()
    return local + "@" + domain.capitalize()


def _bank_files(out: Path, seed: int) -> list[Path]:
    rng = _Rng(seed, "banks")
    n_a, n_b = BANK_SIZES["bank_a"], BANK_SIZES["bank_b"]
    n_people = n_a + n_b - BANK_OVERLAP

    # People: one identity each, shared by both banks for the overlap.
    ids = [f"C{k:07d}" for k in rng.distinct_ints(n_people, 1, 9_999_999)]
    people: list[dict[str, Any]] = []
    emails: set[str] = set()
    first_day, last_day = date(1932, 1, 1).toordinal(), date(2006, 12, 31).toordinal()
    for cid in ids:
        first, last = rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES)
        # Adults 18-92, most of them of working age; redraw rather than clip, so
        # that no birthday piles up at the age limits.
        born = 0
        while not first_day <= born <= last_day:
            born = round(_REFERENCE_DATE.toordinal() - rng.normal(45.0, 16.0) * 365.25)
        dob = date.fromordinal(born)
        f, la = _ascii(first), _ascii(last)
        local = rng.choice((f"{f}.{la}", f"{f}{la}", f"{f[0]}.{la}", f"{f}_{la}", f"{f}.{la}{dob.year % 100:02d}"))
        email = f"{local}@{rng.choice(_EMAIL_DOMAINS)}"
        while email in emails:  # one address per person
            email = f"{local}{rng.below(1000)}@{rng.choice(_EMAIL_DOMAINS)}"
        emails.add(email)
        # A person-level credit risk, so that a shared customer's default
        # behaviour is correlated across the two banks.
        people.append({"customer_id": cid, "first": first, "last": last, "dob": dob, "email": email,
                       "risk": rng.normal()})

    shared = people[:BANK_OVERLAP]
    members = {
        "bank_a": shared + people[BANK_OVERLAP:n_a],
        "bank_b": shared + people[n_a:],
    }
    header = ["customer_id", "first_name", "last_name", "dob", "email", "balance", "n_products", "defaulted"]
    paths = []
    for bank, persons in members.items():
        rows: list[list[str | int | None]] = []
        for p in sorted(persons, key=lambda q: q["customer_id"]):
            # Each bank keyed the record in independently, so messy spellings
            # differ between banks for many shared customers.
            first = _name_variant(rng, p["first"]) if rng.bernoulli(0.12) else p["first"]
            last = _name_variant(rng, p["last"]) if rng.bernoulli(0.12) else p["last"]
            email = _email_variant(rng, p["email"]) if rng.bernoulli(0.10) else p["email"]
            # Balances are log-normal; 6% of accounts are overdrawn.  bank_b is
            # the larger, wealthier-clientele bank.
            if rng.bernoulli(0.06):
                balance = -math.exp(rng.normal(6.0, 1.0))
            else:
                balance = math.exp(rng.normal(8.0 if bank == "bank_a" else 8.4, 1.3))
            n_products = min(8, 1 + rng.poisson(1.3 if bank == "bank_a" else 1.7))
            age = (_REFERENCE_DATE - p["dob"]).days / 365.25
            logit = (-3.1 + 1.1 * p["risk"] + 1.2 * (balance < 0) - 0.25 * (n_products - 2)
                     - 0.02 * (age - 45) - 0.15 * math.log10(max(balance, 1.0)))
            defaulted = int(rng.bernoulli(1.0 / (1.0 + math.exp(-logit))))
            rows.append([p["customer_id"], first, last, p["dob"].isoformat(), email,
                         f"{balance:.2f}", n_products, defaulted])
        paths.append(_write_csv(out / "banks" / f"{bank}.csv", header, rows))
    return paths


# ---------------------------------------------------------------------------
# README
# ---------------------------------------------------------------------------


def _csv_stats(path: Path) -> tuple[int, int, int]:
    """Rows, rows with a 1 in the last column, empty cells (of our own simple CSV)."""
    lines = path.read_text(encoding="utf-8").splitlines()[1:]
    ones = sum(1 for line in lines if line.rsplit(",", 1)[1] == "1")
    empty = sum(line.split(",").count("") for line in lines)
    return len(lines), ones, empty


_README = """\
# fedbench sample data

Small, realistic CSV files for trying fedbench without data of your own.
**Do not edit these files by hand**: they are generated, byte for byte, by

```
python -m fedbench.samples data_samples
```

(seed {seed}; the text of this README is part of `fedbench/samples.py`).  The
test suite regenerates them and compares hashes.  In code, use
`fedbench.samples.sample_dir("hospitals")`, which falls back to generating a
copy in a cache directory when fedbench is installed without this folder.

## `hospitals/`: horizontal federation, same columns, different patients

The 569 patients of the Breast Cancer Wisconsin (Diagnostic) data split over
four hospitals with very different case mixes.  The file stem is the party name.

| file | rows | malignant | empty cells | profile |
|---|---:|---:|---:|---|
{hospital_table}

Columns: `patient_id` (e.g. `P012345`, unique across hospitals), `age`, `sex`
(`F`/`M`), `referral` (`gp`, `screening`, `specialist`; mix differs by
hospital), the 30 measurements `mean_radius` ... `mean_fractal_dimension`,
`radius_error` ... `fractal_dimension_error` (standard errors) and `worst_radius`
... `worst_fractal_dimension`, with the source's four significant digits, and
`diagnosis` (1 = malignant, 0 = benign; note that scikit-learn's own `target`
codes malignant as 0).  Empty cells are missing values, at a few percent in
different measurement columns per hospital (north loses whole smoothness triples
on the same rows, as when one imaging step was skipped).

## `banks/`: private set intersection with messy identifiers

Fully synthetic customer tables: `bank_a.csv` ({n_bank_a} rows) and `bank_b.csv`
({n_bank_b} rows).  Exactly **{overlap}** `customer_id`s appear in both files and
denote the same person (same date of birth; same name and e-mail address up to
spelling, see below).
Columns: `customer_id`, `first_name`, `last_name`, `dob` (ISO date), `email`,
`balance` (overdrawn accounts are negative), `n_products`, `defaulted` (0/1, in
both banks; {defaults_a} and {defaults_b} defaults).

Each bank keyed its records independently, so some names and addresses are
spelled differently: upper or lower case, padding or doubled spaces, no-break
spaces, decomposed accents (NFD) and ligatures (`ﬁ`, `ﬀ`).  Among the shared
customers, {name_diff} differ in first or last name and {email_diff} in e-mail
address between the banks, yet every one of them matches after NFKC, case folding
and whitespace clean-up (`fedbench.samples.normalize_identifier`).  Names mix
common names from many countries (José, Zoë, Łukasz, Müller, Øster, Weiß,
Nguyễn, ...); addresses use the reserved `example.*` domains.

## `vertical/`: vertical federation after PSI alignment

The same 569 patients (same `patient_id`s as `hospitals/`) split by columns:

* `hospital.csv` ({n_vh} rows, sorted by `patient_id`): the ten `mean_*`
  measurements and `outcome` (1 = malignant).
* `insurer.csv` ({n_vi} rows, in the insurer's own order): the `*_error` and
  `worst_*` measurements, `n_claims` and annual `premium` (synthetic).

{n_both} patients ({pct_both}%) are in both files; {n_hosp_only} only at the hospital and
{n_ins_only} only at the insurer.  No values are missing.

## Sources, licence and credit

* Measurements and diagnoses: Breast Cancer Wisconsin (Diagnostic) data set by
  William H. Wolberg, W. Nick Street and Olvi L. Mangasarian, University of
  Wisconsin, from the UCI Machine Learning Repository
  (https://doi.org/10.24432/C5DW2B), licensed CC BY 4.0, read from the copy
  bundled with scikit-learn (`sklearn.datasets.load_breast_cancer`).  Reference:
  W. N. Street, W. H. Wolberg and O. L. Mangasarian, "Nuclear feature extraction
  for breast tumor diagnosis", IS&T/SPIE 1993 International Symposium on
  Electronic Imaging: Science and Technology, vol. 1905, pp. 861-870, San Jose,
  CA, 1993.  The values are unchanged apart from the blanked cells.
* Synthetic (seeded random) and not about real people: the split into
  hospitals, `patient_id`, `age`, `sex`, `referral`, the missing cells,
  `n_claims`, `premium` and the whole of `banks/`.  Any resemblance of a
  synthetic customer to a real person is coincidental.  These parts are
  released under the project's Apache-2.0 licence; files derived from the
  Wisconsin data remain under CC BY 4.0 and need the credit above.
"""

_PROFILES = {
    "north": "large general hospital",
    "south": "regional hospital with a screening programme",
    "east": "university hospital",
    "west": "small specialist cancer centre",
}


def _readme(out: Path, files: dict[str, list[Path]], seed: int) -> Path:
    table = []
    for path in files["hospitals"]:
        n, ones, empty = _csv_stats(path)
        table.append(f"| `{path.name}` | {n} | {ones} ({100 * ones / n:.0f}%) | {empty} | {_PROFILES[path.stem]} |")
    bank_a, bank_b = (_read_rows(p) for p in files["banks"])
    a_by_id = {r[0]: r for r in bank_a}
    shared = [(a_by_id[r[0]], r) for r in bank_b if r[0] in a_by_id]
    vh, vi = (_read_rows(p) for p in files["vertical"])
    n_both = len({r[0] for r in vh} & {r[0] for r in vi})
    text = _README.format(
        seed=seed,
        hospital_table="\n".join(table),
        n_bank_a=len(bank_a),
        n_bank_b=len(bank_b),
        overlap=len(shared),
        defaults_a=sum(r[-1] == "1" for r in bank_a),
        defaults_b=sum(r[-1] == "1" for r in bank_b),
        name_diff=sum(a[1:3] != b[1:3] for a, b in shared),
        email_diff=sum(a[4] != b[4] for a, b in shared),
        n_vh=len(vh),
        n_vi=len(vi),
        n_both=n_both,
        pct_both=round(100 * n_both / len({r[0] for r in vh} | {r[0] for r in vi})),
        n_hosp_only=len(vh) - n_both,
        n_ins_only=len(vi) - n_both,
    )
    path = out / "README.md"
    path.write_bytes(text.encode("utf-8"))
    return path


def _read_rows(path: Path) -> list[list[str]]:
    import csv

    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.reader(fh))[1:]


# ---------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------


def make_samples(out_dir: str | Path, *, seed: int = 0) -> dict[str, list[Path]]:
    """Generate the sample data sets into ``out_dir``.

    Writes ``hospitals/``, ``banks/``, ``vertical/`` and ``README.md``,
    overwriting files of the same name and leaving other files alone.  The
    output depends only on ``seed`` and the bundled scikit-learn data: running
    it twice gives byte-identical files.

    Parameters
    ----------
    out_dir : str or Path
        Directory to write into; created if needed.
    seed : int, default 0
        Seed of every random choice.  The committed ``data_samples`` use 0.

    Returns
    -------
    dict of str to list of Path
        Written files by scenario (``"hospitals"``, ``"banks"``, ``"vertical"``)
        and ``"readme"``.

    Examples
    --------
    >>> files = make_samples(tmp_path)  # doctest: +SKIP
    >>> [p.name for p in files["hospitals"]]  # doctest: +SKIP
    ['north.csv', 'south.csv', 'east.csv', 'west.csv']
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    patients = _Patients(seed)
    files = {
        "hospitals": _hospital_files(out, patients, seed),
        "banks": _bank_files(out, seed),
        "vertical": _vertical_files(out, patients, seed),
    }
    files["readme"] = [_readme(out, files, seed)]
    return files


def _is_complete(directory: Path, kind: str) -> bool:
    return all((directory / name).is_file() for name in SAMPLE_FILES[kind])


def _checkout_roots() -> list[Path]:
    cwd = Path.cwd()
    return [cwd, *cwd.parents, Path(__file__).resolve().parent.parent]


def _cache_roots() -> list[Path]:
    roots = []
    if os.environ.get("FEDBENCH_CACHE_DIR"):
        roots.append(Path(os.environ["FEDBENCH_CACHE_DIR"]))
    xdg = os.environ.get("XDG_CACHE_HOME")
    roots.append((Path(xdg) if xdg else Path.home() / ".cache") / "fedbench")
    # Fallback when the home directory is read-only (some containers, CI sandboxes).
    roots.append(Path(tempfile.gettempdir()) / f"fedbench-{os.getuid() if hasattr(os, 'getuid') else 'user'}")
    return roots


def _cached_samples() -> Path:
    # Keyed by a hash of this file, so that a changed generator never serves stale data.
    key = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]
    errors = []
    for root in _cache_roots():
        target = root / f"samples-{key}"
        if all(_is_complete(target / kind, kind) for kind in KINDS):
            return target
        try:
            root.mkdir(parents=True, exist_ok=True)
            # Generate beside the target and rename, so that a reader (or a
            # concurrent generator) never sees a half-written folder.
            staging = Path(tempfile.mkdtemp(prefix=".samples-", dir=root))
            try:
                make_samples(staging)
                staging.rename(target)
            except OSError:
                if not all(_is_complete(target / kind, kind) for kind in KINDS):
                    raise
            finally:
                shutil.rmtree(staging, ignore_errors=True)
            return target
        except OSError as exc:
            errors.append(f"{root}: {exc}")
    raise OSError("cannot write the sample data to any cache directory: " + "; ".join(errors))


def sample_dir(kind: str = "hospitals") -> Path:
    """Return the folder holding one scenario of the sample data.

    Uses ``data_samples/<kind>`` of a source checkout when there is one: in the
    current working directory, one of its parents (so that notebooks in a
    sub-folder find it) or beside the installed package.  Otherwise generates
    the samples once into a cache directory (``$FEDBENCH_CACHE_DIR``,
    ``$XDG_CACHE_HOME/fedbench`` or ``~/.cache/fedbench``, else the system
    temporary directory) and returns the copy there.

    Parameters
    ----------
    kind : {"hospitals", "banks", "vertical"}, default "hospitals"
        Which scenario.

    Returns
    -------
    Path
        Directory containing the scenario's CSV files.

    Raises
    ------
    ConfigurationError
        If ``kind`` is not a known scenario.
    OSError
        If no copy exists and no cache directory is writable.

    Examples
    --------
    >>> sorted(p.name for p in sample_dir("banks").glob("*.csv"))  # doctest: +SKIP
    ['bank_a.csv', 'bank_b.csv']
    """
    if kind not in KINDS:
        raise ConfigurationError(f"unknown sample kind {kind!r}; choose one of {', '.join(KINDS)}")
    for base in _checkout_roots():
        candidate = base / "data_samples" / kind
        if _is_complete(candidate, kind):
            return candidate
    return _cached_samples() / kind


def path(name: str) -> Path:
    """Return the folder of a bundled sample scenario, wherever fedbench is installed.

    The documented way to reach the samples from any working directory (README,
    scripts, notebooks): ``fb.samples.path("hospitals")`` works from a source
    checkout and from an installed wheel alike (see :func:`sample_dir`).

    Parameters
    ----------
    name : {"hospitals", "banks", "vertical"}
        Which scenario: four hospitals (one CSV per hospital), two banks, or the
        hospital and insurer of the vertical split.

    Returns
    -------
    Path
        Directory holding the scenario's CSV files, one per party.

    Raises
    ------
    ConfigurationError
        If ``name`` is not a bundled scenario; the message lists the names.

    Examples
    --------
    >>> import fedbench as fb
    >>> sorted(p.name for p in fb.samples.path("banks").glob("*.csv"))  # doctest: +SKIP
    ['bank_a.csv', 'bank_b.csv']
    """
    if not isinstance(name, str) or name not in KINDS:
        raise ConfigurationError(f"no bundled sample called {name!r}; the samples are: {', '.join(KINDS)}")
    return sample_dir(name)


def copy_samples(dest: str | os.PathLike[str]) -> list[Path]:
    """Copy every bundled scenario into ``dest/<name>/`` (``fedbench demo --copy-samples DIR``).

    Files already there with the same bytes are left alone; nothing is copied if
    any file there differs, so that a user's own edits are never overwritten.

    Parameters
    ----------
    dest : str or PathLike
        Target folder, created if missing.

    Returns
    -------
    list of Path
        The files now in ``dest``, in scenario order, then the samples' ``README.md``.

    Raises
    ------
    ConfigurationError
        If ``dest`` is a file, or holds a sample file with different contents.
    """
    root = Path(dest)
    if root.exists() and not root.is_dir():
        raise ConfigurationError(f"cannot copy the samples into {str(root)!r}: it is a file, not a folder")
    pairs = [(sample_dir(kind) / name, root / kind / name) for kind in KINDS for name in SAMPLE_FILES[kind]]
    notes = sample_dir(KINDS[0]).parent / "README.md"  # provenance and licence of the data: travels with it
    if notes.is_file():
        pairs.append((notes, root / "README.md"))
    clashes = [str(dst) for src, dst in pairs if dst.exists() and dst.read_bytes() != src.read_bytes()]
    if clashes:
        raise ConfigurationError(
            f"{len(clashes)} file(s) in {str(root)!r} differ from the bundled samples and would be "
            f"overwritten, e.g. {clashes[0]!r}; choose an empty folder"
        )
    for src, dst in pairs:
        if not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
    return [dst for _, dst in pairs]


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: ``python -m fedbench.samples [OUT_DIR] [--seed N]``.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name; defaults to ``sys.argv[1:]``.

    Returns
    -------
    int
        Exit status (0 on success).
    """
    parser = argparse.ArgumentParser(
        prog="python -m fedbench.samples",
        description="(Re)generate fedbench's sample data sets, byte-identically for a given seed.",
    )
    parser.add_argument("out_dir", nargs="?", default="data_samples", help="output folder (default: data_samples)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0, as committed)")
    args = parser.parse_args(argv)
    files = make_samples(args.out_dir, seed=args.seed)
    for paths in files.values():
        for path in paths:
            print(f"{path}  ({path.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
