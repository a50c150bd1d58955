#!/bin/bash
# Healthy when /readyz answers 200 through nginx, i.e. at least one replica is ready (no curl here).
exec 3<>/dev/tcp/127.0.0.1/8000 || exit 1
printf 'GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' >&3
read -r -t 5 status_line <&3 || exit 1
[[ $status_line == "HTTP/1.1 200"* ]]
