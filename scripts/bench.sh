#!/usr/bin/env bash
# Runs the FHIR search benchmark (docs/performance.md): starts bin/api on its
# own database and a loopback port, then bin/fhirbench loads the synthetic
# archive through transaction Bundles (skipped when the database already holds
# it) and measures the searches beside their raw SQL.
#
#   BENCH_STUDIES  ImagingStudy count (default 1000000; 20000 for a quick check)
#   BENCH_DB       database (default priorflow_bench for 1000000 studies,
#                  priorflow_bench_<studies> otherwise; must contain "bench")
#   BENCH_PORT     loopback port of the API under test (default 8099; its
#                  embedded NATS takes port+100 and its MLLP listener port+200)
#   BENCH_RESET=1  drop the database first (a partial or different load)
#   BENCH_OUT      Markdown report (default .cache/bench/report-<studies>.md)
#   extra arguments go to fhirbench (see bin/fhirbench -h)
#   BENCH_FHIR=0   skip the FHIR benchmark
#
# Then, as a second step, the DICOM archive benchmark beside Orthanc
# (bin/dicombench; docs/performance.md, "DICOM archive beside Orthanc"): it
# starts its own API on its own database and its own Orthanc.
#   BENCH_DICOM=0            skip it
#   BENCH_DICOM_INSTANCES    instances (default 20000; 1000 for a quick check);
#                            the default size also updates docs/performance.md
#   BENCH_DICOM_ARGS         extra arguments for dicombench (bin/dicombench -h)
#
# Then, as a third step, the prefetch pull beside Orthanc's DICOMweb
# /retrieve (bin/pullbench; docs/performance.md, "Prefetch pull beside
# Orthanc /retrieve"): it starts a source Orthanc, a reference Orthanc, the
# real bin/prefetcher and its own database (priorflow_bench_pull).
#   BENCH_PULL=0             skip it
#   BENCH_PULL_INSTANCES     instances of the throughput study (default 300;
#                            CT, 1 MB each)
#   BENCH_PULL_LARGE_GB      size of the study the prefetcher's peak memory
#                            is measured on (default 2; 0 skips that part,
#                            for a quick run)
#   BENCH_PULL_ARGS          extra arguments for pullbench (bin/pullbench -h)
#   The default sizes (300 and 2) also update docs/performance.md.
#   BENCH_PULL_CMOVE=0       skip the same pull by C-MOVE on both sides
#                            (pullbench -protocol c-move; its report stays
#                            in .cache/bench: docs/performance.md, "Prefetch
#                            pull by C-MOVE", quotes it)
#
# Then, as a fourth step, a C-GET of one study (200 CT instances of 1 MB)
# from Orthanc by Priorflow's DIMSE client beside DCMTK's getscu
# (BenchmarkGet in dimse; docs/performance.md, "C-GET beside DCMTK
# getscu"), and the retriever's pull of the same study over WADO-RS beside
# C-GET and C-MOVE (BenchmarkRetrieve in retrieve/worker, "C-GET and C-MOVE
# beside WADO-RS"), six
# runs of each, compared by benchstat when it is installed (go install
# golang.org/x/perf/cmd/benchstat@latest).
#   BENCH_DIMSE=0            skip it
set -euo pipefail
cd "$(dirname "$0")/.."

studies=${BENCH_STUDIES:-1000000}
if [ "$studies" = 1000000 ]; then db=${BENCH_DB:-priorflow_bench}; else db=${BENCH_DB:-priorflow_bench_$studies}; fi
port=${BENCH_PORT:-8099}
out=${BENCH_OUT:-.cache/bench/report-$studies.md}
pg="postgres://postgres@127.0.0.1:5432"

case "$db" in
  priorflow) echo "bench.sh: refusing to use the development database" >&2; exit 2 ;;
  *bench*) ;;
  *) echo "bench.sh: BENCH_DB must contain \"bench\"" >&2; exit 2 ;;
esac

mkdir -p bin .cache/bench "$(dirname "$out")"
go build -o bin/ ./cmd/api ./cmd/fhirbench ./cmd/dicombench ./cmd/prefetcher ./cmd/pullbench

if [ "${BENCH_FHIR:-1}" != 0 ]; then
if [ "${BENCH_RESET:-0}" = 1 ]; then
  echo "bench.sh: dropping database $db"
  dropdb -h 127.0.0.1 -U postgres --if-exists --force "$db"
fi

