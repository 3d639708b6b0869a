"""Which events a callback wants: the classic ``matchEvents`` dict, compiled once.

Pure logic, no I/O, so it is tested in microseconds. It must never accept a malformed
``matchEvents`` silently: a plugin author's typo is reported when the plugin loads.

Semantics (the plugin contract in DESIGN.md):
- ``None`` or ``{}``: every event.
- Otherwise keys are event types; the key ``'*'`` matches any event type. An event matches
  when the entry for its own type matches, or the ``'*'`` entry does.
- A value of ``None``, ``'*'`` or a list containing ``'*'`` matches any attribute; a string or
  a list of strings matches those ``attribute_name`` values exactly.

Two classic behaviours are not kept (README, "Differences from the classic daemon"):
- The classic daemon tested ``event['attribute_name'] in value``; for a string value that is
  a substring test of the event's attribute *in the registered string*: ``'sg_code'``
  matched events on ``code`` (and on ``sg``, ``_c``...), and any string containing ``'*'``
  matched every attribute. Here a string is one attribute name.
- With a ``'*'`` key the classic daemon consulted that entry only, ignoring the entry of
  the event's own type; here either entry may match.
"""

from __future__ import annotations

from typing import Any, Dict, FrozenSet, List, Mapping, Optional, Union

ANY = "*"

# None in this table means "any attribute".
AttributeFilter = Optional[FrozenSet[str]]


class MatchEventsError(ValueError):
    """A ``matchEvents`` value that cannot mean anything; raised when a callback registers."""


class EventMatcher:
    """A compiled ``matchEvents``: the event types it wants and, per type, the attributes."""

    __slots__ = ("_by_type", "_wildcard", "event_types")

    def __init__(self, match_events: Optional[Mapping[str, Any]] = None) -> None:
        if match_events is not None and not isinstance(match_events, Mapping):
            raise MatchEventsError(
                f"matchEvents must be a dict of event type -> attribute names, "
                f"got {type(match_events).__name__}"
            )
        self._by_type: Dict[str, AttributeFilter] = {}
        self._wildcard: Optional[AttributeFilter] = None
        has_wildcard = False
        if not match_events:
            has_wildcard = True
        else:
            for event_type, attributes in match_events.items():
                if not isinstance(event_type, str) or not event_type:
                    raise MatchEventsError(f"matchEvents key {event_type!r} is not an event type")
                compiled = _compile_attributes(event_type, attributes)
                if event_type == ANY:
                    has_wildcard = True
                    self._wildcard = compiled
                else:
                    self._by_type[event_type] = compiled
        #: The event types this matcher can accept; None when it accepts any type.
        self.event_types: Optional[FrozenSet[str]] = (
            None if has_wildcard else frozenset(self._by_type)
        )

    def matches(self, event: Mapping[str, Any]) -> bool:
        """True when the callback wants this event."""
        attribute = event.get("attribute_name")
        event_type = event.get("event_type")
        if event_type in self._by_type and _attribute_ok(self._by_type[event_type], attribute):
            return True
        if self.event_types is None:
            return _attribute_ok(self._wildcard, attribute)
        return False

    def describe(self) -> Dict[str, Union[str, List[str]]]:
        """What the matcher accepts, as the daemon compiled it: event type (``'*'`` for any)
        -> ``'*'`` (any attribute) or the exact attribute names, sorted. For reports
        (``check-config --plugins``): a ``matchEvents`` of ``None`` or ``{}`` reads
        ``{'*': '*'}``, a string value reads as the one-name list it matches."""
        described: Dict[str, Union[str, List[str]]] = {
            event_type: _describe_attributes(attributes)
            for event_type, attributes in sorted(self._by_type.items())
        }
        if self.event_types is None:
            described[ANY] = _describe_attributes(self._wildcard)
        return described


def _describe_attributes(allowed: AttributeFilter) -> Union[str, List[str]]:
    return ANY if allowed is None else sorted(allowed)


def _attribute_ok(allowed: AttributeFilter, attribute: Optional[str]) -> bool:
    return allowed is None or (attribute is not None and attribute in allowed)


def _compile_attributes(event_type: str, attributes: Any) -> AttributeFilter:
    """Turn one matchEvents value into None (any attribute) or an exact set of names."""
    if attributes is None or attributes == ANY:
        return None
    if isinstance(attributes, str):
        return frozenset([attributes])
    try:
        names = list(attributes)
    except TypeError:
        raise MatchEventsError(
            f"matchEvents[{event_type!r}] must be None, an attribute name or a list of "
            f"names, got {type(attributes).__name__}"
        ) from None
    for name in names:
        if not isinstance(name, str):
            raise MatchEventsError(
                f"matchEvents[{event_type!r}] contains {name!r}, which is not an attribute name"
            )
    if ANY in names:
        return None
    return frozenset(names)
