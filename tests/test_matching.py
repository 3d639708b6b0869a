"""matchEvents semantics: the plugin contract's forms, and the classic substring bug fixed."""

import pytest

from shotgun_events.matching import EventMatcher, MatchEventsError


def event(event_type="Shotgun_Task_Change", attribute="sg_status_list"):
    return {"event_type": event_type, "attribute_name": attribute}


@pytest.mark.parametrize("match_events", [None, {}])
def test_no_match_events_takes_every_event(match_events):
    matcher = EventMatcher(match_events)
    assert matcher.event_types is None
    assert matcher.matches(event())
    assert matcher.matches(event("Shotgun_User_Login", None))


def test_event_type_with_none_takes_any_attribute():
    matcher = EventMatcher({"Shotgun_Task_Change": None})
    assert matcher.matches(event(attribute="content"))
    assert not matcher.matches(event("Shotgun_Shot_Change"))
    assert matcher.event_types == frozenset({"Shotgun_Task_Change"})


@pytest.mark.parametrize("attributes", ["*", ["*"], ["code", "*"]])
def test_star_attribute_takes_any_attribute(attributes):
    matcher = EventMatcher({"Shotgun_Task_Change": attributes})
    assert matcher.matches(event(attribute="anything"))
    assert matcher.matches(event(attribute=None))


def test_attribute_list_matches_exact_names_only():
    matcher = EventMatcher({"Shotgun_Task_Change": ["sg_status_list", "due_date"]})
    assert matcher.matches(event(attribute="due_date"))
    assert not matcher.matches(event(attribute="content"))
    assert not matcher.matches(event(attribute=None))


def test_attribute_string_is_an_exact_name_not_a_substring():
    matcher = EventMatcher({"Shotgun_Shot_Change": "sg_code"})
    assert matcher.matches(event("Shotgun_Shot_Change", "sg_code"))
    # The classic daemon used `in` on the string and matched 'code' inside 'sg_code'.
    assert not EventMatcher({"Shotgun_Shot_Change": "sg_code"}).matches(
        event("Shotgun_Shot_Change", "code")
    )


def test_star_event_type_matches_every_type_with_its_attributes():
    matcher = EventMatcher({"*": ["sg_status_list"]})
    assert matcher.event_types is None
    assert matcher.matches(event("Shotgun_Shot_Change"))
    assert matcher.matches(event("Shotgun_Version_Change"))
    assert not matcher.matches(event("Shotgun_Version_Change", "code"))


def test_star_and_named_type_entries_both_count():
    matcher = EventMatcher({"*": ["sg_status_list"], "Shotgun_Version_New": None})
    assert matcher.matches(event("Shotgun_Version_New", None))
    assert matcher.matches(event("Shotgun_Task_Change"))
    assert not matcher.matches(event("Shotgun_Task_Change", "content"))


def test_non_entity_event_types_match_by_type():
    matcher = EventMatcher({"Shotgun_User_Login": None, "Toolkit_App_Startup": None})
    assert matcher.matches(event("Toolkit_App_Startup", None))
    assert not matcher.matches(event("Shotgun_Attachment_View", None))


@pytest.mark.parametrize(
    "bad",
    [
        ["Shotgun_Task_Change"],
        {"Shotgun_Task_Change": 5},
        {"Shotgun_Task_Change": ["ok", 3]},
        {"": None},
        {7: None},
    ],
)
def test_malformed_match_events_are_refused(bad):
    with pytest.raises(MatchEventsError):
        EventMatcher(bad)


@pytest.mark.parametrize(
    ("match_events", "described"),
    [
        (None, {"*": "*"}),
        ({}, {"*": "*"}),
        ({"Shotgun_Task_Change": "sg_status_list"}, {"Shotgun_Task_Change": ["sg_status_list"]}),
        (
            {"Shotgun_Task_Change": ["b", "a"], "*": None},
            {"Shotgun_Task_Change": ["a", "b"], "*": "*"},
        ),
        ({"Shotgun_Shot_New": ["code", "*"]}, {"Shotgun_Shot_New": "*"}),
    ],
)
def test_describe_says_what_the_compiled_matcher_accepts(match_events, described):
    assert EventMatcher(match_events).describe() == described
