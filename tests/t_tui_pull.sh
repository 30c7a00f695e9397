#!/usr/bin/env bash
# t_tui_pull.sh: the download field of the checkpoints view against a
# local nginx playing the Hugging Face Hub (tests/hub/lib.sh): `P` +
# org/name pulls into the cache, the cache list picks it up, and the model
# opens from there.
set -eu
: "${SMELT_SOURCE:?}"
WORK=$(mktemp -d)
. "$SMELT_SOURCE/tests/hub/lib.sh"
# The tmux helpers (their ok/bad/check replace the Hub library's).
. "$(dirname "$0")/tui_lib.bash"
tui_require_methods
trap 'tui_cleanup; stop_nginx; rm -rf "$WORK"' EXIT

start_nginx
export HF_ENDPOINT="$HUB_URL" HF_HOME="$WORK/hfhome" HF_HUB_CACHE="$WORK/cache"
export XDG_CACHE_HOME="$WORK/xdg"
unset HF_TOKEN HUGGING_FACE_HUB_TOKEN HF_HUB_OFFLINE HUGGINGFACE_HUB_CACHE || true

tui_start 140 45 "cd '$WORK' && TERM=xterm-256color '$SMELT_BIN' tui -o '$WORK/out'"
check "cache starts empty" tui_wait "no models cached"
tui_keys / "smelt-test/tiny" Enter
check "uncached name explains" tui_wait "is not in the cache: press P to download it"
tui_keys P "smelt-test/tiny" Enter
check "download finishes" tui_wait "downloaded smelt-test/tiny" 60
check "cache list shows the model" tui_wait "Hugging Face cache (1)"
check "snapshot on disk" bash -c "ls '$WORK'/cache/models--smelt-test--tiny/snapshots/*/config.json >/dev/null"
tui_keys Tab b
check "picked from the cache" tui_wait "base: smelt-test/tiny"
tui_keys Tab
check "downloaded model opens" tui_wait "size          "
tui_keys q
check "clean exit" tui_wait "EXIT=0"

check_summary
