# Shared by the scripts: install Debian packages that are missing. Sourced.

# ensure_debian_packages NAME:PATH-GLOB ...: apt-get install each NAME whose
# PATH-GLOB matches no file (one apt-get run for all of them).
ensure_debian_packages() {
  local missing=() spec
  for spec in "$@"; do
    compgen -G "${spec#*:}" >/dev/null || missing+=("${spec%%:*}")
  done
  [ ${#missing[@]} -gt 0 ] || return 0
  echo "Installing Debian packages: ${missing[*]}"
  local sudo_cmd=()
  if [ "$(id -u)" -ne 0 ]; then
    sudo_cmd=(sudo)
  fi
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
}

# The libfaketime library that moves a process's clock (package faketime).
faketime_library() {
  compgen -G "/usr/lib/*/faketime/libfaketimeMT.so.1" | head -n 1
}
