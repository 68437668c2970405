#!/usr/bin/env bash
# Debian's HAProxy 3.0 (trixie) and 3.2 (sid) binaries, runnable on this Debian 12 machine, for
# running the tests against newer HAProxy versions than the system's 2.6:
#
#   HAPROXYCTL_HAPROXY=$(bash scripts/haproxy-binaries.sh 3.2) .venv/bin/python -m pytest tests/integration
#
# Usage: scripts/haproxy-binaries.sh [--refresh] [VERSION...]    VERSION: 3.0, 3.2 (default: both)
# Prints the path of each binary on stdout, one a line, in the order asked; progress on stderr.
#
# Why it works this way:
#  - No change to the machine: the packages are fetched through a private apt configuration (its
#    own sources file, state, lists and cache dirs, Debian's archive keyring) and unpacked with
#    `dpkg -x`; nothing is installed and the machine's own apt sources and package lists are
#    left as they are. (The one exception: Debian's `patchelf` is installed with apt-get when it
#    is missing, as scripts/setup.sh installs haproxy.)
#  - Outside the checkout: everything lives in ${XDG_CACHE_HOME:-$HOME/.cache}/haproxyctl
#    (apt/ for the private apt dirs, haproxy-3.0/ and haproxy-3.2/ for the unpacked roots), so
#    a clean clone stays clean and the download is shared by every checkout of the machine.
#  - Newer libraries than Debian 12 has: HAProxy 3.0/3.2 from trixie/sid need that release's
#    libc, OpenSSL, PCRE2, Lua... The binary is copied and the copy patched (patchelf
#    --set-interpreter/--set-rpath, DT_RPATH so it applies to the libraries' own dependencies
#    too) to use the unpacked root's loader and libraries. The patched binary carries those
#    paths itself, so HAProxy's master-worker re-exec (a reload) starts the same binary with
#    the same libraries, with no LD_LIBRARY_PATH to lose on the way.
#  - Cached and idempotent: a second run with the binaries present only checks that each runs
#    (`haproxy -vv`): well under a second. --refresh fetches the current Debian versions again.
#  - Binary packages first. Only if they cannot be had (no package, no download), the Debian
#    source package is fetched through the same private configuration (`apt-get source`) and
#    built with `nice` against this machine's own libraries (build dependencies installed
#    with apt-get, like patchelf). Which route worked is printed, and kept in ROOT/route.
set -euo pipefail

CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/haproxyctl
ARCH=$(dpkg --print-architecture)
MULTIARCH=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo x86_64-linux-gnu)
MIRROR=${HAPROXYCTL_DEBIAN_MIRROR:-http://deb.debian.org/debian}
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

log() { echo "haproxy-binaries: $*" >&2; }
die() { log "error: $*"; exit 1; }

refresh=""
versions=()
for arg in "$@"; do
    case "$arg" in
        --refresh) refresh=1 ;;
        -h|--help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        3.0|3.2) versions+=("$arg") ;;
        *) die "unknown argument '$arg' (versions: 3.0, 3.2)" ;;
    esac
done
[ ${#versions[@]} -gt 0 ] || versions=(3.0 3.2)

suite_of() {
    case "$1" in
        3.0) echo trixie ;;
        3.2) echo sid ;;
    esac
}

# Runs the binary and checks it is the version asked; prints its first -vv line on stderr.
check_binary() { # VERSION BINARY
    local out
    out=$("$2" -vv 2>&1) || { log "$2 -vv failed: $(printf '%s' "$out" | head -3)"; return 1; }
    case "$(printf '%s\n' "$out" | head -1)" in
        "HAProxy version $1."*) ;;
        *) log "$2 is not HAProxy $1: $(printf '%s\n' "$out" | head -1)"; return 1 ;;
    esac
    log "$1: $(printf '%s\n' "$out" | head -1)"
}

# --- fast path: everything already there ---------------------------------------------------
if [ -z "$refresh" ]; then
    fast=1
    for v in "${versions[@]}"; do
        [ -f "$CACHE/haproxy-$v/complete" ] && [ -x "$CACHE/haproxy-$v/haproxy" ] || { fast=""; break; }
    done
    if [ -n "$fast" ]; then
        for v in "${versions[@]}"; do
            check_binary "$v" "$CACHE/haproxy-$v/haproxy" || { fast=""; break; }
        done
    fi
    if [ -n "$fast" ]; then
        for v in "${versions[@]}"; do echo "$CACHE/haproxy-$v/haproxy"; done
        exit 0
    fi
fi

# --- slow path -----------------------------------------------------------------------------
mkdir -p "$CACHE"
# One run at a time per cache (two test runs starting together would unpack over each other).
exec 9>"$CACHE/.lock"
flock 9

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo "$@"
    else die "needs root to run: $*"
    fi
}

need_patchelf() {
    command -v patchelf >/dev/null 2>&1 && return 0
    log "installing patchelf (apt-get)..."
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq patchelf >/dev/null
}

