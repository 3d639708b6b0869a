"""Hooks through which the engine and its workers report what they do, for metrics.

The engine calls these on its hot paths, so the default does nothing and costs a method
call; metrics.py implements them with Prometheus counters. Nothing here may raise.
"""

from __future__ import annotations


class EngineObserver:
    """No-op observer; subclass and override what you want to count."""

    def site_request(self, what: str, seconds: float, ok: bool) -> None:
        """One request of the engine or a catching-up worker to the site."""

    def events_fetched(self, count: int) -> None:
        """Events read by the engine's poll (not counting catch-up reads)."""

    def events_caught_up(self, plugin: str, count: int) -> None:
        """Events a plugin that fell behind read from the site on its own."""

    def callback_ran(self, plugin: str, callback: str, seconds: float, failed: bool) -> None:
        """One callback run on one event."""

    def event_delivered(self, plugin: str) -> None:
        """One event fully handled by every matching callback of a plugin."""
