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


# Premium-rate, toll-free, shared-cost (Japan's 0570 navi dial), mobile, fixed line, the demo's unallocated 090-0000,
# and a UK mobile: what phone_type says must not depend on whether the number was just canonicalised by e164().
TYPED_NUMBERS = [("0990-123-456", "JP"), ("0120-123-456", "JP"), ("0570-123-456", "JP"), ("090-1234-5678", "JP"),
                 ("03-1234-5678", "JP"), ("090-0000-1111", "JP"), ("07400 123456", "GB"), ("+1 900 555 0123", "US")]


@pytest.mark.parametrize("raw, region", TYPED_NUMBERS)
def test_the_type_of_a_number_is_the_same_whether_or_not_it_was_just_parsed(raw, region):
    import phonenumbers

    number = contact.parse_phone(raw, region)
    expected = contact._TYPE_NAMES.get(phonenumbers.number_type(phonenumbers.parse(
        phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))), "UNKNOWN")
    contact.phone_type.cache_clear()
    contact._RECENT.clear()
    text = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    assert contact.phone_type(text) == expected  # parsed from the string
    contact.phone_type.cache_clear()
    assert contact.e164(contact.parse_phone(raw, region)) == text
    assert text in contact._RECENT
    assert contact.phone_type(text) == expected  # read off the remembered parse
    assert (contact.cost_risk(text) is not None) == (expected in ("PREMIUM_RATE", "TOLL_FREE", "SHARED_COST", "UAN"))


def test_the_remembered_numbers_stay_bounded():
    contact._RECENT.clear()
    for i in range(contact._RECENT_MAX + 100):
        contact.e164(contact.parse_phone(f"+8190{i:08d}", "JP"))
    assert len(contact._RECENT) == contact._RECENT_MAX
    assert "+819000000000" not in contact._RECENT and f"+8190{contact._RECENT_MAX + 99:08d}" in contact._RECENT
