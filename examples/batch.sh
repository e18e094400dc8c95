#!/usr/bin/env bash
# A batch of videos from a file of prompts with the `anyfast` command: create them, wait for
# them while downloading each video, stop midway (as `docker stop` or `timeout` would, with
# SIGTERM), run the same command again to finish. Nothing is created twice, nothing is
# downloaded twice.
#
#   ANYFAST_API_KEY=sk-... bash examples/batch.sh     # against AnyFast (creates paid videos)
#   bash examples/batch.sh                             # against a fake AnyFast on this machine
set -euo pipefail

work=$(mktemp -d)
cd "$work"
poll=()
if [ -z "${ANYFAST_API_KEY:-}" ]; then
    # No account: run a fake AnyFast (tasks take 4 s, one in four fails moderation).
    anyfast fake-server --port 0 --stage-seconds 1 > fake.log &
    fake=$!
    trap 'kill $fake; rm -rf "$work"' EXIT
    until grep -q "export ANYFAST_BASE_URL" fake.log; do sleep 0.1; done
    export ANYFAST_API_KEY=test-key
    export ANYFAST_BASE_URL=$(sed -n 's/.*export ANYFAST_BASE_URL=//p' fake.log)
    poll=(--poll-interval 0.5)  # the fake is quick; the default cadence suits real videos
else
    trap 'rm -rf "$work"' EXIT
fi

# One prompt a line (or a JSON object of create parameters a line).
for i in $(seq 1 40); do
    if [ $((i % 4)) -eq 0 ]; then
        echo "Clip $i: a lighthouse at dusk (moderation)"
    else
        echo "Clip $i: a lighthouse at dusk, waves breaking"
    fi
done > prompts.txt

# 1. Create: each id is written the moment it is known; the store records each create first.
anyfast create --prompts prompts.txt --store batch.db > ids.txt
echo "created $(wc -l < ids.txt) tasks"

# 2. Wait and download, stopped after 4 s by SIGTERM: exit 143, no partial file left.
status=0
timeout --preserve-status -s TERM 4 \
    anyfast wait --ids-from ids.txt --download videos/ --store batch.db --jsonl "${poll[@]}" \
    > first.jsonl || status=$?
echo "first run: exit $status, $(grep -c '"outcome"' first.jsonl) outcomes"
if ls videos/.*.part > /dev/null 2>&1; then echo "partial files left" >&2; exit 1; fi

# 3. The same command again: outcomes already recorded come from the store, the rest are
#    watched to their ends. Exit 1: some tasks failed (moderation).
status=0
anyfast wait --ids-from ids.txt --download videos/ --store batch.db --jsonl "${poll[@]}" \
    > second.jsonl || status=$?
tail -n 1 second.jsonl
echo "second run: exit $status, $(ls videos | wc -l) videos"
[ "$status" -eq 1 ] && [ "$(ls videos | wc -l)" -eq 30 ]

# What the store knows, and nothing left to do.
anyfast tasks --store batch.db | tail -n 1
[ -z "$(anyfast tasks --store batch.db --unfinished --jsonl)" ]
