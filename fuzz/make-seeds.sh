#!/bin/sh
# Regenerates the seed corpora in fuzz/corpus/NAME/: a handful of valid and
# edge-case inputs per target, in the input format that target's header
# comment describes (often a selector byte, then the bytes under test).
# Deterministic, so rerunning it changes nothing.
set -eu
cd "$(dirname "$0")/corpus"

# hex BYTE...: writes bytes given in hex ("81 05"); POSIX printf has no \x.
hex() {
    for h in "$@"; do
        # shellcheck disable=SC2059
        printf "$(printf '\\%03o' "$((0x$h))")"
    done
}
# txt STRING: writes it as is; esc STRING: with printf escapes (\r\n, octal).
txt() { printf '%s' "$1"; }
esc() {
    # shellcheck disable=SC2059
    printf "$1"
}
# rep CHAR N: writes CHAR N times.
rep() { head -c "$2" /dev/zero | tr '\0' "$1"; }
# to NAME FILE: stdin becomes fuzz/corpus/NAME/FILE.
to() {
    mkdir -p "$1"
    cat >"$1/$2"
}

# ---- http: byte 0 bit 0 = response, bits 1-2 = head limit, bits 3-7 = cut --
esc '\000GET /eval?x=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n\201\205abcd' | to http req-upgrade
esc '\010GET /healthz HTTP/1.0\r\nHost: a\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n' | to http req-plain
esc '\020POST /x HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\nhello' | to http req-post
esc '\030GET / HTTP/1.1\r\nX-Empty:\r\nX-Sp:   \t\r\nHost: a\r\n\r\n' | to http req-empty-value
esc '\040\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n' | to http req-leading-crlf
esc '\050GET / HTTP/1.1\r\nX-A: one\r\n two\r\n\r\n' | to http req-fold
esc '\060GET / HTTP/1.1\r\nHo st: a\r\n\r\n' | to http req-bad-name
esc '\002GET /a/very/long/path/that/does/not/fit HTTP/1.1\r\nHost: a\r\n\r\n' | to http req-small-limit
esc '\000GET /\r\n\r\n' | to http req-http09
esc '\070GET / HTTP/1.1\nHost: a\nConnection: close\n\n' | to http req-lf-only
{ esc '\004GET / HTTP/1.1\r\n'; for i in $(seq 1 70); do esc "X-H$i: v\r\n"; done; esc '\r\n'; } | to http req-too-many
esc '\001HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n\201\002hi' | to http resp-101
esc '\011HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n' | to http resp-200
esc '\021HTTP/1.0 503 Service Unavailable\r\n\r\n' | to http resp-503
esc '\031HTTP/1.1 404\r\nX: y\r\n\r\n' | to http resp-noreason
esc '\041HTTQ/1.1 200 OK\r\n\r\n' | to http resp-bad

