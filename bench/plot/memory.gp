# Memory (RSS growth) against idle websockets held, per front.
# gnuplot -e "data='memory.dat'; out='memory.svg'" memory.gp
set terminal svg size 900,500 dynamic font "sans,11"
set output out
set title "RSS growth of each front while holding N idle websockets"
set xlabel "idle connections held"
set ylabel "RSS growth (MiB)"
set grid
set key top left
plot data using 1:2 with linespoints lw 2 title "direct (worker)", \
     data using 1:3 with linespoints lw 2 title "lb", \
     data using 1:4 with linespoints lw 2 title "HAProxy", \
     data using 1:5 with linespoints lw 2 title "nginx"
