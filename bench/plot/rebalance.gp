# max/mean of websockets per worker over time when a fifth worker joins 400
# held websockets on four (bench/sessions.sh), one line per front.
# gnuplot -e "files='a.dat:lb-rebalance b.dat:lb'; at=6; out='rebalance.svg'" rebalance.gp
set terminal svg size 900,450 dynamic font "sans,11"
set output out
set title sprintf("rebalance: 400 long-lived websockets on 4 workers, a fifth joins at %gs", at)
set xlabel "seconds"
set ylabel "max/mean (workers in service)"
set yrange [0.9:*]
set grid
set key right center
set arrow from at, graph 0 to at, graph 1 nohead dt 2
set arrow from graph 0, first 1.1 to graph 1, first 1.1 nohead dt 3 lc rgb "gray"
plot for [f in files] substr(f, 1, strstrt(f, ":") - 1) using 1:2 \
     with lines lw 2 title substr(f, strstrt(f, ":") + 1, strlen(f))
