# Sourced by scripts/vagrant-check: the host side of a Vagrant + libvirt run under QEMU
# software emulation, on a machine without systemd. Everything it starts, defines or
# changes is recorded in $STATE so that `host_restore` undoes exactly that, and nothing
# of a user's own libvirt (domains, networks, pools, daemons) is touched.
# shellcheck shell=bash

HOST_PACKAGES=(vagrant vagrant-libvirt libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients
    libvirt-daemon-system libvirt-daemon-system-sysv dnsmasq-base iptables nftables qemu-utils
    qemu-system-x86 debootstrap e2fsprogs rsync openssh-client dpkg-dev)
POOL=paftrace-vagrant           # the storage pool this check defines (private directory)
VIRSH=(virsh -q -c qemu:///system)

# shellcheck source=scripts/lib/apt.sh
. "$HERE/scripts/lib/apt.sh"
host_install() { apt_install_missing vagrant-check "${HOST_PACKAGES[@]}"; }

# Names of the libvirt objects of one kind (net|pool|dom), all or only active ones.
virsh_names() {
    local kind=$1 which=${2:---all}
    case $kind in
        net) "${VIRSH[@]}" net-list "$which" --name ;;
        pool) "${VIRSH[@]}" pool-list "$which" --name ;;
        dom) "${VIRSH[@]}" list "$which" --name ;;
    esac 2>/dev/null | sed '/^$/d' | sort
}

