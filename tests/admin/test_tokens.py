"""The admin tokens read from the environment: the gateway's and one per shop, every mistake
refused with what to change."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.admin.tokens import AdminTokenError, AdminTokens, read_admin_tokens

SHOPS = ["loja-a", "padaria"]
GATEWAY = "token-do-gateway-0123456789"
SHOP_A = "token-da-loja-a-0123456789"
SHOP_B = "token-da-padaria-0123456789"


def test_no_token_leaves_the_admin_surface_off() -> None:
    """Nothing set: no token, and the admin API and console stay off."""
    tokens = read_admin_tokens({}, SHOPS)
    assert tokens == AdminTokens() and not tokens


def test_shop_tokens_from_the_variable_and_the_file(tmp_path: Path) -> None:
    """shop:token pairs in GATEWAY_ADMIN_TOKENS and `shop: token` lines in a file add up; a shop's
    token alone turns the admin surface on."""
    file = tmp_path / "tokens.yaml"
    file.write_text(f"padaria: {SHOP_B}\n")
    tokens = read_admin_tokens({"GATEWAY_ADMIN_TOKENS": f" loja-a:{SHOP_A} ,", "GATEWAY_ADMIN_TOKENS_FILE": str(file)}, SHOPS)
    assert tokens == AdminTokens(None, {"loja-a": SHOP_A, "padaria": SHOP_B}) and tokens
    assert sorted(tokens.secrets()) == sorted([SHOP_A, SHOP_B])


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"GATEWAY_ADMIN_TOKEN": "curto"}, "GATEWAY_ADMIN_TOKEN is too short (5 characters)"),
        ({"GATEWAY_ADMIN_TOKENS": "loja-a:curto"}, "for 'loja-a' is too short"),
        ({"GATEWAY_ADMIN_TOKENS": f"loja-a{SHOP_A}"}, "has no ':'; write each as shop:token"),
        ({"GATEWAY_ADMIN_TOKENS": f"loja-b:{SHOP_A}"}, "'loja-b' is not a shop of this gateway (a routes.d/loja-b.yaml); shops: loja-a, padaria"),
        ({"GATEWAY_ADMIN_TOKENS": f"loja-a:{SHOP_A},loja-a:{SHOP_B}"}, "the shop 'loja-a' has two admin tokens"),
        ({"GATEWAY_ADMIN_TOKENS": f"loja-a:{SHOP_A},padaria:{SHOP_A}"}, "the token of 'padaria' is also another shop’s"),
        ({"GATEWAY_ADMIN_TOKEN": GATEWAY, "GATEWAY_ADMIN_TOKENS": f"loja-a:{GATEWAY}"}, "the token of 'loja-a' is also GATEWAY_ADMIN_TOKEN"),
        ({"GATEWAY_ADMIN_TOKENS_FILE": "/nao/existe.yaml"}, "cannot be read"),
    ],
)
def test_each_mistake_is_refused_with_what_to_change(environ: dict[str, str], message: str) -> None:
    """A short token, a pair without ':', an unknown shop, a shop twice, a token shared: refused."""
    with pytest.raises(AdminTokenError) as raised:
        read_admin_tokens(environ, SHOPS)
    assert message in str(raised.value)
    assert SHOP_A not in str(raised.value) and GATEWAY not in str(raised.value)  # never the token itself


def test_a_tokens_file_that_is_not_yaml_names_its_line(tmp_path: Path) -> None:
    """A broken tokens file: its path and line."""
    file = tmp_path / "tokens.yaml"
    file.write_text(f"loja-a: {SHOP_A}\npadaria: [\n")
    with pytest.raises(AdminTokenError, match=rf"{file}:3: not YAML"):
        read_admin_tokens({"GATEWAY_ADMIN_TOKENS_FILE": str(file)}, SHOPS)
