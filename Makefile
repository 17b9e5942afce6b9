# Priorflow. `make run` starts the system on defaults; `make test` runs every
# test the way CI does; `make bench` runs the benchmarks.
GO       ?= go
GOFLAGS  ?=
PKGS     := ./...
BIN      := bin

.PHONY: all build run test testdata services deps vet fmt-check fuzz bench clean

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/...

run: build services
	scripts/run.sh

services:
	@scripts/ensure-services.sh

testdata:
	@scripts/fetch-r4-examples.sh .cache/r4-examples

# Debian packages the interop tests need (Orthanc + DICOMweb, dcmtk, python3-hl7).
deps:
	@scripts/install-deps.sh

vet:
	$(GO) vet $(PKGS)

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

test: services deps testdata fmt-check vet
	R4_EXAMPLES=$(CURDIR)/.cache/r4-examples $(GO) test -race -shuffle=on -count=1 -timeout 30m $(PKGS)

# Each fuzz target for a short, bounded run (scripts/fuzz.sh).
FUZZTIME ?= 30s
fuzz:
	@R4_EXAMPLES=$(CURDIR)/.cache/r4-examples FUZZTIME=$(FUZZTIME) GO=$(GO) scripts/fuzz.sh

bench: build services
	scripts/bench.sh

clean:
	rm -rf $(BIN) .cache
