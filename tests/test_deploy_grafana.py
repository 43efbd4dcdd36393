"""``anomon deploy grafana`` against a local recording HTTP server that emulates Grafana.

No Grafana server can be installed here, so :class:`FakeGrafana` implements the endpoints
the deployer uses, as Grafana's HTTP API documentation describes them, and records every
call (method, path, headers, JSON body):

* Folder API (grafana.com/docs/grafana/latest/developers/http_api/folder/):
  ``GET /api/folders`` -> ``[{id, uid, title}]``; ``POST /api/folders`` with ``{uid?, title}``
  (title required); ``PUT /api/folders/:uid`` with ``{title, version | overwrite: true}``.
* Dashboard API (.../http_api/dashboard/): ``GET /api/dashboards/uid/:uid`` -> ``{dashboard,
  meta: {folderUid, ...}}`` or 404 ``{"message": "Dashboard not found"}``;
  ``POST /api/dashboards/db`` with ``{dashboard: {id: null | id, uid, title, ...}, folderUid,
  overwrite, message}`` -> ``{id, uid, url, status: "success", version, slug}``; 412 on a
  version mismatch without ``overwrite``.
* Alerting provisioning API (.../http_api/alerting_provisioning/): ``GET/PUT
  /api/v1/provisioning/alert-rules/:uid``, ``POST /api/v1/provisioning/alert-rules`` with a
  ``ProvisionedAlertRule`` (required: title, condition, data, folderUID, ruleGroup, orgID,
  noDataState in {Alerting, NoData, OK}, execErrState in {Alerting, Error, OK}, for) -> 201;
  ``GET/PUT /api/v1/provisioning/folder/:folderUid/rule-groups/:group`` with an
  ``AlertRuleGroup`` ``{title, folderUid, interval (seconds), rules}``.
* Auth: ``Authorization: Bearer <service account token>``, else 401.
"""
from __future__ import annotations

import copy
import json
import logging
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from monitor import dashboards as dash
from monitor import grafana_deploy
from monitor.cli import main

TOKEN = "glsa_Sup3rS3cretT0ken_0123456789abcdef"

_RULE_REQUIRED = {"title", "condition", "data", "folderUID", "ruleGroup", "orgID", "noDataState",
                  "execErrState", "for"}


