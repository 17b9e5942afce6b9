#!/usr/bin/env bash
# Fetches the official FHIR R4 examples (npm package hl7.fhir.r4.examples@4.0.1)
# into .cache/r4-examples, keeping only the resource types Priorflow serves.
# The package is not committed: it is 18 MB and has its own license.
set -euo pipefail
dest=${1:-.cache/r4-examples}
[ -f "$dest/.complete" ] && exit 0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent hl7.fhir.r4.examples@4.0.1 >/dev/null 2>&1)
mkdir -p "$dest"
tar -xzf "$tmp"/hl7.fhir.r4.examples-4.0.1.tgz -C "$tmp"
for t in ImagingStudy Patient Endpoint Appointment Encounter ServiceRequest Task Subscription AuditEvent Provenance Bundle; do
  cp "$tmp"/package/"$t"-*.json "$dest"/ 2>/dev/null || true
done
touch "$dest/.complete"
echo "R4 examples in $dest: $(ls "$dest" | wc -l) files"
