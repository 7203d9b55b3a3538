#!/usr/bin/env bash
# Fails if a password used by the tests shows up in a log (the output of db-backup and the tests).
#
# Convention: every password a test gives a database is a string literal containing "secret",
# e.g. "pg-secret-1". This script collects them from tests/**/*.rs:
#   - double-quoted literals that are one token:     "pg-secret-1"
#   - the value of NAME=value literals:               "POSTGRES_PASSWORD=pg-secret-1"
#   - single-quoted (SQL) literals:                   PASSWORD 'rw-secret-1'
# where a token is [A-Za-z0-9_-]*secret[A-Za-z0-9_-]*, other than comment lines and the bare word
# "secret(s)", then looks for each one, as a fixed string, in the log.
#
# Keys the tests generate at run time (age identities from age-keygen, OpenSSH private keys from
# ssh-keygen) are not literals: any age secret key (AGE-SECRET-KEY-1...), any line of an age
# identity file ("# created: ...") and any OpenSSH private key block in the log is a leak too.
#
# Usage: scripts/check-secrets.sh LOG
# Exit:  0 no secret in LOG; 1 leaks (listed, with line numbers, on stderr); 2 usage error, an
#        unreadable log, or no secret found in the tests (the extraction itself would be broken).
set -euo pipefail

if [ "$#" -ne 1 ]; then
  echo "usage: $0 LOG" >&2
  exit 2
fi
log=$1
if [ ! -f "$log" ] || [ ! -r "$log" ]; then
  echo "check-secrets: cannot read the log file '$log'" >&2
  exit 2
fi

tests_dir="$(cd "$(dirname "$0")/.." && pwd)/tests"
token='[A-Za-z0-9_-]*secret[A-Za-z0-9_-]*'

mapfile -t sources < <(find "$tests_dir" -name '*.rs' -type f | sort)
if [ "${#sources[@]}" -eq 0 ]; then
  echo "check-secrets: no test sources under $tests_dir" >&2
  exit 2
fi

# Comment lines are skipped, and so is the bare word "secret(s)": neither is a password.
mapfile -t secrets < <(
  grep -hv '^[[:space:]]*//' "${sources[@]}" | {
    code=$(cat)
    grep -oE "\"$token\"" <<<"$code" || true
    grep -oE "\"[A-Za-z_][A-Za-z0-9_]*=$token\"" <<<"$code" | sed -E 's/^"[^=]*=//' || true
    grep -oE "'$token'" <<<"$code" || true
  } | tr -d "\"'" | grep -E "^$token\$" | grep -vxE 'secrets?' | sort -u
)
if [ "${#secrets[@]}" -eq 0 ]; then
  echo "check-secrets: found no password literal (containing \"secret\") in $tests_dir: nothing would be checked" >&2
  exit 2
fi

leaks=0
for secret in "${secrets[@]}"; do
  if lines=$(grep -nF -- "$secret" "$log" | cut -d: -f1 | head -n 10 | paste -sd, -); [ -n "$lines" ]; then
    count=$(grep -cF -- "$secret" "$log")
    echo "check-secrets: LEAK: '$secret' appears on $count line(s) of $log (lines $lines)" >&2
    leaks=$((leaks + 1))
  fi
done

key_patterns=(
  'AGE-SECRET-KEY-1[0-9A-Z]{20,}'
  '^# created: [0-9]{4}-'
  'BEGIN OPENSSH PRIVATE KEY'
)
for pattern in "${key_patterns[@]}"; do
  if lines=$(grep -nE -- "$pattern" "$log" | cut -d: -f1 | head -n 10 | paste -sd, -); [ -n "$lines" ]; then
    echo "check-secrets: LEAK: a private key ($pattern) appears in $log (lines $lines)" >&2
    leaks=$((leaks + 1))
  fi
done

bytes=$(wc -c <"$log" | tr -d ' ')
if [ "$leaks" -gt 0 ]; then
  echo "check-secrets: $leaks leak(s) into $log ($bytes bytes): of ${#secrets[@]} test passwords and ${#key_patterns[@]} key patterns" >&2
  exit 1
fi
echo "check-secrets: checked ${#secrets[@]} secrets and ${#key_patterns[@]} key patterns in $bytes bytes of $log: no leak"
