# Shared by scripts/develop and scripts/test-e2e. Sourced after scripts/_python.sh.

# Install requirements_dev.txt (a real Home Assistant with its frontend,
# Playwright) into .venv, creating .venv first if needed.
ensure_dev_venv() {
  local top=$1
  ensure_venv "$top"
  local stamp="$top/.venv/.requirements_dev.sha"
  local want
  want=$(cat "$top/requirements_dev.txt" "$top/requirements_test.txt" | sha256sum | cut -d' ' -f1)
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "Installing requirements_dev.txt into .venv"
    "$top/.venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$top/requirements_dev.txt"
    echo "$want" > "$stamp"
  fi
}

