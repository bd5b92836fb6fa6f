"""Zoho OAuth: the Accounts sandbox's refresh-token grant and the shared, cached TokenProvider."""
import re
import threading

import pytest

from acebuddy.config import SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET, SANDBOX_REFRESH_TOKEN
from acebuddy.desk import zoho_tokens
from acebuddy.desk.errors import AuthError, RetryableError
from acebuddy.desk.oauth import TokenProvider
from acebuddy.redisconn import get_redis
from acebuddy.sandbox.accounts import accounts_sandbox

TOKEN_URL = "/sandbox/accounts/oauth/v2/token"
GOOD = {
    "grant_type": "refresh_token",
    "client_id": SANDBOX_CLIENT_ID,
    "client_secret": SANDBOX_CLIENT_SECRET,
    "refresh_token": SANDBOX_REFRESH_TOKEN,
}


def test_refresh_grant_answers_like_zoho(client):
    response = client.post(TOKEN_URL, data=GOOD)
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == {"access_token", "api_domain", "token_type", "expires_in"}
    assert re.fullmatch(r"1000\.[0-9a-f]{32}\.[0-9a-f]{32}", body["access_token"])
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert "refresh_token" not in body  # a refresh grant never hands out a new refresh token


def test_refresh_grant_accepts_the_query_string(client):
    response = client.post(TOKEN_URL, query_string=GOOD)
    assert response.status_code == 200 and response.get_json()["access_token"].startswith("1000.")


@pytest.mark.parametrize(
    "change, error",
    [
        ({"refresh_token": "1000.revoked"}, "invalid_code"),
        ({"client_id": "1000.OTHER"}, "invalid_client"),
        ({"client_secret": "wrong"}, "invalid_client"),
        ({"grant_type": "password"}, "unsupported_grant_type"),
    ],
)
def test_refused_grants_come_back_as_200_with_an_error(client, app, change, error):
    response = client.post(TOKEN_URL, data={**GOOD, **change})
    assert response.status_code == 200
    assert response.get_json() == {"error": error}
    assert accounts_sandbox(app).minted == 0


def test_sandbox_counts_minted_tokens(client, app):
    client.post(TOKEN_URL, data=GOOD)
    client.post(TOKEN_URL, data=GOOD)
    assert accounts_sandbox(app).minted == 2


def test_token_is_minted_once_and_shared_through_redis(live_server):
    app = live_server.app
    with app.app_context():
        first, second = zoho_tokens(app), zoho_tokens(app)
        assert first is not second
        token = first.get()
        assert second.get() == token
        assert first.get() == token
    assert accounts_sandbox(app).minted == 1


def test_concurrent_first_use_mints_one_token(live_server):
    app = live_server.app
    results, errors = [], []

    def fetch():
        try:
            results.append(zoho_tokens(app).get())
        except Exception as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=fetch) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert not errors
    assert len(set(results)) == 1 and len(results) == 6
    assert accounts_sandbox(app).minted == 1


def test_invalidate_then_refresh_mints_a_new_token(live_server):
    app = live_server.app
    tokens = zoho_tokens(app)
    old = tokens.get()
    tokens.invalidate(old)
    new = tokens.refresh(stale=old)
    assert new != old and tokens.get() == new
    assert accounts_sandbox(app).minted == 2


def test_refresh_of_a_stale_token_reuses_one_another_process_already_minted(live_server):
    app = live_server.app
    mine, theirs = zoho_tokens(app), zoho_tokens(app)
    old = mine.get()
    theirs.invalidate(old)
    fresh = theirs.refresh(stale=old)
    # `mine` saw `old` refused too; it must take the fresh token, not mint a third.
    assert mine.refresh(stale=old) == fresh
    assert accounts_sandbox(app).minted == 2


def test_invalidate_leaves_a_newer_token_alone(live_server):
    app = live_server.app
    tokens = zoho_tokens(app)
    old = tokens.get()
    tokens.invalidate(old)
    new = tokens.refresh(stale=old)
    tokens.invalidate(old)  # a late second process reporting the old token
    assert get_redis(app).get(tokens.cache_key).decode() == new


def test_revoked_refresh_token_raises_auth_error(live_server):
    app = live_server.app
    tokens = TokenProvider(
        app.config["ZOHO_ACCOUNTS_URL"], SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET, "1000.revoked",
        redis=get_redis(app),
    )
    with pytest.raises(AuthError) as caught:
        tokens.get()
    assert caught.value.code == "invalid_code"


def test_throttled_mint_is_retryable(live_server):
    app = live_server.app
    accounts_sandbox(app).deny_next(1)
    with pytest.raises(RetryableError) as caught:
        zoho_tokens(app).get()
    assert caught.value.retry_after == 60
    assert zoho_tokens(app).get().startswith("1000.")


def test_unreachable_accounts_host_is_retryable(app):
    tokens = TokenProvider("http://127.0.0.1:1/accounts", "c", "s", "r", timeout=1)
    with pytest.raises(RetryableError) as caught:
        tokens.get()
    assert caught.value.code == "NETWORK"


def test_without_redis_the_token_is_cached_in_the_instance(live_server):
    app = live_server.app
    tokens = TokenProvider(app.config["ZOHO_ACCOUNTS_URL"], SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET,
                           SANDBOX_REFRESH_TOKEN)
    assert tokens.get() == tokens.get()
    assert accounts_sandbox(app).minted == 1


def test_desk_sandbox_checks_tokens_like_desk(client, app):
    from acebuddy.sandbox.accounts import expire_tokens

    url = "/sandbox/desk/api/v1/departments"
    org = {"orgId": app.config["ZOHO_ORG_ID"]}
    assert client.get(url, headers=org).get_json()["errorCode"] == "UNAUTHORIZED"
    bad = client.get(url, headers={**org, "Authorization": "Zoho-oauthtoken 1000.nope"})
    assert bad.status_code == 401 and bad.get_json()["errorCode"] == "INVALID_OAUTH"
    token = client.post(TOKEN_URL, data=GOOD).get_json()["access_token"]
    bearer = client.get(url, headers={**org, "Authorization": f"Bearer {token}"})
    assert bearer.status_code == 401
    good = client.get(url, headers={**org, "Authorization": f"Zoho-oauthtoken {token}"})
    assert good.status_code == 200
    expire_tokens(app)
    expired = client.get(url, headers={**org, "Authorization": f"Zoho-oauthtoken {token}"})
    assert expired.status_code == 401 and expired.get_json()["errorCode"] == "INVALID_OAUTH"
    assert "X-Rate-Limit-Remaining-v3" not in expired.headers  # 401s carry no rate headers


def test_a_refresh_held_up_by_another_process_is_retryable_and_never_sent(live_server):
    """Another process holds the refresh lock past our wait: nothing is sent to Zoho, so the ticket
    job whose call this was does not count it as an attempt (tickets._after_error)."""
    app = live_server.app
    tokens = TokenProvider(app.config["ZOHO_ACCOUNTS_URL"], SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET,
                           SANDBOX_REFRESH_TOKEN, redis=get_redis(app), timeout=0.1)
    minted = accounts_sandbox(app).minted
    other = get_redis(app).lock(tokens.cache_key + ":lock", timeout=30)
    assert other.acquire(blocking=False)
    try:
        with pytest.raises(RetryableError) as caught:
            tokens.refresh()
    finally:
        other.release()
    assert caught.value.code == "TOKEN_BUSY" and caught.value.never_sent
    assert accounts_sandbox(app).minted == minted
