# Helpers shared by the benchmark scripts (sourced, not run). The sourcing script
# sets BENCH (the prefix of its log lines) and NO_INSTALL first.

log() { printf '[%s] %s\n' "$BENCH" "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

# ensure_tools CMD:PACKAGE...: installs the packages of the commands missing, with
# apt-get (sudo when not root), or fails when NO_INSTALL=1.
ensure_tools() {
    local missing=() pair cmd
    for pair in "$@"; do
        cmd=${pair%%:*}
        command -v "$cmd" >/dev/null 2>&1 || [[ -x /usr/sbin/$cmd ]] || missing+=("${pair#*:}")
    done
    ((${#missing[@]} == 0)) && return 0
    [[ ${NO_INSTALL:-0} == 1 ]] && die "missing: ${missing[*]} (NO_INSTALL=1)"
    command -v apt-get >/dev/null 2>&1 || die "missing: ${missing[*]}, and no apt-get to install them"
    local sudo=()
    if [[ $(id -u) != 0 ]]; then
        command -v sudo >/dev/null 2>&1 || die "missing: ${missing[*]}; run as root or install them"
        sudo=(sudo)
    fi
    log "installing with apt-get: ${missing[*]}"
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >&2
}

used_ports=" "
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# free_port: a port below the usual ephemeral range (32768+), so that the load
# generators' and the proxies' own outgoing connections cannot have taken it, and
# none that nothing listens on yet was handed out before by this same shell.
free_port() {
    local p i
    for ((i = 0; i < 200; i++)); do
        p=$((20000 + RANDOM % 12000))
        [[ $used_ports == *" $p "* ]] && continue
        port_open "$p" && continue
        used_ports+="$p "
        echo "$p"
        return 0
    done
    die "no free port found"
}
