# Latency by percentile (HdrHistogram style: x is 1/(1-p) on a log axis).
# gnuplot -e "files='a.hist:lb b.hist:haproxy'; out='latency.svg'; ttl='...'" latency.gp
set terminal svg size 900,500 dynamic font "sans,11"
set output out
set title ttl
set logscale x
set xrange [1:*]
set xtics ("0%%" 1, "50%%" 2, "90%%" 10, "99%%" 100, "99.9%%" 1000, "99.99%%" 10000)
set xlabel "percentile"
set ylabel "latency (ms, log scale)"
set logscale y
set grid
set key top left
plot for [f in files] substr(f, 1, strstrt(f, ":") - 1) using 3:($2/1000.0) \
     with lines lw 2 title substr(f, strstrt(f, ":") + 1, strlen(f))
