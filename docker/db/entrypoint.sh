#!/bin/sh
# Creates the cluster on an empty volume (superuser $DB_USER with the password of
# $DB_PASSWORD_FILE, database $DB_NAME), then runs the server in the foreground as PID 1.
set -eu

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ ! -r "${DB_PASSWORD_FILE:-}" ]; then
        echo "db: DB_PASSWORD_FILE must name a readable file (a swarm secret) on the first start" >&2
        exit 1
    fi
    initdb --pgdata="$PGDATA" --username="$DB_USER" --pwfile="$DB_PASSWORD_FILE" \
        --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >/dev/null
    # Clients come from the stack's overlay network; a password is needed from any address.
    # The unix socket (trust) is only reachable inside this container: docker exec for backups.
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    echo "CREATE DATABASE \"$DB_NAME\"" | postgres --single -D "$PGDATA" postgres >/dev/null
    echo "db: created the cluster and database $DB_NAME"
fi

exec postgres -D "$PGDATA" -c listen_addresses='*'
