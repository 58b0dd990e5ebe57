#!/bin/bash
# bench/cluster.sh LABEL NODES ADDRS(same|cross|haproxy) RATE_PER_USER [USERS] — treff-load against
# 1..3 community nodes (-store postgres -cluster yes) on one throwaway PostgreSQL (fsync on).
# Nodes and PostgreSQL on CPU 0, treff-load and HAProxy on CPU 1. Prints treff-load's line
# (server CPU = sum over the nodes) and PostgreSQL's CPU over the same run.
# env: BIN (treff-community), LOADBIN (treff-load), CERT and KEY (a certificate for localhost),
# EXTRA (node flags), DUR (default 20s), ARCHIVE (yes|no, default no), CLUSTER (yes|no),
# LOADARGS (more treff-load flags, e.g. -sm), KEEP=1 (keep the work directory).
# Runs as root (PostgreSQL as the user postgres). Used for docs/benchmarks.md, issue 22.
set -u
LABEL=$1 NODES=$2 MODE=$3 RATE=$4 USERS=${5:-200}
BIN=${BIN:?build examples/community and set BIN}
LOAD=${LOADBIN:?build cmd/treff-load and set LOADBIN}
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | tail -1)
D=$(mktemp -d /tmp/treff-cluster.XXXX); chown postgres $D
PGPORT=25432
for i in $(seq 300); do (exec 3<>/dev/tcp/127.0.0.1/$PGPORT) 2>/dev/null || break; sleep 0.1; done # the previous run's PostgreSQL gone
runuser -u postgres -- $PGBIN/initdb -D $D/pg -U postgres --auth trust -E UTF8 --locale C >/dev/null
runuser -u postgres -- $PGBIN/postgres -D $D/pg -p $PGPORT -k $D -h 127.0.0.1 -c fsync=on -c max_connections=200 -c shared_buffers=128MB >$D/pg.log 2>&1 &
RUPID=$!; for i in $(seq 50); do PGPID=$(pgrep -P $RUPID); [ -n "$PGPID" ] && break; sleep 0.1; done
taskset -pc 0 $PGPID >/dev/null
DSN="postgres://postgres@127.0.0.1:$PGPORT/postgres?sslmode=disable"
for i in $(seq 100); do $PGBIN/pg_isready -h 127.0.0.1 -p $PGPORT -q && break; sleep 0.2; done
mkdir -p $D/admin
for i in $(seq 0 $((USERS-1))); do echo "load$i@localhost loadtest-password"; done | $BIN adduser -data $D/admin -store postgres -pg-dsn "$DSN" -batch >/dev/null 2>&1 || echo "adduser failed"
ROUTES=""; for i in $(seq 1 $NODES); do ROUTES="$ROUTES${ROUTES:+,}127.0.0.$((20+i)):26222"; done
PIDS=""; ADDRS=""
for i in $(seq 1 $NODES); do
  H=127.0.0.$((20+i))
  mkdir -p $D/n$i
  taskset -c 0 $BIN serve -domain localhost -data $D/n$i -c2s $H:25222 -c2s-tls '' -s2s '' -http '' -https '' \
    -cert ${CERT:?a certificate file (CERT) and key (KEY) for localhost} -key $KEY -log-level warn -limit-messages none -limit-strangers none -limit-pre-auth none \
    -store postgres -pg-dsn "$DSN" $( [ "${CLUSTER:-yes}" = yes ] && echo "-cluster yes -cluster-listen $H:26222 -cluster-peers $ROUTES -node-name n$i" ) -archive ${ARCHIVE:-no} ${EXTRA:-} >$D/n$i.log 2>&1 &
  PIDS="$PIDS${PIDS:+,}$!"; ADDRS="$ADDRS${ADDRS:+,}$H:25222"
done
for i in $(seq 1 $NODES); do H=127.0.0.$((20+i)); for j in $(seq 100); do (exec 3<>/dev/tcp/$H/25222) 2>/dev/null && break; sleep 0.2; done; done
sleep 3 # routes up, nodes announced (heartbeat 1 s)
case $MODE in
same) TARGET=127.0.0.21:25222 ;;
cross) TARGET=$ADDRS ;;
haproxy)
  cat > $D/haproxy.cfg <<HA
global
  maxconn 9000
defaults
  mode tcp
  timeout connect 5s
  timeout client 10m
  timeout server 10m
frontend c2s
  bind 127.0.0.20:25222
  default_backend nodes
backend nodes
  balance roundrobin
$(for i in $(seq 1 $NODES); do echo "  server n$i 127.0.0.$((20+i)):25222"; done)
HA
  taskset -c 1 haproxy -f $D/haproxy.cfg -db >$D/haproxy.log 2>&1 &
  HAPID=$!
  for j in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.20/25222) 2>/dev/null && break; sleep 0.1; done
  TARGET=127.0.0.20:25222 ;;
esac
pgcpu() { local t=0; for p in $(pgrep -u postgres -f "postgres" ; pgrep -P $PGPID); do [ -r /proc/$p/stat ] && t=$((t + $(awk '{print $14+$15}' /proc/$p/stat))); done; echo $t; }
taskset -c 1 $LOAD -addr $TARGET -domain localhost -prefix load -password loadtest-password -insecure -users $USERS -rate $RATE -pid $PIDS -scenario chat -duration ${DUR:-20s} ${LOADARGS:-} > $D/load.out 2>&1 &
LP=$!
# PostgreSQL's CPU over the measured part: treff-load settles before it measures; sample around the run.
P0=$(pgcpu); T0=$(date +%s.%N)
wait $LP
P1=$(pgcpu); T1=$(date +%s.%N)
OPS=$(grep -o 'ops=[0-9]*' $D/load.out | head -1 | cut -d= -f2)
echo "$LABEL nodes=$NODES mode=$MODE rate/user=$RATE users=$USERS: $(grep -i 'cpu\|error' $D/load.out | tr '\n' ' ')"
echo "  postgres cpu over the whole load run (login+settle+measure): $(( (P1-P0)*10 )) ms; ops=$OPS"
grep -i "error\|warn" $D/n1.log | head -3
[ -n "${HAPID:-}" ] && kill $HAPID
for p in ${PIDS//,/ }; do kill $p; done; for p in ${PIDS//,/ }; do wait $p 2>/dev/null; done
kill -INT $PGPID; for i in $(seq 300); do kill -0 $PGPID 2>/dev/null || break; sleep 0.1; done; wait $RUPID 2>/dev/null
[ "${KEEP:-0}" = 1 ] && echo "kept $D" || rm -rf $D