log=.cache/bench/api-$studies.log
# Its own loopback ports (HTTP, MLLP, embedded NATS) and data directory, so
# that it runs beside a development server or another benchmark's API.
DATABASE_URL="$pg/$db?sslmode=disable" PRIORFLOW_HTTP_ADDR="127.0.0.1:$port" PRIORFLOW_LOG_LEVEL=warn \
  PRIORFLOW_MLLP_ADDR="127.0.0.1:$((port + 200))" PRIORFLOW_NATS_LISTEN="127.0.0.1:$((port + 100))" \
  PRIORFLOW_DATA_DIR=".cache/bench/data-$db" PRIORFLOW_AUTH="${PRIORFLOW_AUTH:-off}" \
  bin/api >"$log" 2>&1 &
api=$!
trap 'kill "$api" 2>/dev/null || true; wait "$api" 2>/dev/null || true' EXIT

for _ in $(seq 1 60); do
  curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
  kill -0 "$api" 2>/dev/null || { echo "bench.sh: the API exited; see $log" >&2; cat "$log" >&2; exit 1; }
  sleep 1
done
curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null

bin/fhirbench -studies "$studies" -fhir-base "http://127.0.0.1:$port/fhir" \
  -database-url "$pg/$db?sslmode=disable" -out "$out" "$@"
echo "bench.sh: report in $out"
kill "$api" 2>/dev/null || true
wait "$api" 2>/dev/null || true
fi

if [ "${BENCH_DICOM:-1}" != 0 ]; then
  scripts/install-deps.sh
  n=${BENCH_DICOM_INSTANCES:-20000}
  dout=.cache/bench/dicom-$n.md
  doc=()
  [ "$n" = 20000 ] && doc=(-doc docs/performance.md)
  # shellcheck disable=SC2086 # BENCH_DICOM_ARGS is a list of flags
  bin/dicombench -instances "$n" -api-bin bin/api -out "$dout" "${doc[@]}" ${BENCH_DICOM_ARGS:-}
  echo "bench.sh: DICOM report in $dout"
fi

if [ "${BENCH_PULL:-1}" != 0 ]; then
  scripts/install-deps.sh
  n=${BENCH_PULL_INSTANCES:-300}
  gb=${BENCH_PULL_LARGE_GB:-2}
  pout=.cache/bench/pull-$n-${gb}gb.md
  doc=()
  [ "$n" = 300 ] && [ "$gb" = 2 ] && doc=(-doc docs/performance.md)
  # shellcheck disable=SC2086 # BENCH_PULL_ARGS is a list of flags
  bin/pullbench -instances "$n" -large-gb "$gb" -prefetcher-bin bin/prefetcher -out "$pout" "${doc[@]}" ${BENCH_PULL_ARGS:-}
  echo "bench.sh: pull report in $pout"
  if [ "${BENCH_PULL_CMOVE:-1}" != 0 ]; then
    cout=.cache/bench/pull-cmove-$n-${gb}gb.md
    # shellcheck disable=SC2086 # BENCH_PULL_ARGS is a list of flags
    bin/pullbench -protocol c-move -instances "$n" -large-gb "$gb" -prefetcher-bin bin/prefetcher -out "$cout" ${BENCH_PULL_ARGS:-}
    echo "bench.sh: C-MOVE pull report in $cout"
  fi
fi

if [ "${BENCH_DIMSE:-1}" != 0 ]; then
  scripts/install-deps.sh
  bs=$(command -v benchstat || echo "$(go env GOPATH)/bin/benchstat")
  # side_by_side PKG BENCH BENCHTIME BASE OTHER...: runs BENCH six times and
  # compares its sub-benchmarks OTHER... against BASE.
  side_by_side() {
    local pkg=$1 bench=$2 benchtime=$3 raw=.cache/bench/$2.txt head side args=()
    shift 3
    go test "$pkg" -run '^$' -bench "^$bench\$" -benchtime "$benchtime" -count 6 -timeout 30m | tee "$raw"
    head=$(grep -E '^(goos|goarch|pkg|cpu):' "$raw")
    for side in "$@"; do
      { echo "$head"; grep "^$bench/$side-" "$raw" | sed "s#^$bench/$side-#$bench-#"; } >".cache/bench/$bench-$side.txt"
      args+=("$side=.cache/bench/$bench-$side.txt")
    done
    if [ -x "$bs" ]; then
      "$bs" "${args[@]}"
    else
      echo "bench.sh: benchstat not installed; raw figures in $raw"
    fi
  }
  side_by_side ./dimse BenchmarkGet 10x getscu priorflow
  side_by_side ./retrieve/worker BenchmarkRetrieve 3x wado-rs c-get c-move
fi
