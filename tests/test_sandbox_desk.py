"""The Desk sandbox answers as Desk does (specs/zoho-desk-api.md §10), and its fault hooks work."""
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import requests

from acebuddy.config import SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET, SANDBOX_REFRESH_TOKEN
from acebuddy.sandbox.desk import desk_sandbox
from tests.helpers import make_user, sign_in

API = "/sandbox/desk/api/v1"
ISO_MS_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.000Z$")


@pytest.fixture
def headers(client, app):
    token = client.post("/sandbox/accounts/oauth/v2/token", data={
        "grant_type": "refresh_token", "client_id": SANDBOX_CLIENT_ID,
        "client_secret": SANDBOX_CLIENT_SECRET, "refresh_token": SANDBOX_REFRESH_TOKEN,
    }).get_json()["access_token"]
    return {"Authorization": f"Zoho-oauthtoken {token}", "orgId": app.config["ZOHO_ORG_ID"]}


@pytest.fixture
def sandbox(app):
    store = desk_sandbox(app)
    yield store
    store.reset()  # wakes any injected sleep


@pytest.fixture
def desk(client, headers):
    """Call the sandbox API as a Desk client would: desk("POST", "/tickets", json=...)."""

    def call(method, path, **kwargs):
        kwargs.setdefault("headers", headers)
        return client.open(API + path, method=method, **kwargs)

    return call


@pytest.fixture
def contact(desk):
    body = {"lastName": "Doe", "firstName": "John", "email": "john@example.com"}
    return desk("POST", "/contacts", json=body).get_json()


def new_ticket(desk, app, contact, **fields):
    body = {"subject": "Password Reset - John Doe", "departmentId": app.config["ZOHO_DEPARTMENT_ID"],
            "contactId": contact["id"], **fields}
    return desk("POST", "/tickets", json=body)


def test_org_id_is_required_and_must_match(desk, headers):
    missing = desk("GET", "/departments", headers={"Authorization": headers["Authorization"]})
    assert missing.status_code == 422 and missing.get_json()["errorCode"] == "UNPROCESSABLE_ENTITY"
    malformed = desk("GET", "/departments", headers={**headers, "orgId": "acme"})
    assert malformed.status_code == 422
    wrong = desk("GET", "/departments", headers={**headers, "orgId": "60000000999"})
    assert wrong.status_code == 403 and wrong.get_json()["errorCode"] == "OAUTH_ORG_MISMATCH"
    orgs = desk("GET", "/organizations", headers={"Authorization": headers["Authorization"]})
    assert orgs.status_code == 200 and orgs.get_json()["data"][0]["id"] == headers["orgId"]


def test_departments_list_and_get(desk, app):
    listed = desk("GET", "/departments?isEnabled=true&from=0&limit=200")
    assert listed.status_code == 200
    ids = [d["id"] for d in listed.get_json()["data"]]
    assert app.config["ZOHO_DEPARTMENT_ID"] in ids
    one = desk("GET", f"/departments/{ids[0]}").get_json()
    assert one["id"] == ids[0] and "associatedAgentIds" in one
    missing = desk("GET", "/departments/1892000000000000999")
    assert missing.status_code == 404 and missing.get_json() == {
        "errorCode": "URL_NOT_FOUND", "message": "The URL you requested could not be found."}


def test_contact_create_requires_last_name(desk):
    response = desk("POST", "/contacts", json={"firstName": "John", "email": "john@example.com"})
    assert response.status_code == 422
    body = response.get_json()
    assert body["errorCode"] == "INVALID_DATA"
    assert body["errors"] == [{"fieldName": "/lastName", "errorType": "missing"}]


def test_contact_create_and_exact_email_search(desk, contact):
    assert re.fullmatch(r"\d{19}", contact["id"])
    assert contact["lastName"] == "Doe" and contact["cf"] == {} and ISO_MS_Z.match(contact["createdTime"])
    found = desk("GET", "/contacts/search?email=JOHN@example.com&limit=1")
    assert found.status_code == 200
    assert found.get_json()["count"] == 1 and found.get_json()["data"][0]["id"] == contact["id"]
    partial = desk("GET", "/contacts/search?email=john@example&limit=1")
    assert partial.status_code == 204 and partial.data == b""
    duplicate = desk("POST", "/contacts", json={"lastName": "Doe", "email": "john@example.com"})
    assert duplicate.status_code == 422 and duplicate.get_json()["errors"][0]["errorType"] == "duplicate"


