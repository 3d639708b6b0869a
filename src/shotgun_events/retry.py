"""Retrying a plugin's work through transient site failures: the policy, not the waiting.

A site maintenance window or a network blip makes a plugin's own calls fail for a while.
This module decides, for one callback on one event, whether a failure is worth another try
(``is_transient``) and how long to wait before it (``RetryRun``: capped exponential backoff
with jitter, a limit on tries and on time). ``OutageLog`` reports each plugin's outage once,
not once per try, and counts retries for status and metrics. ``retrying`` gives plugin
authors the same policy for their own calls to other services (a render farm, chat, a
tracker).

It must never retry an error that is not transient (a bug, a bad field, a wrong key: trying
again cannot help and would only hide it), and it never waits on the engine's behalf: the
worker owns the wait, so that a stop or a reload can cut it short.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import http.client
import logging
import random as _random
import socket
import ssl
import threading
import time
import urllib.error
import xmlrpc.client
from typing import (
    Any,
    Callable,
    Dict,
    Iterator,
    Mapping,
    Optional,
    TypeVar,
    Union,
)

import shotgun_api3
from shotgun_api3.lib import httplib2

from .config import RetryPolicy
from .site import describe_error

__all__ = [
    "OutageLog",
    "RetryInterrupted",
    "RetryPolicy",
    "RetryRun",
    "Retrying",
    "call_with_retry",
    "is_transient",
    "resolve_policy",
    "retrying",
]

T = TypeVar("T")

#: What ``registerCallback(retry=...)`` and ``retrying(...)`` accept.
PolicyOption = Union[RetryPolicy, Mapping[str, Any], bool, None]

_POLICY_FIELDS = tuple(field.name for field in dataclasses.fields(RetryPolicy))
_ONE_TRY = RetryPolicy(attempts=1)


# --------------------------------------------------------------------------- the policy


def resolve_policy(option: PolicyOption, default: Optional[RetryPolicy]) -> Optional[RetryPolicy]:
    """The policy a callback runs with, from its ``retry=`` option and the config's default.

    ``None`` (the option left out) follows the config (``[daemon] plugin_retry``, off unless
    set), so old plugins behave as before; ``True`` asks for retries even when the config has
    none; ``False`` turns them off even when the config has them on. A bad dict is a
    ValueError naming the bad key, raised at plugin load rather than at the first outage.
    """
    if option is None:
        return default
    if isinstance(option, bool):
        return (default or RetryPolicy()) if option else None
    if isinstance(option, RetryPolicy):
        return option
    if isinstance(option, Mapping):
        return _policy_from_fields(option)
    raise ValueError(
        f"retry must be True, False, None, a dict of {', '.join(_POLICY_FIELDS)} or a "
        f"RetryPolicy; got {option!r}"
    )


def _policy_from_fields(
    fields: Mapping[str, Any], base: Optional[RetryPolicy] = None
) -> RetryPolicy:
    """``RetryPolicy(**fields)`` (or ``base`` with ``fields`` replaced), with clear errors."""
    unknown = sorted(str(name) for name in fields if name not in _POLICY_FIELDS)
    if unknown:
        raise ValueError(
            f"retry policy: unknown key {', '.join(map(repr, unknown))} "
            f"(the keys are {', '.join(_POLICY_FIELDS)})"
        )
    try:
        if base is None:
            return RetryPolicy(**fields)
        return dataclasses.replace(base, **fields)
    except (TypeError, ValueError) as error:  # RetryPolicy says which field is wrong
        raise ValueError(f"retry policy {dict(fields)!r}: {error}") from None


# --------------------------------------------------------------------------- transient errors

#: HTTP answers that mean "not now" rather than "never": timeouts, rate limits, a server or
#: gateway in trouble, maintenance. 501 (not implemented) and 505 (bad HTTP version) never
#: get better, so they are left out.
_TRANSIENT_HTTP = frozenset({408, 429, *range(500, 600)}) - {501, 505}

#: Socket errno values of a network that comes and goes.
_TRANSIENT_ERRNO = frozenset(
    {
        errno.ECONNABORTED,
        errno.ECONNREFUSED,
        errno.ECONNRESET,
        errno.EHOSTDOWN,
        errno.EHOSTUNREACH,
        errno.ENETDOWN,
        errno.ENETRESET,
        errno.ENETUNREACH,
        errno.EPIPE,
        errno.ETIMEDOUT,
        errno.EADDRNOTAVAIL,
    }
)

#: A connection that broke or a TLS session cut mid-way; not certificate problems.
_TRANSIENT_SSL = (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError)

#: http.client's view of a connection that closed early or went stale.
_TRANSIENT_HTTP_CLIENT = (
    http.client.IncompleteRead,
    http.client.BadStatusLine,  # RemoteDisconnected is one
    http.client.ImproperConnectionState,
    http.client.NotConnected,
)

#: httplib2 (inside shotgun_api3): the name did not resolve, or the body came cut short.
_TRANSIENT_HTTPLIB2 = (httplib2.ServerNotFoundError, httplib2.FailedToDecompressContent)

#: Errors that are a bug or a refusal, whatever caused them: never retried, and their
#: chain is not searched (a KeyError raised while handling a 503 is still a bug).
_NEVER_TRANSIENT = (
    shotgun_api3.Fault,  # a bad field, a bad filter; AuthenticationFault
    ArithmeticError,
    AssertionError,
    AttributeError,
    ImportError,
    LookupError,
    NameError,
    NotImplementedError,
    RecursionError,
    TypeError,
    ValueError,
    MemoryError,
)

#: What shotgun_api3 raises when its own retries of a request or an upload are used up.
_CLIENT_GAVE_UP = ("Max attempts limit reached.",)

#: The error itself, then this many links of its ``__cause__``/``__context__`` chain.
_CHAIN_DEPTH = 2


def is_transient(error: BaseException) -> bool:
    """True when trying the same call again later may well work.

    Site outages (HTTP 5xx, 503 maintenance, 429, 408), connection resets, refused or
    dropped connections, timeouts, DNS failures and TLS sessions cut short are transient.
    A ``Fault`` (bad field, bad filter), ``AuthenticationFault`` and programming errors
    (KeyError, ValueError, ...) are not. A plugin's own error that wraps a transient one
    (``raise FarmError(...) from error``) counts as transient; the chain is followed two
    links deep, and not at all past an error that is never transient.
    """
    current: Optional[BaseException] = error
    for _ in range(_CHAIN_DEPTH + 1):
        if current is None:
            return False
        verdict = _verdict(current)
        if verdict is not None:
            return verdict
        current = _chained(current)
    return False


def _chained(error: BaseException) -> Optional[BaseException]:
    """The error this one was raised from or during, as a traceback would show it."""
    if error.__cause__ is not None:
        return error.__cause__
    return None if error.__suppress_context__ else error.__context__


def _verdict(error: BaseException) -> Optional[bool]:
    """True (transient), False (not), or None (no opinion: look at what caused it)."""
    if not isinstance(error, Exception):  # KeyboardInterrupt, SystemExit: never retried
        return False
    judged = _own_judgement(error)
    if judged is not None:  # RemoteCallbackError: judged in the plugin's own process
        return judged
    if isinstance(error, xmlrpc.client.ProtocolError):  # the client's HTTP status errors
        return error.errcode in _TRANSIENT_HTTP
    if isinstance(error, urllib.error.HTTPError):
        return error.code in _TRANSIENT_HTTP
    if isinstance(error, urllib.error.URLError):
        reason = error.reason
        return isinstance(reason, BaseException) and bool(_verdict(reason))
    if isinstance(error, (TimeoutError, socket.timeout, ConnectionError, socket.gaierror)):
        return True
    if isinstance(error, ssl.SSLError):
        return isinstance(error, _TRANSIENT_SSL)
    if isinstance(error, (*_TRANSIENT_HTTP_CLIENT, *_TRANSIENT_HTTPLIB2)):
        return True
    if isinstance(error, (http.client.HTTPException, httplib2.HttpLib2Error)):
        return False
    if isinstance(error, OSError):
        return error.errno in _TRANSIENT_ERRNO
    if isinstance(error, _NEVER_TRANSIENT):
        return False
    if type(error) is shotgun_api3.ShotgunError and error.args == _CLIENT_GAVE_UP:
        return True  # the client's own retries of an upload or a request were used up
    # Other ShotgunErrors (uploads and downloads answered 503, ...) wrap what caused them:
    # the chain decides.
    return None


def _own_judgement(error: BaseException) -> Optional[bool]:
    """The error's own ``transient`` flag when it carries one, else None.

    Python 3.9's ``HTTPError`` built without a body (``fp=None``, as plugins and their tests
    often build it) raises KeyError, not AttributeError, for an attribute it lacks, which
    ``getattr`` with a default does not catch.
    """
    try:
        judged = getattr(error, "transient", None)
    except KeyError:
        return None
    return judged if isinstance(judged, bool) else None


def _retry_after(error: BaseException) -> Optional[float]:
    """Seconds the site asked us to wait (a 503's ``Retry-After``), when it said so."""
    headers = getattr(error, "headers", None)
    if not hasattr(headers, "get"):
        return None
    value = headers.get("retry-after") or headers.get("Retry-After")
    try:
        seconds = float(value)
    except (TypeError, ValueError):  # absent, or an HTTP date: fall back to our backoff
        return None
    return seconds if seconds > 0 else None


# ------------------------------------------------------------------ one callback, one event


class RetryRun:
    """One callback on one event, retried per the policy; ask it after each failure.

    ``next_delay(error)`` says how long to wait before the next try, or None to give up:
    the error is not transient, the policy's ``attempts`` are used up, or ``give_up_after``
    seconds have passed since the first failure. Delays start at ``first_delay`` and double
    up to ``max_delay``, each varied by +/- ``jitter`` so that plugins sharing an outage do
    not retry in step; ``max_delay`` is a true maximum. A ``Retry-After`` from the site is
    honoured (up to ``max_delay``). The last wait is shortened to end at the give-up time,
    so there is always one try at the end.
    """

    def __init__(
        self,
        policy: RetryPolicy,
        *,
        clock: Callable[[], float] = time.monotonic,
        random: Callable[[], float] = _random.random,
        is_transient: Callable[[BaseException], bool] = is_transient,
    ) -> None:
        self.policy = policy
        self._clock = clock
        self._random = random
        self._is_transient = is_transient
        self._first_failure_at: Optional[float] = None
        #: Failed tries so far (every error given to ``next_delay``).
        self.attempts = 0
        #: Waits handed out so far (tries after the first).
        self.retries = 0
        #: Seconds of waiting handed out so far.
        self.waited = 0.0
        self.first_error: Optional[str] = None
        self.last_error: Optional[str] = None
        #: Why ``next_delay`` gave up, once it has.
        self.gave_up: Optional[str] = None

    def next_delay(self, error: BaseException) -> Optional[float]:
        """Seconds to wait before trying again after ``error``, or None to give up."""
        now = self._clock()
        self.attempts += 1
        self.last_error = describe_error(error)
        if self._first_failure_at is None:
            self._first_failure_at, self.first_error = now, self.last_error
        self.gave_up = self._reason_to_give_up(error, now)
        if self.gave_up is not None:
            return None
        remaining = self.policy.give_up_after - (now - self._first_failure_at)
        delay = min(self._backoff(error), remaining)
        self.retries += 1
        self.waited += delay
        return delay

    def _reason_to_give_up(self, error: BaseException, now: float) -> Optional[str]:
        assert self._first_failure_at is not None
        policy = self.policy
        if not self._is_transient(error):
            return "not a transient error"
        if self.attempts >= policy.attempts:
            return f"{self.attempts} attempts"
        if now - self._first_failure_at >= policy.give_up_after:
            return f"{policy.give_up_after:g} s"
        return None

    def _backoff(self, error: BaseException) -> float:
        policy = self.policy
        doublings = min(self.attempts - 1, 64)  # 2**64 s is past any max_delay
        base = min(policy.max_delay, policy.first_delay * 2.0**doublings)
        delay = base * (1.0 + policy.jitter * (2.0 * self._random() - 1.0))
        asked = _retry_after(error)
        if asked is not None:
            delay = max(delay, asked)
        return min(policy.max_delay, delay)


# --------------------------------------------------------------------------- reporting outages


@dataclasses.dataclass
class PluginRetryStats:
    """What one plugin's retries have cost so far; read by status and metrics."""

    retries: int = 0
    recoveries: int = 0
    give_ups: int = 0
    waited: float = 0.0
    outages: int = 0
    last_error: Optional[str] = None
    #: Monotonic time the current outage started; None when the plugin is not in one.
    outage_since: Optional[float] = None
    #: Retries and give-ups within the current outage (reset when it ends).
    outage_retries: int = 0
    outage_give_ups: int = 0


class OutageLog:
    """Logs each plugin's outage once, and counts every retry, give-up and wait.

    An outage starts with a plugin's first retry and ends with its next success. Its start
    is one WARNING, its end one INFO line (WARNING if something was given up meanwhile), and
    its first give-up one ERROR (which emails); retries in between are DEBUG only. Logged on
    the plugin's own logger (``plugin.<name>``), so the lines land in its log file. Shared by
    every worker, so it is thread-safe.
    """

    def __init__(
        self,
        logger_for: Callable[[str], logging.Logger] = lambda plugin: logging.getLogger(
            f"plugin.{plugin}"
        ),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger_for = logger_for
        self._clock = clock
        self._lock = threading.Lock()
        self._stats: Dict[str, PluginRetryStats] = {}

    def retrying(
        self,
        plugin: str,
        callback: str,
        error: BaseException,
        delay: float,
        *,
        event_id: Optional[int] = None,
    ) -> None:
        """A callback failed transiently and will be tried again in ``delay`` seconds."""
        description = describe_error(error)
        with self._lock:
            stats = self._stats.setdefault(plugin, PluginRetryStats())
            starts = stats.outage_since is None
            if starts:
                stats.outage_since = self._clock()
                stats.outages += 1
            stats.retries += 1
            stats.outage_retries += 1
            stats.waited += delay
            stats.last_error = description
        logger = self._logger_for(plugin)
        if starts:
            logger.warning(
                "Callback %s hit a transient error%s (%s); retrying the same event in %.1f s. "
                "Further retries are logged at DEBUG until it works again.",
                callback,
                _on_event(event_id),
                description,
                delay,
            )
        else:
            logger.debug("Retrying callback %s in %.1f s: %s", callback, delay, description)

    def recovered(self, plugin: str, attempts: int, waited: float) -> None:
        """A callback worked (after ``attempts`` failed tries); ends the plugin's outage.

        Cheap when the plugin is not in an outage, so the worker may call it after every
        successful callback.
        """
        with self._lock:
            stats = self._stats.get(plugin)
            if stats is None or stats.outage_since is None:
                return
            lasted = self._clock() - stats.outage_since
            retries, give_ups = stats.outage_retries, stats.outage_give_ups
            stats.outage_since, stats.outage_retries, stats.outage_give_ups = None, 0, 0
            stats.recoveries += 1 if attempts else 0
        level = logging.WARNING if give_ups else logging.INFO
        last = f"; this callback needed {attempts + 1} tries and {waited:.1f} s of waiting"
        self._logger_for(plugin).log(
            level,
            "Plugin %s works again after %.1f s of transient errors: %d retries%s%s.",
            plugin,
            lasted,
            retries,
            f", {give_ups} events given up" if give_ups else "",
            last if attempts else "",
        )

    def gave_up(
        self,
        plugin: str,
        callback: str,
        attempts: int,
        waited: float,
        error: BaseException,
        *,
        reason: Optional[str] = None,
        event_id: Optional[int] = None,
    ) -> None:
        """The policy gave up on a callback; stopOnError decides what happens next."""
        description = describe_error(error)
        with self._lock:
            stats = self._stats.setdefault(plugin, PluginRetryStats())
            first = stats.outage_give_ups == 0
            stats.give_ups += 1
            stats.outage_give_ups += 1
            stats.last_error = description
        self._logger_for(plugin).log(
            logging.ERROR if first else logging.WARNING,
            "Callback %s gave up retrying%s after %d tries and %.1f s of waiting%s: %s",
            callback,
            _on_event(event_id),
            attempts,
            waited,
            f" ({reason})" if reason else "",
            description,
        )

    def stats(self, plugin: str) -> PluginRetryStats:
        """A copy of one plugin's counters (zeros for a plugin that never retried)."""
        with self._lock:
            return dataclasses.replace(self._stats.get(plugin) or PluginRetryStats())

    def snapshot(self) -> Dict[str, Dict[str, Any]]:
        """Every plugin's counters as plain data, for the status file and metrics."""
        now = self._clock()
        with self._lock:
            return {name: _stats_dict(stats, now) for name, stats in self._stats.items()}

    def forget(self, plugin: str) -> None:
        """Drop a plugin's counters (its file was removed)."""
        with self._lock:
            self._stats.pop(plugin, None)


def _stats_dict(stats: PluginRetryStats, now: float) -> Dict[str, Any]:
    return {
        "retries": stats.retries,
        "recoveries": stats.recoveries,
        "give_ups": stats.give_ups,
        "waited_seconds": round(stats.waited, 3),
        "outages": stats.outages,
        "in_outage": stats.outage_since is not None,
        "outage_seconds": round(now - stats.outage_since, 3) if stats.outage_since else 0.0,
        "last_error": stats.last_error,
    }


def _on_event(event_id: Optional[int]) -> str:
    return f" on event {event_id}" if event_id is not None else ""


# --------------------------------------------------------------------------- for the worker


class RetryInterrupted(Exception):  # noqa: N818 - a signal, not an error
    """The wait before a retry was cut short (stop or reload): the event is not done.

    The worker leaves its position before the event, so the event is tried again after the
    restart or reload; it must not count as a failure. ``__cause__`` is the last error.
    """


def call_with_retry(
    call: Callable[[], T],
    policy: Optional[RetryPolicy],
    *,
    wait: Callable[[float], bool],
    outage_log: OutageLog,
    plugin: str,
    callback: str,
    event_id: Optional[int] = None,
    run: Optional[RetryRun] = None,
) -> T:
    """``call()``, tried again per ``policy`` while it fails transiently; the worker's loop.

    ``wait(seconds)`` is the worker's own wait, which returns True when a stop or a reload
    cut it short (then RetryInterrupted is raised). When the policy gives up, or the error
    is not transient, the last error is raised unchanged, for stopOnError to handle as
    before. With no policy, this is just ``call()``.
    """
    if policy is None:
        return call()
    run = run or RetryRun(policy)
    while True:
        try:
            result = call()
        except Exception as error:
            delay = run.next_delay(error)
            if delay is None:
                if run.retries:
                    outage_log.gave_up(
                        plugin,
                        callback,
                        run.attempts,
                        run.waited,
                        error,
                        reason=run.gave_up,
                        event_id=event_id,
                    )
                raise
            outage_log.retrying(plugin, callback, error, delay, event_id=event_id)
            if wait(delay):
                raise RetryInterrupted(f"{callback}: stopped while waiting to retry") from error
            continue
        outage_log.recovered(plugin, run.attempts, run.waited)
        return result


# --------------------------------------------------------------------------- for plugin authors


class Attempt:
    """One try inside ``for attempt in retrying(...)``: ``with attempt:`` wraps the call.

    A transient error leaving the ``with`` block is swallowed and the loop goes round again
    after the policy's delay; any other error, or the last one, goes on up unchanged.
    """

    def __init__(self, retrying: Retrying, run: RetryRun) -> None:
        self._retrying = retrying
        self._run = run
        self.number = run.attempts + 1
        self.delay: Optional[float] = None

    def __enter__(self) -> Attempt:
        return self

    def __exit__(self, kind: Any, error: Optional[BaseException], traceback: Any) -> bool:
        if error is None or not isinstance(error, Exception):
            return False
        self.delay = self._run.next_delay(error)
        self._retrying._report(self._run, error, self.delay)
        return self.delay is not None


class Retrying:
    """The retry policy for a plugin's own calls; made by ``retrying()``.

    Used as a decorator, it re-runs the whole function; iterated, it yields ``Attempt``s
    until one succeeds. Each call of the function and each ``for`` loop is its own run, so
    one object may be shared by threads and reused.
    """

    def __init__(
        self,
        policy: Optional[RetryPolicy],
        *,
        is_transient: Callable[[BaseException], bool] = is_transient,
        sleep: Callable[[float], Any] = time.sleep,
        logger: Optional[logging.Logger] = None,
        clock: Callable[[], float] = time.monotonic,
        random: Callable[[], float] = _random.random,
    ) -> None:
        self.policy = policy
        self._is_transient = is_transient
        self._sleep = sleep
        self._logger = logger or logging.getLogger(__name__)
        self._clock = clock
        self._random = random

    def __call__(self, function: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> T:
            for attempt in self:
                with attempt:
                    return function(*args, **kwargs)
            raise AssertionError("unreachable: the loop ends by returning or raising")

        return wrapper

    def __iter__(self) -> Iterator[Attempt]:
        # retrying(False) is one try: every error gives up at once and goes straight up.
        policy = self.policy or _ONE_TRY
        run = RetryRun(
            policy, clock=self._clock, random=self._random, is_transient=self._is_transient
        )
        while True:
            attempt = Attempt(self, run)
            yield attempt
            if attempt.delay is None:  # it worked (a failure that gives up raises instead)
                if run.retries:
                    self._logger.info(
                        "Works again after %d tries and %.1f s of waiting (first error: %s).",
                        run.attempts + 1,
                        run.waited,
                        run.first_error,
                    )
                return
            self._sleep(attempt.delay)

    def _report(self, run: RetryRun, error: BaseException, delay: Optional[float]) -> None:
        """Log once per run: the first retry, then the end (give-up here, success above)."""
        description = describe_error(error)
        if delay is not None and run.retries == 1:
            self._logger.warning(
                "Transient error (%s); trying again in %.1f s, up to %d tries in %g s.",
                description,
                delay,
                run.policy.attempts,
                run.policy.give_up_after,
            )
        elif delay is not None:
            self._logger.debug("Trying again in %.1f s: %s", delay, description)
        elif run.retries:
            self._logger.warning(
                "Giving up after %d tries and %.1f s of waiting (%s): %s",
                run.attempts,
                run.waited,
                run.gave_up,
                description,
            )


def retrying(
    policy: Union[PolicyOption, Callable[..., Any]] = True,
    *,
    is_transient: Callable[[BaseException], bool] = is_transient,
    sleep: Callable[[float], Any] = time.sleep,
    logger: Optional[logging.Logger] = None,
    **fields: Any,
) -> Any:
    """The daemon's retry policy for a plugin's own calls to other services.

    As a decorator, the whole function is called again after a transient error::

        @retrying(attempts=5, max_delay=10)
        def submit(job): ...

    Around a few lines, in the tenacity idiom (the result is usable after the loop)::

        for attempt in retrying(give_up_after=60, logger=logger):
            with attempt:
                reply = urllib.request.urlopen(request, timeout=10)

    ``policy`` is what ``registerCallback(retry=...)`` takes: True or None for the default
    ``RetryPolicy()``, False for one try only, a dict or a RetryPolicy; ``fields``
    (``attempts``, ``first_delay``, ``max_delay``, ``give_up_after``, ``jitter``) change
    single parts of it. ``is_transient`` decides which errors are retried (extend it for
    your service's own errors). When the policy gives up, the last error is raised as it
    was. ``@retrying`` without parentheses works too.
    """
    if callable(policy) and not isinstance(policy, (RetryPolicy, Mapping, bool)):
        return retrying(is_transient=is_transient, sleep=sleep, logger=logger, **fields)(policy)
    resolved = resolve_policy(policy, RetryPolicy())  # type: ignore[arg-type]
    if fields:
        if resolved is None:
            raise ValueError("retrying(False) means one try; it takes no policy fields")
        resolved = _policy_from_fields(fields, base=resolved)
    return Retrying(resolved, is_transient=is_transient, sleep=sleep, logger=logger)
