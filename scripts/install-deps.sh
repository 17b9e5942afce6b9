#!/usr/bin/env bash
# Installs the Debian packages the test suite talks to when they are missing:
# Orthanc with its DICOMweb plugin (a real DICOMweb peer), dcmtk (DICOM tools
# and decoders), python3-hl7 (mllp_send, a real MLLP sender). Runs apt-get only
# when something is missing, so repeated runs cost nothing.
set -euo pipefail
want=(orthanc orthanc-dicomweb dcmtk python3-hl7)
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
echo "installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The package starts a system Orthanc on the default ports; tests run their
# own instances on free ports, so stop it to keep the machine quiet.
if command -v service >/dev/null 2>&1; then $SUDO service orthanc stop >/dev/null 2>&1 || true; fi
pkill -x Orthanc 2>/dev/null || true
