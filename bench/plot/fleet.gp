# Fleet scale: lb and Redis CPU against the number of simulated workers, one
# line per number of lbs, and the time of one pick against the table size.
# gnuplot -e "dir='bench/results/DATE-fleet'; out='fleet.svg'" fleet.gp
set terminal svg size 1200,420 dynamic font "sans,11"
set output out
set datafile separator "\t"
set multiplot layout 1,3
set logscale x
set grid
set key top left
set xlabel "simulated workers"
pts = dir."/points.tsv"
set title "each lb's CPU (discovery, global counts)"
set ylabel "% of one core"
plot for [L in "1 5 20"] "< awk -F'\t' '$2==".L."' ".pts using 1:5 with linespoints lw 1.5 title L." lbs"
set title "Redis CPU"
set ylabel "% of one core"
plot for [L in "1 5 20"] "< awk -F'\t' '$2==".L."' ".pts using 1:4 with linespoints lw 1.5 title L." lbs"
set title "one pick (leastconn)"
set xlabel "backends"
set ylabel "CPU µs per pick"
set logscale y
plot dir."/picks.tsv" using 1:($2/1000) skip 1 with linespoints lw 1.5 title "tree", \
     dir."/picks.tsv" using 1:($3/1000) skip 1 with linespoints lw 1.5 title "scan (before)"
unset multiplot
