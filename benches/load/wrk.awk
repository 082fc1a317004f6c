# Reads the output of `wrk --latency` and prints one line of key=value pairs:
#   rps=<requests/s> p50_ms=<ms> p99_ms=<ms> requests=<n> socket_errors=<n> non2xx=<n>
# Latencies are converted to milliseconds whatever unit wrk chose (us, ms, s, m, h).
# A field wrk did not print is reported as "NA" (socket errors and non-2xx
# responses are only printed when non-zero, so those default to 0).

function to_ms(v,    num, unit) {
    num = v
    sub(/[a-z]+$/, "", num)
    unit = v
    sub(/^[0-9.]+/, "", unit)
    if (unit == "us") return num / 1000
    if (unit == "ms") return num + 0
    if (unit == "s")  return num * 1000
    if (unit == "m")  return num * 60000
    if (unit == "h")  return num * 3600000
    return "NA"
}

BEGIN { rps = "NA"; p50 = "NA"; p99 = "NA"; requests = "NA"; errs = 0; non2xx = 0; in_dist = 0 }

/^[[:space:]]*Latency Distribution/ { in_dist = 1; next }
in_dist && $1 ~ /^[0-9.]+%$/ {
    if ($1 == "50%" || $1 == "50.000%") p50 = to_ms($2)
    if ($1 == "99%" || $1 == "99.000%") p99 = to_ms($2)
    next
}
in_dist { in_dist = 0 }

# "  123456 requests in 10.00s, 20.00MB read"
$2 == "requests" && $3 == "in" { requests = $1 }

# "  Socket errors: connect 0, read 12, write 0, timeout 3"
/^[[:space:]]*Socket errors:/ {
    line = $0
    sub(/^[^:]*:/, "", line)
    n = split(line, parts, ",")
    for (i = 1; i <= n; i++) {
        split(parts[i], kv, " ")
        errs += kv[2]
    }
}

# "  Non-2xx or 3xx responses: 42"
/^[[:space:]]*Non-2xx or 3xx responses:/ { non2xx = $NF }

/^Requests\/sec:/ { rps = $2 }

END {
    printf "rps=%s p50_ms=%s p99_ms=%s requests=%s socket_errors=%s non2xx=%s\n", \
        rps, (p50 == "NA" ? p50 : sprintf("%.3f", p50)), \
        (p99 == "NA" ? p99 : sprintf("%.3f", p99)), requests, errs, non2xx
}
