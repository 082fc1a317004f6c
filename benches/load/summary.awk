# Reads the "run ..." and "idle ..." lines of a load summary file and prints
#   - a human-readable report, every line prefixed with "# ", ending with the
#     benchmark table in Markdown (the one benches/README.md records)
#   - "median row=R contender=C rps=X p99_ms=Y runs=K ..." lines
#   - "ratio row=R of=A to=B rps=X p99=Y paired_rps=X2 paired_p99=Y2" lines:
#     A's median over B's median, and the median of the per-round ratios
#     (rps above 1: A is faster; p99 above 1: A's tail latency is worse)
#   - "scaling row=R rps=X of_base=Y" lines: Switchyard's median in a
#     backends-N or routes-N row over its median in default-c64
# Variable: rows (space-separated, in run order). The reference contender of
# every row is haproxy.

function median(list,    a, n, i, j, t) {
    n = split(list, a, " ")
    if (n == 0) return "NA"
    for (i = 2; i <= n; i++) {          # insertion sort, n is small
        t = a[i] + 0
        for (j = i - 1; j >= 1 && a[j] + 0 > t; j--) a[j + 1] = a[j]
        a[j + 1] = t
    }
    if (n % 2) return a[(n + 1) / 2] + 0
    return (a[n / 2] + a[n / 2 + 1]) / 2
}

function ratio(x, y) {
    if (x == "NA" || y == "NA" || x == "" || y == "" || y + 0 == 0) return "NA"
    return sprintf("%.3f", x / y)
}

# Median over rounds of A's figure over B's in the same round (back to back,
# so this follows drift better than a ratio of medians). which: 1 rps, 2 p99.
function paired(row, a, b, which,    r, x, y, list) {
    list = ""
    for (r = 1; r <= max_round; r++) {
        if (!((row, a, r) in by_round) || !((row, b, r) in by_round)) continue
        split(by_round[row, a, r], x, SUBSEP)
        split(by_round[row, b, r], y, SUBSEP)
        if (x[which] == "NA" || y[which] == "NA" || y[which] + 0 == 0) continue
        list = list " " (x[which] / y[which])
    }
    return list == "" ? "NA" : sprintf("%.3f", median(list))
}

function med_rps(row, c) { return ((row, c) in rps) ? median(rps[row, c]) : "NA" }
function med_p99(row, c) { return ((row, c) in p99) ? median(p99[row, c]) : "NA" }

function report(row, a, b) {
    if (!((row, a) in nruns) || !((row, b) in nruns)) return
    printf "# ratio %s / %s: throughput %s, p99 %s  (median of per-round ratios: throughput %s, p99 %s)\n", \
        a, b, ratio(med_rps(row, a), med_rps(row, b)), ratio(med_p99(row, a), med_p99(row, b)), \
        paired(row, a, b, 1), paired(row, a, b, 2)
    printf "ratio row=%s of=%s to=%s rps=%s p99=%s paired_rps=%s paired_p99=%s\n", \
        row, a, b, ratio(med_rps(row, a), med_rps(row, b)), ratio(med_p99(row, a), med_p99(row, b)), \
        paired(row, a, b, 1), paired(row, a, b, 2)
}

function fmt_rps(x) { return x == "NA" ? "NA" : sprintf("%.0f", x) }

$1 == "run" || $1 == "idle" {
    delete kv
    for (i = 2; i <= NF; i++) {
        split($i, p, "=")
        kv[p[1]] = p[2]
    }
}

$1 == "run" {
    row = kv["row"]; c = kv["contender"]
    if (!((row, "order") in seen)) { seen[row, "order"] = 1 }
    if (!((row, c) in nruns)) { members[row] = members[row] " " c }
    if (kv["rps"] != "NA") rps[row, c] = rps[row, c] " " kv["rps"]
    if (kv["p99_ms"] != "NA") p99[row, c] = p99[row, c] " " kv["p99_ms"]
    rps_runs[row, c] = rps_runs[row, c] sprintf(" %10s", kv["rps"])
    p99_runs[row, c] = p99_runs[row, c] sprintf(" %10s", kv["p99_ms"])
    by_round[row, c, kv["round"]] = kv["rps"] SUBSEP kv["p99_ms"]
    if (kv["round"] + 0 > max_round) max_round = kv["round"] + 0
    errs[row, c] += kv["socket_errors"]
    non2xx[row, c] += kv["non2xx"]
    nruns[row, c]++
}

$1 == "idle" {
    c = kv["contender"]
    idle_members = idle_members " " c
    for (k in kv) idle[c, k] = kv[k]
}

$1 == "crash" { crashed = crashed " " $0 }

