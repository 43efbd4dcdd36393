"""``anomon deploy``: write provisioning files, push to Grafana, render dashboards to PNG.

* ``anomon deploy dashboards --out DIR`` -- dashboards JSON, Grafana provisioning YAML
  (datasource, dashboard provider, alert rules) and Prometheus alerting rules;
* ``anomon deploy grafana --url URL --token-file FILE [--dry-run]`` -- push folder,
  dashboards and alert rules through Grafana's HTTP API (idempotent);
* ``anomon deploy render --prometheus URL --out DIR`` -- PNG panels from a live Prometheus;
* ``anomon deploy systemd [--executable PATH] [--config FILE] [--out FILE]`` -- the systemd unit
  (``deploy/systemd/anomon.service``) with the ``anomon`` executable of this install (default) or
  the one given; the template expects ``/opt/anomon/.venv/bin/anomon``.
"""
from __future__ import annotations

import argparse
import logging
import os
import stat
import sys

from monitor.errors import UserError

log = logging.getLogger("anomon.deploy")

TOKEN_ENV = "ANOMON_GRAFANA_TOKEN"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("deploy", help="dashboards, alert rules and provisioning files; push them to Grafana")
    dsub = p.add_subparsers(dest="deploy_command", metavar="WHAT", required=True)

    d = dsub.add_parser("dashboards", help="write Grafana dashboards, provisioning YAML and Prometheus rules")
    d.add_argument("--out", default="deploy", help="output directory (default: deploy)")
    d.add_argument("--datasource-uid", default=None, help="Prometheus datasource uid for Grafana-managed rules")
    d.set_defaults(func=run_dashboards)

    g = dsub.add_parser("grafana", help="push folder, dashboards and alert rules to a Grafana server")
    g.add_argument("--url", required=True, help="Grafana base URL, e.g. https://grafana.example.com")
    g.add_argument("--token-file", default=None,
                   help=f"file holding a service-account token (or set {TOKEN_ENV}); never logged")
    g.add_argument("--dry-run", action="store_true", help="print what would change, write nothing")
    g.add_argument("--datasource-uid", default=None,
                   help="uid of the Prometheus datasource in that Grafana (default: anomon-prometheus)")
    g.add_argument("--folder-uid", default=None, help="folder uid (default: anomon)")
    g.add_argument("--insecure", action="store_true", help="skip TLS certificate verification")
    g.add_argument("--timeout", type=float, default=10.0, help="HTTP timeout in seconds")
    g.set_defaults(func=run_grafana)

    r = dsub.add_parser("render", help="draw the dashboards' panels as PNG from a Prometheus server")
    r.add_argument("--prometheus", required=True, help="Prometheus base URL, e.g. http://127.0.0.1:9090")
    r.add_argument("--out", required=True, help="output directory")
    r.add_argument("--minutes", type=float, default=15.0, help="time range to draw")
    r.add_argument("--rate-interval", default="1m",
                   help="window substituted for Grafana's $__rate_interval (>= 4 scrape intervals)")
    r.set_defaults(func=run_render)

    u = dsub.add_parser("systemd", help="write the systemd unit for this install's anomon executable")
    u.add_argument("--executable", default=None,
                   help="the anomon executable the unit starts (default: this install's, e.g. .venv/bin/anomon)")
    u.add_argument("--config", default="/etc/anomon/anomon.toml", help="the config file the unit passes")
    u.add_argument("--out", default="-", help="where to write the unit (default: standard output)")
    u.set_defaults(func=run_systemd)


def run_dashboards(args: argparse.Namespace) -> int:
    from monitor import dashboards as dash

    paths = dash.write_all(args.out, datasource_uid=args.datasource_uid or dash.DEFAULT_DATASOURCE_UID)
    for p in paths:
        print(p)
    return 0


