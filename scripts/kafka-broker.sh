#!/usr/bin/env bash
# Runs a real Apache Kafka cluster (KRaft mode, combined broker+controller nodes) from
# Maven Central jars, for taskloop's integration tests. No Docker, no Kafka tarball:
# scripts/kafka/pom.xml resolves the jars into ~/.m2 and `java` runs them.
#
# Run `scripts/kafka-broker.sh --help` for the commands.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
self="$here/$(basename "${BASH_SOURCE[0]}")"
pom_dir="$here/kafka"

cache_dir="${TASKLOOP_KAFKA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/taskloop-kafka}"
start_timeout="${KAFKA_START_TIMEOUT:-90}"
stop_timeout="${KAFKA_STOP_TIMEOUT:-20}"
heap_opts="${KAFKA_HEAP_OPTS:--Xms128m -Xmx512m}"
jvm_opts="${KAFKA_JVM_OPTS:--XX:+UseSerialGC -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true}"
default_port=19092

usage() {
  cat <<'EOF'
usage: scripts/kafka-broker.sh COMMAND [ARGS]

A real Apache Kafka cluster in KRaft mode for tests: jars from Maven Central, one
java process per node, every listener on 127.0.0.1. All state lives in DIR.

commands:
  start DIR [--nodes 1|3] [--port BASE] [--watch PID] [--sasl-ssl USER]
        Write the config of each node into DIR, format storage (first time only),
        start the nodes, wait until every broker answers metadata, and print the
        bootstrap servers as the last line of stdout. Idempotent: nodes already
        running are left alone, stopped ones are started again on their old data.
        Node N listens on BASE+N-1 (clients) and BASE+100+N-1 (controller).
        BASE defaults to $TASKLOOP_KAFKA_PORT, else 19092.
        --watch PID stops the cluster once process PID has exited (a guard for
        test runners that are killed before their own cleanup runs).
        --sasl-ssl USER adds a SASL_SSL listener on BASE+200+N-1 (SCRAM-SHA-512,
        TLS with a certificate for 127.0.0.1 signed by a CA made in DIR/tls; the
        CA is DIR/tls/ca.pem, what clients give as ssl.ca.location) and creates
        the SCRAM-SHA-512 user USER with the password in $KAFKA_SASL_PASSWORD
        when the storage is formatted. The PLAINTEXT listener stays (for admin
        tools and test producers). Needs openssl and keytool, and Kafka 3.9.1:
        Kafka 4.1.0 refuses the SCRAM-SHA-512 login of Debian's librdkafka 2.0.2
        as invalid credentials, however the user is created.
  sasl-bootstrap DIR  Print the SASL_SSL bootstrap servers string.
  stop DIR            SIGTERM every node, SIGKILL after $KAFKA_STOP_TIMEOUT s (20).
  kill DIR NODE       kill -9 one node (for failover tests).
  restart DIR NODE    Stop one node (if running), start it, wait until it is back.
  status DIR          One line per node; exit 0 when all nodes are up, 1 otherwise.
  bootstrap DIR       Print the bootstrap servers string.
  topic DIR NAME PARTITIONS [RF]
        Create a topic (if missing) and wait until every partition has a leader.
        RF defaults to min(nodes, 3).
  classpath           Resolve the jars (downloads on first use) and print the
                      path of the file holding the classpath.

environment:
  KAFKA_VERSION         3 (default, Kafka 3.9.1) or 4 (Kafka 4.1.0); 3.9.1, 3.x,
                        4.1.0 and 4.x are accepted too. Taken at `start`, then
                        remembered in DIR.
  TASKLOOP_KAFKA_PORT   default BASE port (19092).
  KAFKA_START_TIMEOUT   seconds to wait for the brokers (90).
  KAFKA_STOP_TIMEOUT    seconds between SIGTERM and SIGKILL (20).
  KAFKA_HEAP_OPTS       JVM heap options ("-Xms128m -Xmx512m").
  KAFKA_SASL_PASSWORD   the SCRAM user's password for `start --sasl-ssl`.
  KAFKA_EXTRA_PROPERTIES  broker properties, KEY=VALUE one per line, appended to
                        each node's server.properties when `start` first writes it
                        (e.g. auto.create.topics.enable=false).
  TASKLOOP_KAFKA_CACHE  where resolved classpaths are cached
                        (~/.cache/taskloop-kafka).

needs: java 17+, Maven (first use, to download from Maven Central), kcat;
openssl and keytool for --sasl-ssl.
EOF
}

