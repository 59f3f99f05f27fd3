"""Real CX exports from the shared corpus: all load, and Google's Address Collection component runs."""

from pathlib import Path

import pytest

from datetime import datetime

from simulator import GENERATIVE_FALLBACK, Session, load_agent

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


class MissingCityAndZipAPI(AddressValidationAPI):
    """The Address Validation API answering that the postal code and the city are missing."""

    def __call__(self, body):
        self.requests.append(body)
        parts = [("street_number", "1600"), ("route", "Amphitheatre Pkwy"), ("administrative_area_level_1", "CA"),
                 ("country", "USA")]
        return {"result": {"address": {
            "addressComponents": [{"componentType": t, "componentName": {"text": v}, "confirmationLevel": "CONFIRMED"}
                                  for t, v in parts],
            "missingComponentTypes": ["postal_code", "locality"], "postalAddress": {"regionCode": "US"}}}}


def test_a_postal_code_answers_only_the_postal_code_question(graffiti):
    """On the seven-parameter missing-elements page, "94043" fills the zip code, not the city (@sys.geo-city) nor
    the street number: the city is asked next and the API gets the city the caller then says."""
    api = MissingCityAndZipAPI()
    s = Session(graffiti, webhook=api, language_code="en", start_flow="Address Collection")
    s.send()
    t = s.send(text="1600 Amphitheatre Parkway, CA")
    assert t.page == "> collect missing elements" and t.messages[-1] == "Can you please share the postal code?"
    t = s.send(text="94043")
    assert t.messages == ["Can you please share the city name?"]
    assert s.flow_params["zip_code"] == "94043" and s.flow_params.get("city") is None
    assert s.flow_params["street_number"] == "1600"
    s.send(text="Mountain View")
    address = api.requests[1]["address"]
    assert address["locality"] == "Mountain View" and address["postalCode"] == "94043"


def test_flow_level_no_input_re_prompts_the_form_parameter():
    """Divebooker handles no-input only on its flow: the flow's message, then the parameter's prompt again."""
    s = Session(load_agent(CORPUS / "divebooker-agent.zip"), clock=datetime(2026, 12, 2, 10, 0))
    s.send(text="hi")
    t = s.send(text="I would like to make a group booking to Costa Rica next June")
    assert t.page == "Collect Further Info" and t.messages[-1] == "Now please tell me the number of guests"
    t = s.send()
    assert t.events == ["sys.no-input-default"]
    assert t.messages[-1] == "Now please tell me the number of guests"
    assert len(t.messages) == 2  # the flow's own no-input message first


def test_divebooker_reads_a_date_period_against_the_session_clock():
    """"next June" said on 2 December 2026 is June 2027, in CX's date-period shape; the destination is taken too."""
    s = Session(load_agent(CORPUS / "divebooker-agent.zip"), clock=datetime(2026, 12, 2, 10, 0))
    s.send(text="hi")
    t = s.send(text="I would like to make a group booking to Costa Rica next June")
    assert t.params["departure-month"] == {"startDate": {"year": 2027, "month": 6, "day": 1},
                                           "endDate": {"year": 2027, "month": 6, "day": 30}}
    assert t.params["destination"] == "Costa Rica"


def test_generators_use_the_callable_given_per_name(graffiti):
    """The graffiti welcome comes from the 'Welcome Generator' callable; without one, a labelled stand-in."""
    seen = []

    def welcome(inputs, language):
        seen.append(language)
        return "Welcome to the city's graffiti line."

    s = Session(graffiti, language_code="en", generators={"Welcome Generator": welcome})
    s.send()
    assert s.send(text="hello").messages == ["Welcome to the city's graffiti line."] and seen == ["en"]
    t = Session(graffiti, language_code="en")
    t.send()
    assert t.send(text="hello").messages == ["[stand-in for generator 'Welcome Generator']"]


def test_generative_fallback_is_pluggable(graffiti):
    """An unmatched utterance goes to the generative fallback callable; None from it says the static message."""
    s = Session(graffiti, language_code="en", generators={GENERATIVE_FALLBACK: lambda text, lang: f"echo: {text}"})
    s.send()
    assert s.send(text="purple monkey dishwasher").messages == ["echo: purple monkey dishwasher"]
    s = Session(graffiti, language_code="en", generators={GENERATIVE_FALLBACK: lambda text, lang: None})
    s.send()
    assert s.send(text="purple monkey dishwasher").messages == ["I didn't get that. Can you say it again?"]


def test_data_store_answers_come_from_the_knowledge_callable():
    """Lifeblood's flow answers a no-match from its data store: the callable's answer is said; none found is an
    ordinary no-match, handled by the generative fallback."""
    agent = load_agent(CORPUS / "lifeblood-donation-agent.zip")
    asked = []

    def store(query, language):
        asked.append(query)
        return ["You can donate 4 months after a tattoo."] if "tattoo" in query else []

    s = Session(agent, knowledge=store, generators={GENERATIVE_FALLBACK: lambda text, lang: "fallback"})
    s.send()
    assert s.send(text="can I donate with a new tattoo").messages == ["You can donate 4 months after a tattoo."]
    t = s.send(text="purple monkey dishwasher")
    assert t.messages == ["fallback"] and "sys.no-match-default" in t.events
    assert asked == ["can I donate with a new tattoo", "purple monkey dishwasher"]
    default = Session(agent)
    default.send()
    assert default.send(text="what about tattoos").messages == [
        "[stand-in for a data store answer to: what about tattoos]"]


def test_graffiti_intent_parameters_read_dates_and_durations(graffiti):
    """The graffiti report's @sys.date-time ("yesterday") and the waiting room's @sys.duration ("a minute") come
    from the utterance in CX's shapes, relative to the session clock; @sys.location is not the whole sentence."""
    s = Session(graffiti, language_code="en", clock=datetime(2026, 12, 2, 10, 0))
    s.open()
    t = s.send(text="I'd like to report graffiti on my property, I saw it yesterday")
    assert t.intent == "head.report-graffiti"
    assert t.params["date-time"] == {"year": 2026, "month": 12, "day": 1} and "location" not in t.params
    s = Session(graffiti, language_code="en", start_flow="Address Collection")
    s.send()
    t = s.send(text="wait a minute")
    assert t.intent == "prebuilt_components_waiting_room" and s.intent_params["duration"] == {"amount": 1, "unit": "min"}
