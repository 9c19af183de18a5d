# Shared by scripts/py314-root, scripts/test-newest and scripts/test-e2e: Python 3.14
# for the newest Home Assistant. Sourced, not executed.
#
# The machine's python3.14 is used when it has one. Otherwise a Debian unstable root
# (it has python3.14) is made once with debootstrap under $ZEVVY_CACHE, outside the
# repository, and commands run in it with chroot inside a private mount namespace
# (unshare --mount): /proc, /dev and the project directory (at the same path) are
# mounted for that command only. The trap unmounts them, and the namespace takes
# them along when the command ends in any way, so nothing stays mounted on the
# machine and a second run starts clean.

ZEVVY_CACHE=${ZEVVY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/zevvy}
PY314_ROOT="$ZEVVY_CACHE/py314-root"
# What the root gets besides Debian's minimal base: Python 3.14; a compiler and the
# headers for the libraries without a 3.14 wheel (pymicro-vad, pyspeex-noise);
# libturbojpeg0 (PyTurboJPEG: Home Assistant's camera/image code); for the
# end-to-end tests faketime (moves Home Assistant's clock) and chromium.
PY314_PACKAGES=(python3.14 python3.14-venv python3.14-dev g++ libturbojpeg0 faketime chromium ca-certificates)
PY314_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# True when the machine has Python 3.14 itself (then no root is made or used).
py314_on_host() {
  [ -z "${ZEVVY_FORCE_ROOT:-}" ] && command -v python3.14 >/dev/null 2>&1 &&
    python3.14 -c 'import sys; assert sys.version_info[:2] == (3, 14)' >/dev/null 2>&1
}

# The Debian mirror this machine uses (apt sources), else deb.debian.org.
py314_mirror() {
  if [ -n "${ZEVVY_DEBIAN_MIRROR:-}" ]; then
    echo "$ZEVVY_DEBIAN_MIRROR"
    return
  fi
  local url
  url=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
    grep -E '^[[:space:]]*(deb[[:space:]]|URIs:)' | grep -oE 'https?://[^][:space:]]+' |
    grep -E '/debian/?$' | head -n1 || true)
  echo "${url:-http://deb.debian.org/debian}"
}

# The machine's pip configuration files (the places pip reads).
py314_pip_configs() {
  local file
  for file in /etc/pip.conf "${XDG_CONFIG_DIRS:-/etc/xdg}/pip/pip.conf" \
    "$HOME/.config/pip/pip.conf" "$HOME/.pip/pip.conf" "${PIP_CONFIG_FILE:-}"; do
    [ -n "$file" ] && [ -f "$file" ] && echo "$file"
  done
  return 0
}

