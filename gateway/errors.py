"""The gateway's exceptions, and the located messages users see.

Every message a user can trigger names the file, the line and the fix. A `Problem` is one such
message; `ConfigError` carries all the problems found in one load, so `gateway check` can show
them together instead of one per run.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Location:
    """A place in a file: 1-based line and column, as editors show them."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True, slots=True)
class Problem:
    """One error or warning about the user's files."""

    message: str
    location: Location | None = None
    severity: str = "error"  # "error" | "warning"

    def __str__(self) -> str:
        where = f"{self.location}: " if self.location else ""
        tag = "warning: " if self.severity == "warning" else ""
        return f"{where}{tag}{self.message}"


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class ConfigError(GatewayError):
    """The configuration is invalid; nothing was loaded."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = [p for p in problems if p.severity == "error"]
        super().__init__("\n".join(str(p) for p in self.problems))


class TemplateError(GatewayError):
    """A template failed to compile or render. `also`: the other places of the same mistake
    (the same unknown name, the same missing field), so a user fixes them all in one pass."""

    def __init__(self, message: str, location: Location | None = None, also: tuple[Problem, ...] = ()) -> None:
        self.location = location
        self.detail = message
        self.also = also
        super().__init__(f"{location}: {message}" if location else message)

    def problems(self, severity: str = "error") -> list[Problem]:
        """This error and every other place of it, as problems to report."""
        return [Problem(self.detail, self.location, severity), *(Problem(p.message, p.location, severity) for p in self.also)]


class EventError(GatewayError):
    """An event file or body is not a GO event."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest choice, or '' when nothing is close."""
    cutoff = 0.5 if len(str(word)) <= 4 else 0.6  # short names differ by a letter at most
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=cutoff)
    return f" (did you mean '{close[0]}'?)" if close else ""


def plural(count: int, word: str, many: str | None = None) -> str:
    """'1 delivery', '2 deliveries', '0 errors': the count with the word that fits it."""
    if count == 1:
        return f"1 {word}"
    return f"{count} {many or (word[:-1] + 'ies' if word.endswith('y') and word[-2:-1] not in 'aeiou' else word + 's')}"


def one_of(choices: Iterable[str]) -> str:
    """A readable list of allowed words: 'a', 'b' or 'c'."""
    quoted = [f"'{c}'" for c in choices]
    if len(quoted) <= 1:
        return "".join(quoted)
    return ", ".join(quoted[:-1]) + " or " + quoted[-1]
