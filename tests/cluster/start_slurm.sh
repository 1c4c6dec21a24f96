#!/bin/sh
# A single-node SLURM on this machine for `make test-cluster`: Debian's slurm-wlm and munge, a slurm.conf for this
# host at 127.0.0.1 only, then munged, slurmctld and slurmd. Job records go to a jobcomp file that `sacct -c` reads
# (no slurmdbd). Run as root; tests/cluster/stop_slurm.sh stops the daemons again.
set -eu
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y slurm-wlm munge
fi
HOST=$(hostname -s)
CPUS=$(nproc)
MEMORY_MB=$(awk '/MemTotal/ {print int($2 / 1024) - 1024}' /proc/meminfo)
LOGS=/var/log/slurm
mkdir -p /var/spool/slurmctld /var/spool/slurmd "$LOGS" /run/munge /var/lib/munge /var/log/munge
chown munge:munge /run/munge /var/lib/munge /var/log/munge /etc/munge
test -s /etc/munge/munge.key || { dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; }
chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
cat > /etc/slurm/slurm.conf <<CONF
# Written by tests/cluster/start_slurm.sh: one node, this machine, 127.0.0.1 only.
ClusterName=cellcount-test
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$LOGS/jobcomp.log
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEMORY_MB State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF
pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged
pgrep -x slurmctld >/dev/null || /usr/sbin/slurmctld
pgrep -x slurmd >/dev/null || /usr/sbin/slurmd
for _ in $(seq 30); do
	if sinfo -h -o %T 2>/dev/null | grep -qx idle; then
		sinfo
		exit 0
	fi
	sleep 1
done
echo "SLURM did not come up: see $LOGS/slurmctld.log and $LOGS/slurmd.log" >&2
sinfo >&2 || true
exit 1
