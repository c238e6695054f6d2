#!/usr/bin/env bash
# A virtual Raspberry Pi: an arm64 Debian root run through qemu-user (binfmt_misc), with sshd on
# 127.0.0.1, and smartbin's own commands end to end against it (docs/hardware.md, "A virtual Pi"):
#   bootstrap (the wheel built here) -> run (mock pins, folder camera) -> deploy (the bundled default
#   model; reload and health check through the daemon) -> simulate --fast --json (same labels as
#   here, scores within a tolerance) -> status (reports the deployed version)
#
#   sudo scripts/virtual_pi.sh     # root: debootstrap, chroot, mounts, binfmt_misc
#
# Environment:
#   SMARTBIN_VPI_CACHE      base roots and pip's download cache (default ~/.cache/smartbin/virtual-pi)
#   SMARTBIN_VPI_RELEASE    Debian release of the root (default bookworm)
#   SMARTBIN_VPI_MIRROR     Debian mirror (default http://deb.debian.org/debian)
#   SMARTBIN_VPI_TOLERANCE  largest score difference allowed between here and the Pi (default 0.1)
#   SMARTBIN_VPI_KEEP=1     after the checks (passed or not), keep the Pi up until Ctrl-C, to look around
#   SMARTBIN                smartbin here (default: .venv/bin/smartbin of this checkout)
#
# Everything started here (sshd in the root, the daemon) lives in its own PID and mount namespace,
# which the exit trap kills, on success and on failure; the per-run copy of the root is removed.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${SMARTBIN_VPI_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/smartbin/virtual-pi}
RELEASE=${SMARTBIN_VPI_RELEASE:-bookworm}
MIRROR=${SMARTBIN_VPI_MIRROR:-http://deb.debian.org/debian}
TOLERANCE=${SMARTBIN_VPI_TOLERANCE:-0.1}
SMARTBIN=${SMARTBIN:-$REPO/.venv/bin/smartbin}
HERE_PYTHON=$(dirname "$SMARTBIN")/python
PACKAGES=python3,python3-venv,openssh-server,sudo,rsync,ca-certificates
CONFIG=$REPO/scripts/virtual_pi/config.toml
BINFMT=/proc/sys/fs/binfmt_misc
START=$SECONDS

say() { printf 'virtual_pi [%3ds]: %s\n' $((SECONDS - START)) "$*"; }
die() {
    echo "virtual_pi: error: $*" >&2
    exit 1
}

WORK='' NS_PID='' REGISTERED=''
cleanup() {
    local rc=$?
    if [ -n "$NS_PID" ] && [ "${SMARTBIN_VPI_KEEP:-}" = 1 ]; then
        say "kept up (exit status $rc) until Ctrl-C: ssh -F $SSH_CONFIG vpi"
        trap 'NS_DONE=1' INT TERM
        while [ -z "${NS_DONE:-}" ] && kill -0 "$NS_PID" 2>/dev/null; do sleep 1; done
    fi
    if [ -n "$NS_PID" ]; then
        kill -KILL "$NS_PID" 2>/dev/null || true # its namespace's PID 1 gets SIGKILL, and with it all in there
        wait "$NS_PID" 2>/dev/null || true
    fi
    [ -z "$WORK" ] || rm -rf --one-file-system "$WORK"
    [ -z "$REGISTERED" ] || echo -1 >"$REGISTERED" || true
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

check_host() {
    [ "$(id -u)" = 0 ] || die "run as root (debootstrap, chroot and mounts need it): sudo $0"
    for tool in debootstrap unshare chroot ssh ssh-keygen; do
        command -v "$tool" >/dev/null || die "$tool not found: apt-get install debootstrap openssh-client util-linux"
    done
    [ -x "$SMARTBIN" ] || die "$SMARTBIN not found: make the venv first (pip install -e '.[dev]') or set SMARTBIN"
}

# arm64 programs run here through qemu-user, registered with binfmt_misc. This run registers its
# own aarch64 handler (the newest handler wins, so it takes over from any other while this runs)
# and removes it on exit. F: the kernel holds qemu open, so the root needs no copy of it;
# C: setuid programs get their own credentials, so pi's sudo works in the root.
ensure_binfmt() {
    [ "$(uname -m)" != aarch64 ] || return 0
    local qemu=/usr/libexec/qemu-binfmt/aarch64-binfmt-P flags=POCF name=smartbin-aarch64-$$
    if ! [ -e "$qemu" ]; then # P (keep argv[0]) is for Debian's -binfmt-P name of qemu only
        qemu=$(command -v qemu-aarch64-static) || die "qemu-aarch64-static not found: apt-get install qemu-user-static"
        flags=OCF
    fi
    if ! [ -e "$BINFMT/register" ]; then
        mount -t binfmt_misc binfmt_misc "$BINFMT" 2>/dev/null ||
            die "binfmt_misc cannot be used: $BINFMT is not mounted and mounting it failed; run as root on a host (or a --privileged container) whose kernel has binfmt_misc (modprobe binfmt_misc)"
    fi
    grep -qx enabled "$BINFMT/status" || die "binfmt_misc is disabled: echo 1 > $BINFMT/status"
    local magic='\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00'
    local mask='\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff'
    echo ":$name:M::$magic:$mask:$qemu:$flags" >"$BINFMT/register" 2>/dev/null ||
        die "binfmt_misc cannot be used: registering an aarch64 handler in $BINFMT/register failed"
    REGISTERED=$BINFMT/$name
}

# The cached base root: debootstrap'ed once, with a user pi allowed to sudo (as on a Pi).
base_root() {
    local base=$CACHE/$RELEASE-arm64 stamp="$RELEASE $PACKAGES pi-v1"
    if [ "$(cat "$base/.smartbin-vpi" 2>/dev/null)" = "$stamp" ]; then
        say "reusing the $RELEASE arm64 root in $base"
        return
    fi
    say "building the $RELEASE arm64 root (debootstrap, a few minutes; log in $CACHE/debootstrap.log)"
    mkdir -p "$CACHE"
    rm -rf --one-file-system "$base" "$base.new"
    debootstrap --arch=arm64 --variant=minbase --foreign --include="$PACKAGES" \
        "$RELEASE" "$base.new" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 ||
        die "debootstrap failed (last line: $(tail -n1 "$CACHE/debootstrap.log")); see $CACHE/debootstrap.log"
    chroot "$base.new" /bin/true 2>/dev/null ||
        die "arm64 programs do not run here through binfmt_misc; check $BINFMT and qemu-user-static"
    # The second stage mounts /proc and /sys in the root: keep them in a mount namespace of its own.
    unshare --mount --propagation private chroot "$base.new" /debootstrap/debootstrap --second-stage \
        >>"$CACHE/debootstrap.log" 2>&1 ||
        die "debootstrap's second stage failed; see $CACHE/debootstrap.log"
    chroot "$base.new" sh -ec '
        useradd --create-home --shell /bin/bash pi
        usermod -p "*" pi    # no password, but not locked: sshd without PAM refuses locked users
        echo "pi ALL=(ALL) NOPASSWD: ALL" >/etc/sudoers.d/pi && chmod 440 /etc/sudoers.d/pi
        mkdir -p /var/cache/pip
        apt-get clean'
    echo "$stamp" >"$base.new/.smartbin-vpi"
    mv "$base.new" "$base"
}

free_port() {
    "$HERE_PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# A copy of the base root with sshd on 127.0.0.1:PORT, a login key for pi, and an ssh config
# (alias "vpi") for smartbin's --ssh-config.
start_pi() {
    local base=$CACHE/$RELEASE-arm64 root=$WORK/root port ids
    cp -a "$base" "$root"
    # pip in the root reaches PyPI through this machine's network, trusting what this machine trusts
    # (a proxy's CA, say). $CACHE/pip is mounted on /var/cache/pip: pip's own cache, and the wheels
    # of the last run (see save_wheels), which pip takes instead of downloading them again.
    cp /etc/resolv.conf /etc/hosts "$root/etc/" # hosts: sudo wants this machine's name (shared) to resolve
    [ ! -r /etc/ssl/certs/ca-certificates.crt ] || cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
    printf '[global]\ncache-dir = /var/cache/pip\nfind-links = /var/cache/pip/wheels\ncert = %s\n' \
        /etc/ssl/certs/ca-certificates.crt >"$root/etc/pip.conf"
    ssh-keygen -q -t ed25519 -N '' -C smartbin-vpi -f "$WORK/id_ed25519"
    ids=$(awk -F: '$1 == "pi" { print $3 ":" $4 }' "$root/etc/passwd")
    install -d -m 700 -o "${ids%:*}" -g "${ids#*:}" "$root/home/pi/.ssh"
    install -m 600 -o "${ids%:*}" -g "${ids#*:}" "$WORK/id_ed25519.pub" "$root/home/pi/.ssh/authorized_keys"
    port=$(free_port)
    cat >"$root/etc/ssh/sshd_config.vpi" <<EOF
Port $port
ListenAddress 127.0.0.1
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
PidFile none
Subsystem sftp /usr/lib/openssh/sftp-server
MaxStartups 50:30:100
EOF
    echo "[127.0.0.1]:$port $(cut -d' ' -f1,2 "$root/etc/ssh/ssh_host_ed25519_key.pub")" >"$WORK/known_hosts"
    SSH_CONFIG=$WORK/ssh_config
    cat >"$SSH_CONFIG" <<EOF
Host vpi
    HostName 127.0.0.1
    Port $port
    User pi
    IdentityFile $WORK/id_ed25519
    IdentitiesOnly yes
    UserKnownHostsFile $WORK/known_hosts
    GlobalKnownHostsFile /dev/null
    StrictHostKeyChecking yes
    LogLevel ERROR
EOF
    mkdir -p "$CACHE/pip/wheels"
    # No /sys: with it, LiteRT's cpuinfo reads this machine's CPUs next to qemu's arm64 ones and
    # crashes (ai-edge-litert 2.3, qemu 7.2); without it, it warns once and falls back.
    # --kill-child: when this unshare dies (the exit trap kills it), sshd, PID 1 of the new PID
    # namespace, gets SIGKILL, and the kernel kills everything else in there (the daemon too).
    unshare --mount --propagation private --pid --fork --kill-child=SIGKILL sh -ec '
        mount -t proc proc "$1/proc"
        mount --rbind /dev "$1/dev"
        mount --bind "$2" "$1/var/cache/pip"
        mkdir -p "$1/run/sshd"
        exec chroot "$1" /usr/sbin/sshd -D -e -f /etc/ssh/sshd_config.vpi' sh "$root" "$CACHE/pip" \
        >"$WORK/sshd.log" 2>&1 &
    NS_PID=$!
    for _ in $(seq 120); do
        if pi true 2>/dev/null; then
            say "the Pi answers: ssh -F $SSH_CONFIG vpi ($(pi uname -m), $(pi python3 --version))"
            return
        fi
        kill -0 "$NS_PID" 2>/dev/null || die "sshd in the root did not start: $(tail -n3 "$WORK/sshd.log")"
        sleep 0.5
    done
    die "sshd in the root does not answer on 127.0.0.1:$port: $(tail -n3 "$WORK/sshd.log")"
}

pi() { ssh -F "$SSH_CONFIG" vpi "$@"; }

# pip's HTTP cache stays empty behind a proxy that marks responses no-store: keep the wheels that
# bootstrap installed (those not kept yet), for the next run's pip (find-links in /etc/pip.conf).
save_wheels() {
    pi 'cd /tmp && missing=
        for req in $(/opt/smartbin/venv/bin/pip freeze --local --exclude smartbin 2>/dev/null); do
            name=$(echo "${req%%==*}" | tr "A-Z.-" "a-z__")
            ls /var/cache/pip/wheels | grep -qi "^$name-${req#*==}-" || missing="$missing $req"
        done
        [ -z "$missing" ] || sudo -n /opt/smartbin/venv/bin/pip download -q --no-deps -d /var/cache/pip/wheels $missing' ||
        say "   (could not keep the wheels for the next run; carrying on)"
}

json_field() { "$HERE_PYTHON" -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

end_to_end() {
    local common=(--ssh-config "$SSH_CONFIG") pid status up='' version path
    version=$(json_field version <"$REPO/device/data/default-model/manifest.json")

    say "1. smartbin bootstrap (the wheel built here; no apt: plain Debian has no picamera2; no systemd)"
    "$SMARTBIN" bootstrap vpi "${common[@]}" --sudo --skip-apt --skip-systemd --config "$CONFIG"

    save_wheels

    say "2. smartbin run as user smartbin (mock pins, folder camera)"
    pid=$(pi 'cd /var/lib/smartbin
        sudo -n -u smartbin sh -c "echo \$\$ >run.pid; exec smartbin run >run.log 2>&1" </dev/null >/dev/null 2>&1 &
        for _ in $(seq 100); do [ -s run.pid ] && break; sleep 0.1; done; cat run.pid')
    for _ in $(seq 300); do
        if status=$(pi smartbin status --json 2>/dev/null) && [ "$(json_field running <<<"$status")" = True ]; then
            up=1 && break
        fi
        pi test -d "/proc/$pid" || die "smartbin run on the Pi stopped: $(pi tail -n3 /var/lib/smartbin/run.log)"
        sleep 1
    done
    [ -n "$up" ] || die "smartbin run on the Pi is not up after 300 s"
    say "   running, pid $pid, model $(json_field model_path <<<"$status")"

    say "3. smartbin deploy of the bundled default model ($version), reload by SIGHUP"
    "$SMARTBIN" deploy "$REPO/device/data/default-model" vpi "${common[@]}" \
        --reload-command "sudo -n -u smartbin kill -HUP $pid" --health-timeout 300 --command-timeout 300
    # The daemon ran the same version from the wheel before: its path shows the reload happened.
    for _ in $(seq 300); do
        path=$(pi smartbin status --json | json_field model_path)
        [[ $path != /var/lib/smartbin/models/* ]] || break
        sleep 1
    done
    [[ $path == /var/lib/smartbin/models/* ]] || die "the daemon did not reload the deployed model (runs $path)"

    say "4. smartbin simulate --fast --json, here and on the Pi"
    "$SMARTBIN" simulate --fast --json --config "$CONFIG" --model "$REPO/device/data/default-model" \
        >"$WORK/here.jsonl" 2>"$WORK/here.log" || die "simulate here failed: $(tail -n1 "$WORK/here.log")"
    if ! pi smartbin simulate --fast --json >"$WORK/pi.jsonl" 2>"$WORK/pi.log"; then
        tail -n5 "$WORK/pi.log" >&2
        die "simulate on the Pi failed (its last lines above)"
    fi
    tail -n1 "$WORK/pi.log"
    cp "$WORK/here.jsonl" "$WORK/pi.jsonl" "$CACHE/" # the last run's items, to look into a difference
    "$HERE_PYTHON" "$REPO/scripts/virtual_pi/compare.py" "$CACHE/here.jsonl" "$CACHE/pi.jsonl" --tolerance "$TOLERANCE"

    say "5. smartbin status on the Pi"
    pi smartbin status
    status=$(pi smartbin status --json)
    if [ "$(json_field model_version <<<"$status")" != "$version" ] ||
        [[ "$(json_field model_path <<<"$status")" != /var/lib/smartbin/models/* ]]; then
        die "smartbin status on the Pi does not report the deployed $version: $status"
    fi
}

check_host
ensure_binfmt
base_root
WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/smartbin-vpi.XXXXXX")
start_pi
end_to_end
say "the virtual Pi ($RELEASE, arm64) passed: bootstrap, run, deploy, simulate, status"
