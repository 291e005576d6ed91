"""The admin tokens: the gateway's (GATEWAY_ADMIN_TOKEN, sees every shop) and one per shop.

A shop's token sees and replays only that shop's events, deliveries, routes and metrics, in the
admin API and the console. They come from the environment, never from a flag (`ps` shows flags):

    GATEWAY_ADMIN_TOKENS="loja-a:3f9a...,padaria:77c1..."     (shop:token, comma-separated)
    GATEWAY_ADMIN_TOKENS_FILE=/etc/gateway/admin-tokens.yaml   (one `shop: token` a line)

Every mistake is refused at start with what to change: a token too short, one shop named twice,
a shop without a routes.d/<shop>.yaml, one token given to two shops or equal to the gateway's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

import gateway.tenants as tenants

MIN_ADMIN_TOKEN_CHARS = 16
TOKENS_VARIABLE = "GATEWAY_ADMIN_TOKENS"
TOKENS_FILE_VARIABLE = "GATEWAY_ADMIN_TOKENS_FILE"


class AdminTokenError(ValueError):
    """An admin token setting that cannot be used; the message says what to change."""


@dataclass(frozen=True)
class AdminTokens:
    gateway: str | None = None  # GATEWAY_ADMIN_TOKEN: every shop
    shops: dict[str, str] = field(default_factory=dict)  # shop (tenant) -> its token

    def __bool__(self) -> bool:
        """Whether the admin API and the console are on: any token turns them on."""
        return bool(self.gateway or self.shops)

    def secrets(self) -> list[str]:
        """Every token, to mask in logs."""
        return [t for t in (self.gateway, *self.shops.values()) if t]


NO_ADMIN_TOKENS = AdminTokens()


def read_admin_tokens(environ: Mapping[str, str], known_shops: Iterable[str]) -> AdminTokens:
    """The tokens the environment sets; AdminTokenError naming the variable and the fix."""
    gateway = environ.get("GATEWAY_ADMIN_TOKEN") or None
    if gateway is not None:
        _long_enough("GATEWAY_ADMIN_TOKEN", gateway)
    shops: dict[str, str] = {}
    for where, shop, token in [*_from_variable(environ.get(TOKENS_VARIABLE, "")), *_from_file(environ.get(TOKENS_FILE_VARIABLE, ""))]:
        _check_shop(where, shop, token, shops, gateway, set(known_shops))
        shops[shop] = token
    return AdminTokens(gateway, shops)


def _from_variable(value: str) -> list[tuple[str, str, str]]:
    found = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        shop, separator, token = item.partition(":")
        if not separator:
            raise AdminTokenError(f"{TOKENS_VARIABLE}: '{shop[:20]}…' has no ':'; write each as shop:token, comma-separated (loja-a:3f9a…,padaria:77c1…)")
        found.append((TOKENS_VARIABLE, shop.strip(), token.strip()))
    return found


def _from_file(path: str) -> list[tuple[str, str, str]]:
    if not path:
        return []
    where = f"{TOKENS_FILE_VARIABLE} ({path})"
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise AdminTokenError(f"{where}: cannot be read ({exc.strerror}); point {TOKENS_FILE_VARIABLE} at a file of `shop: token` lines") from None
    except yaml.YAMLError as exc:
        line = exc.problem_mark.line + 1 if getattr(exc, "problem_mark", None) else 1  # type: ignore[attr-defined]
        raise AdminTokenError(f"{path}:{line}: not YAML; write one `shop: token` a line") from None
    if data is None:
        return []
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise AdminTokenError(f"{where}: write one `shop: token` a line (each token a string; quote one that YAML would read as a number)")
    return [(where, str(shop), token) for shop, token in data.items()]


def _check_shop(where: str, shop: str, token: str, seen: dict[str, str], gateway: str | None, known: set[str]) -> None:
    if shop in seen:
        raise AdminTokenError(f"{where}: the shop '{shop}' has two admin tokens; keep one")
    if shop not in known:
        listed = ", ".join(sorted(known)) or f"none: there is no {tenants.TENANTS_DIR}/ folder beside routes.yaml"
        raise AdminTokenError(f"{where}: '{shop}' is not a shop of this gateway (a {tenants.TENANTS_DIR}/{shop}.yaml); shops: {listed}")
    _long_enough(f"{where} for '{shop}'", token)
    if token == gateway or token in seen.values():
        raise AdminTokenError(f"{where}: the token of '{shop}' is also {'GATEWAY_ADMIN_TOKEN' if token == gateway else 'another shop’s'}; give each its own")


def _long_enough(name: str, token: str) -> None:
    if len(token) < MIN_ADMIN_TOKEN_CHARS:
        raise AdminTokenError(f"{name} is too short ({len(token)} characters); use at least {MIN_ADMIN_TOKEN_CHARS}, e.g. `openssl rand -hex 24`")
