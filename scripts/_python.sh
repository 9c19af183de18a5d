# Shared by the scripts: find Python 3.13 and make sure .venv exists with the
# test requirements installed. Sourced, not executed.
find_python313() {
  if command -v python3.13 >/dev/null 2>&1 && python3.13 -c 'import sys; assert sys.version_info[:2] == (3, 13)' >/dev/null 2>&1; then
    command -v python3.13
    return 0
  fi
  local root
  root=$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")
  local candidate
  for candidate in "$root"/versions/3.13*/bin/python3.13 /usr/local/bin/python3.13 /usr/bin/python3.13; do
    if [ -x "$candidate" ]; then
      echo "$candidate"
      return 0
    fi
  done
  echo "Python 3.13 not found (tried python3.13, pyenv, /usr/local/bin, /usr/bin)" >&2
  return 1
}

ensure_venv() {
  local top=$1
  local stamp="$top/.venv/.requirements_test.sha"
  local want
  want=$(sha256sum "$top/requirements_test.txt" | cut -d' ' -f1)
  if [ ! -x "$top/.venv/bin/python" ]; then
    local py
    py=$(find_python313) || return 1
    echo "Creating .venv with $py"
    "$py" -m venv "$top/.venv"
  fi
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "Installing requirements_test.txt into .venv"
    "$top/.venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
    "$top/.venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$top/requirements_test.txt"
    echo "$want" > "$stamp"
  fi
}
