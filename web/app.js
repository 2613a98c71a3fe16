/* The browser face of wslb: an editor, a runtime picker, Run and Stop, a
 * stdin line, an output pane that streams, the verdict, and a connection
 * that survives workers coming and going.
 *
 * It speaks the worker's /eval protocol (README, "The evaluation protocol")
 * over one websocket to the same origin. Plain JavaScript, no build step. */
(function () {
  "use strict";

  // ---- settings ---------------------------------------------------------------
  const WS_URL = (location.protocol === "https:" ? "wss:" : "ws:") + "//" + location.host + "/eval";
  const BACKOFF_BASE_MS = 500;       // first retry after a failure (before jitter)
  const BACKOFF_MAX_MS = 15000;      // retries never wait longer than this
  const PLANNED_MAX_MS = 300;        // after 1001/1012: the worker asked us to go elsewhere
  const CONNECT_TIMEOUT_MS = 10000;  // an opening handshake that hangs
  const HELLO_TIMEOUT_MS = 10000;    // an open socket that never says hello
  const VIEW_MAX_CHARS = 200000;     // output characters kept in the DOM
  const CHUNK_CHARS = 8192;          // output characters per block element
  const FRAME_CHARS = 16384;         // output characters rendered per frame, at most
  const SAVE_DELAY_MS = 300;
  const INDENT = "    ";
  // Closes after which a run that got no answer is sent again: the worker or
  // the path to it went away, the run itself was not the problem.
  const TRANSIENT = new Set([1001, 1005, 1006, 1011, 1012, 1013, 1014]);
  const SAMPLES = {
    python3: "# Python 3. Ctrl+Enter runs; input() reads the Input line.\n" +
      "for n in range(1, 6):\n    print(n, \"squared is\", n * n)\n",
    c: "#include <stdio.h>\n\nint main(void)\n{\n    for (int i = 1; i <= 3; i++)\n" +
      "        printf(\"hello %d\\n\", i);\n    return 0;\n}\n",
    sh: "# POSIX sh\necho \"hello from $(uname -s)\"\nfor i in 1 2 3; do echo \"line $i\"; done\n",
  };

  const $ = (id) => document.getElementById(id);
  const ui = {
    conn: $("conn"), connText: $("conn-text"), reconnectNow: $("reconnect-now"),
    runtime: $("runtime"), run: $("run"), stop: $("stop"), code: $("code"),
    storageWarning: $("storage-warning"), worker: $("worker"), clear: $("clear"),
    truncated: $("truncated"), output: $("output"), verdict: $("verdict"), elapsed: $("elapsed"),
    stdinForm: $("stdin-form"), stdin: $("stdin"), stdinSend: $("stdin-send"),
    stdinClose: $("stdin-close"),
  };

  // ---- storage: the user's code never lives only in the page -------------------
  const store = {
    ok: true,
    get(key) {
      try { return window.localStorage.getItem(key); } catch (e) { return null; }
    },
    set(key, value) {
      try {
        window.localStorage.setItem(key, value);
        return true;
      } catch (e) {
        if (store.ok) {
          store.ok = false;
          ui.storageWarning.hidden = false;
        }
        return false;
      }
    },
  };
  const codeKey = (rt) => "wslb.code." + rt;

  // ---- editor ------------------------------------------------------------------
  const editor = {
    runtime: store.get("wslb.runtime") || "python3",
    saveTimer: 0,
    tabEscapes: false, // after Esc, Tab moves focus instead of indenting

    load(rt) {
      const saved = store.get(codeKey(rt));
      ui.code.value = saved !== null ? saved : (SAMPLES[rt] || "");
    },
    saveNow() {
      clearTimeout(editor.saveTimer);
      editor.saveTimer = 0;
      store.set(codeKey(editor.runtime), ui.code.value);
      store.set("wslb.runtime", editor.runtime);
    },
    saveSoon() {
      clearTimeout(editor.saveTimer);
      editor.saveTimer = setTimeout(editor.saveNow, SAVE_DELAY_MS);
    },
    switchTo(rt) {
      if (rt === editor.runtime)
        return;
      editor.saveNow();
      editor.runtime = rt;
      editor.load(rt);
      store.set("wslb.runtime", rt);
    },

    // Replaces [start, end) with text through the browser's editing commands
    // where it has them, so that Ctrl+Z undoes an indent like any typing.
    replace(start, end, text, selStart, selEnd) {
      const ta = ui.code;
      ta.setSelectionRange(start, end);
      let done = false;
      try {
        done = document.execCommand("insertText", false, text);
      } catch (e) {
        done = false;
      }
      if (!done || ta.value.slice(start, start + text.length) !== text) {
        ta.setRangeText(text, start, end, "end");
        ta.dispatchEvent(new Event("input"));
      }
      ta.setSelectionRange(selStart, selEnd);
    },
    // The whole lines the selection touches: [lineStart, lineEnd).
    lines() {
      const v = ui.code.value;
      let s = ui.code.selectionStart, e = ui.code.selectionEnd;
      if (e > s && v[e - 1] === "\n")
        e--; // a selection ending at a line start does not take that line
      const ls = v.lastIndexOf("\n", s - 1) + 1;
      let le = v.indexOf("\n", e);
      if (le < 0)
        le = v.length;
      return [ls, le];
    },
    indent() {
      const ta = ui.code, v = ta.value;
      const s = ta.selectionStart, e = ta.selectionEnd;
      if (v.slice(s, e).indexOf("\n") < 0) {
        // Up to the next multiple of the indent width.
        const col = s - (v.lastIndexOf("\n", s - 1) + 1);
        const pad = INDENT.slice(col % INDENT.length) || INDENT;
        editor.replace(s, e, pad, s + pad.length, s + pad.length);
        return;
      }
      const [ls, le] = editor.lines();
      const block = v.slice(ls, le).split("\n").map((l) => (l.length ? INDENT + l : l)).join("\n");
      editor.replace(ls, le, block, ls, ls + block.length);
    },
    dedent() {
      const ta = ui.code, v = ta.value;
      const s = ta.selectionStart, e = ta.selectionEnd;
      const [ls, le] = editor.lines();
      let firstCut = 0;
      const block = v.slice(ls, le).split("\n").map((l, i) => {
        const m = /^( {1,4}|\t)/.exec(l);
        const cut = m ? m[0].length : 0;
        if (i === 0)
          firstCut = cut;
        return l.slice(cut);
      }).join("\n");
      if (block === v.slice(ls, le))
        return;
      if (s === e) {
        const pos = Math.max(ls, s - firstCut);
        editor.replace(ls, le, block, pos, pos);
      } else {
        editor.replace(ls, le, block, ls, ls + block.length);
      }
    },
    // Enter keeps the current line's indentation, one more level after a
    // line that opens a block (':' in Python, '{' in C and sh).
    newline() {
      const ta = ui.code, v = ta.value;
      const s = ta.selectionStart, e = ta.selectionEnd;
      const ls = v.lastIndexOf("\n", s - 1) + 1;
      const line = v.slice(ls, s);
      let ind = /^[ \t]*/.exec(line)[0];
      if (/[:{]\s*$/.test(line))
        ind += INDENT;
      editor.replace(s, e, "\n" + ind, s + 1 + ind.length, s + 1 + ind.length);
    },
    onKey(ev) {
      if (ev.key === "Escape") {
        editor.tabEscapes = true;
        return;
      }
      if (ev.key === "Tab" && !ev.ctrlKey && !ev.metaKey && !ev.altKey) {
        if (editor.tabEscapes) {
          editor.tabEscapes = false;
          return; // let focus move on
        }
        ev.preventDefault();
        if (ev.shiftKey)
          editor.dedent();
        else
          editor.indent();
        return;
      }
      editor.tabEscapes = false;
      if (ev.key === "Enter" && !ev.ctrlKey && !ev.metaKey && !ev.altKey && !ev.shiftKey &&
          !ev.isComposing) {
        ev.preventDefault();
        editor.newline();
      }
    },
  };

  // ---- output: streamed, batched per frame, bounded in the DOM -----------------
  // Messages only queue text; a frame renders at most FRAME_CHARS of it, so
  // no frame does unbounded work however fast a program prints. The DOM
  // keeps the last VIEW_MAX_CHARS; when more than that is waiting, what is
  // older than the waiting text can never be seen and is dropped unrendered.
  const out = {
    pending: [],       // [kind, text] waiting to be rendered
    pendingChars: 0,
    frame: 0,
    blocks: [],        // {el, chars, endsNl} in order; the last may end mid-line
    shown: 0,          // characters in the DOM
    hidden: 0,         // characters dropped from view since the last clear
    reset: false,      // the DOM's text is older than a gap: drop it first
    stick: true,       // keep the newest line in view (the user has not scrolled up)
    drained: null,     // called once everything written is on screen

    write(kind, text) {
      if (!text)
        return;
      out.pending.push([kind, text]);
      out.pendingChars += text.length;
      while (out.pendingChars - out.pending[0][1].length > VIEW_MAX_CHARS) {
        const [, t] = out.pending.shift();
        out.pendingChars -= t.length;
        out.hidden += t.length;
        out.reset = true;
      }
      out.schedule();
    },
    schedule() {
      if (!out.frame)
        out.frame = requestAnimationFrame(out.flush);
    },
    // Calls fn once the text written so far is rendered.
    whenDrained(fn) {
      if (!out.pending.length) {
        fn();
        return;
      }
      out.drained = fn;
      out.schedule();
    },
    clear() {
      if (out.frame)
        cancelAnimationFrame(out.frame);
      out.frame = 0;
      out.pending = [];
      out.pendingChars = 0;
      out.blocks = [];
      out.shown = 0;
      out.hidden = 0;
      out.reset = false;
      out.stick = true;
      out.drained = null;
      ui.output.textContent = "";
      ui.truncated.hidden = true;
    },
    tail() {
      const last = out.blocks[out.blocks.length - 1];
      if (last && (last.chars < CHUNK_CHARS || !last.endsNl))
        return last;
      const el = document.createElement("div");
      el.className = "chunk";
      ui.output.appendChild(el);
      const b = {el, chars: 0, endsNl: true};
      out.blocks.push(b);
      return b;
    },
    // Appends to the last block (a block only ends after a newline, so that
    // a line split across frames stays one line on screen).
    put(kind, text) {
      let i = 0;
      while (i < text.length) {
        const b = out.tail();
        const room = Math.max(1, CHUNK_CHARS - b.chars);
        let end = text.length;
        if (end - i > room) {
          const nl = text.indexOf("\n", i + room - 1);
          end = nl < 0 ? text.length : nl + 1;
        }
        const piece = text.slice(i, end);
        const last = b.el.lastChild;
        if (last && last.className === "o-" + kind) {
          last.appendChild(document.createTextNode(piece));
        } else {
          const span = document.createElement("span");
          span.className = "o-" + kind;
          span.textContent = piece;
          b.el.appendChild(span);
        }
        b.chars += piece.length;
        b.endsNl = piece.endsWith("\n");
        out.shown += piece.length;
        i = end;
      }
    },
    trim() {
      while (out.shown > VIEW_MAX_CHARS && out.blocks.length > 1) {
        const b = out.blocks.shift();
        b.el.remove();
        out.shown -= b.chars;
        out.hidden += b.chars;
      }
      if (out.shown > VIEW_MAX_CHARS && out.blocks.length === 1) {
        // One enormous line: keep its end.
        const b = out.blocks[0];
        const text = b.el.textContent;
        const keep = text.slice(text.length - VIEW_MAX_CHARS);
        const cls = b.el.lastChild ? b.el.lastChild.className : "o-stdout";
        b.el.textContent = "";
        const span = document.createElement("span");
        span.className = cls;
        span.textContent = keep;
        b.el.appendChild(span);
        out.hidden += text.length - keep.length;
        out.shown = b.chars = keep.length;
      }
      if (out.hidden > 0) {
        ui.truncated.hidden = false;
        ui.truncated.textContent = "Output truncated in view: the first " +
          fmtChars(out.hidden) + " are not shown (the program's output is complete).";
      }
    },
    // Takes up to n characters from the front of the queue.
    take(n) {
      const batch = [];
      while (n > 0 && out.pending.length) {
        const item = out.pending[0];
        if (item[1].length <= n) {
          out.pending.shift();
          batch.push(item);
          n -= item[1].length;
          out.pendingChars -= item[1].length;
        } else {
          batch.push([item[0], item[1].slice(0, n)]);
          item[1] = item[1].slice(n);
          out.pendingChars -= n;
          n = 0;
        }
      }
      return batch;
    },
    flush() {
      out.frame = 0;
      if (out.reset) {
        out.reset = false;
        out.hidden += out.shown;
        out.shown = 0;
        out.blocks = [];
        ui.output.textContent = "";
      }
      // Consecutive pieces of one kind become one append.
      let kind = null, acc = [];
      for (const [k, t] of out.take(FRAME_CHARS)) {
        if (k !== kind && acc.length) {
          out.put(kind, acc.join(""));
          acc = [];
        }
        kind = k;
        acc.push(t);
      }
      if (acc.length)
        out.put(kind, acc.join(""));
      out.trim();
      if (out.stick)
        ui.output.scrollTop = ui.output.scrollHeight;
      if (out.pending.length) {
        out.schedule();
      } else if (out.drained) {
        const fn = out.drained;
        out.drained = null;
        fn();
      }
    },
    // The user scrolling up stops the pinning to the newest line; scrolling
    // back to the bottom restores it.
    onScroll() {
      const el = ui.output;
      out.stick = el.scrollTop + el.clientHeight >= el.scrollHeight - 8;
    },
  };

  function fmtChars(n) {
    if (n >= 1048576)
      return (n / 1048576).toFixed(1) + " M characters";
    if (n >= 1024)
      return Math.round(n / 1024) + " K characters";
    return n + " characters";
  }
  function fmtMs(ms) {
    return ms >= 1000 ? (ms / 1000).toFixed(2) + " s" : Math.round(ms) + " ms";
  }
  function fmtKb(kb) {
    return kb >= 1024 ? (kb / 1024).toFixed(1) + " MiB" : kb + " KiB";
  }
  const SIGNALS = {1: "SIGHUP", 2: "SIGINT", 3: "SIGQUIT", 4: "SIGILL", 5: "SIGTRAP", 6: "SIGABRT",
    7: "SIGBUS", 8: "SIGFPE", 9: "SIGKILL", 11: "SIGSEGV", 13: "SIGPIPE", 14: "SIGALRM",
    15: "SIGTERM", 24: "SIGXCPU", 25: "SIGXFSZ", 31: "SIGSYS"};

  // ---- runs ------------------------------------------------------------------------
  // A run is "pending" until sent, "sent" until the worker answers anything
  // about it, "answered" once output came, and "done" with its exit. Only a
  // pending or sent run may be sent (again): one that produced output is
  // never repeated behind the user's back.
  let run = null;
  let runSeq = 0;
  let elapsedTimer = 0;

  function setVerdict(kind, text) {
    ui.verdict.dataset.verdict = kind;
    ui.verdict.textContent = text;
  }

  function updateControls() {
    const active = run !== null && run.state !== "done";
    ui.run.disabled = active;
    ui.stop.disabled = !active;
    const canType = active && !run.stdinClosed;
    ui.stdin.disabled = !canType;
    ui.stdinSend.disabled = !canType;
    ui.stdinClose.disabled = !canType;
    ui.output.setAttribute("aria-busy", active ? "true" : "false");
  }

  function tickElapsed() {
    if (run && run.state !== "done")
      ui.elapsed.textContent = fmtMs(performance.now() - run.t0);
  }

  function startRun() {
    if (run !== null && run.state !== "done")
      return;
    editor.saveNow();
    const runtime = ui.runtime.value || editor.runtime;
    run = {
      id: "r" + (++runSeq) + "-" + Math.random().toString(36).slice(2, 8),
      runtime,
      code: ui.code.value,
      state: "pending",
      stdin: [],          // everything typed, in case the run must be sent again
      stdinClosed: false,
      killed: false,
      sends: 0,
      t0: performance.now(),
    };
    out.clear();
    ui.elapsed.textContent = "";
    clearInterval(elapsedTimer);
    elapsedTimer = setInterval(tickElapsed, 100);
    updateControls();
    // On a phone the output is below the editor: bring it into view.
    if (window.matchMedia("(max-width: 860px)").matches)
      ui.output.scrollIntoView({block: "nearest"});
    if (conn.ready()) {
      sendRun();
    } else {
      setVerdict("waiting", "Waiting for a connection; the run starts when it is back.");
    }
  }

  function sendRun() {
    const msg = {type: "run", id: run.id, runtime: run.runtime, code: run.code};
    if (run.stdin.length || run.stdinClosed) {
      msg.stdin = run.stdin.join("");
      msg.stdin_open = !run.stdinClosed;
    }
    if (!conn.send(msg))
      return;
    if (run.sends > 0)
      out.write("info", "\u21bb run sent again to " + conn.workerId + " after reconnecting\n");
    run.sends++;
    run.state = "sent";
    setVerdict("running", "Running on " + conn.workerId + "\u2026");
  }

  // The verdict shows once the run's output is on screen, so that what the
  // page says is finished looks finished.
  function finishRun(kind, text) {
    if (!run || run.state === "done")
      return;
    run.state = "done";
    clearInterval(elapsedTimer);
    elapsedTimer = 0;
    updateControls();
    out.whenDrained(() => {
      ui.elapsed.textContent = "";
      setVerdict(kind, text);
    });
  }

  function onExit(m) {
    const parts = [m.verdict];
    if (m.verdict === "signaled" && m.signal != null)
      parts.push("signal " + m.signal + (SIGNALS[m.signal] ? " (" + SIGNALS[m.signal] + ")" : ""));
    else if (m.status != null && m.verdict !== "error")
      parts.push("exit status " + m.status);
    if (m.error)
      parts.push(m.error);
    parts.push("wall " + fmtMs(m.wall_ms || 0), "CPU " + fmtMs(m.cpu_ms || 0),
      "memory " + fmtKb(m.max_rss_kb || 0));
    finishRun(m.verdict, parts.join(" \u00b7 "));
  }

  function stopRun() {
    if (!run || run.state === "done")
      return;
    if (run.state === "pending") {
      finishRun("cancelled", "cancelled: the run was never sent");
      return;
    }
    run.killed = true;
    if (!conn.send({type: "kill", id: run.id}))
      finishRun("killed", "killed (the connection was already gone)");
    else
      setVerdict("running", "Stopping\u2026");
  }

  function sendStdin(text) {
    if (!run || run.state === "done" || run.stdinClosed)
      return;
    run.stdin.push(text);
    out.write("stdin", text);
    if (run.state !== "pending")
      conn.send({type: "stdin", id: run.id, data: text});
  }

  function closeStdin() {
    if (!run || run.state === "done" || run.stdinClosed)
      return;
    run.stdinClosed = true;
    out.write("info", "\u2014 end of input \u2014\n");
    if (run.state !== "pending")
      conn.send({type: "stdin_close", id: run.id});
    updateControls();
  }

  // ---- the connection ----------------------------------------------------------------
  const conn = {
    ws: null,
    state: "connecting", // connecting | open (hello seen) | waiting (to retry) | offline
    attempt: 0,          // failed attempts since the last hello
    retryTimer: 0,
    guardTimer: 0,
    workerId: "",
    lost: "",            // why the last working connection ended, shown until the next one
    reconnected: false,
    closeIntent: null,   // {why, planned} when the page closes the socket itself
    leaving: false,

    ready() {
      return conn.ws !== null && conn.ws.readyState === WebSocket.OPEN && conn.state === "open";
    },
    send(obj) {
      if (!conn.ready())
        return false;
      conn.ws.send(JSON.stringify(obj));
      return true;
    },
    status(state, text) {
      conn.state = state;
      ui.conn.dataset.state = state;
      if (ui.connText.textContent !== text)
        ui.connText.textContent = text;
      ui.reconnectNow.hidden = state !== "waiting" && state !== "offline";
    },
    open() {
      clearTimeout(conn.retryTimer);
      conn.retryTimer = 0;
      conn.closeIntent = null;
      conn.status("connecting", conn.attempt ? "Reconnecting\u2026" +
        (conn.lost ? " (" + conn.lost + ")" : "") : "Connecting\u2026");
      let ws;
      try {
        ws = new WebSocket(WS_URL);
      } catch (e) {
        conn.retry("cannot open a websocket: " + e.message, false);
        return;
      }
      conn.ws = ws;
      conn.guard(CONNECT_TIMEOUT_MS, "no answer from the server");
      ws.onopen = () => conn.guard(HELLO_TIMEOUT_MS, "the worker did not say hello");
      ws.onmessage = (ev) => conn.message(ws, ev);
      ws.onclose = (ev) => conn.closed(ws, ev);
    },
    // Gives the current attempt ms to make progress, then abandons it.
    guard(ms, why) {
      clearTimeout(conn.guardTimer);
      conn.guardTimer = setTimeout(() => conn.abandon(why, false), ms);
    },
    abandon(why, planned) {
      if (!conn.ws)
        return;
      conn.closeIntent = {why, planned};
      try {
        conn.ws.close(1000, why.slice(0, 100));
      } catch (e) { /* already closing */ }
    },
    message(ws, ev) {
      if (ws !== conn.ws || typeof ev.data !== "string")
        return;
      let m;
      try {
        m = JSON.parse(ev.data);
      } catch (e) {
        return;
      }
      if (m.type === "hello") {
        conn.hello(m);
        return;
      }
      if (!run || m.id !== run.id || run.state === "done") {
        if (m.type === "error" && m.id == null)
          out.write("info", "worker: " + m.error + "\n");
        return; // a message about an earlier run
      }
      switch (m.type) {
      case "stdout":
      case "stderr":
        run.state = "answered";
        out.write(m.type, m.data);
        break;
      case "exit":
        run.state = "answered";
        onExit(m);
        break;
      case "error":
        conn.runError(m);
        break;
      }
    },
    // An error about the current run: "draining" and "busy" before it started
    // mean "try elsewhere", anything else is the answer.
    runError(m) {
      const e = String(m.error || "");
      if (run.state === "sent" && (e.startsWith("draining") || e === "busy")) {
        run.state = "pending";
        const draining = e.startsWith("draining");
        setVerdict("waiting", (draining ? conn.workerId + " is draining" : conn.workerId +
          " is busy") + "; reconnecting to send the run again\u2026");
        conn.abandon(draining ? "worker draining" : "worker busy", draining);
        return;
      }
      finishRun("error", "error: " + e);
    },
    hello(m) {
      clearTimeout(conn.guardTimer);
      const wasLost = conn.lost;
      conn.attempt = 0;
      conn.workerId = String(m.worker || "?");
      const iso = String(m.isolation || "unknown");
      ui.worker.dataset.worker = conn.workerId;
      ui.worker.textContent = "worker " + conn.workerId + (iso === "full" ? "" : " \u00b7 isolation: " + iso);
      ui.worker.classList.toggle("degraded", iso !== "full");
      ui.worker.classList.remove("gone");
      fillRuntimes(Array.isArray(m.runtimes) ? m.runtimes.map(String) : []);
      conn.status("open", "Connected to " + conn.workerId +
        (wasLost ? " \u00b7 reconnected after " + wasLost : ""));
      conn.lost = "";
      if (run && run.state === "pending")
        sendRun();
    },
    closed(ws, ev) {
      if (ws !== conn.ws)
        return;
      clearTimeout(conn.guardTimer);
      conn.ws = null;
      if (conn.leaving)
        return;
      const intent = conn.closeIntent;
      conn.closeIntent = null;
      let why;
      if (intent) {
        why = intent.why;
      } else if (ev.code === 1006 || ev.code === 1005) {
        why = "connection lost";
      } else {
        why = "closed " + ev.code + (ev.reason ? " " + ev.reason : "");
      }
      const wasOpen = conn.state === "open";
      if (wasOpen) {
        conn.lost = (conn.workerId ? conn.workerId + ": " : "") + why;
        ui.worker.textContent = "worker " + conn.workerId + " (disconnected)";
        ui.worker.classList.add("gone");
      }
      const transient = intent !== null || TRANSIENT.has(ev.code);
      conn.orphanRun(transient, why);
      // A worker that says "going away" or "restarting" wants its clients to
      // go elsewhere now (with a little jitter so they do not all arrive at
      // once); anything else backs off.
      const planned = (intent && intent.planned) ||
        (!intent && wasOpen && (ev.code === 1001 || ev.code === 1012));
      conn.retry(why, planned);
    },
    // What happens to a run whose connection ended before its exit.
    orphanRun(transient, why) {
      if (!run || run.state === "done" || run.state === "pending")
        return;
      if (run.killed) {
        finishRun("killed", "killed (connection closed: " + why + ")");
      } else if (run.state === "sent" && transient) {
        run.state = "pending"; // never answered: sent again after reconnecting
        setVerdict("waiting", "Connection lost before the run started; it will be sent again.");
      } else if (run.state === "sent") {
        finishRun("error", "the worker closed the connection (" + why + "); the run was not started");
      } else {
        finishRun("lost", "connection lost during the run (" + why +
          "); its output above is all that arrived");
      }
    },
    retry(why, planned) {
      clearTimeout(conn.retryTimer);
      let delay;
      if (planned) {
        delay = Math.random() * PLANNED_MAX_MS;
      } else {
        const cap = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * Math.pow(2, conn.attempt));
        delay = cap / 2 + Math.random() * cap / 2; // "equal jitter"
        conn.attempt++;
      }
      if (navigator.onLine === false) {
        conn.status("offline", "Offline: waiting for the network" + (conn.lost ? " (" + conn.lost + ")" : ""));
        return;
      }
      const last = conn.lost ? " \u00b7 " + conn.lost : (why ? " \u00b7 " + why : "");
      conn.status("waiting", "Reconnecting in " + (delay / 1000).toFixed(1) + " s" +
        (conn.attempt > 1 ? " (attempt " + conn.attempt + ")" : "") + last);
      conn.retryTimer = setTimeout(conn.open, delay);
    },
  };

  function fillRuntimes(list) {
    const sel = ui.runtime;
    const want = editor.runtime;
    if (!list.length)
      list = [want];
    const same = sel.options.length === list.length &&
      list.every((rt, i) => sel.options[i].value === rt);
    if (!same) {
      sel.textContent = "";
      for (const rt of list) {
        const o = document.createElement("option");
        o.value = rt;
        o.textContent = rt;
        sel.appendChild(o);
      }
    }
    sel.disabled = false;
    if (list.indexOf(want) >= 0) {
      sel.value = want;
    } else {
      // This worker lacks the runtime in use: show one it has. The other
      // runtime's code stays stored under its own name.
      sel.value = list[0];
      editor.switchTo(list[0]);
      out.write("info", "worker " + conn.workerId + " has no " + want + "; switched to " +
        list[0] + "\n");
    }
  }

  // ---- wiring -----------------------------------------------------------------------------
  function init() {
    editor.load(editor.runtime);
    fillRuntimesPlaceholder();
    ui.code.addEventListener("keydown", editor.onKey);
    ui.output.addEventListener("scroll", out.onScroll, {passive: true});
    ui.code.addEventListener("input", editor.saveSoon);
    ui.code.addEventListener("blur", editor.saveNow);
    ui.runtime.addEventListener("change", () => editor.switchTo(ui.runtime.value));
    ui.run.addEventListener("click", startRun);
    ui.stop.addEventListener("click", stopRun);
    ui.clear.addEventListener("click", () => {
      out.clear();
      if (!run || run.state === "done")
        setVerdict("", "");
    });
    ui.reconnectNow.addEventListener("click", () => {
      if (!conn.ws)
        conn.open();
    });
    ui.stdinForm.addEventListener("submit", (ev) => {
      ev.preventDefault();
      sendStdin(ui.stdin.value + "\n");
      ui.stdin.value = "";
    });
    ui.stdin.addEventListener("keydown", (ev) => {
      if (ev.key.toLowerCase() === "d" && ev.ctrlKey && !ev.altKey) {
        ev.preventDefault();
        if (ui.stdin.value)
          sendStdin(ui.stdin.value);
        ui.stdin.value = "";
        closeStdin();
      }
    });
    ui.stdinClose.addEventListener("click", closeStdin);
    document.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey) && !ev.altKey) {
        ev.preventDefault();
        startRun();
      }
    });
    // Whatever the user typed is written down before the page can go away.
    window.addEventListener("pagehide", () => {
      editor.saveNow();
      conn.leaving = true;
    });
    window.addEventListener("pageshow", (ev) => {
      conn.leaving = false;
      if (ev.persisted && !conn.ws)
        conn.open(); // back from the back/forward cache, without its socket
    });
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "hidden")
        editor.saveNow();
    });
    window.addEventListener("online", () => {
      if (!conn.ws)
        conn.open();
    });
    window.addEventListener("offline", () => {
      if (!conn.ws)
        conn.status("offline", "Offline: waiting for the network");
    });
    updateControls();
    conn.open();
  }

  function fillRuntimesPlaceholder() {
    const o = document.createElement("option");
    o.value = editor.runtime;
    o.textContent = editor.runtime;
    ui.runtime.appendChild(o);
    ui.runtime.disabled = true;
  }

  init();
})();
