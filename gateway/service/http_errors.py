"""The one error every handler raises: an HTTP status with a short code and a sentence for a
person. The app's exception handler (app.py) writes it as `{"error": ..., "detail": ...}`."""

from __future__ import annotations

from litestar.exceptions import HTTPException


class GatewayHTTPError(HTTPException):
    def __init__(self, status_code: int, error: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(status_code=status_code, detail=detail, headers=headers)
        self.error = error