END {
    nr = split(rows, R, " ")
    for (j = 1; j <= nr; j++) {
        row = R[j]
        if (row == "idle") continue
        printf "# == %s ==\n", row
        nc = split(members[row], C, " ")
        for (i = 1; i <= nc; i++) {
            c = C[i]
            mr = med_rps(row, c); mp = med_p99(row, c)
            printf "# %-18s req/s  %s   median %10s\n", c, rps_runs[row, c], (mr == "NA" ? "NA" : sprintf("%.2f", mr))
            printf "# %-18s p99 ms %s   median %10s\n", "", p99_runs[row, c], (mp == "NA" ? "NA" : sprintf("%.3f", mp))
            if (errs[row, c] + non2xx[row, c] > 0)
                printf "# %-18s ANOMALY: %d socket errors, %d non-2xx/3xx responses over %d runs\n", "", errs[row, c], non2xx[row, c], nruns[row, c]
            printf "median row=%s contender=%s rps=%s p99_ms=%s runs=%d socket_errors=%d non2xx=%d\n", \
                row, c, mr, mp, nruns[row, c], errs[row, c], non2xx[row, c]
        }
        for (i = 1; i <= nc; i++) if (C[i] != "haproxy") report(row, C[i], "haproxy")
        if (row == "wasm") report(row, "switchyard-policy", "switchyard")
        if (((row, "switchyard-b") in nruns)) report(row, "switchyard-b", "switchyard")
        print "# "
    }

    if (idle_members != "") {
        printf "# == idle ==\n"
        n = split(idle_members, I, " ")
        for (i = 1; i <= n; i++) {
            c = I[i]
            printf "# %-18s held %s: RSS %s -> %s KiB, %s bytes per connection; lone client p50/p99 %s/%s ms free, %s/%s ms held\n", \
                c, idle[c, "held"], idle[c, "rss_before_kb"], idle[c, "rss_after_kb"], idle[c, "per_conn_bytes"], \
                idle[c, "p50_free_ms"], idle[c, "p99_free_ms"], idle[c, "p50_held_ms"], idle[c, "p99_held_ms"]
        }
        print "# "
    }

    # The table, as benches/README.md records it.
    print "# | row | Switchyard req/s | HAProxy req/s | ratio | paired ratio | p99 ratio |"
    print "# |---|---|---|---|---|---|"
    for (j = 1; j <= nr; j++) {
        row = R[j]
        if (row == "idle" || !((row, "switchyard") in nruns)) continue
        s = med_rps(row, "switchyard"); h = med_rps(row, "haproxy")
        printf "# | %s | %s | %s | %sx | %sx | %s |\n", row, fmt_rps(s), fmt_rps(h), ratio(s, h), \
            paired(row, "switchyard", "haproxy", 1), \
            (med_p99(row, "switchyard") == "NA" ? "-" : ratio(med_p99(row, "switchyard"), med_p99(row, "haproxy")) "x")
        if (row == "wasm" && ((row, "switchyard-policy") in nruns)) {
            s = med_rps(row, "switchyard-policy")
            printf "# | wasm plugin (vs native: %sx) | %s | %s | %sx | %sx | %s |\n", \
                ratio(s, med_rps(row, "switchyard")), fmt_rps(s), fmt_rps(h), ratio(s, h), \
                paired(row, "switchyard-policy", "haproxy", 1), \
                ratio(med_p99(row, "switchyard-policy"), med_p99(row, "haproxy")) "x"
        }
    }
    if (idle_members != "") {
        s = idle["switchyard", "per_conn_bytes"]; h = idle["haproxy", "per_conn_bytes"]
        printf "# | idle: bytes per held connection (%s held) | %s | %s | %sx | - | lone client p99 %s -> %s ms (HAProxy %s -> %s) |\n", \
            idle["switchyard", "held"], s, h, ratio(s, h), \
            idle["switchyard", "p99_free_ms"], idle["switchyard", "p99_held_ms"], \
            idle["haproxy", "p99_free_ms"], idle["haproxy", "p99_held_ms"]
    }

    # Scaling: Switchyard's throughput in each backends-N / routes-N row against
    # default-c64 (2 backends, 1 route) of the same run.
    base = med_rps("default-c64", "switchyard")
    header = 0
    for (j = 1; j <= nr; j++) {
        row = R[j]
        if (row !~ /^(backends|routes)-/ || !((row, "switchyard") in nruns)) continue
        if (!header) {
            print "# "
            print "# | scaling | Switchyard req/s | of default-c64 (2 backends, 1 route) | ratio to HAProxy |"
            print "# |---|---|---|---|"
            if (base != "NA")
                printf "# | default-c64 | %s | 1.000 | %s |\n", fmt_rps(base), ratio(base, med_rps("default-c64", "haproxy"))
            header = 1
        }
        s = med_rps(row, "switchyard")
        printf "# | %s | %s | %s | %s |\n", row, fmt_rps(s), ratio(s, base), ratio(s, med_rps(row, "haproxy"))
        printf "scaling row=%s rps=%s of_base=%s\n", row, s, ratio(s, base)
    }
    if (crashed != "") printf "#\n# CRASHED:%s\n", crashed
}
