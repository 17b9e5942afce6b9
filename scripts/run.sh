#!/usr/bin/env bash
# Starts Priorflow on this machine: cmd/api (FHIR, DICOMweb, MLLP, NATS
# JetStream embedded) and cmd/prefetcher joined to the embedded NATS, plus a
# demo network: a remote site seeded with sample studies (an Orthanc when it
# is installed, else a second Priorflow api) and a config whose sources point
# at it. Ctrl-C stops everything cleanly. Settings come from the environment
# (see README); PRIORFLOW_DEMO=0 skips the demo network.
set -euo pipefail
cd "$(dirname "$0")/.."
export PRIORFLOW_DATA_DIR=${PRIORFLOW_DATA_DIR:-./data}
# Development mode: the api issues its own tokens and writes a ready one
# to $PRIORFLOW_DATA_DIR/dev-token (README "Security").
export PRIORFLOW_AUTH=${PRIORFLOW_AUTH:-dev}
http=${PRIORFLOW_HTTP_ADDR:-:8080}
port=${http##*:}
mkdir -p "$PRIORFLOW_DATA_DIR"

pids=()
stop() {
  trap - INT TERM EXIT
  # Newest first, each waited for: the prefetcher finishes or hands back
  # its jobs while the api's embedded NATS still runs. (Ctrl-C reaches every
  # process of the group at once; they cope, this is the tidier order.)
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill -TERM "${pids[i]}" 2>/dev/null || true
    wait "${pids[i]}" 2>/dev/null || true
  done
  echo "stopped"
}
trap stop INT TERM EXIT

# waitfor URL PID NAME LOG: polls URL until it answers, failing if PID dies.
waitfor() {
  for _ in $(seq 1 60); do
    curl -fsS "$1" >/dev/null 2>&1 && return 0
    kill -0 "$2" 2>/dev/null || { echo "$3 failed to start; see $4" >&2; exit 1; }
    sleep 0.5
  done
  echo "$3 did not answer at $1; see $4" >&2
  exit 1
}

# The demo remote site, unless the user brings a config or turns it off.
demo=""
if [ -z "${PRIORFLOW_CONFIG:-}" ] && [ "${PRIORFLOW_DEMO:-1}" != 0 ]; then
  ddir="$PRIORFLOW_DATA_DIR/demo-remote"
  mkdir -p "$ddir"
  ddir=$(cd "$ddir" && pwd)
  if command -v Orthanc >/dev/null && [ -f /usr/share/orthanc/plugins/libOrthancDicomWeb.so ]; then
    oport=${PRIORFLOW_DEMO_ORTHANC_PORT:-8042}
    cat >"$ddir/orthanc.json" <<EOC
{
  "Name": "priorflow-demo-remote",
  "StorageDirectory": "$ddir/storage",
  "IndexDirectory": "$ddir/index",
  "HttpPort": $oport,
  "DicomPort": ${PRIORFLOW_DEMO_ORTHANC_DICOM_PORT:-4243},
  "DicomAet": "DEMOREMOTE",
  "RemoteAccessAllowed": false,
  "AuthenticationEnabled": false,
  "Plugins": ["/usr/share/orthanc/plugins/libOrthancDicomWeb.so"],
  "DicomWeb": {"Enable": true, "Root": "/dicom-web/"},
  "SaveJobs": false,
  "UnknownSopClassAccepted": true
}
EOC
    Orthanc --logdir="$ddir" "$ddir/orthanc.json" >"$ddir/orthanc.out" 2>&1 &
    pids+=($!)
    waitfor "http://127.0.0.1:$oport/system" "$!" "the demo Orthanc" "$ddir/orthanc.out"
    demo="Orthanc http://127.0.0.1:$oport (Orthanc Explorer), DICOMweb http://127.0.0.1:$oport/dicom-web"
    droot="http://127.0.0.1:$oport/dicom-web"
  else
    # No Orthanc: a second Priorflow api plays the remote site, with its
    # own database, ports, data dir and embedded NATS. Like the demo
    # Orthanc it listens on loopback only and asks for no token.
    rport=${PRIORFLOW_DEMO_REMOTE_PORT:-8081}
    db=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/priorflow?sslmode=disable}
    rdb="${db%%\?*}"; rdb="${rdb%/*}/priorflow_demo_remote"
    [ "$db" != "${db#*\?}" ] && rdb="$rdb?${db#*\?}"
    DATABASE_URL="$rdb" PRIORFLOW_HTTP_ADDR="127.0.0.1:$rport" PRIORFLOW_BASE_URL="http://127.0.0.1:$rport" \
      PRIORFLOW_DATA_DIR="$ddir" PRIORFLOW_MLLP_ADDR="127.0.0.1:${PRIORFLOW_DEMO_REMOTE_MLLP_PORT:-2576}" \
      PRIORFLOW_NATS_LISTEN="127.0.0.1:${PRIORFLOW_DEMO_REMOTE_NATS_PORT:-4224}" NATS_URL="" PRIORFLOW_AUTH=off \
      bin/api >"$ddir/api.log" 2>&1 &
    pids+=($!)
    waitfor "http://127.0.0.1:$rport/readyz" "$!" "the demo remote api" "$ddir/api.log"
    demo="Priorflow (second api) http://127.0.0.1:$rport, DICOMweb http://127.0.0.1:$rport/dicomweb, database priorflow_demo_remote"
    droot="http://127.0.0.1:$rport/dicomweb"
  fi
  if [ ! -f "$ddir/seeded" ]; then
    echo "seeding the demo remote site at $droot ..."
    bin/priorflow demo seed -url "$droot" | tee "$ddir/seeded.tmp"
    mv "$ddir/seeded.tmp" "$ddir/seeded"
  fi
  # The default rules plus the remote site as a source. Its issuer is the
  # assigning authority (PID-3.4.1) of the sample SIU^S12's patient.
  { cat config/priorflow.yaml; cat <<EOC
sources:
  - name: demo-remote
    kind: dicomweb
    url: $droot
    issuer: test1
EOC
  } >"$PRIORFLOW_DATA_DIR/demo-priorflow.yaml"
  export PRIORFLOW_CONFIG="$PRIORFLOW_DATA_DIR/demo-priorflow.yaml"
