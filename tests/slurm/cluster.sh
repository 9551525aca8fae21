#!/usr/bin/env bash
# A real single-node Slurm 22.05 cluster for the test suite: slurmctld + slurmd + slurmdbd (MariaDB) + munged,
# all on 127.0.0.1, with fake GPUs, two partitions (cpu, gpu) and accounting (sacct).
#
#   tests/slurm/cluster.sh setup    install the Debian packages if missing, write the configuration, start, wait
#   tests/slurm/cluster.sh start    start whatever is not running (configuration must exist)
#   tests/slurm/cluster.sh stop     stop all daemons (by the pids in the state directory)
#   tests/slurm/cluster.sh status   daemons, node, partitions; exit 0 only when everything is up and the node usable
#   tests/slurm/cluster.sh env      export lines for a shell: eval "$(tests/slurm/cluster.sh env)"
#
# Needs root and (for the first setup) apt-get with a reachable Debian mirror. No systemd, no cgroups:
# the script starts the daemons itself (detached with setsid) and stops them by pid.
#
# Everything lives under one directory, TALLTALES_SLURM_DIR (default /tmp/talltales-slurm). Other knobs:
#   TALLTALES_SLURM_GPUS       fake GPUs on the node (default 8); each is <dir>/dev/nvidiaK -> /dev/null
#   TALLTALES_SLURM_CPUS       CPUs declared for the node (default 16, more than the machine may have:
#                              SlurmdParameters=config_overrides; jobs are not pinned, task/none)
#   TALLTALES_SLURM_MEM_MB     RealMemory declared for the node (default 64000, likewise only declared)
#   TALLTALES_SLURM_PORT_BASE  slurmctld port; slurmd, slurmdbd and mariadbd use the next three (default 6817)
#   TALLTALES_SLURM_ETC_LINK   1 (default): make /etc/slurm/slurm.conf a symlink to the generated slurm.conf when
#                              that path is free or already our link. Commands that lose SLURM_CONF find the
#                              cluster there: the Snakemake jobstep plugin strips SLURM_* (SLURM_CONF included)
#                              from the environment of the `srun` it runs inside each job. 0: never touch /etc.
set -euo pipefail

DIR=${TALLTALES_SLURM_DIR:-/tmp/talltales-slurm}
GPUS=${TALLTALES_SLURM_GPUS:-8}
CPUS=${TALLTALES_SLURM_CPUS:-16}
MEM_MB=${TALLTALES_SLURM_MEM_MB:-64000}
PORT=${TALLTALES_SLURM_PORT_BASE:-6817}
ETC_LINK=${TALLTALES_SLURM_ETC_LINK:-1}
CLUSTER=talltales
NODE=tt-node1
ACCOUNT=talltales
DB_USER=slurm
DB_PASS=talltales-slurm-db

CTLD_PORT=$PORT
SLURMD_PORT=$((PORT + 1))
DBD_PORT=$((PORT + 2))
DB_PORT=$((PORT + 3))

ETC=$DIR/etc
RUN=$DIR/run
LOG=$DIR/log
SLURM_CONF_FILE=$ETC/slurm.conf
MUNGE_SOCKET=$RUN/munge.socket.2
DB_SOCKET=$RUN/mariadb.sock
export SLURM_CONF=$SLURM_CONF_FILE

PACKAGES=(slurm-wlm munge slurmdbd mariadb-server)
BINARIES=(slurmctld slurmd slurmdbd sbatch srun sacct sacctmgr munged munge mariadbd mariadb mariadb-install-db)

