# Sourced by scripts/serve and scripts/test: Debian packages when missing, and a
# virtual environment with the pinned requirements (re-installed only when a
# requirements file changes).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${CUSTODY_VENV:-$ROOT/.venv}"

apt_install() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "error: these packages are needed: ${missing[*]} (no apt-get here; install them by hand)" >&2
    return 1
  fi
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "Installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

pick_python() {
  local candidate
  for candidate in ${PYTHON:-} python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(not ((3, 11) <= sys.version_info[:2] < (3, 14)))' 2>/dev/null; then
      echo "$candidate"
      return 0
    fi
  done
  echo "error: Python 3.11, 3.12 or 3.13 is needed (set PYTHON=/path/to/python)" >&2
  return 1
}

ensure_venv() {
  local reqfile="$1" python stamp
  if [ ! -x "$VENV/bin/python" ]; then
    python="$(pick_python)"
    echo "Creating virtual environment in $VENV with $("$python" --version)"
    if ! "$python" -m venv "$VENV" 2>/dev/null; then
      # Debian's system Python keeps venv/ensurepip in a separate package.
      rm -rf "$VENV"
      apt_install python3-venv
      "$python" -m venv "$VENV"
    fi
  fi
  stamp="$VENV/.installed-$(cat "$ROOT/$reqfile" "$ROOT/requirements.txt" | sha256sum | cut -c1-16)"
  if [ ! -f "$stamp" ]; then
    echo "Installing Python packages from $reqfile"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$ROOT/$reqfile"
    touch "$stamp"
  fi
}