# provision_key CHECKOUT CACHE: what a provisioned disk depends on -- the plain box, the
# script that provisions it (and what it sources), the Vagrantfile that runs it, and the
# offline bundle it installs from (names, sizes, times). Another key: provision afresh.
provision_key() {
    { cat "$2/box.json" "$1/scripts/setup" "$1"/scripts/lib/*.sh "$1/Vagrantfile"
      (cd "$2/offline" && find . -type f -printf '%P %s %T@\n' | sort); } | sha256sum | cut -d' ' -f1
}

daemon_running() { pgrep -x "$1" >/dev/null; }

# Started by us: its pid is recorded, and only that pid is stopped later.
start_daemon() {
    local name=$1 pidfile=$STATE/$1.pid
    daemon_running "$name" && return 0
    "/usr/sbin/$name" -d -p "$pidfile" || die "cannot start /usr/sbin/$name"
    local i
    for i in $(seq 50); do [ -s "$pidfile" ] && break; sleep 0.1; done
    [ -s "$pidfile" ] || die "$name did not write $pidfile"
    cp "$pidfile" "$STATE/started-$name"
    cp "$pidfile" "$STATE/$name.pid.started"
    say "started $name (pid $(cat "$pidfile"))"
}

stop_started_daemon() {
    local name=$1 pid i
    [ -e "$STATE/started-$name" ] || return 0
    pid=$(cat "$STATE/started-$name")
    if kill "$pid" 2>/dev/null; then
        for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    fi
    rm -f "$STATE/started-$name"
}

# /dev/kvm is root-only here: libvirt's qemu user cannot open it, but its cached
# capabilities say KVM exists, so it re-probes QEMU (4-9 s) on every API call. QEMU as
# root makes that instant. Only when this check starts libvirtd itself (never under a
# user's running daemon), and the original file is put back afterwards.
qemu_conf_as_root() {
    local conf=/etc/libvirt/qemu.conf
    [ -e "$conf" ] || return 0
    cp -p "$conf" "$STATE/qemu.conf.orig"
    sha256sum "$conf" | cut -d' ' -f1 >"$STATE/qemu.conf.sha256"
    printf '\n# paftrace vagrant-check (temporary; restored when it ends)\nuser = "root"\ngroup = "root"\n' >>"$conf"
}

restore_qemu_conf() {
    [ -e "$STATE/qemu.conf.orig" ] || return 0
    cp -p "$STATE/qemu.conf.orig" /etc/libvirt/qemu.conf
    rm -f "$STATE/qemu.conf.orig"
}

host_start() {
    mkdir -p "$STATE"
    cat /proc/sys/net/ipv4/ip_forward >"$STATE/ip_forward"
    daemon_running virtlogd || start_daemon virtlogd
    if ! daemon_running libvirtd; then
        qemu_conf_as_root
        start_daemon libvirtd
    fi
    local i
    for i in $(seq 100); do "${VIRSH[@]}" version >/dev/null 2>&1 && break; sleep 0.2; done
    "${VIRSH[@]}" version >/dev/null || die "libvirtd does not answer on qemu:///system"
    # What exists before this check; everything else found at the end is ours to remove.
    virsh_names net >"$STATE/nets-defined"
    if [ -e "$STATE/started-libvirtd" ]; then : >"$STATE/nets-active"; else virsh_names net --state-active >"$STATE/nets-active"; fi
    virsh_names pool >"$STATE/pools"
    virsh_names dom >"$STATE/doms"
    if ! grep -qx "$POOL" "$STATE/pools"; then
        mkdir -p "$CACHE/pool"
        "${VIRSH[@]}" pool-define-as "$POOL" dir --target "$CACHE/pool" >/dev/null
    fi
    "${VIRSH[@]}" pool-start "$POOL" >/dev/null 2>&1 || true
}

# Undo what host_start and the run did; prints what could not be undone (leftovers).
host_restore() {
    local name
    if "${VIRSH[@]}" version >/dev/null 2>&1; then
        for name in $(comm -13 "$STATE/doms" <(virsh_names dom)); do
            "${VIRSH[@]}" destroy "$name" >/dev/null 2>&1 || true
            "${VIRSH[@]}" undefine "$name" --nvram >/dev/null 2>&1 ||
                "${VIRSH[@]}" undefine "$name" >/dev/null 2>&1 || true
        done
        for name in $(comm -13 "$STATE/nets-active" <(virsh_names net --state-active)); do
            "${VIRSH[@]}" net-destroy "$name" >/dev/null 2>&1 || true
        done
        for name in $(comm -13 "$STATE/nets-defined" <(virsh_names net)); do
            "${VIRSH[@]}" net-undefine "$name" >/dev/null 2>&1 || true
        done
        if ! grep -qx "$POOL" "$STATE/pools"; then
            # The VM's own volumes go; the box image uploaded by vagrant-libvirt stays in
            # the pool's directory (the cache): the next run's pool finds it, no upload.
            for name in $("${VIRSH[@]}" vol-list "$POOL" 2>/dev/null | awk '{print $1}'); do
                case $name in *_vagrant_box_image_*) continue ;; esac
                "${VIRSH[@]}" vol-delete "$name" --pool "$POOL" >/dev/null 2>&1 || true
            done
            "${VIRSH[@]}" pool-destroy "$POOL" >/dev/null 2>&1 || true
            "${VIRSH[@]}" pool-undefine "$POOL" >/dev/null 2>&1 || true
        fi
    fi
    stop_started_daemon libvirtd
    stop_started_daemon virtlogd
    restore_qemu_conf
    [ -e "$STATE/ip_forward" ] && cat "$STATE/ip_forward" >/proc/sys/net/ipv4/ip_forward
}

# What is still there that this check made or changed, one item a line (none: all undone).
host_leftovers() {
    local name pid
    if "${VIRSH[@]}" version >/dev/null 2>&1; then
        for name in $(comm -13 "$STATE/doms" <(virsh_names dom)); do echo "domain $name"; done
        for name in $(comm -13 "$STATE/nets-active" <(virsh_names net --state-active)); do
            echo "active network $name"
        done
        for name in $(comm -13 "$STATE/nets-defined" <(virsh_names net)); do echo "network $name"; done
        for name in $(comm -13 "$STATE/pools" <(virsh_names pool)); do echo "pool $name"; done
    fi
    for name in virtlogd libvirtd; do
        [ -e "$STATE/$name.pid.started" ] || continue
        pid=$(cat "$STATE/$name.pid.started")
        kill -0 "$pid" 2>/dev/null && echo "$name pid $pid"
    done
    [ -e "$STATE/qemu.conf.sha256" ] &&
        [ "$(sha256sum /etc/libvirt/qemu.conf | cut -d' ' -f1)" != "$(cat "$STATE/qemu.conf.sha256")" ] &&
        echo "/etc/libvirt/qemu.conf modified"
    [ -e "$STATE/ip_forward" ] && [ "$(cat /proc/sys/net/ipv4/ip_forward)" != "$(cat "$STATE/ip_forward")" ] &&
        echo "net.ipv4.ip_forward=$(cat /proc/sys/net/ipv4/ip_forward)"
    # Processes of a VM or of its network that outlived everything above.
    pgrep -a -f "qemu-system-x86_64.*$DOMAIN_PREFIX" | sed 's/^/process /'
    # (A libvirtd of the user's own keeps its networks' dnsmasq: only ours are counted.)
    [ -e "$STATE/libvirtd.pid.started" ] &&
        pgrep -a -f 'dnsmasq.*/var/lib/libvirt/dnsmasq/' | sed 's/^/process /'
    return 0
}
