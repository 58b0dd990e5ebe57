#!/usr/bin/env bash
# bench/compare.sh: side-by-side benchmark of Treff's example server,
# Prosody 0.12 and ejabberd 23.01 (and a raw TLS relay as a floor), driven by
# cmd/treff-load on loopback. See bench/README.md.
#
#   bench/compare.sh [-quick] [-mode both|fixed|saturated] [-only LIST]
#                    [-addr-base IP] [-keep]
#
#   -quick          shorter runs and fewer users (a few minutes per server)
#   -mode M         fixed: the users' rates (200 users x 2.5, 5, 10 msg/s,
#                   archive off and on, presence with a roster of 50 and 20 %
#                   online, group chat fan-out in rooms of 10/100/500, logins
#                   with SCRAM-SHA-1 and PLAIN); saturated: as fast as
#                   possible (the earlier table); both (default)
#   -only LIST      comma-separated subset of: treff,prosody,ejabberd,relay
#   -addr-base IP   the servers listen on IP, IP+1, IP+2, IP+3 (Treff,
#                   Prosody, ejabberd, relay; default 127.0.77.1)
#   -keep           keep the work directory (configs, logs, raw outputs)
#   -dry-run        print the runs and the expected duration, start nothing
#   -tsung          also drive the fixed-rate chat rows with tsung 1.7, an
#                   independent load generator (SASL PLAIN)
#
# Environment: TREFF_ADDR, PROSODY_ADDR, EJABBERD_ADDR, RELAY_ADDR (each
# overrides -addr-base), TREFF_PORT, PROSODY_PORT, PROSODY_BASE,
# EJABBERD_PORT, RELAY_PORT, EJABBERD_NODE (default bench<PID>@localhost),
# BENCH_ACCOUNTS, BENCH_MECH, BENCH_KEY (see bench/README.md).
#
# Run as root (it installs Debian packages if missing and runs Prosody and
# ejabberd as their own users). Each server is pinned to CPU 0 and the load
# tool to CPU 1. Writes bench/results/DATE.md and prints the same to stdout.
set -u -o pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CMDLINE="bench/compare.sh${*:+ $*}"
QUICK=0
MODE=both
ONLY="treff,prosody,ejabberd,relay"
KEEP=0
DRY=0
TSUNG=0
ADDR_BASE=${BENCH_ADDR_BASE:-127.0.77.1}
while [ $# -gt 0 ]; do
	case $1 in
	-quick | --quick) QUICK=1 ;;
	-mode | --mode) MODE=${2:?-mode needs both, fixed or saturated}; shift ;;
	-only | --only) ONLY=${2:?-only needs a list}; shift ;;
	-addr-base | --addr-base) ADDR_BASE=${2:?-addr-base needs an IPv4 address}; shift ;;
	-keep | --keep) KEEP=1 ;;
	-dry-run | --dry-run) DRY=1 ;;
	-tsung | --tsung) TSUNG=1 ;;
	-h | -help | --help) sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "compare.sh: unknown argument $1" >&2; exit 2 ;;
	esac
	shift
done
case $MODE in both | fixed | saturated) ;; *) echo "compare.sh: -mode must be both, fixed or saturated" >&2; exit 2 ;; esac

