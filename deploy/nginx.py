#!/usr/bin/env python3
"""Write nginx's configuration from deploy/nginx.conf.template, then run nginx.

    python deploy/nginx.py            # render, check (nginx -t), exec nginx in the foreground
    python deploy/nginx.py --render   # render and check only; print the file's path

The Procfile's `proxy` process (README, "Production: nginx in front"). The
settings come from the environment, with the same defaults as the Procfile:

    PROXY_LISTEN      where nginx listens ("${WEB_BIND:-0.0.0.0}:${PORT:-8000}")
    APP_BIND          the `app` gunicorn pool (127.0.0.1:8001)
    TRANSFER_BIND     the `transfer` gunicorn pool: uploads and downloads (127.0.0.1:8002)
    PROXY_DIR         config, pid and temporary files (CUSTODY_DATA_DIR/nginx)
    CUSTODY_MAX_UPLOAD_BYTES   the largest upload (0: no maximum)
    PROXY_HEADER_TIMEOUT, PROXY_BODY_TIMEOUT, PROXY_SEND_TIMEOUT  (10s, 30s, 30s)
    PROXY_CONNECTIONS_PER_ADDRESS (64), PROXY_UPLOADS_PER_ADDRESS (2),
    PROXY_DOWNLOADS_PER_ADDRESS (2)
    PROXY_ACCESS_LOG  "/dev/stdout" (honcho shows it) or "off"
    PROXY_FRONT       proxies in front of nginx whose X-Forwarded-For and
                      X-Forwarded-Proto are believed (addresses or CIDR
                      ranges, comma-separated; default none)

Standard library only: it runs before anything else is imported.
"""

from __future__ import annotations

import grp
import ipaddress
import os
import pwd
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = Path(__file__).resolve().parent / "nginx.conf.template"
# Room for the multipart framing and the form's other fields around the file.
MULTIPART_ALLOWANCE = 1 << 20
# Ordinary requests (forms, JSON) are far smaller than this; Django's own
# DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB) refuses larger non-file bodies anyway.
BODY_MAX = "16m"
TEMP_DIRS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


class ConfigError(Exception):
    pass


def _address(name: str, value: str) -> str:
    """host:port (IPv6 in brackets) or a bare port; refused otherwise."""
    if not re.fullmatch(r"(?:(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):)?[0-9]{1,5}", value):
        raise ConfigError(f"{name}={value!r}: expected host:port, e.g. 127.0.0.1:8001")
    if not 0 < int(value.rsplit(":", 1)[-1]) < 65536:
        raise ConfigError(f"{name}={value!r}: port out of range")
    return value


def _duration(name: str, value: str) -> str:
    if not re.fullmatch(r"[1-9][0-9]*(?:ms|s|m)?", value):
        raise ConfigError(f"{name}={value!r}: expected a duration such as 10s")
    return value


def _count(name: str, value: str) -> int:
    if not re.fullmatch(r"[1-9][0-9]*", value):
        raise ConfigError(f"{name}={value!r}: expected a whole number >= 1")
    return int(value)


