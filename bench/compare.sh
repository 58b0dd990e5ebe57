#!/usr/bin/env bash
# bench/compare.sh: side-by-side benchmark of Treff's example server,
# Prosody 0.12 and ejabberd 23.01 (and a raw TLS relay as a floor), driven by
# cmd/treff-load on loopback. See bench/README.md.
#
#   bench/compare.sh [-quick] [-only LIST] [-keep]
#
#   -quick      1 000 idle sessions and 5 s runs (a few minutes in all)
#   -only LIST  comma-separated subset of: treff,prosody,ejabberd,relay
#   -keep       keep the work directory (configs, logs, raw outputs)
#
# Run as root (it installs Debian packages if missing and runs Prosody and
# ejabberd as their own users). Each server is pinned to CPU 0 and the load
# tool to CPU 1. Writes bench/results/DATE.md and prints the same to stdout.
set -u -o pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CMDLINE="bench/compare.sh${*:+ $*}"
QUICK=0
ONLY="treff,prosody,ejabberd,relay"
KEEP=0
while [ $# -gt 0 ]; do
	case $1 in
	-quick | --quick) QUICK=1 ;;
	-only | --only) ONLY=${2:?-only needs a list}; shift ;;
	-keep | --keep) KEEP=1 ;;
	-h | -help | --help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "compare.sh: unknown argument $1" >&2; exit 2 ;;
	esac
	shift
done

# ---- parameters ------------------------------------------------------------
DOMAIN=localhost
PASSWORD=bench-password-1
MECH=${BENCH_MECH:-SCRAM-SHA-1} # Prosody 0.12 has no SCRAM-SHA-256
TREFF_PORT=${TREFF_PORT:-15222}
PROSODY_PORT=${PROSODY_PORT:-25222}
PROSODY_BASE=${PROSODY_BASE:-2529} # Prosody's other ports: 25290 http, 25291 https, 25297 components, 25299 s2s
EJABBERD_PORT=${EJABBERD_PORT:-30222}
RELAY_PORT=${RELAY_PORT:-14222}
SERVER_CPU=0
LOAD_CPU=1
WANT_NOFILE=65536
LOGIN_USERS=20
CHAT_USERS=20     # 10 pairs
CHAT_RATE=50      # messages/s per client for the latency run (1 000 msg/s in all)
PRESENCE_USERS=100
PRESENCE_CONTACTS=20
MUC_USERS=20
if [ $QUICK = 1 ]; then
	RUN=5s IDLE_USERS=1000 IDLE_HOLD=10s PRESENCE_USERS=40
else
	RUN=10s IDLE_USERS=10000 IDLE_HOLD=30s
fi
RUN_S=${RUN%s}

exec 9>&2 # the log, also from traps run inside redirected functions
log() { printf '%s compare: %s\n' "$(date +%H:%M:%S)" "$*" >&9; }
die() { log "FATAL: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (installs packages, runs servers as their users)"
[ "$(nproc)" -ge 2 ] || die "needs 2 CPUs (server on CPU $SERVER_CPU, load on CPU $LOAD_CPU)"

# ---- work directory and cleanup ---------------------------------------------
WORK=$(mktemp -d /tmp/treff-bench.XXXXXX) || die "mktemp"
chmod 755 "$WORK"
PIDS=()         # processes to kill on exit (server PIDs and their launchers)
EPMD_BEFORE=$(pgrep -x epmd | tr '\n' ' ')
EPMD_OURS=""    # the epmd that our ejabberd started, if none ran before

stop_pid() { # PID: TERM, wait up to 10 s, then KILL
	local p=$1 i
	kill -0 "$p" 2>/dev/null || return 0
	kill -TERM "$p" 2>/dev/null
	for i in $(seq 100); do kill -0 "$p" 2>/dev/null || return 0; sleep 0.1; done
	kill -KILL "$p" 2>/dev/null
}

# bounded SECONDS CMD...: run CMD with a time limit, in the background so
# that a signal to this script is handled at once (bash runs traps only
# between foreground commands).
CHILD=""
bounded() {
	timeout -k 5 "$@" <&0 &
	CHILD=$!
	wait $CHILD
	local rc=$?
	CHILD=""
	return $rc
}

cleanup() {
	local rc=$? p
	trap - EXIT INT TERM
	[ -n "$CHILD" ] && stop_pid "$CHILD"
	for p in "${PIDS[@]+"${PIDS[@]}"}"; do stop_pid "$p"; done
	# epmd is started by ejabberd and outlives it: stop the one it started.
	for p in $EPMD_OURS; do stop_pid "$p"; done
	if [ $KEEP = 1 ]; then log "work directory kept: $WORK"; else rm -rf "$WORK"; fi
	exit $rc
}
trap cleanup EXIT
trap 'log interrupted; exit 130' INT TERM

# ---- install and build -------------------------------------------------------
want() { case ",$ONLY," in *",$1,"*) return 0 ;; esac; return 1; }

