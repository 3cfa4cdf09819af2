#!/bin/bash
# Healthy when nginx itself answers /nginx-health with 200 (php is not involved, so a php
# restart does not make nginx unhealthy). Uses bash's /dev/tcp: no curl needed in the image.
set -eu
exec 3<>/dev/tcp/127.0.0.1/80
printf 'GET /nginx-health HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3
read -r -t 3 _ status _ <&3
[ "$status" = 200 ]
