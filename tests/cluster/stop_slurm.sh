#!/bin/sh
# Stop the daemons tests/cluster/start_slurm.sh started, by their pid files.
for pidfile in /run/slurmd.pid /run/slurmctld.pid /run/munge/munged.pid; do
	test -f "$pidfile" && kill "$(cat "$pidfile")" 2>/dev/null
	rm -f "$pidfile"
done
exit 0