say() { echo "[slurm-cluster] $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

# --------------------------------------------------------------------------------------------- install

missing_binaries() {
    local b out=()
    for b in "${BINARIES[@]}"; do
        command -v "$b" >/dev/null 2>&1 || [ -x "/usr/sbin/$b" ] || out+=("$b")
    done
    echo "${out[@]:-}"
}

install_packages() {
    local missing
    missing=$(missing_binaries)
    [ -z "$missing" ] && return 0
    [ "$(id -u)" = 0 ] || die "not root: cannot install Slurm (missing: $missing)"
    command -v apt-get >/dev/null 2>&1 || die "no apt-get: cannot install Slurm (missing: $missing)"
    say "installing ${PACKAGES[*]} (missing: $missing)"
    export DEBIAN_FRONTEND=noninteractive
    # Keep the packages' maintainer scripts from starting daemons (harmless without an init system anyway).
    local policy=/usr/sbin/policy-rc.d ours=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && ours=1
    fi
    if ! apt-get install -y -q --no-install-recommends "${PACKAGES[@]}" >"$DIR/apt.log" 2>&1; then
        say "apt-get install failed; running apt-get update and retrying"
        apt-get update -q >>"$DIR/apt.log" 2>&1 || true
        apt-get install -y -q --no-install-recommends "${PACKAGES[@]}" >>"$DIR/apt.log" 2>&1 || {
            [ "$ours" = 1 ] && rm -f "$policy"
            tail -20 "$DIR/apt.log" >&2
            die "apt-get install ${PACKAGES[*]} failed (log: $DIR/apt.log)"
        }
    fi
    [ "$ours" = 1 ] && rm -f "$policy"
    missing=$(missing_binaries)
    [ -z "$missing" ] || die "still missing after install: $missing"
}

# --------------------------------------------------------------------------------------------- config

CONFIG_CHANGED=0
write_if_changed() {  # write_if_changed FILE (content on stdin); sets CONFIG_CHANGED=1 when the file changed
    local file=$1 tmp
    tmp=$(mktemp "$file.XXXXXX")
    cat >"$tmp"
    if [ -f "$file" ] && cmp -s "$tmp" "$file"; then
        rm -f "$tmp"
    else
        mv -f "$tmp" "$file"
        CONFIG_CHANGED=1
    fi
}

write_config() {
    local host
    host=$(hostname -s 2>/dev/null || uname -n)
    host=${host%%.*}
    mkdir -p "$ETC" "$RUN" "$LOG" "$DIR/dev" "$DIR/munge" "$DIR/spool/ctld" "$DIR/spool/d" "$DIR/mariadb"
    chmod 700 "$DIR/munge"

    # Fake GPUs: gres.conf needs one character device per GPU (a symlink to /dev/null counts: slurmd stats it).
    local k
    rm -f "$DIR"/dev/nvidia*
    for ((k = 0; k < GPUS; k++)); do ln -sfn /dev/null "$DIR/dev/nvidia$k"; done

    if [ ! -s "$DIR/munge/munge.key" ]; then
        dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
        chmod 400 "$DIR/munge/munge.key"
    fi

    local gres_node="" gres_conf="AutoDetect=off"$'\n'
    if [ "$GPUS" -gt 0 ]; then
        gres_node=" Gres=gpu:$GPUS"
        local files="$DIR/dev/nvidia0"
        [ "$GPUS" -gt 1 ] && files="$DIR/dev/nvidia[0-$((GPUS - 1))]"
        gres_conf+="NodeName=$NODE Name=gpu File=$files"$'\n'
    fi

    write_if_changed "$ETC/slurm.conf" <<EOF
# Generated by tests/slurm/cluster.sh; rewritten on every setup.
ClusterName=$CLUSTER
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCKET
StateSaveLocation=$DIR/spool/ctld
SlurmdSpoolDir=$DIR/spool/d
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# no systemd / cgroups in the containers this runs in
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# the node declares more CPUs/memory than the machine may have (testing only)
SlurmdParameters=config_overrides
DefMemPerCPU=500
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
MinJobAge=300
KillWait=5
InactiveLimit=0
Waittime=0
GresTypes=gpu
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=10
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
# slurmdbd connections take their MUNGE socket from here, not from AuthInfo
AccountingStoragePass=$MUNGE_SOCKET
AccountingStorageTRES=gres/gpu
# sacct shows the Snakemake plugin's --comment (rule_NAME[_wildcards_...])
AccountingStoreFlags=job_comment
JobCompType=jobcomp/none
NodeName=$NODE NodeAddr=127.0.0.1 NodeHostname=$host CPUs=$CPUS RealMemory=$MEM_MB$gres_node State=UNKNOWN
PartitionName=cpu Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$NODE Default=NO MaxTime=INFINITE State=UP
EOF
    write_if_changed "$ETC/gres.conf" <<<"$gres_conf"
    write_if_changed "$ETC/slurmdbd.conf" <<EOF
# Generated by tests/slurm/cluster.sh
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
DbdHost=$host
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
PidFile=$RUN/slurmdbd.pid
LogFile=$LOG/slurmdbd.log
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=$DB_USER
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
    chmod 600 "$ETC/slurmdbd.conf"
    # cgroup.conf is never read (proctrack/linuxproc, task/none); an empty one keeps slurmd from looking in /etc.
    [ -f "$ETC/cgroup.conf" ] || : >"$ETC/cgroup.conf"

    if [ "$ETC_LINK" = 1 ]; then
        local target=/etc/slurm/slurm.conf
        mkdir -p /etc/slurm
        if [ -L "$target" ] || [ ! -e "$target" ]; then
            ln -sfn "$SLURM_CONF_FILE" "$target"
        elif [ "$(readlink -f "$target")" != "$SLURM_CONF_FILE" ]; then
            say "warning: $target exists and is not ours; srun inside Snakemake jobs may not find the cluster"
        fi
    fi
}

# --------------------------------------------------------------------------------------------- daemons

pid_alive() {  # pid_alive NAME: the daemon's pid file names a live process
    local f=$RUN/$1.pid pid
    [ -s "$f" ] || return 1
    pid=$(tr -dc 0-9 <"$f")
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
    local secs=$1 what=$2 i
    shift 2
    for ((i = 0; i < secs * 5; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    die "timed out after ${secs}s waiting for $what (logs: $LOG)"
}

db() { mariadb --no-defaults --socket="$DB_SOCKET" -uroot "$@"; }

start_munge() {
    pid_alive munged && return 0
    rm -f "$MUNGE_SOCKET"
    # --force: root, sockets/keys under /tmp (group/world-writable parents) would otherwise be refused
    setsid munged --force --key-file="$DIR/munge/munge.key" --socket="$MUNGE_SOCKET" \
        --pid-file="$RUN/munged.pid" --log-file="$LOG/munged.log" --seed-file="$DIR/munge/munged.seed" \
        </dev/null >>"$LOG/munged.out" 2>&1
    wait_for 20 munged test -S "$MUNGE_SOCKET"
    wait_for 10 "munge round trip" sh -c "munge -S '$MUNGE_SOCKET' -n | unmunge -S '$MUNGE_SOCKET'"
}

start_mariadb() {
    local data=$DIR/mariadb/data
    if [ ! -d "$data/mysql" ]; then
        say "initialising MariaDB in $data"
        mariadb-install-db --no-defaults --user=root --datadir="$data" --auth-root-authentication-method=normal \
            --skip-test-db >"$LOG/mariadb-install.log" 2>&1 || { tail -20 "$LOG/mariadb-install.log" >&2; die "mariadb-install-db failed"; }
    fi
    if ! pid_alive mariadb; then
        rm -f "$DB_SOCKET"
        setsid mariadbd --no-defaults --user=root --datadir="$data" --socket="$DB_SOCKET" --port="$DB_PORT" \
            --bind-address=127.0.0.1 --pid-file="$RUN/mariadb.pid" --log-error="$LOG/mariadb.log" \
            --skip-name-resolve --innodb-buffer-pool-size=64M --innodb-log-file-size=48M \
            --innodb-lock-wait-timeout=900 --max-allowed-packet=16M \
            </dev/null >>"$LOG/mariadb.out" 2>&1 &
        wait_for 60 mariadbd db -e "SELECT 1"
    fi
    db <<EOF
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON slurm_acct_db.* TO '$DB_USER'@'127.0.0.1';
GRANT ALL ON slurm_acct_db.* TO '$DB_USER'@'localhost';
EOF
}

start_slurmdbd() {
    pid_alive slurmdbd && return 0
    setsid slurmdbd </dev/null >>"$LOG/slurmdbd.out" 2>&1  # forks; finds slurmdbd.conf next to $SLURM_CONF
    wait_for 60 slurmdbd timeout 10 sacctmgr -n list cluster
}

start_slurmctld() {
    pid_alive slurmctld && return 0
    setsid slurmctld -f "$SLURM_CONF_FILE" </dev/null >>"$LOG/slurmctld.out" 2>&1
    wait_for 30 slurmctld timeout 10 scontrol ping
}

start_slurmd() {
    pid_alive slurmd && return 0
    setsid slurmd -f "$SLURM_CONF_FILE" -N "$NODE" </dev/null >>"$LOG/slurmd.out" 2>&1
}

node_usable() {
    local state
    state=$(sinfo -h -n "$NODE" -o %T 2>/dev/null | head -1)
    case "$state" in idle* | mixed* | allocated* | completing*) return 0 ;; *) return 1 ;; esac
}

register_accounting() {
    if [ -z "$(sacctmgr -n -P list cluster "$CLUSTER" format=cluster)" ]; then
        sacctmgr -i add cluster "$CLUSTER" >/dev/null
    fi
    if [ -z "$(sacctmgr -n -P list account "$ACCOUNT" format=account)" ]; then
        sacctmgr -i add account "$ACCOUNT" cluster="$CLUSTER" description="talltales tests" organization=talltales >/dev/null
    fi
    local user
    user=$(id -un)
    if ! sacctmgr -n -P list association cluster="$CLUSTER" account="$ACCOUNT" user="$user" format=user | grep -qx "$user"; then
        sacctmgr -i add user "$user" account="$ACCOUNT" cluster="$CLUSTER" >/dev/null
    fi
    sacctmgr -i modify user "$user" set defaultaccount="$ACCOUNT" >/dev/null 2>&1 || true
}

do_start() {
    [ -f "$SLURM_CONF_FILE" ] || die "no configuration in $ETC: run '$0 setup' first"
    start_munge
    start_mariadb
    start_slurmdbd
    # The cluster must exist in slurmdbd before slurmctld registers with it.
    [ -n "$(sacctmgr -n -P list cluster "$CLUSTER" format=cluster)" ] || sacctmgr -i add cluster "$CLUSTER" >/dev/null
    start_slurmctld
    start_slurmd
    wait_for 60 "node $NODE to become usable" node_usable
    # After a restart the node may come back DOWN/DRAINED from saved state.
    register_accounting
    say "cluster '$CLUSTER' up: $(sinfo -h -o '%P %D %T %G' | tr '\n' ';')"
}

stop_daemons() {  # stop_daemons NAME...: TERM them together, wait up to 15 s, then KILL what is left
    local name f pid i pids=()
    for name in "$@"; do
        f=$RUN/$name.pid
        [ -s "$f" ] || continue
        pid=$(tr -dc 0-9 <"$f")
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$name:$pid")
        fi
    done
    for ((i = 0; i < 150; i++)); do
        local alive=0 entry
        for entry in "${pids[@]}"; do kill -0 "${entry#*:}" 2>/dev/null && alive=1; done
        [ "$alive" = 0 ] && break
        sleep 0.1
    done
    for entry in "${pids[@]}"; do
        if kill -0 "${entry#*:}" 2>/dev/null; then
            say "${entry%%:*} (pid ${entry#*:}) did not stop after 15 s; sending KILL"
            kill -KILL "${entry#*:}" 2>/dev/null || true
        fi
    done
    for name in "$@"; do rm -f "$RUN/$name.pid"; done
}

do_stop() {
    # slurmctld may still send accounting records to slurmdbd, which needs MariaDB and MUNGE.
    stop_daemons slurmd slurmctld
    stop_daemons slurmdbd
    stop_daemons mariadb munged
    say "stopped"
}

do_status() {
    local d rc=0
    for d in munged mariadb slurmdbd slurmctld slurmd; do
        if pid_alive "$d"; then echo "$d: running (pid $(tr -dc 0-9 <"$RUN/$d.pid"))"; else echo "$d: stopped"; rc=1; fi
    done
    if [ "$rc" = 0 ]; then
        sinfo -o '%P %a %D %T %c %m %G' || rc=1
        node_usable || { echo "node $NODE not usable"; rc=1; }
        sacctmgr -n -P list association cluster="$CLUSTER" format=cluster,account,user || rc=1
    fi
    return "$rc"
}

do_env() {
    printf 'export TALLTALES_SLURM_DIR=%q\n' "$DIR"
    printf 'export SLURM_CONF=%q\n' "$SLURM_CONF_FILE"
}

do_setup() {
    local t0=$SECONDS
    mkdir -p "$DIR"
    install_packages
    write_config
    if [ "$CONFIG_CHANGED" = 1 ] && { pid_alive slurmctld || pid_alive slurmd || pid_alive slurmdbd; }; then
        say "configuration changed: restarting"
        do_stop
    fi
    do_start
    say "setup done in $((SECONDS - t0)) s"
}

case "${1:-}" in
    setup) do_setup ;;
    start) do_start ;;
    stop) do_stop ;;
    restart) do_stop; do_start ;;
    status) do_status ;;
    env) do_env ;;
    *) echo "usage: $0 {setup|start|stop|restart|status|env}" >&2; exit 2 ;;
esac