# Paths named by the machine's TLS and pip settings (certificates, constraints,
# local wheel directories, file:// indexes with the directory above them, to which
# their pages link), one a line.
py314_settings_paths() {
  local value
  _py314_pip_values() { # KEY_REGEX ENV_VALUES...: values of these settings
    local keys=$1
    shift
    printf '%s\n' "$@"
    py314_pip_configs | xargs -r cat |
      sed -nE "s/^[[:space:]]*($keys)[[:space:]]*=[[:space:]]*(.*)\$/\\2/p"
  }
  {
    _py314_pip_values 'cert|client-cert|constraint|find-links' "${PIP_CERT:-}" \
      "${PIP_CLIENT_CERT:-}" "${PIP_CONSTRAINT:-}" "${SSL_CERT_FILE:-}" \
      "${REQUESTS_CA_BUNDLE:-}" "${PIP_FIND_LINKS:-}"
    _py314_pip_values 'index-url|extra-index-url' "${PIP_INDEX_URL:-}" \
      "${PIP_EXTRA_INDEX_URL:-}" | tr -s ' \t' '\n' | sed -nE 's#^file://(/.*[^/])/*$#\1/..#p'
  } | tr -s ' \t' '\n' | sed -E 's#^file://##' | while read -r value; do
    case $value in /*) [ -e "$value" ] && realpath -ms "$value" ;; esac
  done
  return 0
}

# Copy resolv.conf, the pip configuration files and the files they name into the
# root (again when they changed), so that apt and pip inside reach the registries
# the way the machine does. Directories they name are mounted read-only instead
# (py314_exec).
py314_sync_settings() {
  local file
  { echo /etc/resolv.conf; py314_pip_configs; py314_settings_paths; } | sort -u |
    while read -r file; do
      [ -f "$file" ] || continue
      if ! cmp -s "$file" "$PY314_ROOT$file"; then
        mkdir -p "$(dirname "$PY314_ROOT$file")"
        cp -L "$file" "$PY314_ROOT$file"
      fi
    done
}

# Run a command inside the root (as root, in the current directory, which must be
# inside the project). Without the root, run it directly.
py314_exec() {
  if py314_on_host; then
    "$@"
    return
  fi
  py314_sync_settings
  local dirs
  dirs=$(py314_settings_paths | while read -r dir; do [ -d "$dir" ] && echo "$dir"; done | sort -u | tr '\n' ':')
  # Inside: mount, chroot, run; the trap unmounts (the namespace would anyway).
  unshare --mount --propagation private -- bash -c '
    set -eu
    root=$1 top=$2 dirs=$3 cwd=$4 path=$5
    shift 5
    mounted=()
    cleanup() {
      local i
      for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
        umount -R -l "${mounted[i]}" 2>/dev/null || true
      done
    }
    trap cleanup EXIT
    bind() { # bind SOURCE [ro]
      mkdir -p "$root$1"
      mount --bind "$1" "$root$1"
      mounted+=("$root$1")
      if [ "${2:-}" = ro ]; then mount -o remount,bind,ro "$root$1"; fi
    }
    mount -t proc proc "$root/proc"
    mounted+=("$root/proc")
    mount --rbind /dev "$root/dev"
    mounted+=("$root/dev")
    bind "$top"
    IFS=: read -r -a ro_dirs <<<"$dirs"
    for dir in "${ro_dirs[@]}"; do [ -n "$dir" ] && bind "$dir" ro; done
    set +e
    env -u VIRTUAL_ENV -u PYTHONHOME PATH="$path" \
      chroot "$root" /bin/sh -c "cd \"\$0\" && exec \"\$@\"" "$cwd" "$@"
  ' py314 "$PY314_ROOT" "$(py314_project_dir)" "$dirs" "$(pwd -P)" "$PY314_PATH" "$@"
}

# The project directory mounted into the root: the top of the git work tree.
py314_project_dir() {
  (cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
}

# Make the root if it is missing or lacks packages (idempotent; locked against
# parallel runs). Nothing to do when the machine has python3.14.
ensure_py314() {
  if py314_on_host; then
    return 0
  fi
  for tool in unshare chroot flock; do
    command -v "$tool" >/dev/null || { echo "$tool is missing (util-linux, coreutils)" >&2; return 1; }
  done
  local want
  want=$(printf '%s\n' "${PY314_PACKAGES[@]}" | sha256sum | cut -d' ' -f1)
  if [ -f "$PY314_ROOT/.zevvy-packages" ] && [ "$(cat "$PY314_ROOT/.zevvy-packages")" = "$want" ]; then
    return 0
  fi
  mkdir -p "$ZEVVY_CACHE"
  (
    flock 9
    if [ ! -f "$PY314_ROOT/.zevvy-debootstrap" ]; then
      if ! command -v debootstrap >/dev/null; then
        echo "Installing debootstrap"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
      fi
      local mirror start=$SECONDS
      mirror=$(py314_mirror)
      echo "Making a Debian unstable root with Python 3.14 in $PY314_ROOT ($mirror; once)"
      # Only ever this script's private mounts pointed into it, so it can go.
      if grep -qF " $PY314_ROOT/" /proc/self/mounts; then
        echo "Something is mounted under $PY314_ROOT: unmount it first" >&2
        exit 1
      fi
      rm -rf "$PY314_ROOT"
      debootstrap --variant=minbase sid "$PY314_ROOT" "$mirror" >"$ZEVVY_CACHE/debootstrap.log" 2>&1 || {
        tail -n 20 "$ZEVVY_CACHE/debootstrap.log" >&2
        exit 1
      }
      # The unstable Release file may be past its Valid-Until date.
      echo 'Acquire::Check-Valid-Until "false";' >"$PY314_ROOT/etc/apt/apt.conf.d/99zevvy"
      touch "$PY314_ROOT/.zevvy-debootstrap"
      echo "  debootstrap: $((SECONDS - start)) s"
    fi
    local start=$SECONDS
    echo "Installing into the root: ${PY314_PACKAGES[*]}"
    (cd "$(py314_project_dir)" && py314_exec sh -c \
      'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" && apt-get clean' \
      sh "${PY314_PACKAGES[@]}") >"$ZEVVY_CACHE/apt.log" 2>&1 || {
      tail -n 20 "$ZEVVY_CACHE/apt.log" >&2
      exit 1
    }
    echo "$want" >"$PY314_ROOT/.zevvy-packages"
    echo "  packages: $((SECONDS - start)) s; $(py314_exec python3.14 --version)"
  ) 9>"$ZEVVY_CACHE/.py314-root.lock"
}

# ensure_newest_venv NAME REQUIREMENTS...: make sure a Python 3.14 venv with the
# requirements files installed exists (in the root, or on the machine) and set
# NEWEST_VENV to its path as seen by py314_exec. One venv per content of the files,
# kept in the cache, so fresh clones and CI runs reuse it; those of the same NAME
# unused for 30 days are removed when a new one is made.
ensure_newest_venv() {
  local name=$1
  shift
  local sha
  sha=$(cat "$@" | sha256sum | cut -c1-16)
  NEWEST_VENV="$ZEVVY_CACHE/venvs/$name-$sha"
  local on_disk=$NEWEST_VENV
  py314_on_host || on_disk="$PY314_ROOT$NEWEST_VENV"
  if [ -f "$on_disk/.complete" ]; then
    touch "$on_disk/.complete"
    return 0
  fi
  mkdir -p "$ZEVVY_CACHE"
  (
    flock 9
    [ -f "$on_disk/.complete" ] && exit 0
    local start=$SECONDS
    echo "Creating $NEWEST_VENV (Python 3.14) with $*"
    rm -rf "$on_disk"
    py314_exec python3.14 -m venv "$NEWEST_VENV"
    local args=() file
    for file in "$@"; do args+=(-r "$file"); done
    py314_exec "$NEWEST_VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
    py314_exec "$NEWEST_VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${args[@]}"
    touch "$on_disk/.complete"
    echo "  venv: $((SECONDS - start)) s"
    find "$(dirname "$on_disk")" -mindepth 2 -maxdepth 2 -path "*/$name-*/.complete" -mtime +30 |
      while read -r old; do rm -rf "$(dirname "$old")"; done
  ) 9>"$ZEVVY_CACHE/.venv-$name.lock"
}
