"""GTIN check digits and GS1 Digital Link paths (ledger.gs1; issue #5).

Valid GTINs are published GS1 examples: 09506000134352 is the GTIN of GS1's own Digital Link
examples, 4006381333931 a GTIN-13 on retail shelves, 036000291452 the UPC-A of the GS1 US check
digit guide, 96385074 the GTIN-8 of GS1's check digit calculator.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.gs1 import check_digit, digital_link_path, gtin_of_product, is_gtin, normalise_gtin

VALID = [
    ("gs1-digital-link-example", "09506000134352"),
    ("gtin-13", "4006381333931"),
    ("upc-a", "036000291452"),
    ("gtin-8", "96385074"),
    ("gtin-13-of-the-dl-example", "9506000134352"),
]
INVALID = [
    ("wrong-check-digit", "09506000134353"),
    ("gtin-13-off-by-one", "4006381333932"),
    ("nine-digits", "123456789"),
    ("eleven-digits", "12345678901"),
    ("fifteen-digits", "095060001343520"),
    ("letters", "0950600013435A"),
    ("arabic-indic-digits", "٠٩٥٠٦٠٠٠١٣٤٣٥٢"),
    ("empty", ""),
    ("spaces", " 09506000134352"),
]


@pytest.mark.parametrize("case,value", VALID, ids=[c for c, _ in VALID])
def test_published_gtins_are_valid(case: str, value: str) -> None:
    assert is_gtin(value)
    assert normalise_gtin(value) == value.rjust(14, "0")


@pytest.mark.parametrize("case,value", INVALID, ids=[c for c, _ in INVALID])
def test_malformed_gtins_are_refused(case: str, value: str) -> None:
    assert not is_gtin(value)
    with pytest.raises(ValueError):
        normalise_gtin(value)


def test_the_tables_load() -> None:
    assert (len(VALID), len(INVALID)) == (5, 9)


@given(st.sampled_from([7, 11, 12, 13]).flatmap(lambda n: st.text("0123456789", min_size=n, max_size=n)))
def test_a_computed_check_digit_makes_a_gtin_and_any_single_digit_error_breaks_it(body: str) -> None:
    gtin = body + str(check_digit(body))
    assert is_gtin(gtin)
    # Mod 10 with weights 3 and 1 catches every single-digit substitution (GS1 GenSpecs §7.9).
    for i in range(len(gtin)):
        for d in "0123456789":
            if d != gtin[i]:
                assert not is_gtin(gtin[:i] + d + gtin[i + 1 :])


@pytest.mark.parametrize(
    "product,expected",
    [
        ("09506000134352", "09506000134352"),
        ("9506000134352", "09506000134352"),
        ("extra virgin olive oil 750 ml, GTIN 09506000134352", "09506000134352"),
        ("olio EVO (gtin: 4006381333931)", "04006381333931"),
        ("extra virgin olive oil 750 ml", None),
        ("extra virgin olive oil, GTIN 09506000134353", None),  # wrong check digit
        ("09506000134352 olives", None),  # a GTIN is the whole field or its tail
        ("bottles of 12345670", None),  # a number in a name is not a GTIN without "GTIN"
        (None, None),
    ],
)
def test_which_products_carry_a_gtin(product: str | None, expected: str | None) -> None:
    assert gtin_of_product(product) == expected


def test_digital_link_paths() -> None:
    assert digital_link_path("9506000134352", "ABC123") == "/01/09506000134352/10/ABC123"
    # A slash in a lot id is percent-encoded: it is one path segment of the URI.
    assert digital_link_path("09506000134352", "L/2026:7") == "/01/09506000134352/10/L%2F2026%3A7"
    # AI 10 holds at most 20 characters: a longer lot id needs Filiera's own /p/ URL.
    assert digital_link_path("09506000134352", "A" * 20) is not None
    assert digital_link_path("09506000134352", "A" * 21) is None
    with pytest.raises(ValueError):
        digital_link_path("09506000134353", "ABC123")