class FakeGrafana:
    def __init__(self, token: str = TOKEN) -> None:
        self.token = token
        self.folders: dict[str, dict[str, Any]] = {}
        self.dashboards: dict[str, dict[str, Any]] = {}
        self.rules: dict[str, dict[str, Any]] = {}
        self.groups: dict[tuple[str, str], int] = {}
        self.calls: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self._ids = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def _handle(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                body = json.loads(raw) if raw else None
                fake.calls.append({"method": self.command, "path": self.path, "body": body,
                                   "headers": dict(self.headers)})
                if self.headers.get("Authorization") != f"Bearer {fake.token}":
                    return self._send(401, {"message": "Unauthorized"})
                if body is not None and not self.headers.get("Content-Type", "").startswith("application/json"):
                    return self._send(415, {"message": "Content-Type must be application/json"})
                status, out = fake.route(self.command, self.path, body)
                self._send(status, out)

            def _send(self, status: int, obj: Any) -> None:
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> "FakeGrafana":
        self.thread.start()
        return self

    def __exit__(self, *a: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _id(self) -> int:
        self._ids += 1
        return self._ids

    def writes(self) -> list[tuple[str, str]]:
        return [(c["method"], c["path"]) for c in self.calls if c["method"] != "GET"]

    # ---- the emulated API ------------------------------------------------------------------
    def route(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        m = re.fullmatch
        if method == "GET" and path == "/api/folders":
            return 200, [{"id": f["id"], "uid": f["uid"], "title": f["title"]} for f in self.folders.values()]
        if method == "POST" and path == "/api/folders":
            if not body.get("title"):
                return 400, {"message": "folder title cannot be empty"}
            uid = body.get("uid") or f"gen{self._id()}"
            if uid in self.folders:
                return 409, {"message": "a folder with the same uid already exists"}
            self.folders[uid] = {"id": self._id(), "uid": uid, "title": body["title"], "version": 1}
            return 200, self.folders[uid]
        if (g := m(r"/api/folders/([\w-]+)", path)) and method == "PUT":
            f = self.folders.get(g[1])
            if f is None:
                return 404, {"message": "folder not found"}
            if not body.get("overwrite") and body.get("version") != f["version"]:
                return 412, {"message": "the folder has been changed by someone else"}
            f.update(title=body["title"], version=f["version"] + 1)
            return 200, f
        if (g := m(r"/api/dashboards/uid/([\w-]+)", path)) and method == "GET":
            d = self.dashboards.get(g[1])
            if d is None:
                return 404, {"message": "Dashboard not found"}
            return 200, {"dashboard": copy.deepcopy(d["dashboard"]),
                         "meta": {"folderUid": d["folderUid"], "slug": d["dashboard"]["uid"], "version":
                                  d["dashboard"]["version"], "provisioned": False}}
        if method == "POST" and path == "/api/dashboards/db":
            dboard = body.get("dashboard") or {}
            if not dboard.get("title"):
                return 400, {"message": "Dashboard title cannot be empty"}
            if body.get("folderUid") and body["folderUid"] not in self.folders:
                return 400, {"message": "folder not found"}
            uid = dboard.get("uid")
            old = self.dashboards.get(uid)
            if old and not body.get("overwrite") and dboard.get("version") != old["dashboard"]["version"]:
                return 412, {"status": "version-mismatch", "message": "The dashboard has been changed by someone else"}
            stored = copy.deepcopy(dboard)
            stored["id"] = old["dashboard"]["id"] if old else self._id()
            stored["version"] = old["dashboard"]["version"] + 1 if old else 1
            self.dashboards[uid] = {"dashboard": stored, "folderUid": body.get("folderUid", "")}
            return 200, {"id": stored["id"], "uid": uid, "url": f"/d/{uid}/x", "status": "success",
                         "version": stored["version"], "slug": uid}
        if (g := m(r"/api/v1/provisioning/alert-rules/([\w-]+)", path)) and method in ("GET", "PUT"):
            r = self.rules.get(g[1])
            if r is None:
                return 404, {"message": "rule not found"}
            if method == "GET":
                return 200, copy.deepcopy(r)
            err = self._check_rule(body)
            if err:
                return 400, {"message": err}
            self.rules[g[1]] = {**body, "id": r["id"], "provenance": "api", "updated": "2026-11-22T16:00:00Z"}
            return 200, self.rules[g[1]]
        if method == "POST" and path == "/api/v1/provisioning/alert-rules":
            err = self._check_rule(body)
            if err:
                return 400, {"message": err}
            if body.get("uid") in self.rules:
                return 409, {"message": "rule uid already exists"}
            key = (body["folderUID"], body["ruleGroup"])
            # a new group gets the server's default interval; 10 s (the base interval) here, so the
            # deployer has to set 1m with the rule-group PUT
            self.groups.setdefault(key, 10)
            self.rules[body["uid"]] = {**body, "id": self._id(), "provenance": "api",
                                       "updated": "2026-11-22T16:00:00Z"}
            return 201, self.rules[body["uid"]]
        if (g := m(r"/api/v1/provisioning/folder/([\w-]+)/rule-groups/([\w-]+)", path)):
            key = (g[1], g[2])
            if key not in self.groups:
                return 404, {"message": "rule group not found"}
            if method == "GET":
                rules = [r for r in self.rules.values() if (r["folderUID"], r["ruleGroup"]) == key]
                return 200, {"title": g[2], "folderUid": g[1], "interval": self.groups[key], "rules": rules}
            if method == "PUT":
                iv = body.get("interval")
                if not isinstance(iv, int) or iv <= 0 or iv % 10:
                    return 400, {"message": "interval must be a positive multiple of 10 seconds"}
                if body.get("title") != g[2] or body.get("folderUid") != g[1]:
                    return 400, {"message": "title/folderUid do not match the path"}
                if len(body.get("rules", [])) != sum((r["folderUID"], r["ruleGroup"]) == key
                                                     for r in self.rules.values()):
                    return 400, {"message": "PUT would delete rules of the group"}
                self.groups[key] = iv
                return 200, body
        self.errors.append(f"{method} {path}")
        return 404, {"message": "Not found"}

    def _check_rule(self, body: dict[str, Any]) -> str | None:
        missing = _RULE_REQUIRED - set(body)
        if missing:
            return f"missing fields {sorted(missing)}"
        if body["noDataState"] not in ("Alerting", "NoData", "OK"):
            return "bad noDataState"
        if body["execErrState"] not in ("Alerting", "Error", "OK"):
            return "bad execErrState"
        if body["folderUID"] not in self.folders:
            return "folder does not exist"
        refs = {d.get("refId") for d in body["data"]}
        if body["condition"] not in refs:
            return "condition refers to no query"
        for d in body["data"]:
            if not {"refId", "datasourceUid", "model", "relativeTimeRange"} <= set(d):
                return f"bad query {d.get('refId')}"
        if not re.fullmatch(r"\d+[smh]", body["for"]):
            return "bad duration"
        return None


@pytest.fixture
def grafana():
    with FakeGrafana() as g:
        yield g


@pytest.fixture
def token_file(tmp_path):
    p = tmp_path / "grafana.token"
    p.write_text(TOKEN + "\n")
    p.chmod(0o600)
    return p


def run_cli(args, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    rc = main(["--log-level", "DEBUG", *args])
    out = capsys.readouterr()
    text = out.out + out.err + caplog.text
    assert TOKEN not in text and TOKEN[:20] not in text, "token leaked into output/logs"
    return rc, out.out


def test_first_deploy_creates_everything_with_documented_calls(grafana, token_file, capsys, caplog):
    rc, out = run_cli(["deploy", "grafana", "--url", grafana.url, "--token-file", str(token_file)], capsys, caplog)
    assert rc == 0 and not grafana.errors, grafana.errors
    n_dash, n_rules = len(dash.dashboards()), len(dash.ALERT_RULES)
    assert grafana.writes() == (
        [("POST", "/api/folders")]
        + [("POST", "/api/dashboards/db")] * n_dash
        + [("POST", "/api/v1/provisioning/alert-rules")] * n_rules
        + [("PUT", f"/api/v1/provisioning/folder/{dash.FOLDER_UID}/rule-groups/{dash.RULE_GROUP}")]
    )
    for c in grafana.calls:
        assert c["headers"]["Authorization"] == f"Bearer {TOKEN}"
        if c["body"] is not None:
            assert c["headers"]["Content-Type"] == "application/json"
    bodies = {(c["method"], c["path"]): c["body"] for c in grafana.calls if c["method"] != "GET"}
    assert bodies[("POST", "/api/folders")] == {"title": dash.FOLDER_TITLE, "uid": dash.FOLDER_UID}
    posts = [c["body"] for c in grafana.calls if c["path"] == "/api/dashboards/db"]
    want = dash.fleet_dashboard().to_json()
    assert posts[0] == {"dashboard": {**want, "id": None}, "folderUid": dash.FOLDER_UID, "overwrite": True,
                        "message": "anomon deploy grafana"}
    rule_posts = [c["body"] for c in grafana.calls if c["path"] == "/api/v1/provisioning/alert-rules"]
    assert rule_posts[0] == dash.ALERT_RULES[0].grafana(dash.DEFAULT_DATASOURCE_UID)
    assert rule_posts[0]["data"][0]["model"]["expr"] == dash.ALERT_RULES[0].query
    put = bodies[("PUT", f"/api/v1/provisioning/folder/{dash.FOLDER_UID}/rule-groups/{dash.RULE_GROUP}")]
    assert put["interval"] == 60 and len(put["rules"]) == n_rules
    assert set(grafana.rules) == {r.uid for r in dash.ALERT_RULES}
    assert set(grafana.dashboards) == {d.uid for d in dash.dashboards()}
    assert "applied" in out


def test_second_run_changes_nothing_and_says_so(grafana, token_file, capsys, caplog):
    args = ["deploy", "grafana", "--url", grafana.url, "--token-file", str(token_file)]
    run_cli(args, capsys, caplog)
    before = len(grafana.calls)
    rc, out = run_cli(args, capsys, caplog)
    assert rc == 0
    assert [c["method"] for c in grafana.calls[before:]] == ["GET"] * (len(grafana.calls) - before)
    assert "up to date: no changes" in out


def test_dry_run_writes_nothing_and_lists_changes(grafana, token_file, capsys, caplog):
    rc, out = run_cli(["deploy", "grafana", "--url", grafana.url, "--token-file", str(token_file), "--dry-run"],
                      capsys, caplog)
    assert rc == 0 and grafana.writes() == []
    assert "would create" in out and "anomon-fleet" in out and "AnomonAnomalyDetected" in out
    assert "nothing was written" in out


def test_changed_objects_are_updated_only(grafana, token_file, capsys, caplog):
    args = ["deploy", "grafana", "--url", grafana.url, "--token-file", str(token_file)]
    run_cli(args, capsys, caplog)
    # someone edits a dashboard and a rule in the UI, renames the folder, changes the interval
    grafana.dashboards["anomon-model"]["dashboard"]["title"] = "edited"
    grafana.rules["anomon-down"]["for"] = "30m"
    grafana.folders[dash.FOLDER_UID]["title"] = "renamed"
    grafana.groups[(dash.FOLDER_UID, dash.RULE_GROUP)] = 300
    before = len(grafana.calls)
    rc, out = run_cli(args + ["--dry-run"], capsys, caplog)
    assert rc == 0
    assert all(c["method"] == "GET" for c in grafana.calls[before:])
    assert "would update" in out and "4 change(s)" in out
    before = len(grafana.calls)
    rc, out = run_cli(args, capsys, caplog)
    assert [(c["method"], c["path"]) for c in grafana.calls[before:] if c["method"] != "GET"] == [
        ("PUT", f"/api/folders/{dash.FOLDER_UID}"),
        ("POST", "/api/dashboards/db"),
        ("PUT", "/api/v1/provisioning/alert-rules/anomon-down"),
        ("PUT", f"/api/v1/provisioning/folder/{dash.FOLDER_UID}/rule-groups/{dash.RULE_GROUP}"),
    ]
    assert grafana.dashboards["anomon-model"]["dashboard"]["title"] == dash.model_dashboard().title
    assert grafana.rules["anomon-down"]["for"] == "2m"
    assert grafana.groups[(dash.FOLDER_UID, dash.RULE_GROUP)] == 60
    rc, out = run_cli(args, capsys, caplog)
    assert "no changes" in out


def test_server_side_extra_fields_do_not_cause_updates(grafana):
    api = grafana_deploy.connect(grafana.url, TOKEN)
    grafana_deploy.deploy(api, echo=lambda s: None)
    for d in grafana.dashboards.values():  # Grafana may add fields of its own
        d["dashboard"]["gnetId"] = None
        d["dashboard"]["panels"][0]["pluginVersion"] = "11.1.0"
    changes = grafana_deploy.deploy(api, echo=lambda s: None)
    assert {c.action for c in changes} == {"unchanged"}


def test_wrong_token_is_a_clear_error_without_the_token(grafana, tmp_path, capsys, caplog):
    bad = tmp_path / "bad.token"
    bad.write_text("glsa_wrong_token_value_xyz")
    bad.chmod(0o600)
    caplog.set_level(logging.DEBUG)
    rc = main(["--log-level", "DEBUG", "deploy", "grafana", "--url", grafana.url, "--token-file", str(bad)])
    out = capsys.readouterr()
    assert rc == 2
    assert "Grafana API error 401" in out.err
    assert "glsa_wrong_token_value_xyz" not in out.out + out.err + caplog.text


def test_token_sources(tmp_path, monkeypatch, capsys, caplog):
    from monitor.commands.deploy import read_token
    from monitor.errors import UserError

    monkeypatch.delenv("ANOMON_GRAFANA_TOKEN", raising=False)
    with pytest.raises(UserError, match="no Grafana token"):
        read_token(None)
    monkeypatch.setenv("ANOMON_GRAFANA_TOKEN", TOKEN)
    assert read_token(None) == TOKEN
    with pytest.raises(UserError) as e:
        read_token(str(tmp_path / "missing"))
    assert TOKEN not in str(e.value)
    loose = tmp_path / "loose.token"
    loose.write_text(TOKEN)
    loose.chmod(0o644)
    caplog.set_level(logging.WARNING)
    assert read_token(str(loose)) == TOKEN
    assert "chmod 600" in caplog.text and TOKEN not in caplog.text


def test_unreachable_grafana(token_file, capsys):
    from tests.fixtures.prometheus import free_port

    rc = main(["deploy", "grafana", "--url", f"http://127.0.0.1:{free_port()}", "--token-file", str(token_file),
               "--timeout", "2"])
    err = capsys.readouterr().err
    assert rc == 2 and "cannot reach Grafana" in err and TOKEN not in err


def test_connect_builds_api_urls():
    assert grafana_deploy.connect("https://g.example:3000", TOKEN).client.url == "https://g.example:3000/api"
    assert grafana_deploy.connect("http://h/grafana/", TOKEN).client.url == "http://h/grafana/api"
    with pytest.raises(ValueError):
        grafana_deploy.connect("ftp://h", TOKEN)
