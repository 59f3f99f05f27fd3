"""Real CX exports from the shared corpus: all load, and Google's Address Collection component runs."""

from pathlib import Path

import pytest

from simulator import Session, UnsupportedFeature, load_agent

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "cx-exports"
if not CORPUS.is_dir():
    CORPUS = Path("/work/shared/corpus/cx-exports")
EXPORTS = sorted(CORPUS.glob("*.zip"))
GRAFFITI = CORPUS / "goodbye-graffiti-agent.zip"


def test_the_corpus_is_there():
    """The three shared exports are found (so the parametrised tests below cannot silently vanish)."""
    assert len(EXPORTS) == 3


@pytest.mark.parametrize("export", EXPORTS, ids=lambda p: p.stem)
def test_every_export_loads(export):
    """Each export loads: flows, pages, intents and webhooks resolve, __MACOSX junk and nesting ignored."""
    agent = load_agent(export)
    assert agent.start_flow in agent.flows
    assert agent.intents and all(f.pages for f in agent.flows.values())


@pytest.fixture(scope="module")
def graffiti():
    return load_agent(GRAFFITI)


def test_address_collection_names_are_unquoted(graffiti):
    """URL-quoted file names (%3e, %3a) become the display names the routes use."""
    flow = graffiti.flows["Address Collection"]
    assert "> collect address" in flow.pages
    assert "prebuilt_components_address_collection:address_validation" in graffiti.webhooks


class AddressValidationAPI:
    """Stands in for Google's Address Validation API behind the component's flexible webhook."""

    def __init__(self, status=200):
        self.status, self.requests = status, []

    def __call__(self, body):
        self.requests.append(body)
        if self.status != 200:
            return {}, self.status
        parts = [("street_number", "1600"), ("route", "Amphitheatre Pkwy"), ("locality", "Mountain View"),
                 ("administrative_area_level_1", "CA"), ("postal_code", "94043"), ("country", "USA")]
        return {"result": {"address": {
            "addressComponents": [{"componentType": t, "componentName": {"text": v}, "confirmationLevel": "CONFIRMED"}
                                  for t, v in parts],
            "missingComponentTypes": [], "postalAddress": {"regionCode": "US"}}}}


def test_address_collection_collects_and_confirms_an_address(graffiti):
    """The caller gives an address, the component validates it, reads it back and ends the flow with it."""
    api = AddressValidationAPI()
    s = Session(graffiti, webhook=api, language_code="en", start_flow="Address Collection")
    assert s.send().messages == ["Please tell me your full address to start.\t"]
    t = s.send(text="1600 Amphitheatre Parkway, Mountain View, CA 94043")
    assert api.requests == [{"address": {"addressLines": "1600 Amphitheatre Parkway, Mountain View, CA 94043"}}]
    assert t.page == "> confirm address"
    assert "the route is Amphitheatre Pkwy, the city is Mountain View" in t.messages[0]
    t = s.send(text="yes that's correct")
    assert t.messages == ["Fantastic, I've collected the address. "]
    assert t.ended and t.end_reason == "END_FLOW"
    assert t.params["address_collection_status"] == "VALID_ADDRESS"
    assert t.params["address_collection_address"] == {
        "street-number": "1600", "route": "Amphitheatre Pkwy", "city": "Mountain View", "zip-code": "94043",
        "admin-area": "CA", "country": "USA"}


def test_address_collection_handles_a_bad_request_from_the_api(graffiti):
    """A 400 from the API runs the page's webhook.error.bad-request handler and ends the flow with failure."""
    s = Session(graffiti, webhook=AddressValidationAPI(status=400), language_code="en",
                start_flow="Address Collection")
    s.send()
    t = s.send(text="Somewhere 12, Nowhere")
    assert t.messages == ["I'm sorry, but I'm currently unable to validate addresses in that region."]
    assert t.params["address_collection_status"] == "COUNTRY_NOT_SUPPORTED"
    assert t.end_reason == "END_FLOW_WITH_FAILURE"


def test_address_collection_escalates_on_request(graffiti):
    """Asking for a human ends the component with a human-escalation exit."""
    s = Session(graffiti, webhook=AddressValidationAPI(), language_code="en", start_flow="Address Collection")
    s.send()
    t = s.send(text="I want to talk to a human agent")
    assert t.messages == ["Please hold while I transfer you to someone to better assist you."]
    assert t.end_reason == "END_FLOW_WITH_HUMAN_ESCALATION"


def test_address_collection_no_match_three_times_fails(graffiti):
    """Three unusable answers at the confirmation end the component with its failure message."""
    s = Session(graffiti, webhook=AddressValidationAPI(), language_code="en", start_flow="Address Collection")
    s.send()
    s.send(text="1600 Amphitheatre Parkway, Mountain View, CA 94043")
    assert s.send(text="purple elephants").messages[0].startswith("<speak>Sorry, I didn't get that.")
    assert s.send(text="purple elephants").messages == ["Hmm, I still wasn't able to get that. Please say yes or no."]
    t = s.send(text="purple elephants")
    assert t.end_reason == "END_FLOW_WITH_FAILURE"


def test_generative_features_are_refused_by_name(graffiti):
    """The graffiti start flow's welcome uses a generator: the error names it and the flow file."""
    s = Session(graffiti, language_code="en")
    with pytest.raises(UnsupportedFeature, match=r"'generators' in .*Default Start Flow\.json"):
        s.send(text="hello")


def test_unmodelled_system_entity_is_refused_by_name():
    """Divebooker's group request carries @sys.date-period, which the simulator does not model."""
    s = Session(load_agent(CORPUS / "divebooker-agent.zip"))
    assert s.send(text="hi").messages == ["Hi! How are you doing?"]
    with pytest.raises(UnsupportedFeature, match="@sys.date-period"):
        s.send(text="I would like to make a group booking to Costa Rica next June")