die() { echo "kafka-broker: error: $*" >&2; exit 1; }
say() { echo "kafka-broker: $*" >&2; }

# ---- versions and classpath -------------------------------------------------------

# Sets kafka_version and kafka_profile from a KAFKA_VERSION value.
pick_version() {
  case "${1:-3}" in
    3 | 3.x | 3.9 | 3.9.1) kafka_version=3.9.1 kafka_profile=kafka3 ;;
    4 | 4.x | 4.1 | 4.1.0) kafka_version=4.1.0 kafka_profile=kafka4 ;;
    *) die "unsupported KAFKA_VERSION '$1' (use 3 for 3.9.1 or 4 for 4.1.0)" ;;
  esac
}

need_java() {
  command -v java >/dev/null 2>&1 ||
    die "java not found on PATH; Kafka needs a Java 17+ runtime (Debian: apt-get install openjdk-17-jre-headless)"
  local v
  v="$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1)"
  [ -n "$v" ] && [ "$v" -ge 17 ] 2>/dev/null ||
    die "java ${v:-?} found; Kafka $kafka_version here needs Java 17 or newer"
}

need_kcat() {
  command -v kcat >/dev/null 2>&1 ||
    die "kcat not found on PATH; it is used to check the brokers (Debian: apt-get install kcat, or scripts/install-deps.sh)"
}

# Sets cp_file to a file holding the classpath of kafka_version, downloading the jars
# through Maven when they are not cached yet.
resolve_classpath() {
  cp_file="$cache_dir/classpath-$kafka_version.txt"
  if [ -s "$cp_file" ]; then
    local ok=1 jar
    local IFS=:
    for jar in $(cat "$cp_file"); do [ -f "$jar" ] || { ok=0; break; }; done
    unset IFS
    [ "$ok" -eq 1 ] && return 0
  fi
  command -v mvn >/dev/null 2>&1 ||
    die "Kafka $kafka_version jars are not cached and mvn is not on PATH; install Maven (Debian: apt-get install maven)"
  mkdir -p "$cache_dir"
  local log="$cache_dir/mvn-$kafka_version.log" tmp="$cp_file.tmp.$$"
  say "resolving Kafka $kafka_version jars with Maven (first use downloads ~90 MB from Maven Central)"
  if ! mvn -B -q -ntp -Dstyle.color=never -f "$pom_dir/pom.xml" -P "$kafka_profile" \
      org.apache.maven.plugins:maven-dependency-plugin:3.6.1:build-classpath -Dmdep.outputFile="$tmp" >"$log" 2>&1 || [ ! -s "$tmp" ]; then
    rm -f "$tmp"
    sed -e 's/\x1b\[[0-9;]*m//g' "$log" | grep -m 1 -F '[ERROR]' >&2 || true
    if grep -qiE 'transfer|unknownhost|unknown host|connect|timed out|offline|network' "$log"; then
      die "cannot download the Kafka $kafka_version jars: Maven Central is not reachable from this machine (Maven's output: $log)"
    fi
    die "Maven could not resolve the Kafka $kafka_version jars (Maven's output: $log)"
  fi
  mv "$tmp" "$cp_file"
}

log_opts() { # $1 = level
  if [ "$kafka_profile" = kafka4 ]; then
    echo "-Dlog4j2.configurationFile=$pom_dir/log4j2.properties -Dtaskloop.log.level=$1"
  else
    echo "-Dlog4j.configuration=file:$pom_dir/log4j.properties -Dtaskloop.log.level=$1"
  fi
}

# Runs a Kafka main class in the foreground with quiet logging.
run_java() { # CLASS ARGS...
  local cls="$1"
  shift
  # shellcheck disable=SC2046
  java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 $(log_opts WARN) \
    -cp "$(cat "$cp_file")" "$cls" "$@"
}

# ---- cluster state in DIR ----------------------------------------------------------

load_cluster() { # DIR
  dir="$(cd "$1" 2>/dev/null && pwd)" || die "no such directory: $1"
  [ -f "$dir/cluster.env" ] || die "$dir holds no cluster (run: $0 start $1)"
  # shellcheck disable=SC1091
  . "$dir/cluster.env"
  pick_version "$KAFKA_VERSION_USED"
  cp_file="$cache_dir/classpath-$kafka_version.txt"
}

