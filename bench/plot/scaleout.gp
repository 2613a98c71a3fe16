# Live connections per worker when a fifth worker joins a loaded set.
# gnuplot -e "data='scaleout.dat'; nw=5; at=5; out='scaleout.svg'" scaleout.gp
set terminal svg size 900,450 dynamic font "sans,11"
set output out
set title sprintf("scale-out through the lb: a worker joins at %gs", at)
set key outside right top autotitle columnhead
set xlabel "seconds"
set ylabel "live connections"
set grid
set arrow from at, graph 0 to at, graph 1 nohead dt 2
plot for [i=2:nw+1] data using 1:i with lines lw 1.5
