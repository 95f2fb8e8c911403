#!/bin/sh
# A worker on the host: fetches each path of worker/checks.txt from the web service every
# second and prints a line when the answer changes. It reads checks.txt once, at start;
# kiln restarts it when something under worker/ changes (`watch` in kiln.toml).
paths=$(sed 's/#.*//' worker/checks.txt)
echo "checking every second:" $paths
last=""
while :; do
  now=""
  for p in $paths; do
    sum=$(busybox wget -q -O - "http://127.0.0.1:${WEB_PORT}$p" 2>/dev/null | md5sum | cut -c1-8)
    now="$now $p=$sum"
    case "$last" in
      *" $p=$sum"*) ;;
      *) echo "GET $p answers md5 $sum" ;;
    esac
  done
  last="$now"
  sleep 1
done