bootstrap_of() { # [OFFSET]: 0 the PLAINTEXT listeners, 200 the SASL_SSL ones
  local n out=""
  for n in $(seq 1 "$NODES"); do out="${out:+$out,}127.0.0.1:$((PORT_BASE + ${1:-0} + n - 1))"; done
  echo "$out"
}

node_ports() { # NODE -> the ports node N listens on
  echo $((PORT_BASE + $1 - 1)) $((PORT_BASE + 100 + $1 - 1))
  [ -z "${SASL_USER:-}" ] || echo $((PORT_BASE + 200 + $1 - 1))
}

# ---- SASL_SSL (start --sasl-ssl) -----------------------------------------------------

# Makes DIR/tls once: a CA (ca.pem, what clients trust), a broker certificate for
# 127.0.0.1 and localhost signed by it, and the broker's PKCS12 keystore holding both.
make_tls() {
  local t="$dir/tls"
  [ -f "$t/broker.p12" ] && return 0
  command -v openssl >/dev/null 2>&1 || die "openssl not found on PATH; --sasl-ssl makes certificates with it"
  command -v keytool >/dev/null 2>&1 || die "keytool not found on PATH; it comes with the Java runtime"
  mkdir -p "$t"
  (
    umask 077
    cd "$t"
    openssl rand -hex 16 >keystore.pass
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=taskloop test CA" \
      -keyout ca.key -out ca.pem
    openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout broker.key -out broker.csr
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >broker.ext
    openssl x509 -req -in broker.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
      -extfile broker.ext -out broker.pem
    openssl pkcs12 -export -name broker -in broker.pem -inkey broker.key -certfile ca.pem \
      -passout "file:keystore.pass" -out broker.p12.tmp
    # Java must read what openssl wrote; keytool says so now rather than the broker later.
    keytool -list -storetype PKCS12 -keystore broker.p12.tmp -storepass "$(cat keystore.pass)"
    mv broker.p12.tmp broker.p12
    chmod 644 ca.pem
  ) >"$dir/tls.log" 2>&1 || { cat "$dir/tls.log" >&2; die "making the TLS certificates in $t failed"; }
}

# The librdkafka properties of a SASL_SSL client of this cluster (for kcat -F), only
# readable by their owner since they hold the password.
write_sasl_client() {
  (
    umask 077
    cat >"$dir/tls/client.properties" <<EOF
security.protocol=SASL_SSL
sasl.mechanisms=SCRAM-SHA-512
sasl.username=$SASL_USER
sasl.password=$KAFKA_SASL_PASSWORD
ssl.ca.location=$dir/tls/ca.pem
EOF
  )
}

