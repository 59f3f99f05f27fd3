"""The tag registry's contract and the settings' parsing."""
import pytest
from pydantic import BaseModel, ValidationError

from settings import Settings
from webhook.registry import REGISTRY, Registry, Route, UnknownTag


def test_every_seed_tag_is_registered():
    """The seed's four card webhooks and the authentication tags are all routed."""
    for tag in [
        "prebuilt_components_account_services:get_card_details",
        "prebuilt_components_lock_card:validate_card",
        "prebuilt_components_lock_card:lock_card_ticket_number",
        "prebuilt_components_lock_card:reissue_card_number",
        "prebuilt_components_authentication:verify_user",
        "prebuilt_components_authentication:send_otp",
        "prebuilt_components_authentication:verify_otp",
    ]:
        assert REGISTRY[tag].tag == tag


def test_a_duplicate_tag_fails_at_start_up():
    """Registering a tag twice is a programming error, caught when the registry is built."""
    route = Route("x:y", BaseModel, lambda p, c: p)
    with pytest.raises(ValueError, match="registered twice"):
        Registry([route, route])


def test_an_unknown_tag_names_the_known_ones():
    """The error for an unknown tag lists every known tag."""
    with pytest.raises(UnknownTag) as err:
        REGISTRY["prebuilt_components_lock_card:nope"]
    assert "prebuilt_components_lock_card:validate_card" in str(err.value)


def test_otp_test_numbers_parse_from_the_environment():
    """OTP_TEST_NUMBERS is NUMBER=CODE pairs separated by commas."""
    s = Settings.from_env({"OTP_TEST_NUMBERS": "09000001111=123456, 09000002222=654321"})
    assert s.otp_test_numbers == {"09000001111": "123456", "09000002222": "654321"}
    assert Settings.from_env({}).otp_test_numbers == {}


@pytest.mark.parametrize("env", [
    {"OTP_TEST_NUMBERS": "09000001111"}, {"OTP_TEST_NUMBERS": "09000001111=12"},
    {"OTP_TTL_SECONDS": "3600"}, {"NOTIFY_BACKEND": "pigeon"}, {"OTP_FAILURE_LIMIT": "1000"},
])
def test_bad_settings_are_refused_with_the_setting_named(env):
    """A bad value stops start-up with an error naming the setting, instead of running half-configured."""
    with pytest.raises(ValidationError) as err:
        Settings.from_env(env)
    assert next(iter(env)).lower() in str(err.value)


def test_the_store_breaker_opens_for_its_window_and_lets_probes_through():
    """Tripped, the breaker refuses for its window; a probe in the same thread passes; reset closes it."""
    from cardstore.uow import Breaker

    breaker = Breaker(open_s=60)
    assert not breaker.is_open()
    breaker.trip()
    assert breaker.is_open()
    with breaker.probe():
        assert not breaker.is_open()
    assert breaker.is_open()
    breaker.reset()
    assert not breaker.is_open()
    expired = Breaker(open_s=0)
    expired.trip()
    assert not expired.is_open()