def read_token(path: str | None) -> str:
    """The Grafana token from ``path`` or ``$ANOMON_GRAFANA_TOKEN``; errors never contain it."""
    if path:
        try:
            st = os.stat(path)
            with open(path, encoding="utf-8") as f:
                token = f.read().strip()
        except OSError as exc:
            raise UserError(f"cannot read --token-file {path}: {exc.strerror}") from None
        if st.st_mode & (stat.S_IRGRP | stat.S_IROTH):
            log.warning("token file %s is readable by group/others; chmod 600 it", path)
    else:
        token = os.environ.get(TOKEN_ENV, "").strip()
        if not token:
            raise UserError(f"no Grafana token: pass --token-file FILE or set {TOKEN_ENV}")
    if not token or any(c.isspace() for c in token):
        raise UserError("the Grafana token is empty or contains whitespace")
    return token


def run_grafana(args: argparse.Namespace) -> int:
    from grafana_client.client import GrafanaException

    from monitor import dashboards as dash
    from monitor import grafana_deploy

    token = read_token(args.token_file)
    try:
        api = grafana_deploy.connect(args.url, token, timeout=args.timeout, verify=not args.insecure)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    del token
    try:
        grafana_deploy.deploy(
            api,
            datasource_uid=args.datasource_uid or dash.DEFAULT_DATASOURCE_UID,
            folder_uid=args.folder_uid or dash.FOLDER_UID,
            dry_run=args.dry_run,
        )
    except GrafanaException as exc:
        # status and Grafana's message only: never the request (headers carry the token)
        raise UserError(f"Grafana API error {exc.status_code}: {exc.message}") from None
    except OSError as exc:  # requests' ConnectionError is an OSError
        raise UserError(f"cannot reach Grafana at {args.url}: {type(exc).__name__}") from None
    sys.stdout.flush()
    return 0


def run_render(args: argparse.Namespace) -> int:
    from monitor import dashboards as dash

    for d in dash.dashboards():
        paths = dash.render_png(d, args.prometheus, args.out, minutes=args.minutes,
                                rate_interval=args.rate_interval)
        print(paths[0])
    return 0


#: the path of the executable in deploy/systemd/anomon.service (a venv installed in /opt/anomon)
UNIT_EXECUTABLE = "/opt/anomon/.venv/bin/anomon"


def systemd_unit(executable: str | None = None, config: str = "/etc/anomon/anomon.toml") -> str:
    """The unit of ``deploy/systemd/anomon.service`` with ``executable`` and ``config`` put in.

    >>> "ExecStart=/srv/venv/bin/anomon --log-format json run --config /etc/a.toml" in systemd_unit(
    ...     "/srv/venv/bin/anomon", "/etc/a.toml")
    True
    """
    from pathlib import Path

    template = Path(__file__).resolve().parents[2] / "deploy" / "systemd" / "anomon.service"
    if not template.is_file():
        raise UserError(f"{template}: the unit template is missing (reinstall anomon from its repository)")
    exe = executable or _this_executable()
    text = template.read_text()
    line = f"ExecStart={UNIT_EXECUTABLE} --log-format json run --config /etc/anomon/anomon.toml"
    if line not in text:
        raise UserError(f"{template}: its ExecStart line is not the expected one ({line})")
    return text.replace(line, f"ExecStart={exe} --log-format json run --config {config}")


def _this_executable() -> str:
    import shutil

    here = os.path.join(os.path.dirname(sys.executable), "anomon")
    if os.access(here, os.X_OK):
        return os.path.abspath(here)
    found = shutil.which("anomon")
    if found:
        return os.path.abspath(found)
    raise UserError("no anomon executable found beside this Python or on PATH; give it with --executable PATH")


def run_systemd(args: argparse.Namespace) -> int:
    exe = args.executable
    if exe is not None:
        if not os.path.isabs(exe):
            raise UserError(f"--executable: {exe!r} is not an absolute path (systemd needs one)")
        if not os.access(exe, os.X_OK):
            raise UserError(f"--executable: {exe} is not an executable file here")
    if not os.path.isabs(args.config):
        raise UserError(f"--config: {args.config!r} is not an absolute path (systemd needs one)")
    unit = systemd_unit(exe, args.config)
    if args.out == "-":
        sys.stdout.write(unit)
    else:
        with open(args.out, "w") as f:
            f.write(unit)
        print(args.out)
    return 0
