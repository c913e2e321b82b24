#!/usr/bin/env bash
# Install (Debian package), start and prepare a local PostgreSQL for the database tests.
# Prints the SQLAlchemy URL on success; exits non-zero (and the tests skip visibly) otherwise.
set -euo pipefail
if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
if ! pg_lsclusters -h | grep -q online; then
    cluster=$(pg_lsclusters -h | head -n1)
    if [ -z "$cluster" ]; then
        version=$(ls /usr/lib/postgresql | sort -n | tail -n1)
        pg_createcluster "$version" main >&2
        cluster=$(pg_lsclusters -h | head -n1)
    fi
    # Its messages (e.g. "Removed stale pid file.") go to stderr: stdout is only the URL.
    name=$(echo "$cluster" | awk '{print $1, $2}')
    pg_ctlcluster $name start >&2 || { sleep 3; pg_ctlcluster $name start >&2; }
fi
for _ in $(seq 1 30); do
    su postgres -c "psql -qtAc 'select 1'" >/dev/null 2>&1 && break
    sleep 1
done
su postgres -c "psql -qtAc \"select 1 from pg_roles where rolname='churnctl'\"" | grep -q 1 \
    || su postgres -c "psql -qc \"create role churnctl login superuser password 'churnctl'\"" >/dev/null
su postgres -c "psql -qtAc \"select 1 from pg_database where datname='churnctl_test'\"" | grep -q 1 \
    || su postgres -c "createdb -O churnctl churnctl_test"
echo "postgresql+psycopg://churnctl:churnctl@127.0.0.1:5432/churnctl_test"