node_pid() { # NODE -> prints the pid when that node's java process is alive
  local f="$dir/node$1.pid" pid
  [ -f "$f" ] || return 1
  pid="$(cat "$f")"
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$dir/node$1/server.properties" || return 1
  echo "$pid"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

check_node_arg() { # NODE
  [[ "$1" =~ ^[0-9]+$ ]] && [ "$1" -ge 1 ] && [ "$1" -le "$NODES" ] ||
    die "node must be 1..$NODES, not '$1'"
}

write_config() { # NODE
  local n="$1" voters="" i rf isr
  for i in $(seq 1 "$NODES"); do
    voters="${voters:+$voters,}$i@127.0.0.1:$((PORT_BASE + 100 + i - 1))"
  done
  if [ "$NODES" -ge 3 ]; then rf=3 isr=2; else rf=1 isr=1; fi
  mkdir -p "$dir/node$n/data"
  local sasl_l="" sasl_m=""
  if [ -n "${SASL_USER:-}" ]; then
    sasl_l=",SASL_SSL://127.0.0.1:$((PORT_BASE + 200 + n - 1))"
    sasl_m=",SASL_SSL:SASL_SSL"
  fi
  cat >"$dir/node$n/server.properties" <<EOF
# Written by scripts/kafka-broker.sh: node $n of $NODES, Kafka $kafka_version, KRaft mode.
process.roles=broker,controller
node.id=$n
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$((PORT_BASE + n - 1)),CONTROLLER://127.0.0.1:$((PORT_BASE + 100 + n - 1))$sasl_l
advertised.listeners=PLAINTEXT://127.0.0.1:$((PORT_BASE + n - 1))$sasl_l
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT$sasl_m
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/node$n/data

num.partitions=1
auto.create.topics.enable=true
delete.topic.enable=true
default.replication.factor=$rf
min.insync.replicas=$isr
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
transaction.state.log.num.partitions=4
group.initial.rebalance.delay.ms=0
# A killed node is fenced, and a restarted one admitted again, within seconds.
broker.heartbeat.interval.ms=1000
broker.session.timeout.ms=5000

num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
log.retention.hours=24
log.segment.bytes=67108864
log.cleaner.dedupe.buffer.size=8388608
EOF
  # Clients authenticate on SASL_SSL; brokers and controllers still talk PLAINTEXT.
  [ -z "${SASL_USER:-}" ] || cat >>"$dir/node$n/server.properties" <<EOF
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
ssl.keystore.type=PKCS12
ssl.keystore.location=$dir/tls/broker.p12
ssl.keystore.password=$(cat "$dir/tls/keystore.pass")
ssl.client.auth=none
EOF
  # Later lines win in a properties file: the caller's overrides go last.
  [ -z "${KAFKA_EXTRA_PROPERTIES:-}" ] ||
    printf '# From KAFKA_EXTRA_PROPERTIES:\n%s\n' "$KAFKA_EXTRA_PROPERTIES" >>"$dir/node$n/server.properties"
}

format_node() { # NODE
  local n="$1"
  [ -f "$dir/node$n/data/meta.properties" ] && return 0
  local scram=()
  [ -z "${SASL_USER:-}" ] ||
    scram=(--add-scram "SCRAM-SHA-512=[name=$SASL_USER,password=$KAFKA_SASL_PASSWORD]")
  run_java kafka.tools.StorageTool format -t "$CLUSTER_ID" \
    -c "$dir/node$n/server.properties" "${scram[@]}" >"$dir/node$n/format.log" 2>&1 ||
    { cat "$dir/node$n/format.log" >&2; die "formatting the storage of node $n failed"; }
}

launch_node() { # NODE
  local n="$1" pid p
  if pid="$(node_pid "$n")"; then return 0; fi
  for p in $(node_ports "$n"); do
    port_open "$p" && die "port $p on 127.0.0.1 is already in use (another broker? choose --port or TASKLOOP_KAFKA_PORT)"
  done
  format_node "$n"
  # shellcheck disable=SC2086
  setsid java $heap_opts $jvm_opts $(log_opts INFO) \
    -cp "$(cat "$cp_file")" kafka.Kafka "$dir/node$n/server.properties" \
    >>"$dir/node$n/server.log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$dir/node$n.pid"
  launched+=("$n")
  # The pid is a shell for a moment before it becomes java: wait for the exec.
  local i
  for ((i = 0; i < 50; i++)); do
    node_pid "$n" >/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  node_pid "$n" >/dev/null || {
    tail -n 30 "$dir/node$n/server.log" >&2 || true
    die "node $n did not start (log: $dir/node$n/server.log)"
  }
}

# Waits until node N's listener answers metadata listing all brokers that should be up.
wait_node() { # NODE DEADLINE EXPECTED_BROKERS
  local n="$1" deadline="$2" want="$3" port got
  port=$((PORT_BASE + n - 1))
  while :; do
    node_pid "$n" >/dev/null || {
      tail -n 30 "$dir/node$n/server.log" >&2 || true
      die "node $n exited while starting (log: $dir/node$n/server.log)"
    }
    got="$(kcat -L -b "127.0.0.1:$port" -m 3 2>/dev/null | sed -n 's/^ *\([0-9]*\) brokers:.*/\1/p' | head -n1 || true)"
    # With SASL_SSL, that listener must let the user in too.
    if [ -n "$got" ] && [ "$got" -ge "$want" ] && { [ -z "${SASL_USER:-}" ] ||
      kcat -L -F "$dir/tls/client.properties" -b "127.0.0.1:$((port + 200))" -m 3 >/dev/null 2>&1; }; then
      return 0
    fi
    [ "$(date +%s)" -lt "$deadline" ] ||
      die "node $n (127.0.0.1:$port) did not answer metadata with $want broker(s) within ${start_timeout}s (log: $dir/node$n/server.log)"
    sleep 0.5
  done
}

count_running() {
  local n c=0
  for n in $(seq 1 "$NODES"); do node_pid "$n" >/dev/null && c=$((c + 1)); done
  echo "$c"
}

term_node() { # NODE [TIMEOUT]: SIGTERM, then SIGKILL after the timeout
  local n="$1" t="${2:-$stop_timeout}" pid i
  pid="$(node_pid "$n")" || { rm -f "$dir/node$n.pid"; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < t * 10; i++)); do
    node_pid "$n" >/dev/null || break
    sleep 0.1
  done
  if node_pid "$n" >/dev/null; then
    say "node $n did not stop within ${t}s, killing it"
    kill -KILL "$pid" 2>/dev/null || true
    while node_pid "$n" >/dev/null; do sleep 0.1; done
  fi
  rm -f "$dir/node$n.pid"
}

