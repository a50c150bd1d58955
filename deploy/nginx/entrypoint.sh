#!/bin/sh
# Run nginx, and reload it whenever the set of replicas behind the name `replica` changes
# (nginx resolves upstream names only when it reads its configuration).
set -eu

replicas() {
    getent ahostsv4 replica | awk '{print $1}' | sort -u | tr '\n' ' '
}

watch_replicas() {
    known=$(replicas)
    while sleep "${LB_RESOLVE_INTERVAL_S:-5}"; do
        current=$(replicas)
        if [ -n "$current" ] && [ "$current" != "$known" ]; then
            echo "lb: replicas changed to [ $current]; reloading nginx" >&2
            nginx -s reload && known=$current
        fi
    done
}

watch_replicas &
exec nginx -g 'daemon off;'
