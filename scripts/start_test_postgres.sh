#!/usr/bin/env bash
# Start Debian's PostgreSQL cluster for the ledger tests and print the admin URL to export.
#
#   eval "$(scripts/start_test_postgres.sh)"      # then: .venv/bin/pytest tests/settlement
#
# Creates (or re-keys) a login role allowed to create roles and databases; the tests use it
# only to create a throwaway role and database per session and drop them afterwards.
# Nothing listens beyond the cluster's own configuration (loopback on Debian by default).
set -euo pipefail
cluster=$(pg_lsclusters --no-header | awk 'NR == 1 {print $1, $2}')
if [ -z "$cluster" ]; then
    echo "no PostgreSQL cluster found (install Debian's postgresql package)" >&2
    exit 2
fi
read -r version name <<<"$cluster"
if ! pg_lsclusters --no-header | awk -v v="$version" -v n="$name" '$1 == v && $2 == n' | grep -q online; then
    # Only the export line below may reach standard output (the caller evals it):
    # pg_ctlcluster's own messages (e.g. "Removed stale pid file.") go to stderr.
    if [ "$(id -u)" -eq 0 ]; then pg_ctlcluster "$version" "$name" start >&2; else sudo pg_ctlcluster "$version" "$name" start >&2; fi
fi
port=$(pg_lsclusters --no-header | awk -v v="$version" -v n="$name" '$1 == v && $2 == n {print $3}')
role=lastwatt_test_admin
password=$(head -c 18 /dev/urandom | base64 | tr -d '+/=')
as_postgres() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi
}
as_postgres psql -q -p "$port" -v ON_ERROR_STOP=1 -v role="$role" -v pw="$password" >&2 <<'SQL'
SELECT format('CREATE ROLE %I LOGIN CREATEDB CREATEROLE', :'role')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'role') \gexec
ALTER ROLE :"role" PASSWORD :'pw';
SQL
echo "export LASTWATT_PG_ADMIN='postgresql://$role:$password@127.0.0.1:$port/postgres'"
