"""The faults the emulator answers with, in the shape the real client turns into exceptions.

Every problem a caller can cause (bad filter, unknown field, wrong key) is raised as an
`ApiError` and answered as ``{"exception": true, "message": ..., "error_code": ...}`` with
HTTP 200, which `shotgun_api3` raises as `Fault` (or `AuthenticationFault` for code 102).
This module must never format HTTP responses itself; the server does that.
"""

from __future__ import annotations

from typing import Any, Dict

# The code the client maps to AuthenticationFault.
ERR_AUTH = 102
# The emulator's code for every other API fault (the client raises a plain Fault).
ERR_API = 101


class ApiError(Exception):
    """A fault answered to the caller; the message must say what was wrong and where."""

    def __init__(self, message: str, error_code: int = ERR_API) -> None:
        super().__init__(message)
        self.message = message
        self.error_code = error_code

    def as_response(self) -> Dict[str, Any]:
        return {"exception": True, "message": self.message, "error_code": self.error_code}


class AuthenticationError(ApiError):
    """Wrong or unknown script name/key: the client raises AuthenticationFault."""

    def __init__(self, message: str) -> None:
        super().__init__(message, ERR_AUTH)
