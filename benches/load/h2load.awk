# Reads the output of h2load and prints one line of key=value pairs like wrk.awk:
#   rps=<requests/s> p50_ms=NA p99_ms=NA mean_ms=<mean time per request>
#   requests=<done> socket_errors=<failed + errored + timed out> non2xx=<4xx + 5xx>
# h2load reports no percentiles, only min/max/mean per request.

function to_ms(v,    num, unit) {
    num = v
    sub(/[a-z]+$/, "", num)
    unit = v
    sub(/^[0-9.]+/, "", unit)
    if (unit == "us") return num / 1000
    if (unit == "ms") return num + 0
    if (unit == "s")  return num * 1000
    return "NA"
}

BEGIN { rps = "NA"; mean = "NA"; done = "NA"; errs = 0; non2xx = 0 }

# "finished in 5.00s, 41234.40 req/s, 5.01MB/s"
$1 == "finished" && $2 == "in" { rps = $4 }

# "requests: 206172 total, 206236 started, 206172 done, 206172 succeeded, 0 failed, 0 errored, 0 timeout"
$1 == "requests:" {
    for (i = 2; i < NF; i++) {
        if ($(i + 1) ~ /^done/) done = $i
        if ($(i + 1) ~ /^(failed|errored|timeout)/) errs += $i
    }
}

# "status codes: 206172 2xx, 0 3xx, 0 4xx, 0 5xx"
$1 == "status" && $2 == "codes:" { non2xx = $9 + $11 }

# "time for request:     1.21ms     9.94ms     1.52ms       332us    84.71%"
$1 == "time" && $2 == "for" && $3 == "request:" { mean = to_ms($6) }

END {
    printf "rps=%s p50_ms=NA p99_ms=NA mean_ms=%s requests=%s socket_errors=%s non2xx=%s\n", \
        rps, (mean == "NA" ? mean : sprintf("%.3f", mean)), done, errs, non2xx
}
