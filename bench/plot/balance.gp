# Live connections per worker over time: leastconn (top) vs roundrobin (bottom).
# gnuplot -e "lc='bal-lb.dat'; rr='bal-lbrr.dat'; nw=4; out='balance.svg'" balance.gp
set terminal svg size 900,700 dynamic font "sans,11"
set output out
set multiplot layout 2,1
set key outside right top autotitle columnhead
set xlabel "seconds"
set ylabel "live connections"
set grid
set title "lb, leastconn"
plot for [i=2:nw+1] lc using 1:i with lines lw 1.5
set title "lb, roundrobin (the old behaviour)"
plot for [i=2:nw+1] rr using 1:i with lines lw 1.5
unset multiplot