def test_unknown_query_parameter_is_refused(desk):
    response = desk("GET", "/contacts/search?email=a@b.c&sortOrder=asc")
    assert response.status_code == 422
    assert response.get_json()["errorCode"] == "UNPROCESSABLE_ENTITY"
    assert "sortOrder" in response.get_json()["message"]


def test_ticket_create_returns_the_full_ticket(desk, app, contact):
    response = new_ticket(desk, app, contact, priority="High", status="Escalated", channel="Chat",
                          dueDate="2026-06-11T18:12:11.000Z", cf={"cf_acebuddy_ref": "AB-1"})
    assert response.status_code == 200
    ticket = response.get_json()
    assert re.fullmatch(r"\d{19}", ticket["id"]) and ticket["ticketNumber"] == "101"
    assert ticket["status"] == "Escalated" and ticket["statusType"] == "Open"
    assert ticket["priority"] == "High" and ticket["channel"] == "Chat"
    assert ticket["dueDate"] == "2026-06-11T18:12:11.000Z"
    assert ISO_MS_Z.match(ticket["createdTime"]) and ticket["closedTime"] is None
    assert ticket["cf"]["cf_acebuddy_ref"] == "AB-1" and ticket["cf"]["cf_workflow_type"] is None
    assert ticket["threadCount"] == "0" and ticket["commentCount"] == "0"
    assert ticket["webUrl"].endswith(f"#ticket-{ticket['id']}")
    assert response.headers["X-Rate-Limit-Request-Weight-v3"] == "1"
    second = new_ticket(desk, app, contact).get_json()
    assert second["ticketNumber"] == "102" and second["channel"] == "Phone" and second["status"] == "Open"
    fetched = desk("GET", f"/tickets/{ticket['id']}").get_json()
    assert fetched["cf"] == ticket["cf"] and fetched["subject"] == ticket["subject"]


def test_ticket_create_validation_errors(desk, app, contact):
    response = desk("POST", "/tickets", json={"description": "no subject"})
    assert response.status_code == 422
    errors = response.get_json()["errors"]
    assert {"fieldName": "/subject", "errorType": "missing"} in errors
    assert {"fieldName": "/departmentId", "errorType": "missing"} in errors
    assert {"fieldName": "/contactId", "errorType": "missing"} in errors
    for bad, field in [({"priority": "Urgent"}, "/priority"), ({"status": "Done"}, "/status"),
                       ({"dueDate": "2026-06-11 18:12"}, "/dueDate"), ({"cf": {"cf_nope": "x"}}, "/cf/cf_nope"),
                       ({"due_date": "2026-06-11T18:12:11.000Z"}, "/due_date"),
                       ({"departmentId": "1892000000000000999"}, "/departmentId")]:
        refused = new_ticket(desk, app, contact, **bad)
        assert refused.status_code == 422, bad
        assert [e["fieldName"] for e in refused.get_json()["errors"]] == [field]
    assert desk_sandbox(app).tickets == {}


def test_ticket_with_inline_contact_reuses_a_known_email(desk, app, contact):
    body = {"subject": "Printer", "departmentId": app.config["ZOHO_DEPARTMENT_ID"],
            "contact": {"email": "john@example.com"}}
    assert desk("POST", "/tickets", json=body).get_json()["contactId"] == contact["id"]
    body["contact"] = {"email": "new@example.com"}
    assert desk("POST", "/tickets", json=body).get_json()["errors"][0]["fieldName"] == "/contact/lastName"


def test_patch_closes_and_reopens(desk, app, contact):
    ticket = new_ticket(desk, app, contact).get_json()
    closed = desk("PATCH", f"/tickets/{ticket['id']}", json={"status": "Closed"}).get_json()
    assert closed["statusType"] == "Closed" and ISO_MS_Z.match(closed["closedTime"])
    assert closed["subject"] == ticket["subject"]  # only the given fields change
    reopened = desk("PATCH", f"/tickets/{ticket['id']}", json={"status": "Open", "priority": "Low"}).get_json()
    assert reopened["closedTime"] is None and reopened["priority"] == "Low"
    assert desk("PATCH", "/tickets/1892000000000000999", json={"status": "Closed"}).status_code == 404


