#!/bin/sh
# A pokan command handler: mirrors every node's keys into a directory and
# keeps a log of the events it saw.
#
#   twistd pokan ... --on-event new_key,key_changed,key_removed=/path/to/on_event.sh
#
# pokan runs it through /bin/sh -c, once per event, one run at a time, with
# the value on stdin and the event in POKAN_* variables (docs/handlers.md).
# POKAN_MIRROR names the directory (default ./pokan-mirror); the mirror of
# key K of node N is the file $POKAN_MIRROR/N/K. Keys come from other nodes:
# in both names "%" is written "%25", "/" "%2F" and a leading "." "%2E", so
# no key can name a file outside the mirror.
set -eu

safe() {
    printf '%s' "$1" | sed -e 's|%|%25|g' -e 's|/|%2F|g' -e 's|^\.|%2E|'
}

mirror="${POKAN_MIRROR:-./pokan-mirror}"
node_dir="$mirror/$(safe "$POKAN_PEER")"
file="$node_dir/$(safe "$POKAN_KEY")"

mkdir -p "$node_dir"
case "$POKAN_EVENT" in
    new_key|key_changed)
        cat > "$file.tmp"          # the value, byte for byte
        mv "$file.tmp" "$file"
        ;;
    key_removed)
        rm -f "$file"
        ;;
    *)
        echo "on_event.sh: unexpected event $POKAN_EVENT" >&2
        exit 2
        ;;
esac
if [ "${POKAN_DROPPED:-0}" != 0 ]; then
    # events were lost while we were busy: a real script would resync here
    echo "on_event.sh: $POKAN_DROPPED events dropped before this one" >&2
fi
echo "$POKAN_SEQ $POKAN_EVENT $POKAN_PEER $POKAN_KEY" >> "$mirror/events.log"
