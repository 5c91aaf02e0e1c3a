# Sourced by ./pants, ./coex and tests/run: find CPython 3.9, make (once) the pinned venv, export
#   COEX_VENV   the venv directory
#   COEX_VENV_PY its python
# Pants 2.17.1 only ships cp37-cp39 wheels, so the venv must be 3.9.
_coex_repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
_coex_req="$_coex_repo/pants-plugins/requirements.txt"

_coex_is_py39() {
  [ -n "$1" ] && "$1" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 9) else 1)' >/dev/null 2>&1
}

_coex_find_py39() {
  if [ -n "${COEX_PANTS_PYTHON:-}" ]; then
    if _coex_is_py39 "$COEX_PANTS_PYTHON"; then echo "$COEX_PANTS_PYTHON"; return 0; fi
    echo "coex: COEX_PANTS_PYTHON=$COEX_PANTS_PYTHON is not a working CPython 3.9" >&2
    return 1
  fi
  local c
  if c=$(command -v python3.9 2>/dev/null) && _coex_is_py39 "$c"; then echo "$c"; return 0; fi
  local root
  root=$( (pyenv root) 2>/dev/null || echo "$HOME/.pyenv")
  for c in "$root"/versions/3.9*/bin/python3.9; do
    if _coex_is_py39 "$c"; then echo "$c"; return 0; fi
  done
  cat >&2 <<MSG
coex: Pants 2.17.1 needs CPython 3.9 (its wheels are cp37-cp39 only), and none was found.
  Looked at: \$COEX_PANTS_PYTHON, python3.9 on PATH, $root/versions/3.9*/bin/python3.9
  Fix: install one, e.g. 'pyenv install 3.9' or 'apt-get install python3.9 python3.9-venv',
  or point COEX_PANTS_PYTHON at a python3.9 binary.
MSG
  return 1
}

coex_venv() {
  local py39 key cache
  py39=$(_coex_find_py39) || return 1
  key=$( { cat "$_coex_req"; "$py39" -c 'import sys; print(sys.version)'; } | sha256sum | cut -c1-16)
  cache="${XDG_CACHE_HOME:-$HOME/.cache}/coex-pants"
  COEX_VENV="$cache/venv-$key"
  COEX_VENV_PY="$COEX_VENV/bin/python"
  export COEX_VENV COEX_VENV_PY
  [ -f "$COEX_VENV/.coex-ready" ] && return 0
  mkdir -p "$cache" || return 1
  echo "coex: creating the Pants venv (CPython 3.9, $(grep -c '==' "$_coex_req") pins) in $COEX_VENV ..." >&2
  # Built where it lives (venv scripts embed their path), under an exclusive lock so that two
  # launches racing build it once; the ready marker is written last, so a killed build is redone.
  (
    exec 9>"$cache/.venv-$key.lock"
    flock 9
    [ -f "$COEX_VENV/.coex-ready" ] && exit 0
    rm -rf "$COEX_VENV"
    "$py39" -m venv "$COEX_VENV" &&
      "$COEX_VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade "pip<24" &&
      "$COEX_VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$_coex_req" &&
      touch "$COEX_VENV/.coex-ready"
  )
  local rc=$?
  if [ $rc -ne 0 ] || [ ! -f "$COEX_VENV/.coex-ready" ]; then
    echo "coex: building the venv failed (see pip's output above); nothing was marked ready." >&2
    return 1
  fi
}
