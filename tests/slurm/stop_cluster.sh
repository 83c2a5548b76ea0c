#!/usr/bin/env bash
# Stop the daemons of start_cluster.sh by pid; remove their pid files (a stale slurmctld pid
# file breaks a later package removal).
for f in /run/slurmd.pid /run/slurmctld.pid /run/munge/munged.pid; do
  [ -s "$f" ] || continue
  p=$(cat "$f"); kill "$p" 2>/dev/null || true
  for _ in $(seq 1 50); do [ -e /proc/"$p" ] || break; sleep 0.2; done
  rm -f "$f"
done