# ---- ws: byte 0 bit 0 = client role, bits 1-2 payload limit, 3-4 message
# limit, 5-7 read chunk. Server-role frames are masked; a zero mask key
# leaves the payload readable.
Z="00 00 00 00"
# shellcheck disable=SC2086
{ hex 1e 81 85 37 fa 21 3d 7f 9f 4d 51 58 88 82 $Z 03 e8; } | to ws srv-hello
# shellcheck disable=SC2086
{ hex 3e 01 83 $Z; txt Hel; hex 89 80 $Z 80 82 $Z; txt lo; hex 88 80 $Z; } | to ws srv-fragmented
# shellcheck disable=SC2086
{ hex 5e 01 81 $Z c3 80 81 $Z a9 81 82 $Z ed a0; } | to ws srv-utf8-split
# shellcheck disable=SC2086
{ hex 7e 88 8a $Z 03 e9; txt 'bye bye!'; } | to ws srv-close-reason
# shellcheck disable=SC2086
{ hex 9e 88 82 $Z 03 ed; } | to ws srv-close-1005
# shellcheck disable=SC2086
{ hex 06 82 82 $Z; txt ab; } | to ws srv-msg-too-big
{ hex be 81 02; txt hi; } | to ws srv-unmasked
# shellcheck disable=SC2086
{ hex de 82 fe 00 80 $Z; rep A 128; hex 8a 80 $Z; } | to ws srv-len16
# shellcheck disable=SC2086
{ hex fe 82 ff 00 00 00 00 00 01 00 00 $Z; rep B 40; } | to ws srv-len64-partial
# shellcheck disable=SC2086
{ hex 1e 82 fe 00 05 $Z; txt hello; } | to ws srv-nonminimal
{ hex ff 81 05; txt Hello; hex 88 02 03 e8; } | to ws cli-hello
{ hex 3f 02 02; txt ab; hex 8a 00 80 01; txt c; hex 89 01; txt p; } | to ws cli-fragmented
{ hex 1f 81 85 37 fa 21 3d 7f 9f 4d 51 58; } | to ws cli-masked
{ hex 1f c1 00; } | to ws cli-rsv
{ hex 1f 89 7e 00 7e; rep P 126; } | to ws cli-big-ping
{ hex 1b 82 7e 00 7e; rep Q 126; } | to ws cli-over-limit
{ hex 1f 80 01; txt x; } | to ws cli-cont-first
{ hex 1f 83 00; } | to ws cli-bad-opcode

# ---- proto: one /eval text message ------------------------------------------
txt '{"type":"run","id":"r1","runtime":"python3","code":"print(6*7)","stdin":"x\u0000y","timeout_ms":5000,"stdin_open":true}' | to proto run-full
txt '{"type":"run","id":"r2","runtime":"sh","code":"echo hi","stdin":null,"timeout_ms":null}' | to proto run-nulls
txt '{"type":"run","id":"r3","runtime":"c","code":"int main(){}","timeout_ms":99999999999}' | to proto run-big-timeout
txt '{"type":"run","id":"r4","runtime":"py\u0000","code":"x"}' | to proto run-nul-runtime
txt '{"type":"run","id":"r5","runtime":"sh","code":1}' | to proto run-bad-code
txt '{"type":"stdin","id":"r1","data":"more input\n"}' | to proto stdin
txt '{"type":"stdin_close","id":"r1"}' | to proto stdin-close
txt '{"type":"kill","id":"r1"}' | to proto kill
txt '{"type":"kill","id":"a\u0000b"}' | to proto id-nul
txt '{"type":"kill","id":"r1","id":"r2"}' | to proto duplicate-key
txt '{"type":"nope","id":"r1"}' | to proto unknown-type
{ txt '{"type":"kill","id":"'; rep i 129; txt '"}'; } | to proto id-too-long
txt '[1,2,3]' | to proto not-object
txt '{"type":"run","id":"r1"' | to proto truncated

# ---- rt: a runtimes file ----------------------------------------------------
esc '# default runtimes\n[python3]\nfile = main.py\nrun = /usr/bin/python3 -I main.py\n\n[c]\nfile = main.c\nbuild = /usr/bin/gcc -O2 -o main main.c -lm\nrun = ./main\n' | to rt defaults
esc '[sh]\r\nfile=main.sh\r\nrun = "/bin/sh" '"'"'main.sh'"'"' "a \\"quoted\\" \\\\ arg"\r\n; comment\r\n' | to rt quoting-crlf
esc '[x]\nfile = a\nrun = b\n[x]\nfile = c\nrun = d\nbuild = e\n' | to rt replace
esc '[bad name]\nfile = a\nrun = b\n' | to rt bad-name
esc '[y]\nfile = ../etc/passwd\nrun = b\n' | to rt bad-file
esc '[z]\nfile = a\nrun = "unterminated\n' | to rt bad-quote
esc '[w]\nrun = a\n' | to rt missing-file
esc 'run = a\n' | to rt outside-section
esc '[v]\nfile = a\nrun = 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56 57 58 59 60 61 62 63 64 65\n' | to rt too-many-args
esc '[u]\nfile = a\nrun = b\0c\n' | to rt nul-byte

