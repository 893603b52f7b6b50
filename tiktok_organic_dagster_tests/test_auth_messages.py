"""Authorization messages fit the situation and name the source: never authorized (run the tool), a wrong or
expired code (open the URL again), a revoked or expired refresh token (re-authorize)."""

from __future__ import annotations

import io

import pytest
import responses

from tiktok_organic_dagster.cli.authorize import main
from tiktok_organic_dagster.tiktok import ReauthorizationRequired, TikTokClient

TOKEN_URL = "https://open.tiktokapis.com/v2/oauth/token/"
INVALID_GRANT = {"error": "invalid_grant", "error_description": "Authorization code is expired.",
                 "log_id": "log-1"}


def _client(tmp_path, refresh_token: str = "", key: str = "brand_a") -> TikTokClient:
    return TikTokClient(client_id="ck", client_secret="cs-messages", refresh_token=refresh_token,
                        token_store_path=str(tmp_path / "tokens.json"), token_store_key=key,
                        refresh_token_env="BRAND_A_REFRESH_TOKEN", max_retries=1)


def test_never_authorized_says_to_authorize_once(tmp_path):
    with pytest.raises(ReauthorizationRequired) as info:
        _client(tmp_path).open_id()
    text = str(info.value)
    assert text.startswith("TikTok source 'brand_a' is not authorized yet: BRAND_A_REFRESH_TOKEN is empty")
    assert "Authorize the app once: run `tiktok-organic-authorize --key brand_a --redirect-uri" in text
    assert "re-authorize" not in text.lower()
    assert info.value.first_time


@responses.activate
def test_revoked_refresh_token_says_to_reauthorize_naming_the_source(tmp_path):
    responses.post(TOKEN_URL, json={"error": "invalid_grant", "error_description": "Refresh token is revoked."},
                   status=400)
    with pytest.raises(ReauthorizationRequired) as info:
        _client(tmp_path, refresh_token="rft.revoked-one").open_id()
    text = str(info.value)
    assert text.startswith("TikTok source 'brand_a': the refresh token was revoked or has expired")
    assert "To re-authorize, run `tiktok-organic-authorize --key brand_a --redirect-uri" in text
    assert "rft.revoked-one" not in text and not info.value.first_time


@responses.activate
def test_a_wrong_or_expired_code_says_to_open_the_url_again(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TIKTOK_CLIENT_ID", "ck-auth")
    monkeypatch.setenv("TIKTOK_CLIENT_SECRET", "cs-auth-secret-value")
    monkeypatch.delenv("TIKTOK_REFRESH_TOKEN", raising=False)
    monkeypatch.delenv("TIKTOK_API_BASE_URL", raising=False)
    monkeypatch.setenv("TIKTOK_TOKEN_STORE", str(tmp_path / "store.json"))
    responses.post(TOKEN_URL, json=INVALID_GRANT, status=400)
    code = main(["--redirect-uri", "https://example.com/cb", "--key", "brand_a", "--code=stale-code"],
                stdin=io.StringIO(), stdout=io.StringIO())
    err = capsys.readouterr().err
    assert code == 1
    assert "TikTok rejected the authorization code for source 'brand_a'" in err
    assert "open the authorize URL again" in err
    assert "re-authorize" not in err.lower() and "stale-code" not in err
    assert not (tmp_path / "store.json").exists()