PKGS=()
command -v openssl >/dev/null || PKGS+=(openssl)
command -v taskset >/dev/null || PKGS+=(util-linux)
command -v jq >/dev/null || PKGS+=(jq)
if want prosody; then
	command -v prosody >/dev/null || PKGS+=(prosody)
	dpkg -s lua-unbound >/dev/null 2>&1 || PKGS+=(lua-unbound)
	dpkg -s lua-event >/dev/null 2>&1 || PKGS+=(lua-event)
fi
want ejabberd && ! command -v ejabberdctl >/dev/null && PKGS+=(ejabberd)
if [ ${#PKGS[@]} -gt 0 ]; then
	log "installing ${PKGS[*]}"
	apt-get update -qq >&2 || die "apt-get update failed"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${PKGS[@]}" >&2 || die "apt-get install failed"
fi
command -v go >/dev/null || die "go not found"
for s in prosody ejabberd; do
	want $s && pgrep -u $s >/dev/null 2>&1 && log "warning: a system $s is running (the package may have started it); it shares the CPUs"
done

mkdir -p "$WORK/bin"
log "building in $WORK/bin"
(cd "$ROOT" && go build -o "$WORK/bin/treff-community" ./examples/community) || die "build examples/community"
(cd "$ROOT" && go build -o "$WORK/bin/treff-load" ./cmd/treff-load) || die "build cmd/treff-load"
HAVE_RELAY=0
if want relay && [ -d "$ROOT/bench/relay" ]; then
	(cd "$ROOT" && go build -o "$WORK/bin/relay" ./bench/relay) && HAVE_RELAY=1 || log "warning: bench/relay does not build; relay skipped"
fi
LOAD="$WORK/bin/treff-load"
REV=$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown) # what was built

# What this version of the load tool can do (flags land over time).
LOAD_HELP=$("$LOAD" -h 2>&1)
has_flag() { printf '%s\n' "$LOAD_HELP" | grep -Eq -- "^ +-$1( |$)"; }
has_scenario() { printf '%s\n' "$LOAD_HELP" | grep -A1 -E '^ +-scenario' | grep -qw "$1"; }
JSON=0; has_flag json && JSON=1
TREFF_BATCH=0; "$WORK/bin/treff-community" help 2>&1 | grep -q 'adduser -batch' && TREFF_BATCH=1
ACCOUNTS=${BENCH_ACCOUNTS:-admin} # admin: each server's admin tool; register: XEP-0077 via treff-load -register
if [ "$ACCOUNTS" = register ] && ! has_flag register; then
	log "warning: treff-load has no -register yet; using the admin tools"; ACCOUNTS=admin
fi

# ---- open files ------------------------------------------------------------
HARD_NOFILE=$(ulimit -Hn)
NOFILE=$WANT_NOFILE
if [ "$HARD_NOFILE" != unlimited ] && [ "$HARD_NOFILE" -lt $WANT_NOFILE ]; then
	NOFILE=$HARD_NOFILE
	log "warning: hard open-file limit is $HARD_NOFILE (< $WANT_NOFILE) and cannot be raised here (no CAP_SYS_RESOURCE); using $NOFILE"
fi
ulimit -n "$NOFILE" || die "ulimit -n $NOFILE"
[ "$NOFILE" -gt $((IDLE_USERS + 1000)) ] || die "open-file limit $NOFILE too low for $IDLE_USERS idle sessions"

check_nofile() { # PID NAME
	local got
	got=$(awk '/^Max open files/ {print $4}' "/proc/$1/limits" 2>/dev/null)
	[ "$got" = "$NOFILE" ] || log "warning: $2 (pid $1) has an open-file limit of ${got:-?}, wanted $NOFILE"
	log "$2: pid $1, open files $got, CPU affinity $(taskset -cp "$1" 2>/dev/null | sed 's/.*: //')"
}

# ---- certificate -------------------------------------------------------------
# RSA-2048 by default (the usual certificate); BENCH_KEY=ec for ECDSA P-256,
# which makes the server's half of each TLS handshake several times cheaper.
case ${BENCH_KEY:-rsa} in
rsa) KEYSPEC=(-newkey rsa:2048) KEYDESC="RSA-2048" ;;
ec) KEYSPEC=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1) KEYDESC="ECDSA P-256" ;;
*) die "BENCH_KEY must be rsa or ec" ;;
esac
openssl req -x509 "${KEYSPEC[@]}" -nodes -days 7 -subj "/CN=$DOMAIN" \
	-addext "subjectAltName=DNS:$DOMAIN,DNS:conference.$DOMAIN" \
	-keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null || die "openssl"

