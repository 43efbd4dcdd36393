"""Push anomon's folder, dashboards and Grafana-managed alert rules to a Grafana server.

Uses grafana-client (3.11.x, on requests) and only these documented HTTP endpoints:

=====  ===================================================  ==============================
GET    /api/folders                                         list folders (find ours by uid)
POST   /api/folders                                         create the folder ``{uid, title}``
PUT    /api/folders/:uid                                    rename it ``{title, overwrite}``
GET    /api/dashboards/uid/:uid                             current dashboard + meta.folderUid
POST   /api/dashboards/db                                   create/update ``{dashboard, folderUid, overwrite, message}``
GET    /api/v1/provisioning/alert-rules/:uid                current rule (404: absent)
POST   /api/v1/provisioning/alert-rules                     create a rule (ProvisionedAlertRule)
PUT    /api/v1/provisioning/alert-rules/:uid                update a rule
GET    /api/v1/provisioning/folder/:folderUid/rule-groups/:group   group interval
PUT    /api/v1/provisioning/folder/:folderUid/rule-groups/:group   set the interval
=====  ===================================================  ==============================

Idempotent: every object is compared (by uid, on the fields anomon sets) with what the
server has; only differences are written, and a run with nothing to change says so.
``dry_run`` compares and reports without writing. The API token is handed to grafana-client's
``TokenAuth`` and never formatted into a message or log record.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

from monitor import dashboards as dash

log = logging.getLogger("anomon.deploy")

#: Fields Grafana adds to a stored dashboard that anomon does not set.
_DASHBOARD_SERVER_FIELDS = {"id", "version"}


@dataclass(frozen=True)
class Change:
    """One planned or applied change: ``action`` is create/update/unchanged."""

    kind: str
    uid: str
    action: str
    detail: str = ""

    def __str__(self) -> str:
        d = f" ({self.detail})" if self.detail else ""
        return f"{self.action:9s} {self.kind:10s} {self.uid}{d}"


def _is_404(exc: Exception) -> bool:
    return getattr(exc, "status_code", None) == 404


def _get_or_none(fetch: Any, *args: Any) -> Any:
    """``fetch(*args)``, or None when Grafana answers 404 (any other error is raised)."""
    try:
        return fetch(*args)
    except Exception as exc:
        if not _is_404(exc):
            raise
        return None


def _contains(want: Any, have: Any) -> bool:
    """True when ``have`` holds everything ``want`` sets (extra keys the server adds are ignored).

    >>> _contains({"a": [1, {"b": 2}]}, {"a": [1.0, {"b": 2, "c": 3}], "id": 7})
    True
    >>> _contains({"a": [1, 2]}, {"a": [1]})
    False
    """
    if isinstance(want, dict):
        return isinstance(have, dict) and all(k in have and _contains(v, have[k]) for k, v in want.items())
    if isinstance(want, list):
        return isinstance(have, list) and len(want) == len(have) and all(map(_contains, want, have))
    if isinstance(want, bool) or isinstance(have, bool):
        return want is have or want == have and type(want) is type(have)
    if isinstance(want, (int, float)) and isinstance(have, (int, float)):
        return float(want) == float(have)
    return want == have


def _diff_keys(want: dict[str, Any], have: dict[str, Any]) -> list[str]:
    """Top-level keys of ``want`` whose value ``have`` does not contain."""
    return [k for k in want if not (k in have and _contains(want[k], have[k]))]


def connect(url: str, token: str, timeout: float = 10.0, verify: bool = True) -> Any:
    """A grafana-client ``GrafanaApi`` for ``url`` with a bearer ``token``."""
    from urllib.parse import urlparse

    from grafana_client import GrafanaApi, TokenAuth

    u = urlparse(url)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    if u.scheme == "http" and u.hostname not in ("127.0.0.1", "localhost", "::1"):
        log.warning("sending the Grafana token over plain http to %s; use https", u.hostname)
    prefix = u.path.strip("/")
    return GrafanaApi(
        auth=TokenAuth(token),
        host=u.hostname,
        port=u.port,
        url_path_prefix=prefix + "/" if prefix else "",
        protocol=u.scheme,
        verify=verify,
        timeout=timeout,
    )


def deploy(
    api: Any,
    *,
    datasource_uid: str = dash.DEFAULT_DATASOURCE_UID,
    folder_uid: str = dash.FOLDER_UID,
    folder_title: str = dash.FOLDER_TITLE,
    dry_run: bool = False,
    echo: Callable[[str], None] = print,
) -> list[Change]:
    """Bring ``api``'s Grafana up to date with anomon's folder, dashboards and alert rules.

    Returns every change considered (``unchanged`` ones included).
    """
    changes: list[Change] = []

    def note(c: Change) -> None:
        changes.append(c)
        if c.action != "unchanged":
            echo(("would " if dry_run else "") + str(c).strip())
        log.debug("grafana %s %s %s", c.action, c.kind, c.uid, extra={"dry_run": dry_run})

    # ---- folder -----------------------------------------------------------------------------
    folders = api.folder.get_all_folders()
    mine = next((f for f in folders if f.get("uid") == folder_uid), None)
    if mine is None:
        note(Change("folder", folder_uid, "create", folder_title))
        if not dry_run:
            api.folder.create_folder(folder_title, uid=folder_uid)
    elif mine.get("title") != folder_title:
        note(Change("folder", folder_uid, "update", f"title {mine.get('title')!r} -> {folder_title!r}"))
        if not dry_run:
            api.folder.update_folder(folder_uid, title=folder_title, overwrite=True)
    else:
        note(Change("folder", folder_uid, "unchanged"))

    # ---- dashboards -------------------------------------------------------------------------
    for d in dash.dashboards():
        want = d.to_json()
        have = _get_or_none(api.dashboard.get_dashboard, d.uid)
        if have is None:
            action, detail = "create", d.title
        else:
            stored = {k: v for k, v in (have.get("dashboard") or {}).items() if k not in _DASHBOARD_SERVER_FIELDS}
            diff = _diff_keys(want, stored)
            if (have.get("meta") or {}).get("folderUid") != folder_uid:
                diff.append("folder")
            action, detail = ("update", "changed: " + ", ".join(diff)) if diff else ("unchanged", "")
        note(Change("dashboard", d.uid, action, detail))
        if action != "unchanged" and not dry_run:
            api.dashboard.update_dashboard(
                {
                    "dashboard": {**want, "id": None},
                    "folderUid": folder_uid,
                    "overwrite": True,
                    "message": "anomon deploy grafana",
                }
            )

    # ---- alert rules ------------------------------------------------------------------------
    for rule in dash.ALERT_RULES:
        want = rule.grafana(datasource_uid, folder_uid=folder_uid)
        have = _get_or_none(api.alertingprovisioning.get_alertrule, rule.uid)
        if have is None:
            note(Change("alert-rule", rule.uid, "create", rule.name))
            if not dry_run:
                api.alertingprovisioning.create_alertrule(want)
            continue
        diff = _diff_keys({k: v for k, v in want.items() if k != "orgID"}, have)
        if diff:
            note(Change("alert-rule", rule.uid, "update", "changed: " + ", ".join(diff)))
            if not dry_run:
                api.alertingprovisioning.update_alertrule(rule.uid, want)
        else:
            note(Change("alert-rule", rule.uid, "unchanged"))

    # ---- rule group interval ------------------------------------------------------------------
    want_s = _seconds(dash.RULE_GROUP_INTERVAL)
    group = _get_or_none(api.alertingprovisioning.get_rule_group, folder_uid, dash.RULE_GROUP)
    if group is not None and int(group.get("interval", 0)) == want_s:
        note(Change("rule-group", dash.RULE_GROUP, "unchanged"))
    else:
        note(Change("rule-group", dash.RULE_GROUP, "update", f"interval {want_s}s"))
        if not dry_run:
            if group is None:  # cannot happen after the rules were created; never PUT an empty group
                raise RuntimeError(f"rule group {dash.RULE_GROUP!r} not found after creating its rules")
            # PUT replaces the whole group: send back the rules as read, with the new interval.
            body = {**group, "title": dash.RULE_GROUP, "folderUid": folder_uid, "interval": want_s}
            api.alertingprovisioning.update_rule_group(folder_uid, dash.RULE_GROUP, body)

    n = sum(c.action != "unchanged" for c in changes)
    if n == 0:
        echo(f"Grafana is up to date: no changes ({len(changes)} objects checked).")
    elif dry_run:
        echo(f"dry run: {n} change(s) would be made; nothing was written.")
    else:
        echo(f"applied {n} change(s).")
    return changes


def _seconds(s: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600}
    return int(float(s[:-1]) * units[s[-1]]) if s[-1] in units else int(s)