def test_ticket_search_by_custom_field_time_and_paging(desk, app, contact):
    ids = [new_ticket(desk, app, contact, cf={"cf_acebuddy_ref": f"AB-{n}"}).get_json()["id"] for n in range(3)]
    hit = desk("GET", "/tickets/search?customField1=cf_acebuddy_ref:AB-1&limit=1")
    assert hit.status_code == 200
    assert hit.get_json()["count"] == 1 and hit.get_json()["data"][0]["id"] == ids[1]
    assert hit.get_json()["data"][0]["contact"]["email"] == "john@example.com"
    assert desk("GET", "/tickets/search?customField1=cf_acebuddy_ref:AB-9").status_code == 204
    assert desk("GET", "/tickets/search?customField1=cf_unknown:x").status_code == 422
    created = desk("GET", f"/tickets/{ids[0]}").get_json()["modifiedTime"]
    window = f"{created},2099-01-01T00:00:00.000Z"
    page = desk("GET", f"/tickets/search?modifiedTimeRange={window}&sortBy=modifiedTime&from=1&limit=1")
    assert page.get_json()["count"] == 3 and [t["id"] for t in page.get_json()["data"]] == [ids[1]]
    assert page.headers["X-Rate-Limit-Request-Weight-v3"] == "3"
    before = desk("GET", "/tickets/search?modifiedTimeRange=2001-01-01T00:00:00.000Z,2001-01-02T00:00:00.000Z")
    assert before.status_code == 204
    assert desk("GET", "/tickets/search?modifiedTimeRange=yesterday,today").status_code == 422
    assert desk("GET", "/tickets/search?limit=101").status_code == 422
    assert desk("GET", "/tickets/search?status=Closed").status_code == 204


def test_comments_add_and_list(desk, app, contact):
    ticket = new_ticket(desk, app, contact).get_json()
    path = f"/tickets/{ticket['id']}/comments"
    added = desk("POST", path, json={"content": "Transcript", "isPublic": True, "contentType": "plainText"})
    assert added.status_code == 200
    comment = added.get_json()
    assert comment["isPublic"] is True and comment["contentType"] == "plainText"
    assert comment["commenter"]["type"] == "AGENT" and ISO_MS_Z.match(comment["commentedTime"])
    assert desk("POST", path, json={"isPublic": True}).get_json()["errors"] == [
        {"fieldName": "/content", "errorType": "missing"}]
    too_long = desk("POST", path, json={"content": "x" * 32001})
    assert too_long.status_code == 422
    assert desk("POST", path, json={"content": "x" * 32000}).status_code == 200
    listed = desk("GET", f"{path}?from=0&limit=50&sortBy=commentedTime").get_json()["data"]
    assert [c["id"] for c in listed][0] == comment["id"] and len(listed) == 2
    assert desk("GET", f"/tickets/{ticket['id']}").get_json()["commentCount"] == "2"
    assert desk("POST", "/tickets/1892000000000000999/comments", json={"content": "x"}).status_code == 404


def test_credits_are_counted_and_run_out(desk, sandbox):
    sandbox.set_credits(4, retry_after=120)
    first = desk("GET", "/departments")
    assert first.headers["X-Rate-Limit-Remaining-v3"] == "1"  # a list costs 3
    assert desk("GET", "/organizations").headers["X-Rate-Limit-Remaining-v3"] == "0"
    refused = desk("GET", "/organizations")
    assert refused.status_code == 429
    assert refused.get_json()["errorCode"] == "THRESHOLD_EXCEEDED" and refused.headers["Retry-After"] == "120"