# Listening ports must lie outside the ephemeral range: treff-load's
# thousands of connections leave TIME_WAIT sockets on ephemeral ports, and
# a server then cannot bind such a port ("address already in use").
read -r EPH_LO EPH_HI </proc/sys/net/ipv4/ip_local_port_range
for p in $TREFF_PORT $PROSODY_PORT ${PROSODY_BASE}0 ${PROSODY_BASE}9 $EJABBERD_PORT $RELAY_PORT; do
	[ "$p" -ge "$EPH_LO" ] && [ "$p" -le "$EPH_HI" ] && log "warning: port $p is in the ephemeral range $EPH_LO-$EPH_HI; binding it may fail after a load run"
done
port_free() { ! ss -Hltn "sport = :$1" | grep -q .; }
wait_port() { # PORT SECONDS PID
	local i
	for i in $(seq $(($2 * 10))); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		kill -0 "$3" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}

# ---- results -----------------------------------------------------------------
ROWS="$WORK/rows.tsv"
: >"$ROWS"
RAW="$WORK/raw.txt"
: >"$RAW"

# summarize FILE: the load tool's report (JSON with -json, else its text
# form) as key=value lines with the same keys.
summarize() {
	if [ $JSON = 1 ] && jq -e . "$1" >/dev/null 2>&1; then
		jq -r '{ops, unit, rate, errors, sessions, p50_ms, p99_ms, rss_per_session_kib, cpu_s, cpu_per_op_us, first_error}
			| to_entries[] | "\(.key)=\(.value // "")"' "$1"
		return
	fi
	LC_ALL=C awk '
	function ms(s,   t, n) { # Go duration -> milliseconds
		t = 0
		while (match(s, /^[0-9.]+/)) {
			n = substr(s, 1, RLENGTH) + 0; s = substr(s, RLENGTH + 1)
			if (s ~ /^ms/) { t += n; s = substr(s, 3) }
			else if (s ~ /^µs/) { t += n / 1000; s = substr(s, length("µs") + 1) }
			else if (s ~ /^us/) { t += n / 1000; s = substr(s, 3) }
			else if (s ~ /^ns/) { t += n / 1e6; s = substr(s, 3) }
			else if (s ~ /^h/) { t += n * 3600000; s = substr(s, 2) }
			else if (s ~ /^m/) { t += n * 60000; s = substr(s, 2) }
			else if (s ~ /^s/) { t += n * 1000; s = substr(s, 2) }
			else break
		}
		return t
	}
	{
		for (i = 1; i <= NF; i++) {
			k = $i; sub(/=.*/, "", k); v = $i; sub(/^[^=]*=/, "", v)
			if (k == "ops") { o["ops"] = v; if (match($0, /\([a-z ]+\)/)) o["unit"] = substr($0, RSTART + 1, RLENGTH - 2) }
			else if (k == "rate") { sub(/\/s$/, "", v); o["rate"] = v }
			else if (k == "errors") o["errors"] = v
			else if (k == "p50") o["p50_ms"] = ms(v)
			else if (k == "p99") o["p99_ms"] = ms(v)
			else if (k == "rss_per_session") { sub(/KiB$/, "", v); o["rss_per_session_kib"] = v }
			else if (k == "cpu") o["cpu_s"] = ms(v) / 1000
			else if (k == "cpu_per_op") o["cpu_per_op_us"] = ms(v) * 1000
		}
		if ($0 ~ /^first_error=/) { v = $0; sub(/^first_error=/, "", v); o["first_error"] = v }
	}
	END { for (k in o) print k "=" o[k] }' "$1"
}

# row SERVER SCENARIO CLIENTS STATUS FILE: append a result row.
row() {
	local server=$1 scen=$2 clients=$3 status=$4 file=${5:-} kv
	local ops="" unit="" rate="" errors="" p50="" p99="" rss="" cpu="" cpuop="" ferr=""
	if [ -n "$file" ] && [ -s "$file" ]; then
		while IFS= read -r kv; do
			case $kv in
			ops=*) ops=${kv#*=} ;; unit=*) unit=${kv#*=} ;; rate=*) rate=${kv#*=} ;; errors=*) errors=${kv#*=} ;;
			p50_ms=*) p50=${kv#*=} ;; p99_ms=*) p99=${kv#*=} ;;
			rss_per_session_kib=*) rss=${kv#*=} ;; cpu_s=*) cpu=${kv#*=} ;;
			cpu_per_op_us=*) cpuop=${kv#*=} ;; first_error=*) ferr=$(printf %s "${kv#*=}" | tr '\t|' ' /') ;;
			esac
		done < <(summarize "$file")
	fi
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
		"$server" "$scen" "$clients" "$status" "$ops" "$rate" "$errors" "$p50" "$p99" "$rss" "$cpu" "$cpuop" "$unit" "$ferr" >>"$ROWS"
}

