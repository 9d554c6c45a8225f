# Sourced by the matrix build: a private apt configuration under $WORK/apt that
# reads the Debian mirror from this host's own apt sources at run time and never
# touches the host's apt state.
# shellcheck shell=bash

SUITES=(bullseye bookworm bookworm-backports trixie)

# First URI the host uses for a Debian suite of the given kind (main|security).
host_mirror() {
    local kind=$1 files
    files=$(ls /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
        /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
    # shellcheck disable=SC2086
    awk -v kind="$kind" '
        function wanted(suite) {
            if (kind == "security") return suite ~ /^[a-z]+-security$/ || suite ~ /\/updates$/
            return suite ~ /^(bullseye|bookworm|trixie|forky|sid|stable|oldstable|testing)(-updates|-backports)?$/
        }
        /^[[:space:]]*deb[[:space:]]/ {          # one-line format
            i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
            if (wanted($(i + 1)) && !found) { print $i; found = 1 }
            next
        }
        /^URIs:/ { uri = $2; next }               # deb822 format: a block per paragraph
        /^Suites:/ { for (j = 2; j <= NF; j++) if (wanted($j) && !found && uri != "") { print uri; found = 1 } }
        /^[[:space:]]*$/ { uri = "" }
    ' $files
}

apt_setup() {
    local main sec
    main=$(host_mirror main)
    sec=$(host_mirror security)
    [ -n "$main" ] || die "no Debian mirror found in this host's apt sources"
    [ -n "$sec" ] || sec="${main%/debian}/debian-security"
    APT_DIR=$WORK/apt
    mkdir -p "$APT_DIR/state/lists/partial" "$APT_DIR/cache/archives/partial" "$APT_DIR/etc"
    : >"$APT_DIR/state/status"
    {
        for s in bullseye bookworm trixie; do
            echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $main $s main"
            echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $sec $s-security main"
        done
        echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $main bookworm-backports main"
    } >"$APT_DIR/etc/sources.list"
    MIRROR=$main
}

apt_private() {
    apt-get -q -o Dir::Etc::SourceList="$APT_DIR/etc/sources.list" \
        -o Dir::Etc::SourceParts=/nonexistent -o Dir::State="$APT_DIR/state" \
        -o Dir::State::status="$APT_DIR/state/status" -o Dir::Cache="$APT_DIR/cache" \
        -o APT::Architecture=amd64 -o APT::Sandbox::User=root "$@"
}

apt_cache_private() {
    apt-cache -o Dir::Etc::SourceList="$APT_DIR/etc/sources.list" \
        -o Dir::Etc::SourceParts=/nonexistent -o Dir::State="$APT_DIR/state" \
        -o Dir::State::status="$APT_DIR/state/status" -o Dir::Cache="$APT_DIR/cache" \
        -o APT::Architecture=amd64 "$@"
}

# Newest linux-image-amd64 version of a suite (including its -security updates).
newest_meta_version() {
    local suite=$1 accept
    case $suite in
        bookworm-backports) accept="bookworm-backports" ;;
        *) accept="$suite|$suite-security" ;;
    esac
    apt_cache_private madison linux-image-amd64 |
        awk -F'|' -v re="^ *[^ ]+ ($accept)/" '{ v = $2; gsub(/ /, "", v); if ($3 ~ re) print v }' |
        sort -V | tail -n1
}