def test_concurrency_limit_answers_too_many_requests(live_server):
    app = live_server.app
    sandbox = desk_sandbox(app)
    sandbox.set_concurrency(1)
    sandbox.add_latency("GET", "/departments", 0.6)
    token = requests.post(f"{live_server.url}/sandbox/accounts/oauth/v2/token", data={
        "grant_type": "refresh_token", "client_id": SANDBOX_CLIENT_ID,
        "client_secret": SANDBOX_CLIENT_SECRET, "refresh_token": SANDBOX_REFRESH_TOKEN}).json()["access_token"]
    headers = {"Authorization": f"Zoho-oauthtoken {token}", "orgId": app.config["ZOHO_ORG_ID"]}
    slow = threading.Thread(target=requests.get, args=(f"{live_server.url}{API}/departments",),
                            kwargs={"headers": headers, "timeout": 5})
    slow.start()
    try:
        for _ in range(50):
            if sandbox.in_flight:
                break
            threading.Event().wait(0.02)
        busy = requests.get(f"{live_server.url}{API}/organizations", headers=headers, timeout=5)
        assert busy.status_code == 429
        assert busy.json()["errorCode"] == "TOO_MANY_REQUESTS" and "Retry-After" not in busy.headers
    finally:
        slow.join(5)
        sandbox.reset()


def test_fault_hooks_fail_the_next_matching_calls_only(desk, sandbox):
    sandbox.fail_next("GET", "/departments/*", count=2, status=503)
    assert desk("GET", "/departments").status_code == 200  # the glob needs an id
    assert desk("GET", "/departments/1").status_code == 503
    assert desk("GET", "/departments/1").get_json()["errorCode"] == "INTERNAL_SERVER_ERROR"
    assert desk("GET", "/departments/1").status_code == 404
    sandbox.fail_next("POST", "/tickets", status=429, error_code="THRESHOLD_EXCEEDED", retry_after=30)
    limited = desk("POST", "/tickets", json={})
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "30"


def test_control_endpoint_needs_sign_in_or_the_control_token(app, client):
    assert client.get("/sandbox/desk/_control").status_code == 401
    app.config["SANDBOX_CONTROL_TOKEN"] = "s3cret"
    assert client.get("/sandbox/desk/_control", headers={"X-Sandbox-Token": "wrong"}).status_code == 401
    assert client.get("/sandbox/desk/_control", headers={"X-Sandbox-Token": "s3cret"}).status_code == 200


def test_control_endpoint_drives_the_sandbox_with_the_token(app, client, desk, sandbox):
    app.config["SANDBOX_CONTROL_TOKEN"] = "s3cret"
    token = {"X-Sandbox-Token": "s3cret"}
    response = client.post("/sandbox/desk/_control", headers=token, json={"action": "fail", "method": "GET",
                                                           "path": "/organizations", "status": 500})
    assert response.status_code == 200
    assert desk("GET", "/organizations").status_code == 500
    state = client.get("/sandbox/desk/_control", headers=token).get_json()
    last = state["requests"][-1]
    assert last["api_path"] == "/organizations" and last["status"] == 500
    assert last["headers"]["Authorization"].startswith("Zoho-oauthtoken 1000.")
    assert client.post("/sandbox/desk/_control", headers=token, json={"action": "expire_tokens"}).status_code == 200
    assert desk("GET", "/organizations").get_json()["errorCode"] == "INVALID_OAUTH"
    assert client.post("/sandbox/desk/_control", headers=token, json={"action": "nope"}).status_code == 400


def test_request_log_keeps_method_path_headers_and_json(desk, app, contact, sandbox):
    new_ticket(desk, app, contact, priority="Low")
    entry = [r for r in sandbox.requests if r["api_path"] == "/tickets"][-1]
    assert entry["method"] == "POST" and entry["status"] == 200
    assert entry["headers"]["orgId"] == app.config["ZOHO_ORG_ID"]
    assert entry["json"]["priority"] == "Low"