# load SERVER LABEL PID TIMEOUT_S ARGS...: one bounded treff-load run on
# CPU $LOAD_CPU, recorded as a row.
load() {
	local server=$1 label=$2 pid=$3 limit=$4 out rc users
	shift 4
	out="$WORK/out-$server-$(printf %s "$label" | tr -c 'a-zA-Z0-9_-' _).txt"
	users=$(printf '%s\n' "$@" | awk 'p {print; exit} $0 == "-users" {p = 1}')
	if ! kill -0 "$pid" 2>/dev/null; then
		log "$server $label: server not running, skipped"
		row "$server" "$label" "$users" "server down"
		return
	fi
	local args=("$@" -pid "$pid" -domain "$DOMAIN" -password "$PASSWORD" -mech "$MECH")
	[ $JSON = 1 ] && args+=(-json)
	log "$server $label: treff-load ${args[*]}"
	bounded "$limit" taskset -c $LOAD_CPU "$LOAD" "${args[@]}" >"$out" 2>"$out.err"
	rc=$?
	{
		echo "### $server $label"
		echo "treff-load ${args[*]}"
		cat "$out" "$out.err"
		echo
	} >>"$RAW"
	sed 's/^/    /' "$out" >&2
	if ! kill -0 "$pid" 2>/dev/null; then
		log "$server $label: the server died during the run (exit $rc)"
		row "$server" "$label" "$users" "server died"
	elif [ $rc = 0 ]; then
		row "$server" "$label" "$users" ok "$out"
	elif [ $rc = 124 ] || [ $rc = 137 ]; then
		log "$server $label: timed out after ${limit}s"
		row "$server" "$label" "$users" "timeout ${limit}s" "$out"
	else
		log "$server $label: exit $rc: $(tail -1 "$out.err")"
		row "$server" "$label" "$users" "exit $rc" "$out"
	fi
}

# users PREFIX N: "LOCALPART PASSWORD" lines for PREFIX0..PREFIX(N-1), the
# accounts treff-load uses with -prefix PREFIX -users N.
users() { "$LOAD" -print-users -prefix "$1" -users "$2" -domain "$DOMAIN" | sed "s/@.*/ $PASSWORD/"; }

# Account groups: a fresh prefix per scenario, so that no run sees offline
# messages or roster entries left by another.
account_groups() { # MUC?
	echo "login $LOGIN_USERS"
	echo "chat $CHAT_USERS"
	echo "half $CHAT_USERS"
	echo "rate $CHAT_USERS"
	echo "idle $IDLE_USERS"
	has_scenario presence && echo "pres $PRESENCE_USERS"
	[ "$1" = yes ] && has_scenario muc && echo "muc $MUC_USERS"
}

create_accounts() { # SERVER CREATE_SCRIPT MUC?
	local n t0 g c
	[ "$ACCOUNTS" = register ] && return 0
	t0=$(date +%s.%N)
	n=$(account_groups "$3" | while read -r g c; do users "$g" "$c"; done | tee "$WORK/$1-accounts.txt" | wc -l)
	log "$1: creating $n accounts with $(basename "$2")"
	bounded 900 "$2" <"$WORK/$1-accounts.txt" >"$WORK/$1-create.log" 2>&1 || {
		log "$1: account creation failed: $(tail -3 "$WORK/$1-create.log")"
		return 1
	}
	ACCOUNT_NOTES+="- $1: $n accounts created in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}') s with \`$(sed -n 's/^# cmd: //p' "$2")\`"$'\n'
}
ACCOUNT_NOTES=""

