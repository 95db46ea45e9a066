# Sourced by the scripts in scripts/: install_needs takes "test:package"
# pairs and installs, with apt-get (as root), each package whose test fails.
# A test with a / is a path pattern (e.g. /usr/lib/postgresql/*/bin/initdb,
# for programs that are not on PATH); otherwise it is a command name.
install_needs() {
  local pair test pkg missing=()
  for pair in "$@"; do
    test=${pair%%:*} pkg=${pair#*:}
    case $test in
      */*) compgen -G "$test" >/dev/null || missing+=("$pkg") ;;
      *) command -v "$test" >/dev/null 2>&1 || missing+=("$pkg") ;;
    esac
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    printf '%s: installing %s\n' "${0##*/}" "${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    printf '%s: missing %s: install them (apt-get install %s) or run as root\n' \
      "${0##*/}" "${missing[*]}" "${missing[*]}" >&2
    return 1
  fi
}