class _Receiver(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's naming)
        self.server.validations.append(self.path)
        self.send_response(self.server.validation_answer)
        self.end_headers()

    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append((self.path, json.loads(body)))
        self.send_response(self.server.answer)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    server.received, server.answer, server.validations, server.validation_answer = [], 200, [], 200
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_status_changes_are_delivered_as_webhook_arrays(desk, app, contact, sandbox, receiver):
    url = f"http://127.0.0.1:{receiver.server_port}/webhook/desk?token=s3cret"
    sandbox.set_webhook_url(url)
    ticket = new_ticket(desk, app, contact).get_json()
    desk("PATCH", f"/tickets/{ticket['id']}", json={"priority": "High"})  # not a status change
    desk("PATCH", f"/tickets/{ticket['id']}", json={"status": "On Hold"})
    sandbox.agent_set_status(ticket["id"], "Closed")
    deliveries = sandbox.wait_for_deliveries(2)
    assert [d["status"] for d in deliveries] == [200, 200]
    assert len(receiver.received) == 2
    path, events = receiver.received[-1]
    assert path == "/webhook/desk?token=s3cret"
    assert receiver.validations == ["/webhook/desk?token=s3cret"]  # one GET handshake first
    assert isinstance(events, list) and len(events) == 1
    event = events[0]
    assert event["eventType"] == "Ticket_Update" and event["orgId"] == app.config["ZOHO_ORG_ID"]
    assert event["payload"]["id"] == ticket["id"] and event["payload"]["statusType"] == "Closed"
    assert event["payload"]["closedTime"] is not None
    assert event["prevState"] == {"status": "On Hold", "statusType": "On Hold"}
    assert "s3cret" not in deliveries[0]["url"]


def test_receiver_answering_410_unsubscribes(desk, app, contact, sandbox, receiver):
    receiver.answer = 410
    sandbox.set_webhook_url(f"http://127.0.0.1:{receiver.server_port}/webhook/desk")
    ticket = new_ticket(desk, app, contact).get_json()
    sandbox.agent_set_status(ticket["id"], "Closed")
    assert sandbox.wait_for_deliveries(1)[0]["status"] == 410
    assert sandbox.webhook_url is None
    sandbox.agent_set_status(ticket["id"], "Open")
    assert len(receiver.received) == 1


def test_no_delivery_to_a_url_that_fails_the_get_handshake(desk, app, contact, sandbox, receiver):
    receiver.validation_answer = 404
    sandbox.set_webhook_url(f"http://127.0.0.1:{receiver.server_port}/webhook/desk")
    ticket = new_ticket(desk, app, contact).get_json()
    sandbox.agent_set_status(ticket["id"], "Closed")
    [delivery] = sandbox.wait_for_deliveries(1)
    assert delivery["status"] is None and "validation GET answered 404" in delivery["error"]
    assert receiver.received == []


def signed_in(client, app):
    with app.app_context():
        make_user(email="agent@acebuddy.example")
    assert sign_in(client, email="agent@acebuddy.example").status_code == 302


def test_tickets_page_needs_sign_in(client):
    response = client.get("/sandbox/desk/tickets")
    assert response.status_code == 302 and "/auth/login" in response.headers["Location"]


def test_tickets_page_lists_tickets_and_escapes_customer_text(client, app, desk, contact):
    ticket = new_ticket(desk, app, contact, priority="Medium", dueDate="2026-06-11T18:12:11.000Z",
                        subject="<script>alert(1)</script>", cf={"cf_workflow_type": "printer_issue"}).get_json()
    desk("POST", f"/tickets/{ticket['id']}/comments", json={"content": "<b>bold</b> & more", "isPublic": True})
    signed_in(client, app)
    page = client.get("/sandbox/desk/tickets")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert(1)" not in html
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; more" in html
    for text in ("101", "Medium", "2026-06-11T18:12:11.000Z", "printer_issue", "John Doe", "john@example.com"):
        assert text in html


def test_agent_can_close_a_ticket_from_the_page(client, app, desk, contact, sandbox):
    ticket = new_ticket(desk, app, contact).get_json()
    signed_in(client, app)
    page = client.get("/sandbox/desk/tickets").get_data(as_text=True)
    action = f"/sandbox/desk/tickets/{ticket['id']}/status"
    assert f'action="{action}"' in page
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    response = client.post(action, data={"status": "Closed", "csrf_token": token})
    assert response.status_code == 302
    assert sandbox.tickets[ticket["id"]]["statusType"] == "Closed"
    assert client.post(action, data={"status": "Open"}).status_code == 400  # no CSRF token