# The private apt configuration: its own sources, state, lists and cache; nothing of the
# machine's apt is read but its apt.conf.d (proxy, validity settings) and the archive keyring.
APTDIR=$CACHE/apt
apt_opts=(
    -o "Dir::Etc::SourceList=$APTDIR/sources.list"
    -o "Dir::Etc::SourceParts=/dev/null"
    -o "Dir::Etc::Preferences=/dev/null"
    -o "Dir::Etc::PreferencesParts=/dev/null"
    -o "Dir::State=$APTDIR/state"
    -o "Dir::State::status=$APTDIR/state/status"
    -o "Dir::Cache=$APTDIR/cache"
    -o "Dir::Cache::pkgcache=$APTDIR/cache/pkgcache.bin"
    -o "Dir::Cache::srcpkgcache=$APTDIR/cache/srcpkgcache.bin"
    -o "Debug::NoLocking=1"
    -o "APT::Sandbox::User=root"
    -o "Acquire::Languages=none"
)
private_apt_get() { apt-get -q "${apt_opts[@]}" "$@"; }
private_apt_cache() { apt-cache "${apt_opts[@]}" "$@"; }

apt_updated=""
# The private sources: trixie and sid, binary indexes; "src" adds their deb-src indexes (the
# source route only: they are big, and may not be served where binary packages are).
private_update() { # [src]
    local want=${1:-bin}
    [ "$apt_updated" != "$want" ] && [ "$apt_updated" != src ] || return 0
    mkdir -p "$APTDIR/state/lists/partial" "$APTDIR/cache/archives/partial"
    touch "$APTDIR/state/status"
    {
        for s in trixie sid; do
            echo "deb [signed-by=$KEYRING] $MIRROR $s main"
            [ "$want" != src ] || echo "deb-src [signed-by=$KEYRING] $MIRROR $s main"
        done
    } >"$APTDIR/sources.list"
    log "apt-get update (private configuration in $APTDIR)..."
    private_apt_get update >"$APTDIR/update.log" 2>&1 || log "apt-get update reported errors (see $APTDIR/update.log)"
    apt_updated=$want
}

# Names of the packages in the Depends/Pre-Depends of PKG (as served by SUITE) that are shared
# libraries: first alternative, version constraints dropped. Others (adduser, lsb-base,
# init-system-helpers, gcc-N-base, openssl-provider-legacy) are not needed to run the binary.
lib_depends() { # SUITE PKG
    private_apt_cache -o "APT::Default-Release=$1" show --no-all-versions "$2" 2>/dev/null \
        | sed -n 's/^\(Pre-\)\{0,1\}Depends: //p' | tr ',' '\n' \
        | sed 's/|.*//; s/([^)]*)//g; s/:any//; s/[[:space:]]//g' \
        | grep -E '^(lib|zlib1g)' || true
}

# The binary route: haproxy and the closure of its library Depends, downloaded and unpacked.
binary_route() { # VERSION ROOTDIR
    local v=$1 dir=$2 suite pkgs queue p d deb ver
    suite=$(suite_of "$v")
    private_update
    ver=$(private_apt_cache -o "APT::Default-Release=$suite" show --no-all-versions haproxy 2>/dev/null \
        | sed -n 's/^Version: //p')
    case "$ver" in
        "$v".*) ;;
        "") log "$suite: no haproxy binary package"; return 1 ;;
        *) log "$suite: haproxy is $ver, not $v.x"; return 1 ;;
    esac
    pkgs=(haproxy)
    queue=(haproxy)
    while [ ${#queue[@]} -gt 0 ]; do
        p=${queue[0]}
        queue=("${queue[@]:1}")
        for d in $(lib_depends "$suite" "$p"); do
            case " ${pkgs[*]} " in *" $d "*) continue ;; esac
            pkgs+=("$d")
            queue+=("$d")
        done
    done
    log "$v: haproxy $ver from $suite with ${pkgs[*]:1}"
    mkdir -p "$dir/debs"
    rm -rf "$dir/debs"
    mkdir -p "$dir/debs"
    (cd "$dir/debs" && private_apt_get -o "APT::Default-Release=$suite" download "${pkgs[@]}" \
        >"$dir/download.log" 2>&1) || { log "apt-get download failed:"; tail -5 "$dir/download.log" >&2; return 1; }
    rm -rf "$dir/root"
    mkdir -p "$dir/root"
    for deb in "$dir/debs/"*.deb; do
        dpkg -x "$deb" "$dir/root"
    done
    (cd "$dir/debs" && dpkg-deb -f haproxy_*.deb Package Version) >"$dir/packages"
    for deb in "$dir/debs/"*.deb; do
        case "${deb##*/}" in haproxy_*) ;; *) dpkg-deb -f "$deb" Package Version >>"$dir/packages" ;; esac
    done
    rm -rf "$dir/debs"  # unpacked; "packages" says what they were
    make_runnable "$dir" "$dir/root/usr/sbin/haproxy"
    echo binary >"$dir/route"
}

