# Reads the "run ..." lines of a load summary file and prints
#   - a human-readable report, every line prefixed with "# "
#   - "median contender=C conns=N rps=X p99_ms=Y runs=K" lines
#   - "ratio conns=N of=A to=B rps=X p99=Y paired_rps=X2 paired_p99=Y2" lines:
#     A's median over B's median, and the median of the per-round ratios
#     (rps above 1: A is faster; p99 above 1: A's tail latency is worse)
# Variables: contenders (space-separated, the first is the reference),
#            connections (space-separated).

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

# Median over rounds of A's figure over B's figure in the same round: the two
# runs were taken back to back, so this follows drift better than a ratio of
# medians. which: 1 for requests/s, 2 for p99.
function paired(a, b, n, which,    r, x, y, list) {
    list = ""
    for (r = 1; r <= max_round; r++) {
        if (!((a, n, r) in by_round) || !((b, n, r) in by_round)) continue
        split(by_round[a, n, r], x, SUBSEP)
        split(by_round[b, n, r], y, SUBSEP)
        if (x[which] == "NA" || y[which] == "NA" || y[which] + 0 == 0) continue
        list = list " " (x[which] / y[which])
    }
    return list == "" ? "NA" : sprintf("%.3f", median(list))
}

function report(a, b, ia, ib, n) {
    printf "# ratio %s / %s: throughput %s, p99 %s  (median of per-round ratios: throughput %s, p99 %s)\n", \
        a, b, ratio(mr[ia], mr[ib]), ratio(mp[ia], mp[ib]), paired(a, b, n, 1), paired(a, b, n, 2)
    printf "ratio conns=%s of=%s to=%s rps=%s p99=%s paired_rps=%s paired_p99=%s\n", \
        n, a, b, ratio(mr[ia], mr[ib]), ratio(mp[ia], mp[ib]), paired(a, b, n, 1), paired(a, b, n, 2)
}

function ratio(x, y) {
    if (x == "NA" || y == "NA" || y + 0 == 0) return "NA"
    return sprintf("%.3f", x / y)
}

$1 == "run" {
    delete kv
    for (i = 2; i <= NF; i++) {
        split($i, p, "=")
        kv[p[1]] = p[2]
    }
    key = kv["contender"] SUBSEP kv["conns"]
    if (kv["rps"] != "NA") rps[key] = rps[key] " " kv["rps"]
    if (kv["p99_ms"] != "NA") p99[key] = p99[key] " " kv["p99_ms"]
    rps_runs[key] = rps_runs[key] sprintf(" %10s", kv["rps"])
    p99_runs[key] = p99_runs[key] sprintf(" %10s", kv["p99_ms"])
    by_round[kv["contender"], kv["conns"], kv["round"]] = kv["rps"] SUBSEP kv["p99_ms"]
    if (kv["round"] + 0 > max_round) max_round = kv["round"] + 0
    errs[key] += kv["socket_errors"]
    non2xx[key] += kv["non2xx"]
    nruns[key]++
}

END {
    nc = split(contenders, C, " ")
    nn = split(connections, N, " ")
    ref = C[1]
    for (j = 1; j <= nn; j++) {
        n = N[j]
        printf "# == %s connections ==\n", n
        for (i = 1; i <= nc; i++) {
            key = C[i] SUBSEP n
            if (!(key in nruns)) { printf "# %-18s no runs\n", C[i]; continue }
            mr[i] = median(rps[key]); mp[i] = median(p99[key])
            printf "# %-18s req/s  %s   median %10s\n", C[i], rps_runs[key], (mr[i] == "NA" ? "NA" : sprintf("%.2f", mr[i]))
            printf "# %-18s p99 ms %s   median %10s\n", "", p99_runs[key], (mp[i] == "NA" ? "NA" : sprintf("%.3f", mp[i]))
            if (errs[key] + non2xx[key] > 0)
                printf "# %-18s ANOMALY: %d socket errors, %d non-2xx/3xx responses over %d runs\n", "", errs[key], non2xx[key], nruns[key]
            printf "median contender=%s conns=%s rps=%s p99_ms=%s runs=%d socket_errors=%d non2xx=%d\n", \
                C[i], n, mr[i], mp[i], nruns[key], errs[key], non2xx[key]
        }
        for (i = 2; i <= nc; i++) {
            if (!((C[i] SUBSEP n) in nruns) || !((ref SUBSEP n) in nruns)) continue
            report(C[i], ref, i, 1, n)
        }
        # a policy plugin, and a second build, are also compared with the native balancer
        nat = 0
        for (i = 1; i <= nc; i++) if (C[i] == "switchyard") nat = i
        for (i = 1; i <= nc; i++) {
            if ((C[i] != "switchyard-policy" && C[i] != "switchyard-b") || !nat || nat == 1) continue
            if (!((C[i] SUBSEP n) in nruns) || !((C[nat] SUBSEP n) in nruns)) continue
            report(C[i], C[nat], i, nat, n)
        }
        print "#"
    }
}