# ---- commands -----------------------------------------------------------------------

cmd_start() {
  [ $# -ge 1 ] || die "usage: start DIR [--nodes 1|3] [--port BASE] [--watch PID] [--sasl-ssl USER]"
  local arg_dir="$1" nodes="" port="" watch="" sasl=""
  shift
  while [ $# -gt 0 ]; do
    case "$1" in
      --nodes) nodes="${2:-}"; shift 2 || die "--nodes needs a value" ;;
      --nodes=*) nodes="${1#*=}"; shift ;;
      --port) port="${2:-}"; shift 2 || die "--port needs a value" ;;
      --port=*) port="${1#*=}"; shift ;;
      --watch) watch="${2:-}"; shift 2 || die "--watch needs a pid" ;;
      --watch=*) watch="${1#*=}"; shift ;;
      --sasl-ssl) sasl="${2:-}"; shift 2 || die "--sasl-ssl needs a user name" ;;
      --sasl-ssl=*) sasl="${1#*=}"; shift ;;
      *) die "start: unknown argument '$1'" ;;
    esac
  done
  [ -z "$nodes" ] || [ "$nodes" = 1 ] || [ "$nodes" = 3 ] || die "--nodes must be 1 or 3"
  [ -z "$port" ] || [[ "$port" =~ ^[0-9]+$ && "$port" -ge 1024 && "$port" -le 65000 ]] ||
    die "--port must be a number in 1024..65000"
  [ -z "$watch" ] || [[ "$watch" =~ ^[0-9]+$ ]] || die "--watch needs a pid"
  # Kafka's --add-scram syntax has no quoting to rely on: plain words only.
  [ -z "$sasl" ] || [[ "$sasl" =~ ^[A-Za-z0-9._-]+$ ]] || die "--sasl-ssl USER must be letters, digits, '.', '_' or '-'"
  [ -z "$sasl" ] || [[ "${KAFKA_SASL_PASSWORD:-}" =~ ^[A-Za-z0-9._-]{8,}$ ]] ||
    die "--sasl-ssl needs KAFKA_SASL_PASSWORD: 8 or more letters, digits, '.', '_' or '-'"

  mkdir -p "$arg_dir"
  dir="$(cd "$arg_dir" && pwd)"
  if [ -f "$dir/cluster.env" ]; then
    # shellcheck disable=SC1091
    . "$dir/cluster.env"
    [ -z "$nodes" ] || [ "$nodes" = "$NODES" ] || die "$dir holds a $NODES-node cluster; stop it and use another DIR"
    [ -z "$port" ] || [ "$port" = "$PORT_BASE" ] || die "$dir holds a cluster on port $PORT_BASE; stop it and use another DIR"
    [ -z "$sasl" ] || [ "$sasl" = "${SASL_USER:-}" ] || die "$dir holds a cluster without SASL_SSL user $sasl; stop it and use another DIR"
    if [ -n "${KAFKA_VERSION:-}" ]; then
      pick_version "$KAFKA_VERSION"
      [ "$kafka_version" = "$KAFKA_VERSION_USED" ] || die "$dir holds a Kafka $KAFKA_VERSION_USED cluster, not $kafka_version"
    fi
    pick_version "$KAFKA_VERSION_USED"
  else
    pick_version "${KAFKA_VERSION:-3}"
    NODES="${nodes:-1}"
    PORT_BASE="${port:-${TASKLOOP_KAFKA_PORT:-$default_port}}"
    SASL_USER="$sasl"
    CLUSTER_ID=""
  fi
  [ -z "${SASL_USER:-}" ] || [ "$kafka_profile" = kafka3 ] ||
    die "--sasl-ssl needs Kafka 3.9.1 (KAFKA_VERSION=3): Kafka $kafka_version refuses librdkafka 2.0.2's SCRAM-SHA-512 login"
  need_java
  need_kcat
  resolve_classpath

  if [ ! -f "$dir/cluster.env" ]; then
    CLUSTER_ID="$(run_java kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n1)"
    [[ "$CLUSTER_ID" =~ ^[A-Za-z0-9_-]{22}$ ]] || die "kafka.tools.StorageTool random-uuid gave no cluster id"
    cat >"$dir/cluster.env" <<EOF