# The loader of the unpacked root: a real file inside it (lib64/ld-linux... may be a symlink
# to an absolute path, which would be the machine's own loader).
root_loader() { # ROOT
    local cand
    for cand in "$1/usr/lib/$MULTIARCH/ld-linux-x86-64.so.2" "$1/lib/$MULTIARCH/ld-linux-x86-64.so.2" \
                "$1/usr/lib64/ld-linux-x86-64.so.2" "$1/lib64/ld-linux-x86-64.so.2"; do
        if [ -f "$cand" ] && [ ! -L "$cand" ]; then echo "$cand"; return 0; fi
    done
    return 1
}

make_runnable() { # DIR SOURCE-BINARY
    local dir=$1 src=$2 root=$1/root loader missing
    need_patchelf
    # Root-relative symlinks are fine, absolute ones would lead out of the root: re-point the
    # usual lib64 one (Debian ships /lib64/ld-linux-x86-64.so.2 -> /lib/x86_64-linux-gnu/...).
    loader=$(root_loader "$root") || die "no loader in $root"
    if [ "$loader" != "$root/lib64/ld-linux-x86-64.so.2" ]; then
        mkdir -p "$root/lib64"
        ln -sfn "$loader" "$root/lib64/ld-linux-x86-64.so.2"
    fi
    cp "$src" "$dir/haproxy.new"
    patchelf --set-interpreter "$root/lib64/ld-linux-x86-64.so.2" --force-rpath \
        --set-rpath "$root/lib/$MULTIARCH:$root/usr/lib/$MULTIARCH" "$dir/haproxy.new"
    # Every library must come from the root: one from the machine (older libc) would fail at
    # run time, or worse, only in some code path.
    missing=$(LD_TRACE_LOADED_OBJECTS=1 "$dir/haproxy.new" 2>&1 | grep -v -e "$root/" -e 'linux-vdso' || true)
    if [ -n "$missing" ]; then
        log "libraries not taken from $root:"
        printf '%s\n' "$missing" >&2
        return 1
    fi
    mv "$dir/haproxy.new" "$dir/haproxy"
}

# The fallback: Debian's source package, built with nice against this machine's libraries.
source_route() { # VERSION ROOTDIR
    local v=$1 dir=$2 suite srcdir
    suite=$(suite_of "$v")
    private_update src
    log "$v: trying the source package from $suite (apt-get source)..."
    rm -rf "$dir/src"
    mkdir -p "$dir/src"
    (cd "$dir/src" && private_apt_get -o "APT::Default-Release=$suite" source --download-only "haproxy/$suite" \
        >"$dir/source.log" 2>&1) || { log "apt-get source failed:"; tail -5 "$dir/source.log" >&2; return 1; }
    command -v dpkg-source >/dev/null 2>&1 || as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dpkg-dev >/dev/null
    (cd "$dir/src" && dpkg-source -x --no-check ./*.dsc build >>"$dir/source.log" 2>&1) || { log "dpkg-source failed"; return 1; }
    log "installing build dependencies (apt-get: libssl-dev libpcre2-dev liblua5.4-dev libcrypt-dev)..."
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq build-essential libssl-dev \
        libpcre2-dev liblua5.4-dev libcrypt-dev >/dev/null
    srcdir=$dir/src/build
    log "$v: building (nice, $(nproc) jobs; several minutes)..."
    (cd "$srcdir" && nice -n 19 make -j"$(nproc)" TARGET=linux-glibc USE_OPENSSL=1 USE_PCRE2=1 \
        USE_PCRE2_JIT=1 USE_LUA=1 LUA_INC=/usr/include/lua5.4 USE_PROMEX=1 \
        >"$dir/build.log" 2>&1) || { log "build failed (see $dir/build.log)"; return 1; }
    cp "$srcdir/haproxy" "$dir/haproxy"
    echo source >"$dir/route"
}

for v in "${versions[@]}"; do
    dir=$CACHE/haproxy-$v
    mkdir -p "$dir"
    rm -f "$dir/complete"
    started=$SECONDS
    if binary_route "$v" "$dir"; then
        log "$v: binary packages unpacked and patched ($((SECONDS - started)) s)"
    else
        log "$v: binary packages could not be had; falling back to the source package"
        source_route "$v" "$dir" || die "$v: neither the binary nor the source package route worked"
        log "$v: built from the source package ($((SECONDS - started)) s)"
    fi
    check_binary "$v" "$dir/haproxy" || die "$v: $dir/haproxy does not run"
    log "$v: route: $(cat "$dir/route")"
    touch "$dir/complete"
done
rm -f "$APTDIR/cache/"*.bin  # apt's binary caches of the indexes: rebuilt when needed
for v in "${versions[@]}"; do echo "$CACHE/haproxy-$v/haproxy"; done
