# tui_lib.bash: helpers for the tmux-driven workbench tests (sourced by
# tests/t_tui_*.sh and bench/tui_latency.sh). Each test runs the real
# program in its own tmux server (a socket in a private temporary folder,
# so tests running in parallel never share a server), sends keys and polls
# capture-pane for the expected text with a deadline instead of sleeping
# fixed times. tui_cleanup (call it from the test's EXIT trap) stops the
# server and everything the panes started.

# ok, bad, check and check_summary
. "$(dirname "${BASH_SOURCE[0]}")/check.sh"

TUI_DIR=$(mktemp -d "${TMPDIR:-/tmp}/smelt-tui.XXXXXX")
TUI_SOCK="$TUI_DIR/s0"
TUI_RUNS=0
TUI_PGID=

# Deadlines are for a loaded 2-core machine; a sanitizer build runs the
# program several times slower, so every deadline stretches by TUI_SCALE.
if [ -z "${TUI_SCALE:-}" ]; then
	TUI_SCALE=1
	if [ -n "${SMELT_BUILD:-}" ] &&
		grep -q '^SMELT_SANITIZE:BOOL=ON' "$SMELT_BUILD/CMakeCache.txt" 2>/dev/null; then
		TUI_SCALE=3
	fi
fi

tmx() { tmux -S "$TUI_SOCK" -f /dev/null "$@"; }

# tui_stop: end the current server and make sure the program it ran is
# gone too (a pane's processes share one process group).
tui_stop() {
	local i
	tmx kill-server 2>/dev/null || true
	if [ -n "$TUI_PGID" ]; then
		for i in $(seq 1 100); do
			kill -0 -- "-$TUI_PGID" 2>/dev/null || break
			[ "$i" -eq 50 ] && kill -TERM -- "-$TUI_PGID" 2>/dev/null
			sleep 0.05
		done
		kill -KILL -- "-$TUI_PGID" 2>/dev/null || true
	fi
	TUI_PGID=
	rm -f "$TUI_SOCK"
}

# tui_start WIDTH HEIGHT CMD...: run CMD (a shell command line) in a new
# session; the shell prints EXIT=<status> and the tty mode when it ends so
# tests can check a clean exit with the terminal restored, then
# TUI-PANE-DONE: after that line nothing more will appear.
tui_start() {
	local w=$1 h=$2
	shift 2
	# A fresh tmux server per run: reusing one that is shutting down races.
	tui_stop
	TUI_RUNS=$((TUI_RUNS + 1))
	TUI_SOCK="$TUI_DIR/s$TUI_RUNS"
	tmx new-session -d -x "$w" -y "$h" -s t \
		"stty sane; $*; echo EXIT=\$?; stty -a | tr ' ;' '\n\n' | grep -E '^-?(icanon|echo)\$' | tr '\n' ' '; echo; echo TUI-PANE-DONE; exec sleep 600"
	tmx set-option -t t status off >/dev/null
	TUI_PGID=$(tmx display-message -p -t t '#{pane_pid}' 2>/dev/null || true)
}

# tui_resize WIDTH HEIGHT: resize the window (and so the pane) as a user
# resizing the terminal would.
tui_resize() { tmx resize-window -t t -x "$1" -y "$2"; }

tui_screen() { tmx capture-pane -p -t t 2>/dev/null; }

tui_keys() { tmx send-keys -t t "$@"; }

# tui_wait TEXT [SECONDS]: wait until TEXT (fixed string) is on screen.
tui_wait() {
	local text=$1 limit=$((${2:-20} * TUI_SCALE)) start now screen
	start=$(date +%s%N)
	while :; do
		screen=$(tui_screen)
		if grep -qF -- "$text" <<<"$screen"; then
			return 0
		fi
		# The pane's shell has printed everything it will print.
		if grep -q '^TUI-PANE-DONE' <<<"$screen"; then
			echo "--- '$text' not shown before the program ended; screen:" >&2
			echo "$screen" >&2
			return 1
		fi
		now=$(date +%s%N)
		if [ $(((now - start) / 1000000)) -gt $((limit * 1000)) ]; then
			echo "--- timed out waiting for '$text'; screen:" >&2
			echo "$screen" >&2
			return 1
		fi
		sleep "${TUI_POLL:-0.05}"
	done
}

# tui_wait_gone TEXT [SECONDS]: wait until TEXT is no longer on screen.
tui_wait_gone() {
	local text=$1 limit=$((${2:-20} * TUI_SCALE)) start now
	start=$(date +%s%N)
	while tui_screen | grep -qF -- "$text"; do
		now=$(date +%s%N)
		if [ $(((now - start) / 1000000)) -gt $((limit * 1000)) ]; then
			echo "--- timed out waiting for '$text' to go; screen:" >&2
			tui_screen >&2
			return 1
		fi
		sleep "${TUI_POLL:-0.05}"
	done
}

tui_cleanup() {
	tui_stop
	rm -rf "$TUI_DIR"
}


# tui_require_methods: stop early (instead of timing out check by check)
# when the binary has no merge method linked in.
tui_require_methods() {
	if "$SMELT_BIN" methods 2>/dev/null | head -n 1 | grep -q '^0 merge methods'; then
		echo "FAIL no merge method is registered in $SMELT_BIN; the workbench tests need them"
		echo "0 passed, 1 failed"
		exit 1
	fi
}

# The family the tests merge: the tiny trained base / ft / pt checkpoints.
tui_family() {
	echo "${SMELT_SHARED:?}/testdata/tiny-family"
}

# tui_big_family DIR: a synthetic base/ft/pt family large enough that a
# merge runs for a few seconds (for cancel, resize and latency checks).
tui_big_family() {
	/usr/bin/python3 - "$1" <<'EOF'
import json, os, struct, sys
import numpy as np
out = sys.argv[1]
L, H, I, V = int(os.environ.get("TUI_BIG_LAYERS", "8")), 512, 1408, 4096
rng = np.random.default_rng(7)
def names():
    yield "model.embed_tokens.weight", (V, H)
    for l in range(L):
        p = f"model.layers.{l}."
        for n, s in (("self_attn.q_proj", (H, H)), ("self_attn.k_proj", (H, H)),
                     ("self_attn.v_proj", (H, H)), ("self_attn.o_proj", (H, H)),
                     ("mlp.gate_proj", (I, H)), ("mlp.up_proj", (I, H)),
                     ("mlp.down_proj", (H, I))):
            yield p + n + ".weight", s
        yield p + "input_layernorm.weight", (H,)
        yield p + "post_attention_layernorm.weight", (H,)
    yield "model.norm.weight", (H,)
    yield "lm_head.weight", (V, H)
base = {n: (rng.standard_normal(s, dtype=np.float32) * 0.02) for n, s in names()}
def write(folder, tensors):
    os.makedirs(folder, exist_ok=True)
    header, off, blobs = {}, 0, []
    for n in sorted(tensors):
        b = tensors[n].astype(np.float32).tobytes()
        header[n] = {"dtype": "F32", "shape": list(tensors[n].shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(os.path.join(folder, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "num_hidden_layers": L,
           "hidden_size": H, "intermediate_size": I, "vocab_size": V, "torch_dtype": "float32",
           "tie_word_embeddings": False}
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(cfg, f)
write(os.path.join(out, "base"), base)
for name, scale in (("ft", 0.1), ("pt", 0.4)):
    write(os.path.join(out, name),
          {n: t + rng.standard_normal(t.shape, dtype=np.float32) * 0.02 * scale for n, t in base.items()})
EOF
}
