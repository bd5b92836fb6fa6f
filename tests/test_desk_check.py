"""`flask --app wsgi desk check` against the Desk sandbox over HTTP."""
from acebuddy.sandbox.desk import DEFAULT_CUSTOM_FIELDS, desk_sandbox
from tests.conftest import build_app


def run(app):
    return app.test_cli_runner().invoke(args=["desk", "check"])


def test_a_ready_desk_passes(live_server):
    result = run(live_server.app)
    assert result.exit_code == 0, result.output
    assert "Zoho Desk is ready" in result.output


def test_missing_custom_fields_are_named(live_server):
    fields = {k: v for k, v in DEFAULT_CUSTOM_FIELDS.items() if k != "cf_acebuddy_ref"}
    desk_sandbox(live_server.app).define_custom_fields(fields)
    result = run(live_server.app)
    assert result.exit_code != 0
    assert "cf_acebuddy_ref" in result.output and "Layouts and Fields" in result.output


def misconfigured_app(live_server, tmp_path, redis_url, **environ):
    """A second app whose settings differ from what the live server's sandbox accepts."""
    desk_sandbox(live_server.app)  # the sandbox keeps the live app's org and credentials
    port = int(live_server.url.rsplit(":", 1)[1])
    return build_app(tmp_path / "other", redis_url, port=port, environ=environ)


def test_wrong_organisation_and_department(live_server, tmp_path, redis_url):
    app = misconfigured_app(live_server, tmp_path, redis_url, ZOHO_ORG_ID="12345", ZOHO_DEPARTMENT_ID="99999")
    result = run(app)
    assert result.exit_code != 0
    assert "ZOHO_ORG_ID 12345 is not one of this token's organisations: 60000000001" in result.output


def test_refused_credentials_say_what_to_check(live_server, tmp_path, redis_url):
    app = misconfigured_app(live_server, tmp_path, redis_url, ZOHO_CLIENT_SECRET="wrong")
    result = run(app)
    assert result.exit_code != 0
    assert "Zoho refused the credentials" in result.output and "ZOHO_DC" in result.output