NODES=$NODES
PORT_BASE=$PORT_BASE
KAFKA_VERSION_USED=$kafka_version
CLUSTER_ID=$CLUSTER_ID
SASL_USER=$SASL_USER
EOF
  fi
  if [ -n "${SASL_USER:-}" ]; then
    [ -n "${KAFKA_SASL_PASSWORD:-}" ] || die "$dir holds a SASL_SSL cluster: set KAFKA_SASL_PASSWORD"
    make_tls
    write_sasl_client
  fi

  # When anything below fails, stop the nodes this call started.
  launched=()
  trap 'rc=$?; if [ $rc -ne 0 ]; then for n in "${launched[@]}"; do term_node "$n" 5; done; fi' EXIT

  local n p
  for n in $(seq 1 "$NODES"); do
    [ -f "$dir/node$n/server.properties" ] || write_config "$n"
    node_pid "$n" >/dev/null && continue
    for p in $(node_ports "$n"); do
      port_open "$p" && die "port $p on 127.0.0.1 is already in use (another broker? choose --port or TASKLOOP_KAFKA_PORT)"
    done
  done
  for n in $(seq 1 "$NODES"); do launch_node "$n"; done
  [ ${#launched[@]} -eq 0 ] || say "started Kafka $kafka_version node(s) ${launched[*]} in $dir"

  local deadline=$(($(date +%s) + start_timeout))
  for n in $(seq 1 "$NODES"); do wait_node "$n" "$deadline" "$NODES"; done
  launched=()
  trap - EXIT

  if [ -n "$watch" ]; then
    [ -f "$dir/watch.pid" ] && kill "$(cat "$dir/watch.pid")" 2>/dev/null || true
    setsid bash -c 'while kill -0 "$1" 2>/dev/null; do sleep 2; done; rm -f "$2/watch.pid"; exec "$3" stop "$2"' \
      watch "$watch" "$dir" "$self" >>"$dir/watch.log" 2>&1 </dev/null &
    echo $! >"$dir/watch.pid"
  fi
  bootstrap_of
}

cmd_stop() {
  [ $# -eq 1 ] || die "usage: stop DIR"
  [ -f "$1/cluster.env" ] || { say "no cluster in $1, nothing to stop"; return 0; }
  load_cluster "$1"
  if [ -f "$dir/watch.pid" ]; then
    local w
    w="$(cat "$dir/watch.pid")"
    rm -f "$dir/watch.pid"
    [ "$w" = "$$" ] || kill "$w" 2>/dev/null || true
  fi
  local n pid pids=()
  for n in $(seq 1 "$NODES"); do
    if pid="$(node_pid "$n")"; then kill -TERM "$pid" 2>/dev/null || true; pids+=("$n"); fi
  done
  # All nodes got SIGTERM at once; now give each the rest of the timeout.
  for n in "${pids[@]}"; do term_node "$n"; done
  for n in $(seq 1 "$NODES"); do rm -f "$dir/node$n.pid"; done
  [ ${#pids[@]} -eq 0 ] || say "stopped node(s) ${pids[*]} in $dir"
}

cmd_kill() {
  [ $# -eq 2 ] || die "usage: kill DIR NODE"
  load_cluster "$1"
  check_node_arg "$2"
  local pid
  if pid="$(node_pid "$2")"; then
    kill -KILL "$pid"
    while node_pid "$2" >/dev/null; do sleep 0.1; done
    say "killed node $2 (pid $pid)"
  else
    say "node $2 is not running"
  fi
  rm -f "$dir/node$2.pid"
}

cmd_restart() {
  [ $# -eq 2 ] || die "usage: restart DIR NODE"
  load_cluster "$1"
  check_node_arg "$2"
  need_java
  need_kcat
  resolve_classpath
  term_node "$2"
  launched=()
  launch_node "$2"
  local deadline=$(($(date +%s) + start_timeout))
  wait_node "$2" "$deadline" "$(count_running)"
  say "node $2 is back"
}

cmd_status() {
  [ $# -eq 1 ] || die "usage: status DIR"
  load_cluster "$1"
  local n pid up=0 state
  echo "Kafka $kafka_version, $NODES node(s), cluster $CLUSTER_ID, bootstrap $(bootstrap_of)"
  for n in $(seq 1 "$NODES"); do
    if pid="$(node_pid "$n")"; then
      if kcat -L -b "127.0.0.1:$((PORT_BASE + n - 1))" -m 3 >/dev/null 2>&1; then
        state="up"; up=$((up + 1))
      else
        state="starting"
      fi
      echo "node$n $state pid $pid 127.0.0.1:$((PORT_BASE + n - 1))"
    else
      echo "node$n stopped 127.0.0.1:$((PORT_BASE + n - 1))"
    fi
  done
  [ "$up" -eq "$NODES" ]
}

cmd_topic() {
  [ $# -ge 3 ] && [ $# -le 4 ] || die "usage: topic DIR NAME PARTITIONS [RF]"
  load_cluster "$1"
  local name="$2" parts="$3" rf="${4:-}"
  [ -n "$rf" ] || rf=$((NODES < 3 ? NODES : 3))
  [[ "$parts" =~ ^[0-9]+$ && "$parts" -ge 1 ]] || die "PARTITIONS must be a positive number"
  [[ "$rf" =~ ^[0-9]+$ && "$rf" -ge 1 ]] || die "RF must be a positive number"
  need_java
  need_kcat
  resolve_classpath
  local bs out
  bs="$(bootstrap_of)"
  out="$(run_java org.apache.kafka.tools.TopicCommand --bootstrap-server "$bs" --create --if-not-exists \
    --topic "$name" --partitions "$parts" --replication-factor "$rf" 2>&1)" ||
    { echo "$out" >&2; die "creating topic $name failed"; }
  # Wait until the metadata shows every partition with a leader.
  local deadline=$(($(date +%s) + 30)) have
  while :; do
    have="$(kcat -L -b "$bs" -t "$name" -m 3 2>/dev/null |
      grep -cE '^ +partition [0-9]+, leader [0-9]+,' || true)"
    [ "$have" -ge "$parts" ] && break
    [ "$(date +%s)" -lt "$deadline" ] || die "topic $name has $have of $parts partitions with a leader after 30s"
    sleep 0.3
  done
  say "topic $name ready ($have partitions, replication factor $rf)"
}

cmd_bootstrap() {
  [ $# -eq 1 ] || die "usage: bootstrap DIR"
  load_cluster "$1"
  bootstrap_of
}

cmd_sasl_bootstrap() {
  [ $# -eq 1 ] || die "usage: sasl-bootstrap DIR"
  load_cluster "$1"
  [ -n "${SASL_USER:-}" ] || die "$dir holds a cluster without a SASL_SSL listener (start --sasl-ssl USER)"
  bootstrap_of 200
}

cmd_classpath() {
  pick_version "${KAFKA_VERSION:-3}"
  need_java
  resolve_classpath
  echo "$cp_file"
}

[ $# -ge 1 ] || { usage >&2; exit 2; }
command="$1"
shift
case "$command" in
  -h | --help | help) usage ;;
  start) cmd_start "$@" ;;
  stop) cmd_stop "$@" ;;
  kill) cmd_kill "$@" ;;
  restart) cmd_restart "$@" ;;
  status) cmd_status "$@" ;;
  topic) cmd_topic "$@" ;;
  bootstrap) cmd_bootstrap "$@" ;;
  sasl-bootstrap) cmd_sasl_bootstrap "$@" ;;
  classpath) cmd_classpath "$@" ;;
  *) usage >&2; die "unknown command '$command'" ;;
esac