fi
export PRIORFLOW_CONFIG=${PRIORFLOW_CONFIG:-config/priorflow.yaml}

bin/api 2> >(tee -a "$PRIORFLOW_DATA_DIR/api.log" >&2) &
pids+=($!)
for _ in $(seq 1 60); do
  curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
  kill -0 "${pids[0]}" 2>/dev/null || { echo "api failed to start; see $PRIORFLOW_DATA_DIR/api.log" >&2; exit 1; }
  sleep 0.5
done
if [ -z "${NATS_URL:-}" ]; then export NATS_URL="nats://${PRIORFLOW_NATS_LISTEN:-127.0.0.1:4223}"; fi
bin/prefetcher 2> >(tee -a "$PRIORFLOW_DATA_DIR/prefetcher.log" >&2) &
pids+=($!)

cat <<EOT

Priorflow is running.
  FHIR       http://localhost:$port/fhir          (try /fhir/metadata)
  DICOMweb   http://localhost:$port/dicomweb
  HL7 MLLP   ${PRIORFLOW_MLLP_ADDR:-:2575}
  NATS       $NATS_URL (JetStream, embedded in api)
  metrics    http://localhost:$port/metrics, prefetcher http://127.0.0.1:9091/metrics
  rules      $PRIORFLOW_CONFIG
EOT
if [ "$PRIORFLOW_AUTH" = dev ] && [ -f "$PRIORFLOW_DATA_DIR/dev-token" ]; then cat <<EOT
  token      development access token (scope system/*.cruds, 12 h) in $PRIORFLOW_DATA_DIR/dev-token:
               export TOKEN=\$(cat $PRIORFLOW_DATA_DIR/dev-token)
               curl -H "Authorization: Bearer \$TOKEN" localhost:$port/fhir/ImagingStudy
             $(cat "$PRIORFLOW_DATA_DIR/dev-token")
EOT
fi
if [ -n "$demo" ]; then cat <<EOT
  demo remote $demo
              seeded with sample studies (patient PATID1234, authority test1); see README "Walkthrough"
              to start over: stop, then rm -rf $PRIORFLOW_DATA_DIR/demo-remote
EOT
fi
cat <<EOT
  logs       $PRIORFLOW_DATA_DIR/api.log, $PRIORFLOW_DATA_DIR/prefetcher.log
Press Ctrl-C to stop.
EOT
wait -n "${pids[@]}"