# ---- cfg: a config file (option table in fuzz_cfg.c) -------------------------
esc '# comment\nlisten = 0.0.0.0:8080\nid = "worker one"\nport = 443\nany = -9223372036854775808\nneg = -100\nverbose = yes\n--flag = off\nbackend = 127.0.0.1:9001\nbackend = '"'"'127.0.0.1:9002'"'"'\n' | to cfg full
esc 'port = 65536\n' | to cfg int-range
esc 'any = 99999999999999999999\n' | to cfg int-overflow
esc 'port =  5x\n' | to cfg int-junk
esc 'verbose = maybe\n' | to cfg bool-bad
esc 'nosuch = 1\n' | to cfg unknown
esc '= value\n' | to cfg no-key
esc 'just words\n' | to cfg no-equals
esc 'id = a\0b\n' | to cfg nul-byte
esc 'id = "\n' | to cfg lone-quote
{ txt 'id = '; rep x 4200; esc '\n'; } | to cfg long-line
esc 'port=7\r\n\r\nneg=-1' | to cfg crlf-no-final-newline

# ---- proxy: byte 0 bits 0-1 = client address, bit 2 = https, bit 3 = trusted
# client, bit 4 = upstream secret, bit 5 = lb id, bit 6 = plain request, bit 7 =
# its body is 3 bytes; then a request
esc '\000GET /eval HTTP/1.1\r\nHost: lb\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n' | to proxy upgrade
esc '\005GET / HTTP/1.1\r\nX-Forwarded-For: 1.1.1.1\r\nHost: a\r\nx-forwarded-for: 2.2.2.2, 3.3.3.3\r\nX-Forwarded-Proto: https\r\nX-Request-Id: spoofed\r\n\r\n' | to proxy spoofed
esc '\035GET / HTTP/1.1\r\nX-Forwarded-For: 1.1.1.1\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Proto:\r\nX-Upstream-Secret: guess\r\nX-Request-Id: trace-1\r\nHost: a\r\n\r\n' | to proxy trusted-with-secret
esc '\002GET /?q=1 HTTP/1.0\r\nX-Forwarded-For:\r\nX-Empty:\r\nX-Sp:  a b  \r\n\r\n' | to proxy empty-values
esc '\003\r\nPOST /x HTTP/1.1\nContent-Length: 3\nX-Request-Id: 1\n\nabcGET / HTTP/1.1\r\n' | to proxy lf-and-body
{ esc '\001GET / HTTP/1.1\r\n'; for i in $(seq 1 62); do esc "X-H$i: v\r\n"; done; esc '\r\n'; } | to proxy many-headers
esc '\013GET / HTTP/1.1\r\nX-Real-IP: 6.6.6.6\r\nForwarded: for=6.6.6.6;proto=https\r\nforwarded: for="[2001:db8::1]"\r\nX_Forwarded_For: 7.7.7.7\r\nTrue-Client-IP: 8.8.8.8\r\nX-Forwarded-Host: h\r\n\r\n' | to proxy real-ip-forwarded
esc '\300POST /api HTTP/1.1\r\nConnection: keep-alive, Upgrade\r\nUpgrade: h2c\r\nKeep-Alive: 5\r\nContent-Length: 3\r\n\r\nabcGET /metrics HTTP/1.1\r\n\r\n' | to proxy plain-close