def settings(env: dict[str, str]) -> dict[str, str]:
    """The template's values from an environment; ConfigError on a bad one."""
    data_dir = Path(env.get("CUSTODY_DATA_DIR") or ROOT / "var").resolve()
    proxy_dir = Path(env.get("PROXY_DIR") or data_dir / "nginx").resolve()
    if any(c.isspace() or c in ";{}'\"$" for c in str(proxy_dir)):
        raise ConfigError(f"PROXY_DIR={proxy_dir}: no spaces, quotes, ';', '{{}}' or '$' in the path")
    # The Procfile web line's default; ./scripts/serve --production passes 127.0.0.1 unless told otherwise.
    bind = env.get("WEB_BIND") or "0.0.0.0"  # noqa: S104
    listen = env.get("PROXY_LISTEN") or f"{bind}:{env.get('PORT') or '8000'}"
    max_upload = env.get("CUSTODY_MAX_UPLOAD_BYTES") or "0"
    if not re.fullmatch(r"[0-9]+", max_upload):
        raise ConfigError(f"CUSTODY_MAX_UPLOAD_BYTES={max_upload!r}: expected a number of bytes")
    access_log = env.get("PROXY_ACCESS_LOG") or "/dev/stdout"
    if access_log != "off" and not re.fullmatch(r"/[^\s;{}'\"$]+", access_log):
        raise ConfigError(f"PROXY_ACCESS_LOG={access_log!r}: expected an absolute path or 'off'")
    per_address = _count("PROXY_CONNECTIONS_PER_ADDRESS", env.get("PROXY_CONNECTIONS_PER_ADDRESS") or "64")
    connections = max(1024, per_address * 16)
    front = [f.strip() for f in (env.get("PROXY_FRONT") or "").split(",") if f.strip()]
    for item in front:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ConfigError(f"PROXY_FRONT={item!r}: expected an IP address or a CIDR range") from None
    user = ""
    if os.geteuid() == 0:
        # Started as root (as in a container): the workers keep the identity
        # of the rest of the server rather than nginx's default "nobody", who
        # may not enter the data dir (0700).
        user = f"user {pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name};"
    return {
        "user": user,
        "worker_processes": "auto",
        "worker_connections": str(connections),
        "rlimit_nofile": str(connections * 2 + 64),
        "dir": str(proxy_dir),
        "access_log": access_log if access_log == "off" else f"{access_log} combined",
        "listen": _address("PROXY_LISTEN", listen),
        "app": _address("APP_BIND", env.get("APP_BIND") or "127.0.0.1:8001"),
        "transfer": _address("TRANSFER_BIND", env.get("TRANSFER_BIND") or "127.0.0.1:8002"),
        "header_timeout": _duration("PROXY_HEADER_TIMEOUT", env.get("PROXY_HEADER_TIMEOUT") or "10s"),
        "body_timeout": _duration("PROXY_BODY_TIMEOUT", env.get("PROXY_BODY_TIMEOUT") or "30s"),
        "send_timeout": _duration("PROXY_SEND_TIMEOUT", env.get("PROXY_SEND_TIMEOUT") or "30s"),
        # gunicorn's --timeout in the Procfile: a request may take that long.
        "app_timeout": "600s",
        "per_address": str(per_address),
        "uploads_per_address": str(
            _count("PROXY_UPLOADS_PER_ADDRESS", env.get("PROXY_UPLOADS_PER_ADDRESS") or "2")
        ),
        "downloads_per_address": str(
            _count("PROXY_DOWNLOADS_PER_ADDRESS", env.get("PROXY_DOWNLOADS_PER_ADDRESS") or "2")
        ),
        "body_max": BODY_MAX,
        "front_realip": "\n".join(
            [f"    set_real_ip_from {item};" for item in front]
            + (["    real_ip_header X-Forwarded-For;", "    real_ip_recursive on;"] if front else [])
        ),
        "front_geo": "\n".join(f"        {item} 1;" for item in front),
        # 0 is nginx's "no limit" too; the application refuses an oversized
        # file itself (413, nothing kept), nginx only stops it earlier.
        "upload_max": str(int(max_upload) + MULTIPART_ALLOWANCE) if int(max_upload) else "0",
    }


def render(values: dict[str, str], template: str) -> str:
    def fill(match: re.Match) -> str:
        name = match.group(1)
        if name not in values:
            raise ConfigError(f"{TEMPLATE.name}: unknown placeholder {{{{ {name} }}}}")
        return values[name]

    return re.sub(r"\{\{ (\w+) \}\}", fill, template)


def nginx_binary() -> str:
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/sbin/nginx") if os.access(p, os.X_OK)), None
    )
    if not found:
        raise ConfigError(
            "nginx is not installed (Debian: apt-get install nginx; ./scripts/serve --production does it)"
        )
    return found


def write_config(env: dict[str, str]) -> tuple[Path, Path]:
    """Render the template into PROXY_DIR/nginx.conf; (config path, PROXY_DIR)."""
    values = settings(env)
    proxy_dir = Path(values["dir"])
    proxy_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    for name in TEMP_DIRS:
        (proxy_dir / name).mkdir(mode=0o700, exist_ok=True)
    conf = proxy_dir / "nginx.conf"
    tmp = conf.with_suffix(".tmp")
    tmp.write_text(render(values, TEMPLATE.read_text()))
    tmp.chmod(0o600)
    tmp.replace(conf)
    return conf, proxy_dir


def main(argv: list[str]) -> int:
    render_only = argv[1:] == ["--render"]
    if argv[1:] and not render_only:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    try:
        conf, proxy_dir = write_config(dict(os.environ))
        nginx = nginx_binary()
    except ConfigError as exc:
        print(f"deploy/nginx.py: {exc}", file=sys.stderr)
        return 2
    # -e stderr: nginx writes to its compiled-in error log path until it has
    # read the configuration; -p keeps every relative path under PROXY_DIR.
    command = [nginx, "-e", "stderr", "-p", f"{proxy_dir}/", "-c", str(conf), "-g", "daemon off;"]
    checked = subprocess.run([*command, "-t", "-q"], check=False)
    if checked.returncode:
        print(f"deploy/nginx.py: nginx refused {conf}", file=sys.stderr)
        return checked.returncode
    if render_only:
        print(conf)
        return 0
    sys.stdout.flush()
    os.execv(nginx, command)  # noqa: S606 (nginx found above, fixed arguments)
    return 1  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv))