# ---- parameters ------------------------------------------------------------
# addr_plus IP N: IP with N added to its last byte.
addr_plus() {
	local a=${1%.*} b=${1##*.}
	[ $((b + $2)) -le 254 ] || { echo "compare.sh: -addr-base $1 leaves no room for 4 servers" >&2; exit 2; }
	echo "$a.$((b + $2))"
}
[[ $ADDR_BASE =~ ^127\.[0-9]+\.[0-9]+\.[0-9]+$ ]] || { echo "compare.sh: -addr-base must be a loopback IPv4 address (127.x.y.z)" >&2; exit 2; }
TREFF_ADDR=${TREFF_ADDR:-$(addr_plus "$ADDR_BASE" 0)}
PROSODY_ADDR=${PROSODY_ADDR:-$(addr_plus "$ADDR_BASE" 1)}
EJABBERD_ADDR=${EJABBERD_ADDR:-$(addr_plus "$ADDR_BASE" 2)}
RELAY_ADDR=${RELAY_ADDR:-$(addr_plus "$ADDR_BASE" 3)}
EJABBERD_NODE=${EJABBERD_NODE:-bench$$@localhost}
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
# Saturated runs (as fast as possible, one message in flight per sender).
LOGIN_USERS=20
CHAT_USERS=20     # 10 pairs
CHAT_RATE=50      # messages/s per client for the latency run (1 000 msg/s in all)
PRESENCE_USERS=100
PRESENCE_CONTACTS=20
MUC_USERS=20
# Fixed-rate runs: the users' question.
FIXED_USERS=200               # 100 pairs
FIXED_RATES="2.5 5 10"        # per user: 500, 1 000 and 2 000 msg/s in all
FIXED_LOGIN_USERS=20
FIXED_LOGIN_RATE=1            # logins/s per client: 20/s
FIXED_LOGIN_MECHS="SCRAM-SHA-1 PLAIN"
ROSTER_USERS=100              # presence: roster of 50, 20 % online (20 users)
ROSTER_CONTACTS=50
ROSTER_ONLINE=0.2
ROSTER_CYCLE=10               # s: each user online 2 s of every 10 (10 logins/s)
MUC_SIZES="10 100 500"        # occupants of the one room of each run
MUC_SENDERS=2                 # senders per room ...
MUC_SENDER_RATE=10            # ... at 10 msg/s each: 20 messages in per second
if [ $QUICK = 1 ]; then
	RUN=5s IDLE_USERS=1000 IDLE_HOLD=10s PRESENCE_USERS=40
	FIXED_RUN=5s ROSTER_CYCLE=5 ROSTER_RUN=10s
else
	RUN=10s IDLE_USERS=10000 IDLE_HOLD=30s
	FIXED_RUN=10s ROSTER_RUN=20s
fi
RUN_S=${RUN%s}
FIXED_S=${FIXED_RUN%s}
ROSTER_S=${ROSTER_RUN%s}
ROSTER_RATE=$(awk -v c=$ROSTER_CYCLE 'BEGIN {print 1 / c}')
want_mode() { [ "$MODE" = both ] || [ "$MODE" = "$1" ]; }

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

# nap SECONDS: sleep in the background and wait for it, so that a
# SIGINT sent to this script alone is handled at once (bash lets a
# foreground child that survives SIGINT swallow it).
nap() { sleep "$1" & wait $!; }

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
[ $TSUNG = 1 ] && ! command -v tsung >/dev/null && PKGS+=(tsung)
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

ACCOUNTS=${BENCH_ACCOUNTS:-admin} # admin: each server's admin tool; register: XEP-0077 via treff-load -register
TREFF_BATCH=0; "$WORK/bin/treff-community" help 2>&1 | grep -q 'adduser -batch' && TREFF_BATCH=1

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


# ---- addresses and ports ---------------------------------------------------
# Listening ports must lie outside the ephemeral range: treff-load's
# thousands of connections leave TIME_WAIT sockets on ephemeral ports, and
# a server then cannot bind such a port ("address already in use").
read -r EPH_LO EPH_HI </proc/sys/net/ipv4/ip_local_port_range
for p in $TREFF_PORT $PROSODY_PORT ${PROSODY_BASE}0 ${PROSODY_BASE}9 $EJABBERD_PORT $RELAY_PORT; do
	[ "$p" -ge "$EPH_LO" ] && [ "$p" -le "$EPH_HI" ] && log "warning: port $p is in the ephemeral range $EPH_LO-$EPH_HI; binding it may fail after a load run"
done
# port_free ADDR PORT: nothing listens on ADDR:PORT, nor on the wildcard.
port_free() {
	! ss -Hltn "sport = :$2" | awk '{print $4}' | grep -qE "^($(printf %s "$1" | sed 's/\./\\./g')|0\.0\.0\.0|\*|\[::\]):$2\$"
}
wait_port() { # ADDR PORT SECONDS PID
	local i
	for i in $(seq $(($3 * 10))); do
		(exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0
		kill -0 "$4" 2>/dev/null || return 1
		nap 0.1
	done
	return 1
}
# server_pids PID: PID and its descendants, comma-separated (ejabberd's
# Erlang VM has helpers such as erl_child_setup): treff-load sums their
# CPU and RSS.
server_pids() {
	local all=$1 frontier=$1 next p i
	for i in 1 2 3 4; do
		next=""
		for p in $frontier; do next+=" $(pgrep -P "$p" | tr '\n' ' ')"; done
		next=$(echo $next)
		[ -z "$next" ] && break
		all+=" $next"
		frontier=$next
	done
	echo "$all" | tr ' ' ','
}

# ---- the plan ---------------------------------------------------------------
# plan SERVER ARCHIVE: the runs of one server pass, one per line, fields
# separated by tabs: GROUP (fixed or saturated), LABEL, PREFIX (accounts
# PREFIX0..), USERS, TIME LIMIT (s), treff-load ARGS (words without
# spaces). Every run has its own accounts, so that no run sees offline
# messages or roster entries left by another.
msgs() { awk -v n="$1" -v r="$2" 'BEGIN {printf "%g", n * r / 1}'; } # USERS RATE: msg/s in all
plan() {
	local s=$1 arch=$2 r m n
	if want_mode fixed; then
		for r in $FIXED_RATES; do
			printf 'fixed\tchat %s msg/s (%d users x %s/s)\tf%s_\t%d\t%d\t-scenario chat -rate %s -duration %s\n' \
				"$(msgs $FIXED_USERS "$r")" $FIXED_USERS "$r" "${r/./_}" $FIXED_USERS $((FIXED_S + 90)) "$r" $FIXED_RUN
		done
		if [ "$s" != relay ] && [ $TSUNG = 1 ]; then
			for r in $FIXED_RATES; do
				printf 'tsung\tchat %s msg/s (%d users x %s/s), tsung, PLAIN\tt%s_\t%d\t%d\t-rate %s -duration %s\n' \
					"$(msgs $FIXED_USERS "$r")" $FIXED_USERS "$r" "${r/./_}" $FIXED_USERS $((FIXED_S + FIXED_USERS / 50 + 90)) "$r" $FIXED_RUN
			done
		fi
		if [ "$s" != relay ] && [ "$arch" = off ]; then
			for m in $FIXED_LOGIN_MECHS; do
				printf 'fixed\tlogin %s, %s/s (%d clients x %s/s)\tl%s_\t%d\t%d\t-scenario login -mech %s -rate %s -duration %s\n' \
					"$m" "$(msgs $FIXED_LOGIN_USERS $FIXED_LOGIN_RATE)" $FIXED_LOGIN_USERS $FIXED_LOGIN_RATE "$(printf %s "$m" | tr -dc 'a-zA-Z0-9' | tr A-Z a-z)" \
					$FIXED_LOGIN_USERS $((FIXED_S + 60)) "$m" $FIXED_LOGIN_RATE $FIXED_RUN
			done
			printf 'fixed\tpresence: roster %d, %g %% online, %d users, one login each per %d s\trost\t%d\t%d\t-scenario presence -contacts %d -online %s -rate %s -duration %s\n' \
				$ROSTER_CONTACTS "$(awk -v o=$ROSTER_ONLINE 'BEGIN {print o * 100}')" $ROSTER_USERS $ROSTER_CYCLE $ROSTER_USERS \
				$((ROSTER_S + 120 + ROSTER_USERS * ROSTER_CONTACTS / 10)) $ROSTER_CONTACTS $ROSTER_ONLINE "$ROSTER_RATE" $ROSTER_RUN
			for n in $MUC_SIZES; do
				printf 'fixed\tmuc fan-out, room of %d, %s msg in/s\tm%d_\t%d\t%d\t-scenario muc -room fan%d@conference.%s -senders %d -rate %s -duration %s\n' \
					"$n" "$(msgs $MUC_SENDERS $MUC_SENDER_RATE)" "$n" "$n" $((FIXED_S + 120 + n / 5)) "$n" "$DOMAIN" $MUC_SENDERS $MUC_SENDER_RATE $FIXED_RUN
			done
		fi
	fi
	if want_mode saturated; then
		if [ "$s" = relay ]; then
			printf 'saturated\tchat\tchat\t%d\t%d\t-scenario chat -duration %s\n' $CHAT_USERS $((RUN_S + 60)) $RUN
			printf 'saturated\tchat@%d/s\trate\t%d\t%d\t-scenario chat -rate %d -duration %s\n' $CHAT_RATE $CHAT_USERS $((RUN_S + 60)) $CHAT_RATE $RUN
			return
		fi
		[ "$arch" = off ] && printf 'saturated\tlogin\tlogin\t%d\t%d\t-scenario login -duration %s\n' $LOGIN_USERS $((RUN_S + 60)) $RUN
		printf 'saturated\tchat\tchat\t%d\t%d\t-scenario chat -duration %s\n' $CHAT_USERS $((RUN_S + 60)) $RUN
		# Latency at half of this server's own peak rate (the p99 target).
		printf 'saturated\tchat@half\thalf\t%d\t%d\t-scenario chat -rate @HALF@ -duration %s\n' $CHAT_USERS $((RUN_S + 60)) $RUN
		printf 'saturated\tchat@%d/s\trate\t%d\t%d\t-scenario chat -rate %d -duration %s\n' $CHAT_RATE $CHAT_USERS $((RUN_S + 60)) $CHAT_RATE $RUN
		if [ "$arch" = off ]; then
			# idle: logins at >= 20/s (and as many registrations and
			# removals with -register), then the hold.
			printf 'saturated\tidle\tidle\t%d\t%d\t-scenario idle -duration %s\n' $IDLE_USERS \
				$((IDLE_USERS / 20 * $([ "$ACCOUNTS" = register ] && echo 5 || echo 1) + ${IDLE_HOLD%s} + 60)) $IDLE_HOLD
			printf 'saturated\tpresence\tpres\t%d\t%d\t-scenario presence -contacts %d -duration %s\n' $PRESENCE_USERS $((RUN_S + 120)) $PRESENCE_CONTACTS $RUN
			printf 'saturated\tmuc\tmuc\t%d\t%d\t-scenario muc -room bench@conference.%s -duration %s\n' $MUC_USERS $((RUN_S + 120)) "$DOMAIN" $RUN
		fi
	fi
}
# passes SERVER: the archive settings it is run with.
passes() { if [ "$1" = relay ]; then echo off; else echo off on; fi; }

# ---- results -----------------------------------------------------------------
ROWS="$WORK/rows.tsv"
: >"$ROWS"
RAW="$WORK/raw.txt"
: >"$RAW"
CMDS="$WORK/commands.txt" # NUMBER<TAB>COMMAND
: >"$CMDS"
NCMD=0
SERVER_CMDS=""

# row SERVER ARCHIVE GROUP LABEL USERS STATUS [FILE [CMD#]]: append a result row.
row() {
	local server=$1 arch=$2 group=$3 label=$4 users=$5 status=$6 file=${7:-} n=${8:-} kv=""
	if [ -n "$file" ] && [ -s "$file" ] && jq -e . "$file" >/dev/null 2>&1; then
		kv=$(jq -r '[.ops, .unit, .rate, .errors, .p50_ms, .p99_ms, .rss_after_kib, .rss_per_session_kib, .cpu_s, .cpu_per_op_us,
			.offered_rate, .rate_sent, .fanout, (.first_error // "" | gsub("[\t|\n]"; " "))] | map(. // "" | tostring) | join("\t")' "$file")
	fi
	[ -n "$kv" ] || kv=$'\t\t\t\t\t\t\t\t\t\t\t\t\t'
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$server" "$arch" "$group" "$label" "$users" "$status" "$n" "$kv" >>"$ROWS"
}

# load SERVER ARCHIVE GROUP LABEL PIDS ADDR LIMIT USERS PREFIX ARGS...: one
# bounded treff-load run on CPU $LOAD_CPU, recorded as a row with its
# command.
load() {
	local server=$1 arch=$2 group=$3 label=$4 pids=$5 addr=$6 limit=$7 users=$8 prefix=$9 out rc pid
	shift 9
	pid=${pids%%,*}
	out="$WORK/out-$server-$arch-$(printf %s "$group-$label" | tr -c 'a-zA-Z0-9_-' _).txt"
	if ! kill -0 "$pid" 2>/dev/null; then
		log "$server $label: server not running, skipped"
		row "$server" "$arch" "$group" "$label" "$users" "server down"
		return
	fi
	local args=(-addr "$addr" -pid "$pids" -domain "$DOMAIN" -password "$PASSWORD" -json -prefix "$prefix" -users "$users")
	[[ " $* " == *" -mech "* ]] || args+=(-mech "$MECH")
	[ "$server" = relay ] && args+=(-relay)
	[ "$ACCOUNTS" = register ] && [ "$server" != relay ] && args+=(-register)
	args+=("$@")
	NCMD=$((NCMD + 1))
	printf '%d\ttaskset -c %d treff-load %s\n' $NCMD $LOAD_CPU "${args[*]}" >>"$CMDS"
	log "$server ($arch) $label [#$NCMD]: treff-load ${args[*]}"
	bounded "$limit" taskset -c $LOAD_CPU "$LOAD" "${args[@]}" >"$out" 2>"$out.err"
	rc=$?
	{
		echo "### #$NCMD $server, archive $arch: $label"
		echo "taskset -c $LOAD_CPU treff-load ${args[*]}"
		cat "$out" "$out.err"
		echo
	} >>"$RAW"
	sed 's/^/    /' "$out" >&2
	if ! kill -0 "$pid" 2>/dev/null; then
		log "$server $label: the server died during the run (exit $rc)"
		row "$server" "$arch" "$group" "$label" "$users" "server died" "" $NCMD
	elif [ $rc = 0 ]; then
		row "$server" "$arch" "$group" "$label" "$users" ok "$out" $NCMD
	elif [ $rc = 124 ] || [ $rc = 137 ]; then
		log "$server $label: timed out after ${limit}s"
		row "$server" "$arch" "$group" "$label" "$users" "timeout ${limit}s" "$out" $NCMD
	else
		log "$server $label: exit $rc: $(tail -1 "$out.err")"
		row "$server" "$arch" "$group" "$label" "$users" "exit $rc" "$out" $NCMD
	fi
}

# cpu_ticks PIDS: utime+stime of the comma-separated processes, in ticks.
cpu_ticks() {
	local p t=0 n
	for p in ${1//,/ }; do
		n=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}')
		t=$((t + ${n:-0}))
	done
	echo $t
}
# settle PIDS: wait (at most 30 s) until the server uses less than 5 % of
# a CPU over a second, so that no run pays for the backlog of the one
# before (a slow server may still be working through a presence setup).
settle() {
	local a b=0 i
	for i in $(seq 30); do
		a=$(cpu_ticks "$1")
		nap 1
		b=$(cpu_ticks "$1")
		[ $((b - a)) -le 5 ] && return 0
	done
	log "warning: the server is still busy after 30 s ($((b - a)) ticks in the last second)"
}

# tsung_run SERVER ARCHIVE LABEL PIDS ADDR LIMIT USERS PREFIX -rate R
# -duration Ds: the fixed-rate chat driven by tsung (bench/tsung/chat.xml.in).
# The users log in at 50 a second and wait; then each sends one message
# every 1/R s to random users. The server's CPU is read over D seconds in
# the middle of the chat phase, when every user sends; the ops are the
# messages tsung's schedule offers in that window (USERS x R x D: tsung
# undercounts what it receives under load), and the row says how many of
# all the messages sent tsung saw arrive.
tsung_run() {
	local s=$1 arch=$2 label=$3 pids=$4 addr=$5 limit=$6 users=$7 prefix=$8 rate=${10} dur=${12%s}
	local d="$WORK/tsung-$s-$arch-$prefix" arrival think=5 n period i rc a b t0 start rss=0 p kib out json ops sent rcv errs
	arrival=$(((users + 49) / 50))
	period=$(awk -v r="$rate" 'BEGIN {printf "%.3f", 1 / r}')
	n=$(awk -v r="$rate" -v d="$dur" -v a="$arrival" 'BEGIN {printf "%d", r * (d + a + 6)}')
	mkdir -p "$d/log"
	for i in $(seq 0 $((users - 1))); do echo "$prefix$i;$PASSWORD"; done >"$d/users.csv"
	sed -e "s#@ADDR@#${addr%:*}#" -e "s#@PORT@#${addr##*:}#" -e "s#@DOMAIN@#$DOMAIN#" -e "s#@USERS@#$users#" \
		-e "s#@ARRIVAL@#$arrival#" -e "s#@CSV@#$d/users.csv#" -e "s#@THINK@#$think#" -e "s#@N@#$n#" -e "s#@PERIOD@#$period#" \
		"$ROOT/bench/tsung/chat.xml.in" >"$d/chat.xml"
	NCMD=$((NCMD + 1))
	printf '%d\tERL_AFLAGS="-kernel inet_dist_use_interface {127,0,0,1}" ERL_EPMD_ADDRESS=127.0.0.1 taskset -c %d tsung -n -f chat.xml -l LOGDIR start (chat.xml: bench/tsung/chat.xml.in with %d users at 50 logins/s, then %d messages each every %s s; CPU read over %d s from %d s after the start)\n' \
		$NCMD $LOAD_CPU "$users" "$n" "$period" "$dur" $((arrival + think + 3)) >>"$CMDS"
	log "$s ($arch) $label [#$NCMD]: tsung, $users users, $n messages each every $period s"
	out="$d/out.txt"
	t0=$(date +%s.%N)
	ERL_AFLAGS="-kernel inet_dist_use_interface {127,0,0,1}" ERL_EPMD_ADDRESS=127.0.0.1 \
		timeout -k 5 "$limit" taskset -c $LOAD_CPU tsung -n -f "$d/chat.xml" -l "$d/log" start >"$out" 2>&1 &
	CHILD=$!
	# The window: all users are online and sending from the login phase
	# plus the wait (and a margin) until D seconds later.
	start=$(awk -v t0="$t0" -v s=$((arrival + think + 3)) -v now="$(date +%s.%N)" 'BEGIN {w = t0 + s - now; printf "%.2f", (w > 0 ? w : 0)}')
	nap "$start"
	a=$(cpu_ticks "$pids")
	nap "$dur"
	b=$(cpu_ticks "$pids")
	for p in ${pids//,/ }; do
		kib=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null)
		rss=$((rss + ${kib:-0}))
	done
	wait $CHILD
	rc=$?
	CHILD=""
	for p in $(pgrep -x epmd); do
		case " $EPMD_BEFORE $EPMD_OURS " in *" $p "*) ;; *) EPMD_OURS+=" $p" ;; esac
	done
	# What tsung sent: its requests without acknowledgement are the chat
	# messages, the initial presences and the closes. A tsung that lags
	# behind its schedule (a think time does not count the send) sent
	# fewer than planned: the window's ops shrink in proportion.
	planned=$((users * n))
	sent=$(grep '^stats: request_noack' "$d"/log/*/tsung.log 2>/dev/null | tail -1 | awk -v u="$users" '{print $4 - 2 * u}')
	ops=$(awk -v u="$users" -v r="$rate" -v d="$dur" -v s="${sent:-0}" -v p="$planned" 'BEGIN {f = s / p; if (f > 1 || f <= 0) f = 1; printf "%d", u * r * d * f}')
	# tsung's count of data it did not wait for: reads, not messages (it
	# undercounts messages that arrive together), shown for information.
	rcv=$(grep '^stats: async_unknown_data_rcv' "$d"/log/*/tsung.log 2>/dev/null | tail -1 | awk '{print $4}')
	errs=$(grep -oE '^stats: error_[a-z_]+ [0-9]+ [0-9]+' "$d"/log/*/tsung.log 2>/dev/null | awk '{e[$2] = $4} END {for (k in e) printf "%s=%s ", k, e[k]}')
	json="$d/result.json"
	jq -n --argjson ops "$ops" --argjson cpu "$(awk -v t=$((b - a)) 'BEGIN {print t / 100}')" --argjson rss "$rss" \
		--argjson offered "$(awk -v u="$users" -v r="$rate" 'BEGIN {print u * r}')" --argjson dur "$dur" --arg errs "$errs" \
		--argjson seen "${rcv:-0}" --argjson sent "${sent:-0}" --argjson planned "$planned" '{ops: $ops, unit: "messages sent by tsung",
		rate: null, errors: (if $errs == "" then 0 else 1 end), cpu_s: $cpu, cpu_per_op_us: (if $ops > 0 then $cpu * 1e6 / $ops else null end),
		offered_rate: $offered, rate_sent: ($ops / $dur), rss_after_kib: $rss, first_error: $errs,
		tsung_sent: $sent, tsung_planned: $planned, tsung_reads: $seen}' >"$json"
	{
		echo "### #$NCMD $s, archive $arch: $label"
		echo "tsung (see the command list); exit $rc; CPU ticks over the window $((b - a))"
		cat "$json"
		grep -E '^stats: (connected|users_count|finish_users_count|request_noack|async_unknown_data_rcv|error)' "$d"/log/*/tsung.log 2>/dev/null | tail -8
		echo
	} >>"$RAW"
	sed 's/^/    /' "$json" >&2
	if ! kill -0 "${pids%%,*}" 2>/dev/null; then
		row "$s" "$arch" fixed "$label" "$users" "server died" "" $NCMD
	elif [ $rc = 0 ]; then
		row "$s" "$arch" fixed "$label" "$users" "ok (tsung sent ${sent:-?} of $planned planned; delivery not counted)" "$json" $NCMD
	else
		row "$s" "$arch" fixed "$label" "$users" "tsung exit $rc: $(tail -1 "$out" | tr '\t|' '  ')" "$json" $NCMD
	fi
}

# run_plan SERVER ARCHIVE PIDS ADDR: every run of the pass.
run_plan() {
	local s=$1 arch=$2 pids=$3 addr=$4 group label prefix users limit args peak half
	while IFS=$'\t' read -r group label prefix users limit args; do
		if [[ $args == *@HALF@* ]]; then
			peak=$(jq -r '.rate // empty' "$WORK/out-$s-$arch-saturated-chat.txt" 2>/dev/null)
			half=$(awk -v r="${peak:-0}" -v n="$users" 'BEGIN {printf "%d", r / 2 / n}')
			if [ "${half:-0}" -le 0 ]; then
				row "$s" "$arch" "$group" "$label" "$users" "no peak rate from the chat run"
				continue
			fi
			args=${args//@HALF@/$half}
		fi
		settle "$pids"
		if [ "$group" = tsung ]; then
			# shellcheck disable=SC2086
			tsung_run "$s" "$arch" "$label" "$pids" "$addr" "$limit" "$users" "$prefix" $args </dev/null
			continue
		fi
		# shellcheck disable=SC2086 # args are words without spaces
		load "$s" "$arch" "$group" "$label" "$pids" "$addr" "$limit" "$users" "$prefix" $args </dev/null
	done < <(plan "$s" "$arch")
}

# users PREFIX N: "LOCALPART PASSWORD" lines for PREFIX0..PREFIX(N-1), the
# accounts treff-load uses with -prefix PREFIX -users N.
users() { "$LOAD" -print-users -prefix "$1" -users "$2" -domain "$DOMAIN" | sed "s/@.*/ $PASSWORD/"; }

create_accounts() { # SERVER ARCHIVE CREATE_SCRIPT
	local n t0 prefix users
	[ "$ACCOUNTS" = register ] && return 0
	t0=$(date +%s.%N)
	n=$(plan "$1" "$2" | cut -f3,4 | sort -u | while IFS=$'\t' read -r prefix users; do users "$prefix" "$users"; done |
		tee "$WORK/$1-$2-accounts.txt" | wc -l)
	log "$1 ($2): creating $n accounts with $(basename "$3")"
	bounded 900 "$3" <"$WORK/$1-$2-accounts.txt" >"$WORK/$1-$2-create.log" 2>&1 || {
		log "$1: account creation failed: $(tail -3 "$WORK/$1-$2-create.log")"
		return 1
	}
	ACCOUNT_NOTES+="- $1, archive $2: $n accounts created in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}') s with \`$(sed -n 's/^# cmd: //p' "$3")\`"$'\n'
}
ACCOUNT_NOTES=""

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
ver() { case $VERSIONS in *"- $1"$'\n'*) ;; *) VERSIONS+="- $1"$'\n' ;; esac; }

# Each start_SERVER ARCHIVE starts the server with its own directory
# $WORK/SERVER-ARCHIVE and sets SRV_PID (the process measured), SRV_ADDR,
# SRV_STOP (what stop_SERVER stops) and SRV_CREATE (the account script);
# it returns non-zero (with SRV_WHY) if the server did not start.

# ---- Treff -------------------------------------------------------------------
start_treff() {
	local arch=$1 d="$WORK/treff-$1" vars opts=()
	SRV_ADDR=$TREFF_ADDR:$TREFF_PORT SRV_STOP=""
	port_free "$TREFF_ADDR" $TREFF_PORT || { SRV_WHY="$SRV_ADDR busy"; return 1; }
	mkdir -p "$d/data" && chmod 700 "$d/data"
	vars="BIN='$WORK/bin/treff-community' DATA='$d/data' DOMAIN='$DOMAIN'"
	if [ $TREFF_BATCH = 1 ]; then
		script "$d/create.sh" "$vars" "treff-community -data DIR adduser -batch" <<-'EOF2'
			sed "s/^\([^ ]*\)/\1@$DOMAIN/" | exec "$BIN" adduser -data "$DATA" -batch
		EOF2
	else
		script "$d/create.sh" "$vars" "treff-community -data DIR adduser -password PW JID, once per account" <<-'EOF2'
			while read -r u p; do "$BIN" adduser -data "$DATA" -password "$p" "$u@$DOMAIN" </dev/null || exit 1; done
		EOF2
	fi
	SRV_CREATE="$d/create.sh"
	# With BENCH_ACCOUNTS=register: registration open, its limits out of the way.
	[ "$ACCOUNTS" = register ] && opts+=(-registration open -registration-per-address 1000000/1h -registration-global 1000000/1h)
	# Abuse limits (package antispam) off, like the others' (no mod_limits,
	# no shaper): the bench accounts are new and write to strangers.
	opts+=(-limit-messages none -limit-strangers none -limit-joins none -limit-room-creations none -limit-pre-auth none)
	# Rooms of 500 occupants (default 200; Prosody 0.12 has no limit,
	# ejabberd's is raised to 1000 too).
	opts+=(-muc-max-occupants 1000)
	# The archive as on Prosody (archive_expires_after = "1w") and ejabberd.
	if [ "$arch" = on ]; then opts+=(-archive yes -archive-retention 7d); else opts+=(-archive no); fi
	local cmd=(taskset -c $SERVER_CPU "$WORK/bin/treff-community" serve -domain "$DOMAIN" -data "$d/data" -c2s "$SRV_ADDR" -c2s-tls ''
		-s2s '' -http '' -https '' -cert "$WORK/cert.pem" -key "$WORK/key.pem" -log-level warn "${opts[@]}")
	SERVER_CMDS+="- Treff, archive $arch: \`ulimit -n $NOFILE; $(printf '%q ' "${cmd[@]}" | sed 's/ $//')\`"$'\n'
	log "treff ($arch): starting on $SRV_ADDR"
	sh -c "ulimit -n $NOFILE && exec \"\$@\"" sh "${cmd[@]}" >"$d/server.log" 2>&1 &
	SRV_PID=$!
	PIDS+=("$SRV_PID")
	SRV_STOP=$SRV_PID
	wait_port "$TREFF_ADDR" $TREFF_PORT 20 "$SRV_PID" || { SRV_WHY="did not start: $(tail -3 "$d/server.log" | tr '\n' ' ')"; return 1; }
	ver "Treff: $REV (examples/community, $(go version | awk '{print $3}'))"
}
stop_treff() { local p; for p in $SRV_STOP; do stop_pid "$p"; done; }

# ---- Prosody -----------------------------------------------------------------
start_prosody() {
	local arch=$1 d="$WORK/prosody-$1" cfg vars launcher mods="" settings=""
	cfg="$d/prosody.cfg.lua"
	SRV_ADDR=$PROSODY_ADDR:$PROSODY_PORT SRV_STOP=""
	port_free "$PROSODY_ADDR" $PROSODY_PORT || { SRV_WHY="$SRV_ADDR busy"; return 1; }
	mkdir -p "$d/data"
	if [ "$arch" = on ]; then
		mods='"mam";'
		settings='archive_expires_after = "1w"; default_archive_policy = true'
	fi
	sed -e "s#@WORK@#$d#g" -e "s#@ADDR@#$PROSODY_ADDR#g" -e "s#@C2S@#$PROSODY_PORT#g" -e "s#@BASE@#$PROSODY_BASE#g" \
		-e "s#@ARCHIVE_MODULE@#$mods#" -e "s#@ARCHIVE_SETTINGS@#$settings#" \
		"$ROOT/bench/prosody/prosody.cfg.lua.in" >"$cfg"
	cp "$WORK/cert.pem" "$WORK/key.pem" "$d/"
	vars="CFG='$cfg' DOMAIN='$DOMAIN'"
	script "$d/create.sh" "$vars" "prosodyctl --config CFG shell, fed one user:create(JID, PASSWORD) line per account" <<-'EOF2'
		in=$(cat)
		want=$(printf '%s\n' "$in" | grep -c .)
		n=$(printf '%s\n' "$in" | sed "s/^\([^ ]*\) \(.*\)\$/user:create(\"\1@$DOMAIN\", \"\2\")/" | prosodyctl --config "$CFG" shell | grep -c 'OK: User created')
		echo "$n of $want created"
		[ "$want" -gt 0 ] && [ "$n" = "$want" ]
	EOF2
	SRV_CREATE="$d/create.sh"
	chown -R prosody: "$d"
	SERVER_CMDS+="- Prosody, archive $arch: \`runuser -u prosody -- sh -c 'ulimit -n $NOFILE && exec taskset -c $SERVER_CPU prosody -F --config CFG'\` with CFG bench/prosody/prosody.cfg.lua.in filled in$([ "$arch" = on ] && echo ", mod_mam on (\`$settings\`)")"$'\n'
	log "prosody ($arch): starting on $SRV_ADDR"
	runuser -u prosody -- sh -c "ulimit -n $NOFILE && exec taskset -c $SERVER_CPU prosody -F --config '$cfg'" >"$d/stdout.log" 2>&1 &
	launcher=$!
	PIDS+=("$launcher")
	SRV_STOP=$launcher
	wait_port "$PROSODY_ADDR" $PROSODY_PORT 30 "$launcher" || { SRV_WHY="did not start: $(tail -3 "$d/stdout.log" "$d/prosody.log" 2>/dev/null | tr '\n' ' ')"; return 1; }
	SRV_PID=$(cat "$d/prosody.pid" 2>/dev/null)
	[ -n "$SRV_PID" ] || SRV_PID=$(pgrep -u prosody -f -- "--config $cfg" | head -1)
	[ -n "$SRV_PID" ] || { SRV_WHY="no PID"; return 1; }
	PIDS+=("$SRV_PID")
	SRV_STOP="$SRV_PID $launcher"
	ver "Prosody: $(prosodyctl about 2>/dev/null | sed -n '1s/^Prosody //p') (Debian $(dpkg-query -W -f '${Version}' prosody), $(prosodyctl about 2>/dev/null | awk '/^Lua version/ {print $3, $4}'), network backend epoll)"
}
stop_prosody() {
	local p d="$WORK/prosody-$1"
	for p in $SRV_STOP; do stop_pid "$p"; done
	grep -i -E 'error' "$d/prosody.log" 2>/dev/null | grep -v 'certificate directory' | tail -3 | sed 's/^/  prosody.log: /' >&2
}

# ---- ejabberd ----------------------------------------------------------------
ejctl_in() { # DIR ARGS...: ejabberdctl as user ejabberd with HOME (the Erlang cookie) in DIR
	local d=$1
	shift
	runuser -u ejabberd -- env HOME="$d" ejabberdctl --config-dir "$d" --spool "$d/db" --logs "$d/log" "$@" </dev/null
}
start_ejabberd() {
	local arch=$1 d="$WORK/ejabberd-$1" launcher f vars mam=""
	SRV_ADDR=$EJABBERD_ADDR:$EJABBERD_PORT SRV_STOP=""
	port_free "$EJABBERD_ADDR" $EJABBERD_PORT || { SRV_WHY="$SRV_ADDR busy"; return 1; }
	# One node per name: another ejabberd may run, under another name.
	if epmd -names 2>/dev/null | grep -q "^name ${EJABBERD_NODE%@*} "; then
		SRV_WHY="an Erlang node named $EJABBERD_NODE is running (set EJABBERD_NODE)"
		return 1
	fi
	mkdir -p "$d/db" "$d/log"
	cp "$WORK/cert.pem" "$WORK/key.pem" "$d/"
	[ "$arch" = on ] && mam="mod_mam: {default: always}"
	for f in ejabberd.yml ejabberdctl.cfg; do
		sed -e "s#@WORK@#$d#g" -e "s#@ADDR@#$EJABBERD_ADDR#g" -e "s#@C2S@#$EJABBERD_PORT#g" -e "s#@NODE@#$EJABBERD_NODE#g" \
			-e "s#@MAM@#$mam#" "$ROOT/bench/ejabberd/$f.in" >"$d/$f"
	done
	cp "$ROOT/bench/ejabberd/inetrc" "$d/inetrc"
	vars="DIR='$d' DOMAIN='$DOMAIN'"
	script "$d/create.sh" "$vars" "ejabberdctl --no-timeout import_piefxis FILE, one XEP-0227 file with all accounts" <<-'EOF2'
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
	EOF2
	SRV_CREATE="$d/create.sh"
	chown -R ejabberd: "$d"
	SERVER_CMDS+="- ejabberd, archive $arch: \`runuser -u ejabberd -- env HOME=DIR sh -c 'ulimit -n $NOFILE && exec taskset -c $SERVER_CPU ejabberdctl --config-dir DIR --spool DIR/db --logs DIR/log foreground'\` with bench/ejabberd/*.in filled in (node $EJABBERD_NODE)$([ "$arch" = on ] && echo ", \`$mam\` (Mnesia, the default database)")"$'\n'
	log "ejabberd ($arch): starting on $SRV_ADDR, node $EJABBERD_NODE"
	runuser -u ejabberd -- env HOME="$d" sh -c "ulimit -n $NOFILE && exec taskset -c $SERVER_CPU ejabberdctl --config-dir '$d' --spool '$d/db' --logs '$d/log' foreground" >"$d/stdout.log" 2>&1 &
	launcher=$!
	PIDS+=("$launcher")
	SRV_STOP=$launcher
	wait_port "$EJABBERD_ADDR" $EJABBERD_PORT 60 "$launcher" || { SRV_WHY="did not start: $(tail -3 "$d/stdout.log" "$d/log/ejabberd.log" 2>/dev/null | tr '\n' ' ')"; return 1; }
	timeout 60 ejctl_in "$d" started >/dev/null 2>&1
	SRV_PID=$(cat "$d/ejabberd.pid" 2>/dev/null)
	[ -n "$SRV_PID" ] || SRV_PID=$(pgrep -u ejabberd -f "beam.smp.*$d/db" | head -1)
	[ -n "$SRV_PID" ] || { SRV_WHY="no PID"; return 1; }
	PIDS+=("$SRV_PID")
	SRV_STOP="$SRV_PID $launcher"
	for f in $(pgrep -x epmd); do
		case " $EPMD_BEFORE $EPMD_OURS " in *" $f "*) ;; *) EPMD_OURS+=" $f" ;; esac
	done
	ver "ejabberd: $(ejctl_in "$d" status 2>/dev/null | sed -n 's/^ejabberd \([^ ]*\) is running.*/\1/p') (Debian package $(dpkg-query -W -f '${Version}' ejabberd), Erlang/OTP $(erl -noshell -eval 'io:format("~s",[erlang:system_info(otp_release)]),halt().' 2>/dev/null))"
}
stop_ejabberd() {
	local p
	timeout 30 ejctl_in "$WORK/ejabberd-$1" stop >/dev/null 2>&1
	for p in $SRV_STOP; do stop_pid "$p"; done
}

# ---- raw TLS relay -----------------------------------------------------------
start_relay() {
	local d="$WORK/relay-$1"
	SRV_ADDR=$RELAY_ADDR:$RELAY_PORT SRV_STOP="" SRV_CREATE=""
	[ $HAVE_RELAY = 1 ] || { SRV_WHY="bench/relay not built"; return 1; }
	port_free "$RELAY_ADDR" $RELAY_PORT || { SRV_WHY="$SRV_ADDR busy"; return 1; }
	mkdir -p "$d"
	local cmd=(taskset -c $SERVER_CPU "$WORK/bin/relay" -addr "$SRV_ADDR" -cert "$WORK/cert.pem" -key "$WORK/key.pem")
	SERVER_CMDS+="- relay: \`ulimit -n $NOFILE; $(printf '%q ' "${cmd[@]}" | sed 's/ $//')\`"$'\n'
	log "relay: starting on $SRV_ADDR"
	sh -c "ulimit -n $NOFILE && exec \"\$@\"" sh "${cmd[@]}" >"$d/relay.log" 2>&1 &
	SRV_PID=$!
	PIDS+=("$SRV_PID")
	SRV_STOP=$SRV_PID
	wait_port "$RELAY_ADDR" $RELAY_PORT 20 "$SRV_PID" || { SRV_WHY="did not start: $(tail -3 "$d/relay.log" | tr '\n' ' ')"; return 1; }
	ver "relay: bench/relay (direct TLS, pairs connections in accept order, copies bytes)"
}
stop_relay() { local p; for p in $SRV_STOP; do stop_pid "$p"; done; }

# pass SERVER ARCHIVE: start the server, create the accounts, run the
# plan, stop the server.
pass() {
	local s=$1 arch=$2 pids
	SRV_PID="" SRV_STOP="" SRV_WHY="" SRV_CREATE=""
	if ! "start_$s" "$arch"; then
		log "$s ($arch): $SRV_WHY; skipped"
		row "$s" "$arch" - all "" "$SRV_WHY"
		"stop_$s" "$arch"
		return
	fi
	check_nofile "$SRV_PID" "$s"
	pids=$(server_pids "$SRV_PID")
	log "$s ($arch): measured processes $pids"
	if [ -n "$SRV_CREATE" ] && ! create_accounts "$s" "$arch" "$SRV_CREATE"; then
		row "$s" "$arch" - all "" "account creation failed"
	else
		run_plan "$s" "$arch" "$pids" "$SRV_ADDR"
	fi
	"stop_$s" "$arch"
}

# ---- expected duration ---------------------------------------------------------
estimate() {
	local s arch total=0 group label prefix users limit args d n
	for s in treff prosody ejabberd relay; do
		want "$s" || continue
		for arch in $(passes "$s"); do
			total=$((total + 15))
			n=0
			while IFS=$'\t' read -r group label prefix users limit args; do
				d=$(printf '%s\n' "$args" | sed -n 's/.*-duration \([0-9]*\)s.*/\1/p')
				total=$((total + ${d:-10} + 5))
				[ "$group" = tsung ] && total=$((total + users / 50 + 12))
				n=$((n + users))
				case $args in *"-scenario idle"*) total=$((total + users / 150)) ;; esac
				# Subscriptions: Prosody takes ~35 ms for each.
				case $args in *"-scenario presence"*) total=$((total + users * $(printf '%s\n' "$args" | sed -n 's/.*-contacts \([0-9]*\).*/\1/p') / $([ "$s" = prosody ] && echo 30 || echo 400))) ;; esac
				case $args in *"-scenario muc"*) total=$((total + users * users / 20000)) ;; esac
			done < <(plan "$s" "$arch")
			[ "$s" = ejabberd ] && total=$((total + n / 120)) || total=$((total + n / 400))
		done
	done
	echo $total
}

# ---- run -----------------------------------------------------------------------
START=$(date -u +%Y-%m-%dT%H:%M:%SZ)
LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)
EXPECTED=$(estimate)
log "mode $MODE$([ $QUICK = 1 ] && echo ", quick"): expected duration about $((EXPECTED / 60)) min $((EXPECTED % 60)) s (servers: $ONLY; addresses treff $TREFF_ADDR, prosody $PROSODY_ADDR, ejabberd $EJABBERD_ADDR, relay $RELAY_ADDR)"
if [ $DRY = 1 ]; then
	for s in treff prosody ejabberd relay; do
		want "$s" || continue
		for arch in $(passes "$s"); do
			echo "$s, archive $arch:"
			plan "$s" "$arch" | awk -F'\t' '{ printf "  %-9s %-62s %s -prefix %s -users %s %s\n", $1, $2, ($1 == "tsung" ? "tsung (bench/tsung/chat.xml.in)" : "treff-load"), $3, $4, $6 }'
		done
	done
	exit 0
fi
T0=$(date +%s)
for s in treff prosody ejabberd relay; do
	want "$s" || continue
	for arch in $(passes "$s"); do pass "$s" "$arch"; done
done
ELAPSED=$(($(date +%s) - T0))

# ---- report ----------------------------------------------------------------
# Columns of rows.tsv: 1 server, 2 archive, 3 group, 4 label, 5 users,
# 6 status, 7 cmd#, 8 ops, 9 unit, 10 rate, 11 errors, 12 p50, 13 p99,
# 14 rss_after, 15 rss/session, 16 cpu_s, 17 cpu/op µs, 18 offered,
# 19 rate sent, 20 fanout, 21 first error.
AWK_COMMON='
function num(x) { return x != "" }
function note(   n, got) {
	n = $6
	# A run at a fixed rate that did not get its offered load through: the
	# server (or the load tool) was overloaded, and the figure is not the
	# cost at that rate.
	got = ($4 ~ /^muc/ || !num($10)) ? $19 : $10 # muc, tsung: what was sent
	if ($4 !~ /^presence/ && num($18) && $18 > 0 && num(got) && got < 0.95 * $18)
		n = n ", OVERLOADED: " sprintf("%.0f", 100 * got / $18) " % of the offered load"
	if ($3 == "fixed" && $4 ~ /^muc/ && num($20) && num($5) && $20 < 0.95 * $5)
		n = n ", OVERLOADED: fan-out " sprintf("%.1f", $20) " of " $5
	if (num($11) && $11 > 0) n = n ", " $11 " errors" ($21 != "" ? " (first: " substr($21, 1, 80) ")" : "")
	return n
}
function perop(   u) {
	if (!num($17)) return ""
	u = $9
	if (u == "logins" || u == "sessions") return sprintf("%.2f ms/login", $17 / 1000)
	if (u ~ /^presence/) return sprintf("%.1f µs/presence", $17)
	if ($4 ~ /^muc/) return sprintf("%.1f µs/copy", $17)
	return sprintf("%.1f µs/msg", $17)
}
function ms(x) { return num(x) ? sprintf("%.2f ms", x) : "" }
function unitshort(   u) { u = $9; sub(/ delivered$/, "", u); sub(/^messages$/, "msg", u); sub(/^presences$/, "presences", u); if ($4 ~ /^muc/) u = "copies"; return u }
'
fixed_table() {
	LC_ALL=C awk -F'\t' "$AWK_COMMON"'
	$3 == "fixed" || $3 == "-" {
		offered = ""; got = ""
		if (num($18) && $18 > 0) offered = sprintf("%g/s", $18)
		if (num($10)) got = sprintf("%.0f %s/s", $10, unitshort())
		if ($4 ~ /^muc/ && num($20)) got = got sprintf(" (%.0f in, x%.1f)", $19, $20)
		printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", ($7 != "" ? "#" $7 : ""), $1, $2, $4, offered, got,
			perop(), ms($12), ms($13), (num($14) ? sprintf("%.0f MiB", $14 / 1024) : ""), note()
	}' "$ROWS"
}
saturated_table() {
	LC_ALL=C awk -F'\t' "$AWK_COMMON"'
	$3 == "saturated" {
		tput = ""; rsss = ""; cpus = ""
		if (num($8)) tput = ($9 == "sessions") ? sprintf("%d sessions", $8) : sprintf("%.0f %s/s", $10, unitshort())
		if (num($15)) rsss = sprintf("%.1f KiB", $15)
		if (num($16)) cpus = sprintf("%.2f s", $16)
		printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", ($7 != "" ? "#" $7 : ""), $1, $2, $4, $5, tput,
			ms($12), ms($13), rsss, perop(), cpus, note()
	}' "$ROWS"
}
# archive_ratio: CPU per message with the archive on over off, per server
# and rate (fixed-rate chat rows).
archive_ratio() {
	LC_ALL=C awk -F'\t' '
	$3 == "fixed" && $4 ~ /^chat/ && $17 != "" {
		c[$1 "\t" $4 "\t" $2] = $17; order[++n] = $1 "\t" $4
		if ($18 != "" && $10 < 0.95 * $18) over[$1 "\t" $4] = 1
	}
	END {
		for (i = 1; i <= n; i++) {
			key = order[i]
			if (seen[key]++ || !((key "\toff") in c) || !((key "\ton") in c)) continue
			split(key, f, "\t")
			printf "| %s | %s | %.1f µs | %.1f µs | %.2f%s |\n", f[1], f[2], c[key "\toff"], c[key "\ton"], c[key "\ton"] / c[key "\toff"],
				(key in over) ? " (overloaded: not the cost at this rate)" : ""
		}
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
	echo "Command: \`cd $ROOT && $CMDLINE\` (${ELAPSED} s; expected $EXPECTED s)"
	echo
	echo "- Host: \`$HOSTINFO\`"
	echo "- CPU: $CPUMODEL, $(nproc) CPUs; server pinned to CPU $SERVER_CPU, treff-load to CPU $LOAD_CPU; open files $NOFILE; load average before the run $LOADAVG"
	echo "- Load: treff-load $REV, SASL $MECH (unless the row says otherwise) over STARTTLS (required), one self-signed $KEYDESC certificate for all servers"
	echo "- Addresses: Treff $TREFF_ADDR:$TREFF_PORT, Prosody $PROSODY_ADDR:$PROSODY_PORT, ejabberd $EJABBERD_ADDR:$EJABBERD_PORT (node $EJABBERD_NODE), relay $RELAY_ADDR:$RELAY_PORT"
	echo "- Accounts: $([ "$ACCOUNTS" = register ] && echo "in-band registration (treff-load -register)" || echo "each server's admin tool, before the runs, outside the measured CPU")"
	printf '%s' "$ACCOUNT_NOTES"
	echo
	echo "Versions:"
	echo
	printf '%s' "$VERSIONS"
	echo
	echo "Servers, as started (archive off, then on, each with a fresh data directory):"
	echo
	printf '%s' "$SERVER_CMDS"
	if want_mode fixed; then
		echo
		echo "## At fixed rates (the users' question)"
		echo
		echo "Offered load fixed by the schedule (each client sends at its rate, shifted by its share of the period); \"offered\" is what was asked for, the next column what arrived. Server CPU per op: utime+stime of the server's processes (/proc, 10 ms ticks) over the run / ops: per delivered message (chat), per delivered copy (muc: one message in, N copies out), per delivered presence (the logins and logouts that cause them included), per login. RSS: the server's processes after the run."
		echo
		echo "| # | server | archive | run | offered | delivered | server CPU / op | p50 | p99 | server RSS | status |"
		echo "|---|---|---|---|---|---|---|---|---|---|---|"
		fixed_table
		if [ -n "$(archive_ratio)" ]; then
			echo
			echo "Archive on / off, CPU per delivered message:"
			echo
			echo "| server | run | archive off | archive on | on / off |"
			echo "|---|---|---|---|---|"
			archive_ratio
		fi
	fi
	if want_mode saturated; then
		echo
		echo "## At saturation (as fast as possible: not the typical cost)"
		echo
		echo "| # | server | archive | scenario | clients | throughput | p50 | p99 | RSS / idle session | server CPU / op | server CPU | status |"
		echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
		saturated_table
		echo
		echo "Throughput is what treff-load measured (messages delivered per second, logins completed per second). RSS per idle session is (VmRSS after the idle run - before) / sessions. For idle, CPU per op is the cost of one login."
	fi
	echo
	echo "## Commands"
	echo
	echo "Each figure's row number is the treff-load command that produced it (run from the work directory's bin/; the accounts existed, created as above):"
	echo
	awk -F'\t' '{ printf "- #%s `%s`\n", $1, $2 }' "$CMDS"
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