# ---- disc: RESP replies (SMEMBERS, MGET, events), one after the other ------
J1='{"id":"w1","addr":"127.0.0.1:9001","state":"up","conns":12,"evals_running":1,"evals_queued":0,"max_evals":4,"load":1,"ts_ms":1764150000000,"started_ms":1764149000000,"isolation":"full"}'
J2='{"id":"w2","addr":"[::1]:9002","state":"draining","conns":0,"evals_running":2,"evals_queued":3}'
J3='{"id":"static-1","addr":"localhost:9001","state":"up","conns":5}'
# resp ARG...: one RESP array of bulk strings ("-" for a nil element).
resp() {
    printf '*%d\r\n' "$#"
    for a in "$@"; do
        if [ "$a" = - ]; then printf '$-1\r\n'; else printf '$%d\r\n%s\r\n' "${#a}" "$a"; fi
    done
}
{ resp w1 w2 static-1 w9; resp "$J1" "$J2" "$J3" -; resp message wslb:events '{"event":"drain","id":"w1"}'; resp message wslb:events '{"event":"leave","id":"w2"}'; resp message wslb:events '{"event":"leave","id":"static-1"}'; } | to disc resp-refresh-events
printf '*0\r\n' | to disc resp-empty-set
{ resp w1; printf '*1\r\n:5\r\n'; printf -- '-ERR wrong type\r\n'; printf '+OK\r\n'; } | to disc resp-odd-types
{ resp w1 w1; resp "$J1" '{"id":"w2","addr":"127.0.0.1:9001","state":"up","conns":1}'; } | to disc resp-duplicate-and-mismatch
{ resp w1; resp "$J1"; resp w1; resp '{"id":"w1","addr":"127.0.0.1:9099","state":"up","conns":1}'; } | to disc resp-address-change
printf '*2\r\n*1\r\n$1\r\na\r\n:1\r\n' | to disc resp-nested

# ---- fleet: byte 0 bit 0 clear = a worker state, bits 1-2 the reader's lb id
# (none, lb-a, lb1-4242, lb2-977), bit 3 no error buffer; set = an event.
# REAL and REAL_EV are what bin/worker wrote to Redis; FULL is the README's.
REAL='{"id":"w1","addr":"127.0.0.1:39335","state":"up","conns":0,"evals_running":0,"evals_queued":0,"max_evals":2,"load":0,"ts_ms":1796195958164,"started_ms":1796195958164,"isolation":"full","version":"0.1.0","slots_broken":0,"by_lb":{}}'
REAL_EV='{"event":"join","id":"w1","addr":"127.0.0.1:39335"}'
FULL='{"id":"w1","addr":"127.0.0.1:9001","state":"up","conns":12,"evals_running":1,"evals_queued":0,"max_evals":4,"load":1,"ts_ms":1764150000000,"started_ms":1764149000000,"isolation":"full","version":"0.1.0","slots_broken":0,"by_lb":{"lb1-4242":7,"lb2-977":5}}'
{ hex 00; txt "$REAL"; } | to fleet state-real
{ hex 04; txt "$FULL"; } | to fleet state-full-lb1
{ hex 06; txt "$FULL"; } | to fleet state-full-lb2
{ hex 02; txt "$FULL"; } | to fleet state-full-other-lb
{ hex 02; txt "$J2"; } | to fleet state-draining-v6
{ hex 08; txt '{"id":"w","addr":"127.0.0.1:1","state":"up","conns":0}'; } | to fleet state-minimal
{ hex 00; txt '{"id":"w4","addr":"10.0.0.4:9004","state":"draining","conns":1,"isolation":"partial: no cgroup memory controller; no seccomp","slots_broken":2,"max_evals":2}'; } | to fleet state-partial-broken
{ hex 02; txt '{"id":"w5","addr":"127.0.0.1:9005","state":"up","conns":64,"by_lb":{'; for i in $(seq 1 32); do [ "$i" -gt 1 ] && txt ','; txt "\"lb-$i\":2"; done; txt '}}'; } | to fleet state-by-lb-32
{ hex 00; txt '{"id":"w3","addr":"0.0.0.0:9001","state":"up","conns":1}'; } | to fleet state-wildcard
{ hex 00; txt '{"id":"w4","addr":"127.0.0.1:0","state":"up","conns":1}'; } | to fleet state-port0
{ hex 00; txt '{"id":"w5","addr":"127.0.0.1:9005","state":"gone","conns":1}'; } | to fleet state-bad-state
{ hex 00; txt '{"id":"w6","addr":"127.0.0.1:9006","state":"up","conns":-1,"load":2000000000}'; } | to fleet state-bad-counts
{ hex 00; txt '{"id":"a\tb","addr":"127.0.0.1:9007","state":"up","conns":1,"ts_ms":-5}'; } | to fleet state-bad-id
{ hex 00; txt '{"id":"w1","id":"w2"}'; } | to fleet state-duplicate-key
{ hex 02; txt '{"id":"w8","addr":"127.0.0.1:9008","state":"up","conns":1,"by_lb":{"lb a":1,"lb-a":"2"}}'; } | to fleet state-bad-by-lb
{ hex 01; txt "$REAL_EV"; } | to fleet event-real-join
{ hex 01; txt '{"event":"drain","id":"w2","addr":"[::1]:9002"}'; } | to fleet event-drain-v6
{ hex 01; txt '{"event":"leave","id":"static-1"}'; } | to fleet event-leave-no-addr
{ hex 01; txt '{"event":"rejoin","id":"w1","addr":9001}'; } | to fleet event-bad