# scenarios SERVER PID PORT MUC_ROOM: the scenario runs against one server.
scenarios() {
	local s=$1 pid=$2 addr=127.0.0.1:$3 room=$4 reg=()
	[ "$ACCOUNTS" = register ] && reg=(-register)
	load "$s" login "$pid" $((RUN_S + 60)) -addr "$addr" -scenario login -prefix login -users $LOGIN_USERS -duration $RUN "${reg[@]+"${reg[@]}"}"
	load "$s" chat "$pid" $((RUN_S + 60)) -addr "$addr" -scenario chat -prefix chat -users $CHAT_USERS -duration $RUN "${reg[@]+"${reg[@]}"}"
	# Latency at half of this server's own peak rate (the p99 target).
	local peak half
	peak=$(jq -r '.rate // empty' "$WORK/out-$s-chat.txt" 2>/dev/null)
	half=$(awk -v r="${peak:-0}" -v n=$CHAT_USERS 'BEGIN {printf "%d", r / 2 / n}')
	if [ "${half:-0}" -gt 0 ]; then
		load "$s" "chat@half" "$pid" $((RUN_S + 60)) -addr "$addr" -scenario chat -prefix half -users $CHAT_USERS -duration $RUN -rate "$half" "${reg[@]+"${reg[@]}"}"
	fi
	load "$s" "chat@${CHAT_RATE}/s" "$pid" $((RUN_S + 60)) -addr "$addr" -scenario chat -prefix rate -users $CHAT_USERS -duration $RUN -rate $CHAT_RATE "${reg[@]+"${reg[@]}"}"
	# idle: logins at >= 20/s (and as many registrations and removals with
	# -register), then the hold; the report comes after the hold.
	load "$s" idle "$pid" $((IDLE_USERS / 20 * ${#reg[@]} * 4 + IDLE_USERS / 20 + ${IDLE_HOLD%s} + 60)) -addr "$addr" -scenario idle -prefix idle -users $IDLE_USERS -duration $IDLE_HOLD "${reg[@]+"${reg[@]}"}"
	if has_scenario presence && has_flag contacts; then
		load "$s" "presence" "$pid" $((RUN_S + 120)) -addr "$addr" -scenario presence -prefix pres -users $PRESENCE_USERS -contacts $PRESENCE_CONTACTS -duration $RUN "${reg[@]+"${reg[@]}"}"
	else
		row "$s" presence "" "not in treff-load yet"
	fi
	if ! has_scenario muc || ! has_flag room; then
		row "$s" muc "" "not in treff-load yet"
	elif [ -z "$room" ]; then
		row "$s" muc "" "no conference service"
	else
		load "$s" muc "$pid" $((RUN_S + 120)) -addr "$addr" -scenario muc -prefix muc -users $MUC_USERS -room "$room" -duration $RUN "${reg[@]+"${reg[@]}"}"
	fi
}

# script FILE VARS DESCRIPTION < BODY: an account script (stdin: "LOCALPART
# PASSWORD" lines to create, "LOCALPART" lines to delete), also usable as
# treff-load -create-cmd / -delete-cmd.
script() {
	{
		echo '#!/bin/sh'
		echo "# cmd: $3"
		echo "$2"
		cat
	} >"$1"
	chmod +x "$1"
}

VERSIONS=""
ver() { VERSIONS+="- $1"$'\n'; }

# ---- Treff -------------------------------------------------------------------
bench_treff() {
	local d="$WORK/treff" pid vars
	port_free $TREFF_PORT || { log "port $TREFF_PORT busy: Treff skipped"; row treff all "" "port $TREFF_PORT busy"; return; }
	mkdir -p "$d/data" && chmod 700 "$d/data"
	# Account scripts (stdin: "LOCALPART PASSWORD" / "LOCALPART" lines), also
	# usable as treff-load -create-cmd / -delete-cmd.
	vars="BIN='$WORK/bin/treff-community' DATA='$d/data' DOMAIN='$DOMAIN'"
	if [ $TREFF_BATCH = 1 ]; then
		script "$d/create.sh" "$vars" "treff-community -data DIR adduser -batch" <<-'EOF'
			sed "s/^\([^ ]*\)/\1@$DOMAIN/" | exec "$BIN" adduser -data "$DATA" -batch
		EOF
		script "$d/delete.sh" "$vars" "treff-community -data DIR deluser -batch" <<-'EOF'
			sed "s/\$/@$DOMAIN/" | exec "$BIN" deluser -data "$DATA" -batch
		EOF
	else
		script "$d/create.sh" "$vars" "treff-community -data DIR adduser -password PW JID, once per account" <<-'EOF'
			while read -r u p; do "$BIN" adduser -data "$DATA" -password "$p" "$u@$DOMAIN" </dev/null || exit 1; done
		EOF
		script "$d/delete.sh" "$vars" "treff-community -data DIR deluser JID, once per account" <<-'EOF'
			while read -r u; do "$BIN" deluser -data "$DATA" "$u@$DOMAIN" </dev/null || exit 1; done
		EOF
	fi
	# With BENCH_ACCOUNTS=register: registration open, its limits out of the way.
	TREFF_REG=()
	[ "$ACCOUNTS" = register ] && TREFF_REG=(-registration open -registration-per-address 1000000/1h -registration-global 1000000/1h)
	# Abuse limits (package antispam) off, like the others' (no mod_limits,
	# no shaper): the bench accounts are new and write to strangers.
	TREFF_REG+=(-limit-messages none -limit-strangers none -limit-joins none -limit-room-creations none -limit-pre-auth none)
	log "treff: starting on 127.0.0.1:$TREFF_PORT"
	sh -c "ulimit -n $NOFILE && exec taskset -c $SERVER_CPU \"\$0\" \"\$@\"" "$WORK/bin/treff-community" serve \
		-domain "$DOMAIN" -data "$d/data" -c2s 127.0.0.1:$TREFF_PORT -c2s-tls '' -s2s '' -http '' -https '' \
		-cert "$WORK/cert.pem" -key "$WORK/key.pem" -log-level warn "${TREFF_REG[@]+"${TREFF_REG[@]}"}" >"$d/server.log" 2>&1 &
	pid=$!
	PIDS+=("$pid")
	wait_port $TREFF_PORT 20 "$pid" || { log "treff did not start: $(tail -5 "$d/server.log")"; row treff all "" "did not start"; stop_pid "$pid"; return; }
	check_nofile "$pid" treff
	ver "Treff: $REV (examples/community, $(go version | awk '{print $3}'))"
	if create_accounts treff "$d/create.sh" yes; then
		scenarios treff "$pid" $TREFF_PORT "bench@conference.$DOMAIN"
	else
		row treff all "" "account creation failed"
	fi
	stop_pid "$pid"
}

# ---- Prosody -----------------------------------------------------------------
bench_prosody() {
	local d="$WORK/prosody" cfg pid launcher vars
	cfg="$d/prosody.cfg.lua"
	port_free $PROSODY_PORT || { log "port $PROSODY_PORT busy: Prosody skipped"; row prosody all "" "port $PROSODY_PORT busy"; return; }
	mkdir -p "$d/data" "$d/certs"
	cp "$WORK/cert.pem" "$WORK/key.pem" "$d/"
	sed -e "s#@WORK@#$d#g" -e "s#@C2S@#$PROSODY_PORT#g" -e "s#@BASE@#$PROSODY_BASE#g" \
		"$ROOT/bench/prosody/prosody.cfg.lua.in" >"$cfg"
	vars="CFG='$cfg' DOMAIN='$DOMAIN'"
	script "$d/create.sh" "$vars" "prosodyctl --config CFG shell, fed one user:create(JID, PASSWORD) line per account" <<-'EOF'
		in=$(cat)
		want=$(printf '%s\n' "$in" | grep -c .)
		n=$(printf '%s\n' "$in" | sed "s/^\([^ ]*\) \(.*\)\$/user:create(\"\1@$DOMAIN\", \"\2\")/" | prosodyctl --config "$CFG" shell | grep -c 'OK: User created')
		echo "$n of $want created"
		[ "$want" -gt 0 ] && [ "$n" = "$want" ]
	EOF
	script "$d/delete.sh" "$vars" "prosodyctl --config CFG shell, fed one user:delete(JID) line per account" <<-'EOF'
		sed "s/^\(.*\)\$/user:delete(\"\1@$DOMAIN\")/" | prosodyctl --config "$CFG" shell | grep -c 'OK'
	EOF
	chown -R prosody: "$d"
	log "prosody: starting on 127.0.0.1:$PROSODY_PORT"
	runuser -u prosody -- sh -c "ulimit -n $NOFILE && exec taskset -c $SERVER_CPU prosody -F --config '$cfg'" >"$d/stdout.log" 2>&1 &
	launcher=$!
	PIDS+=("$launcher")
	wait_port $PROSODY_PORT 30 "$launcher" || { log "prosody did not start: $(tail -5 "$d/stdout.log" "$d/prosody.log")"; row prosody all "" "did not start"; stop_pid "$launcher"; return; }
	pid=$(cat "$d/prosody.pid" 2>/dev/null)
	[ -n "$pid" ] || pid=$(pgrep -u prosody -f -- "--config $cfg" | head -1)
	[ -n "$pid" ] || { log "prosody: no PID"; row prosody all "" "no PID"; stop_pid "$launcher"; return; }
	PIDS+=("$pid")
	check_nofile "$pid" prosody
	ver "Prosody: $(prosodyctl about 2>/dev/null | sed -n '1s/^Prosody //p') (Debian $(dpkg-query -W -f '${Version}' prosody), $(prosodyctl about 2>/dev/null | awk '/^Lua version/ {print $3, $4}'), network backend epoll)"
	if create_accounts prosody "$d/create.sh" yes; then
		scenarios prosody "$pid" $PROSODY_PORT "bench@conference.$DOMAIN"
	else
		row prosody all "" "account creation failed"
	fi
	stop_pid "$pid"
	stop_pid "$launcher"
	grep -i -E 'error' "$d/prosody.log" 2>/dev/null | grep -v 'certificate directory' | tail -3 | sed 's/^/  prosody.log: /' >&2
}

# ---- ejabberd ----------------------------------------------------------------
bench_ejabberd() {
	local d="$WORK/ejabberd" pid launcher f ejctl vars
	port_free $EJABBERD_PORT || { log "port $EJABBERD_PORT busy: ejabberd skipped"; row ejabberd all "" "port $EJABBERD_PORT busy"; return; }
	if pgrep -u ejabberd -x beam.smp >/dev/null; then
		log "an ejabberd node is already running (node name ejabberd@localhost taken): ejabberd skipped"
		row ejabberd all "" "another ejabberd running"
		return
	fi
	mkdir -p "$d/db" "$d/log"
	cp "$WORK/cert.pem" "$WORK/key.pem" "$d/"
	for f in ejabberd.yml ejabberdctl.cfg; do
		sed -e "s#@WORK@#$d#g" -e "s#@C2S@#$EJABBERD_PORT#g" "$ROOT/bench/ejabberd/$f.in" >"$d/$f"
	done
	cp "$ROOT/bench/ejabberd/inetrc" "$d/inetrc"
	# ejabberdctl as user ejabberd (as root it would su and reset ulimit);
	# HOME holds the Erlang cookie shared by the node and ejabberdctl.
	ejctl="runuser -u ejabberd -- env HOME=$d ejabberdctl --config-dir $d --spool $d/db --logs $d/log"
	vars="DIR='$d' DOMAIN='$DOMAIN'"
	script "$d/create.sh" "$vars" "ejabberdctl --no-timeout import_piefxis FILE, one XEP-0227 file with all accounts" <<-'EOF'
		ejctl() { runuser -u ejabberd -- env HOME="$DIR" ejabberdctl --config-dir "$DIR" --spool "$DIR/db" --logs "$DIR/log" "$@"; }
		f="$DIR/accounts-$$.xml"
		before=$(ejctl stats registeredusers </dev/null)
		{
			echo "<?xml version='1.0' encoding='UTF-8'?>"
			echo "<server-data xmlns='urn:xmpp:pie:0'><host jid='$DOMAIN'>"
			sed "s/^\([^ ]*\) \(.*\)\$/<user name='\1' password='\2'\/>/"
			echo "</host></server-data>"
		} >"$f"
		chown ejabberd: "$f"
		want=$(grep -c '<user ' "$f")
		ejctl --no-timeout import_piefxis "$f" </dev/null || exit 1
		rm -f "$f"
		after=$(ejctl stats registeredusers </dev/null)
		echo "$((after - before)) of $want created"
		[ "$want" -gt 0 ] && [ $((after - before)) = "$want" ]
	EOF
	script "$d/delete.sh" "$vars" "ejabberdctl unregister USER HOST, once per account (an Erlang VM each, ~0.3 s)" <<-'EOF'
		while read -r u; do
			runuser -u ejabberd -- env HOME="$DIR" ejabberdctl --config-dir "$DIR" --spool "$DIR/db" --logs "$DIR/log" unregister "$u" "$DOMAIN" </dev/null >/dev/null || exit 1
		done
	EOF
	chown -R ejabberd: "$d"
	log "ejabberd: starting on 127.0.0.1:$EJABBERD_PORT"
	runuser -u ejabberd -- env HOME="$d" sh -c "ulimit -n $NOFILE && exec taskset -c $SERVER_CPU ejabberdctl --config-dir '$d' --spool '$d/db' --logs '$d/log' foreground" >"$d/stdout.log" 2>&1 &
	launcher=$!
	PIDS+=("$launcher")
	wait_port $EJABBERD_PORT 60 "$launcher" || { log "ejabberd did not start: $(tail -5 "$d/stdout.log" "$d/log/ejabberd.log")"; row ejabberd all "" "did not start"; stop_pid "$launcher"; return; }
	timeout 60 $ejctl started >/dev/null 2>&1
	pid=$(cat "$d/ejabberd.pid" 2>/dev/null)
	[ -n "$pid" ] || pid=$(pgrep -u ejabberd -f "beam.smp.*$d/db" | head -1)
	[ -n "$pid" ] || { log "ejabberd: no PID"; row ejabberd all "" "no PID"; stop_pid "$launcher"; return; }
	PIDS+=("$pid")
	for f in $(pgrep -x epmd); do
		case " $EPMD_BEFORE " in *" $f "*) ;; *) EPMD_OURS+=" $f" ;; esac
	done
	check_nofile "$pid" ejabberd
	ver "ejabberd: $($ejctl status 2>/dev/null | sed -n 's/^ejabberd \([^ ]*\) is running.*/\1/p') (Debian package $(dpkg-query -W -f '${Version}' ejabberd), Erlang/OTP $(erl -noshell -eval 'io:format("~s",[erlang:system_info(otp_release)]),halt().' 2>/dev/null))"
	if create_accounts ejabberd "$d/create.sh" yes; then
		scenarios ejabberd "$pid" $EJABBERD_PORT "bench@conference.$DOMAIN"
	else
		row ejabberd all "" "account creation failed"
	fi
	timeout 30 $ejctl stop >/dev/null 2>&1
	stop_pid "$pid"
	stop_pid "$launcher"
}

# ---- raw TLS relay -----------------------------------------------------------
bench_relay() {
	local d="$WORK/relay" pid
	if [ $HAVE_RELAY = 0 ]; then row relay chat "" "bench/relay not built yet"; return; fi
	if ! has_flag relay; then row relay chat "" "treff-load has no -relay yet"; return; fi
	port_free $RELAY_PORT || { row relay chat "" "port $RELAY_PORT busy"; return; }
	mkdir -p "$d"
	log "relay: starting on 127.0.0.1:$RELAY_PORT"
	sh -c "ulimit -n $NOFILE && exec taskset -c $SERVER_CPU \"\$0\" \"\$@\"" "$WORK/bin/relay" \
		-addr 127.0.0.1:$RELAY_PORT -cert "$WORK/cert.pem" -key "$WORK/key.pem" >"$d/relay.log" 2>&1 &
	pid=$!
	PIDS+=("$pid")
	wait_port $RELAY_PORT 20 "$pid" || { row relay chat "" "did not start"; stop_pid "$pid"; return; }
	check_nofile "$pid" relay
	ver "relay: bench/relay (direct TLS, pairs connections in accept order, copies bytes)"
	load relay chat "$pid" $((RUN_S + 60)) -relay -addr 127.0.0.1:$RELAY_PORT -scenario chat -prefix chat -users $CHAT_USERS -duration $RUN
	load relay "chat@${CHAT_RATE}/s" "$pid" $((RUN_S + 60)) -relay -addr 127.0.0.1:$RELAY_PORT -scenario chat -prefix rate -users $CHAT_USERS -duration $RUN -rate $CHAT_RATE
	stop_pid "$pid"
}

# ---- run -----------------------------------------------------------------------
START=$(date -u +%Y-%m-%dT%H:%M:%SZ)
LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)
T0=$(date +%s)
want treff && bench_treff
want prosody && bench_prosody
want ejabberd && bench_ejabberd
want relay && bench_relay
ELAPSED=$(($(date +%s) - T0))

