#!/bin/sh
# keepalived health check for Switchyard: succeeds while this node's proxy answers
# /health/ready with 200, i.e. it is running, not starting or stopping, and every
# pool has a usable backend (or a usable backup). keepalived gives up the virtual
# IP when this fails, so the peer takes the traffic.
#
#   check_switchyard.sh [ADMIN_ADDRESS]     default: $SWITCHYARD_ADMIN or 127.0.0.1:9901
#
# When the admin API has a token (admin.token, or SWITCHYARD_ADMIN_TOKEN in
# /etc/default/switchyard), it is sent as a bearer token.
set -u

if [ -r /etc/default/switchyard ]; then
    # shellcheck disable=SC1091
    . /etc/default/switchyard
fi
admin="${1:-${SWITCHYARD_ADMIN:-127.0.0.1:9901}}"
url="http://$admin/health/ready"

if [ -n "${SWITCHYARD_ADMIN_TOKEN:-}" ]; then
    exec curl --silent --fail --max-time 2 --output /dev/null \
        --header "Authorization: Bearer $SWITCHYARD_ADMIN_TOKEN" "$url"
fi
exec curl --silent --fail --max-time 2 --output /dev/null "$url"
