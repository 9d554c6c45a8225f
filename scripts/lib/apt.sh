# Sourced by the scripts that install their own tools from the distribution (kernel-matrix,
# fresh-root, bench, install-exporter, vagrant/host.sh): one way to do it, and one at a time.
# scripts/test starts the kernel matrix's and the fresh roots' builds together in the
# background; on a cold machine both installed packages at once and one failed with
# "Could not get lock /var/lib/apt/lists/lock. It is held by process ... (apt-get)".
# shellcheck shell=bash

# Serializes our own scripts; DPkg::Lock::Timeout makes apt wait for anybody else's
# (unattended-upgrades, a user's apt) instead of failing at once.
PAFTRACE_APT_LOCK=${PAFTRACE_APT_LOCK:-/run/lock/paftrace-apt.lock}
APT_WAIT_S=900

# apt_install_missing WHO PKG...: install those of PKG that are not installed, saying so on
# stderr as "WHO: installing ...". Returns apt-get's failure.
apt_install_missing() {
    local who=$1 missing=() pkg
    shift
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    printf '%s: installing %s\n' "$who" "${missing[*]}" >&2
    mkdir -p "$(dirname "$PAFTRACE_APT_LOCK")"
    (
        flock -w "$APT_WAIT_S" 9 || {
            printf '%s: waited %s s for %s (another paftrace script installing packages)\n' \
                "$who" "$APT_WAIT_S" "$PAFTRACE_APT_LOCK" >&2
            exit 1
        }
        export DEBIAN_FRONTEND=noninteractive
        apt-get -o DPkg::Lock::Timeout="$APT_WAIT_S" update -q >/dev/null &&
            apt-get -o DPkg::Lock::Timeout="$APT_WAIT_S" install -y -q --no-install-recommends \
                "${missing[@]}" >/dev/null
    ) 9>"$PAFTRACE_APT_LOCK"
}
