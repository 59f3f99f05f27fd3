"""How CX values arrive (doubles, full-width digits, hyphens) and what the handlers make of them."""
import pytest

import contact
from handlers import values


@pytest.mark.parametrize("raw, expected", [
    ("4444", "4444"), (4444.0, "4444"), (42.0, "0042"), (42, "0042"), ("４４４４", "4444"), (" 4444 ", "4444"),
    ("4444.0", "4444"), ("0042", "0042"),
])
def test_last_four_accepts_what_cx_sends(raw, expected):
    """Doubles, ints, full-width and padded strings all become four digits."""
    assert values.last4(raw) == expected


@pytest.mark.parametrize("raw", ["44444", "44a4", 44.5, -1.0, True, None, "", "４４４４４", float("nan"), "x" * 300])
def test_last_four_refuses_anything_else(raw):
    """Five digits, letters, fractions, negatives, booleans and nulls are refused, not guessed."""
    with pytest.raises(ValueError):
        values.last4(raw)


@pytest.mark.parametrize("raw, expected", [
    ("123456", "123456"), (123456.0, "123456"), (12345.0, "012345"), ("１２３ ４５６", "123456"),
])
def test_code_accepts_spoken_and_typed_forms(raw, expected):
    """A code read as a number keeps its leading zero; spaces and full-width digits are normal."""
    assert values.otp_code(raw) == expected


@pytest.mark.parametrize("raw", ["09000001111", "090-0000-1111", "090 0000 1111", "０９０００００１１１１",
                                 9000001111.0, "+81 90-0000-1111"])
def test_phone_numbers_normalise_to_one_customer(raw):
    """Every way a Japanese mobile number arrives maps to the same E.164 number."""
    assert contact.e164(contact.parse_phone(raw, "JP")) == "+819000001111"


@pytest.mark.parametrize("raw", ["12", "not a number", "", 1.5, "+1 555"])
def test_phone_garbage_is_refused(raw):
    """Strings that cannot be a phone number are refused."""
    with pytest.raises(ValueError):
        contact.parse_phone(raw, "JP")


def test_output_phone_has_no_country_code():
    """The seed's phone_number output is the national number, e.g. 09012345041."""
    assert contact.national_digits("+819012345041") == "09012345041"


@pytest.mark.parametrize("raw, expected", [("123-4567", "1234567"), (12345.0, "12345"), ("〒123-4567", "1234567")])
def test_zip_codes(raw, expected):
    """Postal codes arrive hyphenated, with the 〒 mark, or as a double."""
    assert values.zip_code(raw) == expected


def test_masks_keep_only_what_a_caller_may_hear():
    """Masked destinations show the last four digits / first letter and domain only."""
    assert contact.mask_phone("+819012345041") == "*********5041"
    assert contact.mask_email("hanako.sato@example.jp") == "h***@example.jp"


@pytest.mark.parametrize("raw, expected", [(1.0, 1), ("1", 1), ("１", 1), (0, 0), (-1.0, -1)])
def test_small_ints(raw, expected):
    """auth_level and retry counts arrive as doubles."""
    assert values.small_int(raw) == expected


@pytest.mark.parametrize("raw", [1.5, "abc", True, "9" * 20])
def test_small_ints_refuse_fractions_and_text(raw):
    """A fraction, a word or a boolean is not a count."""
    with pytest.raises(ValueError):
        values.small_int(raw)
