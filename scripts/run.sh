#!/usr/bin/env bash
# Starts Priorflow on this machine: cmd/api (FHIR, DICOMweb, MLLP, NATS
# JetStream embedded) and cmd/prefetcher joined to the embedded NATS. Ctrl-C
# stops both cleanly. Settings come from the environment (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
export PRIORFLOW_DATA_DIR=${PRIORFLOW_DATA_DIR:-./data}
export PRIORFLOW_CONFIG=${PRIORFLOW_CONFIG:-config/priorflow.yaml}
http=${PRIORFLOW_HTTP_ADDR:-:8080}
port=${http##*:}
mkdir -p "$PRIORFLOW_DATA_DIR"

pids=()
stop() {
  trap - INT TERM EXIT
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  echo "stopped"
}
trap stop INT TERM EXIT

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
  logs       $PRIORFLOW_DATA_DIR/api.log, $PRIORFLOW_DATA_DIR/prefetcher.log
Press Ctrl-C to stop.
EOT
wait -n "${pids[@]}"
