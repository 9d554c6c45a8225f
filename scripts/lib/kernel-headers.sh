# Sourced by scripts/setup (and by its tests, without root): which kernel header tree to
# link as /lib/modules/$(uname -r)/build when the distribution has no headers package for
# the running kernel. bcc compiles against the header tree only; paftrace's BPF reads no
# kernel struct offsets, so the nearest (newest) packaged tree works.
# shellcheck shell=bash

# nearest_headers SRC ARCH: print the newest flavour header directory under SRC (normally
# /usr/src) and, on a second line, its architecture-independent part (empty if none).
#   Debian:  linux-headers-6.1.0-28-amd64 + linux-headers-6.1.0-28-common
#            linux-headers-6.12.43+deb13-arm64 + linux-headers-6.12.43+deb13-common
#   Ubuntu:  linux-headers-6.8.0-45-generic (+ linux-headers-6.8.0-45, where installed)
# Other Debian flavours (-cloud-amd64, -rt-amd64) are skipped: they are not what the
# linux-headers-ARCH metapackage installs. A directory without a Makefile (left behind by a
# removed package) is not a header tree. Returns 1, with one line on stderr, when none fits.
nearest_headers() {
    local src=$1 arch=$2 dir name version best="" best_version="" common
    for dir in "$src"/linux-headers-*; do
        [ -f "$dir/Makefile" ] || continue
        name=${dir##*/linux-headers-}
        if [[ $name =~ ^([0-9]+\.[0-9]+[^-]*(-[0-9]+)?)-($arch|generic)$ ]]; then
            version=${BASH_REMATCH[1]}
            if [ -z "$best" ] || [ "$(printf '%s\n%s\n' "$best_version" "$version" |
                sort -V | tail -n1)" = "$version" ]; then
                best=$dir best_version=$version
            fi
        fi
    done
    if [ -z "$best" ]; then
        printf 'no linux-headers-*-%s or linux-headers-*-generic tree under %s\n' "$arch" "$src" >&2
        return 1
    fi
    common=""
    for dir in "$src/linux-headers-$best_version-common" "$src/linux-headers-$best_version"; do
        if [ -d "$dir" ]; then common=$dir; break; fi
    done
    printf '%s\n%s\n' "$best" "$common"
}