# ---- report ----------------------------------------------------------------
fmt_table() {
	LC_ALL=C awk -F'\t' '
	function num(x) { return x != "" }
	{
		server = $1; scen = $2; clients = $3; status = $4; ops = $5; rate = $6; errs = $7
		p50 = $8; p99 = $9; rss = $10; cpu = $11; cpuop = $12; unit = $13
		if (unit == "") unit = (scen == "login" ? "logins" : scen == "idle" ? "sessions" : "messages delivered")
		short = unit; sub(/ delivered$/, "", short); sub(/messages$/, "msg", short)
		one = short; sub(/s$/, "", one)
		tput = ""; lat50 = ""; lat99 = ""; rsss = ""; cpus = ""; per = ""
		if (status == "ok" || num(ops)) {
			if (unit == "sessions") tput = sprintf("%d sessions", ops)
			else tput = sprintf("%.0f %s/s", rate, short)
			if (num(p50)) { lat50 = sprintf("%.2f ms", p50); lat99 = sprintf("%.2f ms", p99) }
			if (num(rss)) rsss = sprintf("%.1f KiB", rss)
			if (num(cpu)) cpus = sprintf("%.2f s", cpu)
			if (num(cpuop)) {
				if (unit == "logins" || unit == "sessions") per = sprintf("%.2f ms/login", cpuop / 1000)
				else per = sprintf("%.1f µs/%s", cpuop, one)
			}
		}
		note = status
		if (num(errs) && errs > 0) note = note ", " errs " errors" ($14 != "" ? " (first: " substr($14, 1, 80) ")" : "")
		printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", server, scen, clients, tput, lat50, lat99, rsss, per, cpus, note
	}' "$ROWS"
}

