# Plots of one bench run. Called by bench/run as
#   gnuplot -e "dir='RESULTS_DIR'" bench/plots.gp
# Reads the CSV files in dir, writes latency.png, contended.png, takeover.png,
# shared.png.

if (!exists("dir")) dir = "."
have(f) = system("test -s '".dir."/".f."' && echo 1 || echo 0") eq "1"

if (strstrt(GPVAL_TERMINALS, "pngcairo") > 0) {
    term_big = "pngcairo size 1500,520 font ',10'"
    term_mid = "pngcairo size 1200,480 font ',10'"
    term_small = "pngcairo size 800,480 font ',10'"
} else {
    term_big = "png size 1500,520"
    term_mid = "png size 1200,480"
    term_small = "png size 800,480"
}

set datafile separator ","
set datafile columnheaders
set datafile missing "NaN"
set grid ytics
set style fill solid 0.85 border -1

# ---- latency by peer: uncontended, trybusy, wakeup ----------------------------
if (have("uncontended.csv")) {
    eval "set terminal ".term_big
    set output dir."/latency.png"
    set multiplot layout 1,3 title "shmlease and its peers: latency (median and p99, log scale; same run)"
    set style data histograms
    set style histogram clustered gap 1
    set logscale y
    set format y "%.0s%c"
    set ylabel "ns per operation"
    set xtics rotate by -35 nomirror
    set key top left
    set title "uncontended: acquire+release"
    plot dir."/uncontended.csv" using 3:xtic(1) title "median", '' using 4 title "p99"
    if (have("trybusy.csv")) {
        set title "trybusy: try-acquire refused (held by another process)"
        plot dir."/trybusy.csv" using 3:xtic(1) title "median", '' using 4 title "p99"
    }
    if (have("wakeup.csv")) {
        set title "wakeup: release to waiter owning it"
        plot dir."/wakeup.csv" using 2:xtic(1) title "median", '' using 3 title "p99"
    }
    unset multiplot
    unset logscale y
    set format y "% h"
}

# ---- contended: throughput by process count ------------------------------------
if (have("contended.csv")) {
    eval "set terminal ".term_mid
    set output dir."/contended.png"
    set style data linespoints
    set multiplot layout 1,2 title "contended: processes on one key (median of rounds, log scale)"
    set logscale y
    set format y "%.0s%c"
    set logscale x 2
    set xrange [1.7:150]
    set xtics ("2" 2, "4" 4, "8" 8, "32" 32, "64" 64, "128" 128) norotate
    set key below horizontal maxrows 2
    peers = "cas-word robust-mutex shmlease ofd-lock flock posix-sem"
    set ylabel "acquisitions per second"
    set title "acquisitions/s of all processes, by process count"
    plot for [p in peers] dir."/contended.csv" using 2:(strcol(1) eq p ? $3 : NaN) title p lw 2 pt 7
    set ylabel "owner changes per second"
    set title "handoffs to another process/s, by process count"
    plot for [p in peers] dir."/contended.csv" using 2:(strcol(1) eq p ? $5 : NaN) title p lw 2 pt 7
    unset multiplot
    unset logscale y
    unset logscale x
    unset xrange
    set key default
    set format y "% h"
}

# ---- takeover: crash takeover -------------------------------------------------
if (have("takeover.csv")) {
    eval "set terminal ".term_small
    set output dir."/takeover.png"
    set style data histograms
    set style histogram clustered gap 1
    set logscale y
    set format y "%g"
    set ylabel "µs from kill() to the waiter's ownership"
    set xtics rotate by -25 nomirror
    set key top left
    set rmargin 4
    set title "takeover: holder SIGKILLed (log scale; redis is TTL-bound)"
    plot dir."/takeover.csv" using ($2/1000):xtic(1) title "median", '' using ($3/1000) title "p99"
}

# ---- shared: readers-writer throughput by process count --------------------------
if (have("shared.csv")) {
    eval "set terminal ".term_small
    set output dir."/shared.png"
    set style data linespoints
    unset logscale
    set logscale y
    set format y "%.0s%c"
    set logscale x 2
    set xrange [0.8:20]
    set xtics ("1" 1, "2" 2, "4" 4, "8" 8, "16" 16) norotate
    set key below horizontal maxrows 2
    set ylabel "acquisitions per second"
    set title "shared: acquisitions/s by process count, one key (log scale)"
    plot for [p in "rwlock shmlease"] for [w in "read mixed"] dir."/shared.csv" \
         using 3:((strcol(1) eq p && strcol(2) eq w) ? $4 : NaN) title p." ".w lw 2 pt 7
}
