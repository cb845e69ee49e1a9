#!/bin/sh
# A pokan command handler: mirrors every node's keys into a directory and
# keeps a log of the events it saw.
#
#   twistd pokan ... --on-event new_key,key_changed,key_removed=/path/to/on_event.sh
#
# pokan runs it through /bin/sh -c, once per event, one run at a time, with
# the value on stdin and the event in POKAN_* variables (docs/handlers.md).
# POKAN_MIRROR names the directory (default ./pokan-mirror); the mirror of
# key K of node N is the file $POKAN_MIRROR/N/K, with "/" in K written "%2F".
set -eu

mirror="${POKAN_MIRROR:-./pokan-mirror}"
node_dir="$mirror/$POKAN_PEER"
file="$node_dir/$(printf '%s' "$POKAN_KEY" | sed 's|/|%2F|g')"

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
if [ "$POKAN_DROPPED" != 0 ]; then
    # events were lost while we were busy: a real script would resync here
    echo "on_event.sh: $POKAN_DROPPED events dropped before this one" >&2
fi
echo "$POKAN_SEQ $POKAN_EVENT $POKAN_PEER $POKAN_KEY" >> "$mirror/events.log"
