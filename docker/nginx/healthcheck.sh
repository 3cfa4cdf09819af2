#!/bin/bash
# Healthy when nginx itself answers /nginx-health with 200 (php is not involved, so a php
# restart does not make nginx unhealthy). Uses bash's /dev/tcp: no curl needed in the image.
# With a path argument it checks that path instead; a deploy runs
#   docker exec <new nginx> nginx-healthcheck /health
# to prove nginx -> php -> storage of a new release before it gets any traffic.
set -eu
path=${1:-/nginx-health}
exec 3<>/dev/tcp/127.0.0.1/80
printf 'GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n' "$path" >&3
read -r -t 3 _ status _ <&3
# On failure the status goes to stderr: a deploy tells "the app answered 5xx" from "no answer".
[ "$status" = 200 ] || { echo "nginx-healthcheck: HTTP $status" >&2; exit 1; }
