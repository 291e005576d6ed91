"""Masking of secrets in anything shown to a person: dry-run output, logs, the admin API."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import replace
from urllib.parse import urlsplit

from gateway.destinations.base import OutgoingRequest

MASK = "***"
# Names (of headers, of destination settings) whose values are secret whatever they look like.
_SECRET_NAMES = re.compile(r"authorization|cookie|token|secret|api[-_]?key|password|sign", re.IGNORECASE)
_SECRET_PARAMS = re.compile(r"([?&](?:token|api_?key|key|secret|password|access_token)=)[^&#]*", re.IGNORECASE)


def mask_secret(secret: str) -> str:
    """A secret as it may be shown: a URL keeps its scheme and host, anything else is hidden."""
    if secret.startswith(("http://", "https://")):
        parts = urlsplit(secret)
        return f"{parts.scheme}://{parts.hostname}/{MASK}"
    return MASK


def secret_forms(secret: str) -> set[str]:
    """A secret and the parts of it that are secret alone: a receiver quoting the path it was
    called on (a Slack webhook's path is its key), a library quoting a URL's password."""
    forms = {secret}
    if secret.startswith(("http://", "https://")):
        parts = urlsplit(secret)
        tail = parts.path + (f"?{parts.query}" if parts.query else "")
        if len(tail.strip("/")) >= 6:
            forms.add(tail)
        if parts.password and len(parts.password) >= 4:
            forms.add(parts.password)
    return forms


def mask_text(text: str, secrets: Iterable[str]) -> str:
    """Replace every known secret value in `text` (longest first, so none leaks in part)."""
    for secret in sorted(secrets, key=len, reverse=True):
        if secret and secret in text:
            text = text.replace(secret, mask_secret(secret))
    return text


# Every secret value this process has loaded from a routes.yaml (config.py remembers them), also
# those of routes since replaced: text whose origin nobody checked (a log line, a library's
# traceback, the CLI's last-resort message) is scrubbed of all of them.
_REMEMBERED: set[str] = set()


def remember_secrets(secrets: Iterable[str]) -> None:
    _REMEMBERED.update(secret for secret in secrets if secret)


def scrub(text: str) -> str:
    """`text` with every remembered secret and all personal data masked."""
    return mask_personal_data(mask_text(text, _REMEMBERED)) if text else text


def mask_url(url: str, secrets: Iterable[str]) -> str:
    return _SECRET_PARAMS.sub(lambda m: m.group(1) + MASK, mask_text(url, secrets))


def is_secret_name(name: str) -> bool:
    return bool(_SECRET_NAMES.search(name))


def mask_header(name: str, value: str, secrets: Iterable[str]) -> str:
    if name.lower() == "idempotency-key" or not is_secret_name(name):
        return mask_text(value, secrets)
    scheme, _, rest = value.partition(" ")
    return f"{scheme} {MASK}" if rest and scheme.lower() in ("bearer", "basic", "token") else MASK


def mask_request(request: OutgoingRequest, secrets: Iterable[str]) -> OutgoingRequest:
    """The request with secrets hidden in its URL, headers and body."""
    secrets = tuple(secrets)
    headers = {name: mask_header(name, value, secrets) for name, value in request.headers.items()}
    return replace(request, url=mask_url(request.url, secrets), headers=headers, body=mask_text(request.body, secrets))


# Personal data as it shows up in error messages (a filter quoting the value it could not read, a
# vendor echoing the e-mail it refused): e-mail addresses, CPF and CNPJ written out, phones as
# shown, and runs of 11 to 14 digits (CPF, CNPJ, phones with area code, bare).
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_DOCUMENTS_AND_PHONES = re.compile(  # the lookahead skips most positions at once
    r"(?=[\d(+A-Z])(?:\b\d{3}\.\d{3}\.\d{3}-\d{2}\b"
    r"|\b[0-9A-Z]{2}\.[0-9A-Z]{3}\.[0-9A-Z]{3}/[0-9A-Z]{4}-\d{2}\b"
    r"|\(\d{2}\)\s?9?\d{4}-\d{4}"
    r"|\+?\b\d{11,14}\b)"
)


def mask_personal_data(text: str) -> str:
    """`text` with e-mails, CPF/CNPJ and phone numbers replaced by ***: for error messages and
    log lines, which outlive the payloads they describe and are read by more people."""
    if "@" in text:  # the e-mail pattern is the costly one; most lines have no '@'
        text = _EMAIL.sub(MASK, text)
    return _DOCUMENTS_AND_PHONES.sub(MASK, text)


def without_password(url: str) -> str:
    """A URL (a database's, a receiver's) with the password of its user part left out."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    return f"{scheme}{sep}{credentials.split(':', 1)[0]}{at}{host}" if at else url
