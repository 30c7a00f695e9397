#!/usr/bin/env bash
# t_chat_template.sh: the recipe's chat_template reaches the merged model's
# tokenizer_config.json (and chat_template.jinja when the donor uses that
# file): built-in names, a literal Jinja template, `auto` (the template most
# input models declare), none (the donor's files unchanged), and an unknown
# name refused before anything is written.
set -eu

. "$SMELT_SOURCE/tests/check.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cd "$tmp"
"$SMELT_BIN" demo demo > /dev/null 2>&1 || { echo "FAIL: smelt demo"; echo "0 passed, 1 failed"; exit 1; }

# model NAME TEMPLATE [jinja]: a copy of demo/base (weights linked) whose
# tokenizer declares TEMPLATE ("" for none), in chat_template.jinja with "jinja"
model() {
	mkdir -p "m/$1"
	ln -sf "$tmp/demo/base/model.safetensors" "m/$1/model.safetensors"
	cp demo/base/config.json "m/$1/"
	python3 - "$@" <<'PY'
import json, sys
name, tmpl = sys.argv[1], sys.argv[2]
jinja = len(sys.argv) > 3
cfg = {"bos_token": "<s>", "eos_token": "</s>", "model_max_length": 2048}
if tmpl and not jinja:
    cfg["chat_template"] = tmpl
json.dump(cfg, open(f"m/{name}/tokenizer_config.json", "w"), indent=2)
if tmpl and jinja:
    open(f"m/{name}/chat_template.jinja", "w").write(tmpl + "\n")
PY
}

# merge OUT TEMPLATE_LINE MODEL...: linear merge of the models (the first is the
# tokenizer donor) with the given chat_template line ("" for none)
merge() {
	local out=$1 line=$2
	shift 2
	{
		echo "merge_method: linear"
		echo "models:"
		for m in "$@"; do echo "  - {model: $m, parameters: {weight: 1.0}}"; done
		echo "$line"
	} > "$out.yml"
	"$SMELT_BIN" merge "$out.yml" -o "$out" --quiet > "$out.log" 2>&1
}

# template_of OUT: the chat_template field of OUT's tokenizer_config.json ("<none>")
template_of() {
	python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("chat_template", "<none>"))' \
		"$1/tokenizer_config.json"
}

expect_template() { # out want description
	local got
	got=$(template_of "$1")
	if [ "$got" = "$2" ]; then ok; else bad "$3: chat_template '$got', want '$2'"; fi
}

A='{% for m in messages %}A:{{ m.content }}{% endfor %}'
B='{% for m in messages %}B:{{ m.content }}{% endfor %}'
model plain ""
model a "$A"
model b "$B"
model b2 "  $B  "
model bj "$B" jinja

# built-in names: a marker of each format, the donor's other keys kept
for pair in "chatml:<|im_start|>" "llama3:<|start_header_id|>" "mistral:[INST]" \
	"alpaca:### Instruction:" "exaone:[|assistant|]"; do
	name=${pair%%:*}
	marker=${pair#*:}
	if merge "out-$name" "chat_template: $name" m/plain; then ok; else bad "$name: merge failed: $(cat "out-$name.log")"; continue; fi
	if template_of "out-$name" | grep -qF -- "$marker"; then ok; else bad "$name: '$marker' not in the template"; fi
	if grep -q '"model_max_length"' "out-$name/tokenizer_config.json"; then ok; else bad "$name: donor keys lost"; fi
done

# a literal template is written as given
merge out-literal "chat_template: \"$A\"" m/plain || bad "literal: merge failed: $(cat out-literal.log)"
expect_template out-literal "$A" "literal"

# auto: the most common template (b and b2 agree once stripped), base included
merge out-auto "chat_template: auto" m/a m/b m/b2 || bad "auto: merge failed: $(cat out-auto.log)"
expect_template out-auto "$B" "auto, majority"
# auto: a tie goes to the first model that declares a template
merge out-tie "chat_template: auto" m/plain m/a m/b || bad "auto tie: merge failed"
expect_template out-tie "$A" "auto, tie"
# auto: nobody declares one: the donor's file stays as it was
merge out-none-auto "chat_template: auto" m/plain m/plain || bad "auto none: merge failed"
if cmp -s m/plain/tokenizer_config.json out-none-auto/tokenizer_config.json; then ok; else bad "auto without templates changed tokenizer_config.json"; fi
# auto reads chat_template.jinja (preferred by transformers)
merge out-jinja-auto "chat_template: auto" m/a m/bj m/b || bad "auto jinja: merge failed"
expect_template out-jinja-auto "$B" "auto counts chat_template.jinja"

# a donor keeping its template in chat_template.jinja gets both files
merge out-jinja "chat_template: chatml" m/bj || bad "jinja donor: merge failed"
if grep -qF '<|im_start|>' out-jinja/chat_template.jinja; then ok; else bad "chat_template.jinja not rewritten"; fi
if [ "$(template_of out-jinja)" = "$(cat out-jinja/chat_template.jinja)" ]; then ok; else bad "chat_template.jinja and tokenizer_config.json differ"; fi

# no chat_template: the donor's files are copied byte for byte
merge out-keep "" m/a || bad "no template: merge failed"
if cmp -s m/a/tokenizer_config.json out-keep/tokenizer_config.json; then ok; else bad "tokenizer_config.json changed without chat_template"; fi

# an unknown name is refused up front, with a suggestion, and nothing is written
set +e
merge out-bad "chat_template: chatm1" m/plain
rc=$?
set -e
if [ "$rc" -eq 1 ]; then ok; else bad "unknown template: exit $rc, want 1"; fi
if grep -q "did you mean 'chatml'" out-bad.log; then ok; else bad "unknown template: no suggestion: $(cat out-bad.log)"; fi
if ls -d out-bad out-bad.partial-* > /dev/null 2>&1; then bad "unknown template left an output behind"; else ok; fi

check_summary