HOSTINFO=$(uname -a)
CPUMODEL=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
OUTDIR="$ROOT/bench/results"
mkdir -p "$OUTDIR"
OUT="$OUTDIR/$(date -u +%Y-%m-%d-%H%M%S).md"
{
	echo "# Treff vs Prosody vs ejabberd: $START"
	echo
	echo "Command: \`cd $ROOT && $CMDLINE\` (${ELAPSED} s)"
	echo
	echo "- Host: \`$HOSTINFO\`"
	echo "- CPU: $CPUMODEL, $(nproc) CPUs; server pinned to CPU $SERVER_CPU, treff-load to CPU $LOAD_CPU; open files $NOFILE; load average before the run $LOADAVG"
	echo "- Load: treff-load $REV, SASL $MECH over STARTTLS (required), one self-signed $KEYDESC certificate for all servers"
	echo "- Runs: login $LOGIN_USERS clients for $RUN; chat $CHAT_USERS clients ($((CHAT_USERS / 2)) pairs) for $RUN, one message in flight per sender, then at $CHAT_RATE msg/s per client; idle $IDLE_USERS sessions held $IDLE_HOLD after the last login"
	echo "- Accounts: $([ "$ACCOUNTS" = register ] && echo "in-band registration (treff-load -register) where the server offers it, else the admin tool" || echo "each server's admin tool, before the runs, outside the measured CPU")"
	printf '%s' "$ACCOUNT_NOTES"
	echo
	echo "Versions:"
	echo
	printf '%s' "$VERSIONS"
	echo
	echo "| server | scenario | clients | throughput | p50 | p99 | RSS / idle session | server CPU / op | server CPU | status |"
	echo "|---|---|---|---|---|---|---|---|---|---|"
	fmt_table
	echo
	echo "Throughput is what treff-load measured (messages delivered per second, logins completed per second). Latency is send to receive, measured by the receiving client. RSS per idle session is (VmRSS after the idle run - before) / sessions. Server CPU is utime+stime of the server process over the run, from /proc; per op it is divided by messages delivered or logins completed (for idle, by sessions: the cost of one login)."
	echo
	echo "<details><summary>Raw treff-load output</summary>"
	echo
	echo '```'
	cat "$RAW"
	echo '```'
	echo
	echo "</details>"
} >"$OUT"
cat "$OUT"
log "wrote $OUT"