# ---- static: byte 0 bit 0 = raw path for st_path_clean; clear = a request
# (bit 1 adds If-None-Match with index.html's ETag). Paths with '%' go
# through txt: printf would take them for directives.
req() { hex "$1"; txt "$2 HTTP/1.1"; esc '\r\n'; esc "$3"; esc '\r\n'; }
req 00 'GET /' 'Host: a\r\n' | to static req-index
req 02 'GET /index.html' 'Host: a\r\n' | to static req-304
req 00 'HEAD /app.js?v=1' '' | to static req-head-query
req 00 'GET /sub' '' | to static req-dir-redirect
req 00 'GET /sub?a=b%20c' '' | to static req-dir-redirect-query
req 00 'GET /sub/' '' | to static req-dir-index
req 00 'GET /a%20b.txt' '' | to static req-encoded-name
req 00 'GET /%2e%2e/secret' '' | to static req-encoded-traversal
req 00 'GET /sub/up/secret' '' | to static req-symlink-up
req 00 'GET /root/secret' '' | to static req-symlink-root
req 00 'GET /secret' '' | to static req-symlink-file
req 00 'POST /index.html' 'Content-Length: 0\r\n' | to static req-post
req 00 'GET /sub/..%5c..%5csecret' '' | to static req-backslash
req 02 'GET /empty.txt' 'If-None-Match: W/"x", *\r\n' | to static req-inm-list
{ hex 01; txt '/../a/./b//c%2f%00%zz%5c'; } | to static path-everything-bad
{ hex 01; txt '/sub/x.css'; } | to static path-plain
{ hex 01; txt '/a%20b/%41/'; } | to static path-encoded

# ---- pp: byte 0 = piece size (1 + byte % 32); then a connection's first bytes
V2SIG='0d 0a 0d 0a 00 0d 0a 51 55 49 54 0a'
{ hex 00; esc 'PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\nGET / HTTP/1.1\r\n\r\n'; } | to pp v1-tcp4
{ hex 06; esc 'PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n'; } | to pp v1-tcp6
{ hex 1f; esc 'PROXY UNKNOWN\r\n'; } | to pp v1-unknown
{ hex 02; esc 'PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n'; } | to pp v1-lf-only
{ hex 00; esc 'GET / HTTP/1.1\r\n\r\n'; } | to pp missing-http
{ hex 03; hex $V2SIG 21 11 00 0c c0 00 02 01 c6 33 64 02 dc 04 01 bb 16 03 01; } | to pp v2-tcp4
{ hex 05; hex $V2SIG 21 21 00 24 20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 01 \
      20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 02 00 50 1f 90; } | to pp v2-tcp6
{ hex 01; hex $V2SIG 20 00 00 00; } | to pp v2-local
{ hex 07; hex $V2SIG 21 00 00 03 04 00 00; } | to pp v2-unspec-tlv
{ hex 09; hex $V2SIG 21 11 00 13 01 02 03 04 05 06 07 08 00 01 00 02 04 00 04 aa bb cc dd; } | to pp v2-tlv-noop
{ hex 00; hex $V2SIG 21 11 ff ff; } | to pp v2-too-long
