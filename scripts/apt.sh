# Sourced by the setup scripts (install-deps.sh, e2e-setup.sh, k8s-setup.sh):
# apt_ensure installs the Debian packages it is given that are not installed
# yet (--no-install-recommends), as root; it expects a log function.
apt_ensure() {
  local missing="" p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
  done
  [ -n "$missing" ] || return 0
  [ "$(id -u)" = 0 ] || { log "needs root to install:$missing"; return 1; }
  log "apt-get install:$missing"
  apt-get update -qq
  # shellcheck disable=SC2086 # one word per package
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
}
