# clinicsync build. `make help` lists the targets.
SHELL := /bin/bash
GO          ?= go
PROTOC_GEN_GO_VERSION := v1.36.12
BIN         := $(CURDIR)/bin
TOOLS       := $(CURDIR)/.bin
FUZZTIME    ?= 10s
BENCHTIME   ?= 1x
BENCH_ROWS  ?= 100000
TEST_FLAGS  ?= -timeout 15m

.PHONY: help build test race fuzz bench resume-1m proto verify demo sim clean

help:
	@echo "build   bin/node and bin/simulate"
	@echo "test    the test suite (what CI runs): go test, then the WatermelonDB client test (needs npm)"
	@echo "race    the test suite under the race detector"
	@echo "fuzz    every fuzz target for FUZZTIME (default $(FUZZTIME))"
	@echo "bench   benchmarks with their floors: go test -bench, then test/bench (BENCH_ROWS, default $(BENCH_ROWS))"
	@echo "resume-1m  a 1M-row initial sync, resumed after kill -9 of either side"
	@echo "proto   regenerate proto/*.pb.go (needs protoc)"
	@echo "verify  gofmt, go vet, go mod tidy and generated-code drift"
	@echo "demo    the main job: a seeded clinic simulation, with an HTML report"
	@echo "sim     500 simulation seeds"

build:
	$(GO) build -o $(BIN)/node ./cmd/node
	$(GO) build -o $(BIN)/simulate ./cmd/simulate

# The real WatermelonDB client against bin/node serve (test/watermelondb).
WMDB := test/watermelondb

$(WMDB)/node_modules/.package-lock.json: $(WMDB)/package.json $(WMDB)/package-lock.json
	cd $(WMDB) && npm ci --no-audit --no-fund

test: build $(WMDB)/node_modules/.package-lock.json
	$(GO) test $(TEST_FLAGS) ./...
	cd $(WMDB) && node --test

race:
	$(GO) test -race $(TEST_FLAGS) ./...

# Each fuzz target runs alone: go test accepts one -fuzz pattern per package.
fuzz:
	@set -e; for f in $$(grep -rl --include='*_test.go' '^func Fuzz' .); do \
	  pkg=./$$(dirname $$f); \
	  for t in $$(grep -o '^func Fuzz[A-Za-z0-9_]*' $$f | cut -d' ' -f2); do \
	    echo "fuzz $$pkg $$t"; \
	    $(GO) test -run='^$$' -fuzz="^$$t$$" -fuzztime=$(FUZZTIME) -fuzzminimizetime=1s $$pkg; \
	  done; \
	done

# The package benchmarks, then test/bench: real bin/node processes on
# 127.0.0.1, each against raw bbolt storing the same rows (BENCHMARKS.md).
bench: build
	$(GO) test -run='^$$' -bench=. -benchtime=$(BENCHTIME) ./...
	BENCH_ROWS=$(BENCH_ROWS) $(GO) run ./test/bench

# A 1M-row initial sync against a cloud with default flags, with kill -9
# of either side mid-pull (make test runs it with 20k rows).
RESUME_ROWS ?= 1000000
resume-1m:
	CLINICSYNC_RESUME_ROWS=$(RESUME_ROWS) $(GO) test -run='^TestResumeAfterKill$$' -v -timeout 90m ./cmd/node/

$(TOOLS)/protoc-gen-go:
	GOBIN=$(TOOLS) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)

proto: $(TOOLS)/protoc-gen-go
	PATH=$(TOOLS):$$PATH protoc --go_out=. --go_opt=paths=source_relative proto/*.proto

# Drift: regenerate into a scratch copy and compare, ignoring the line
# that names the local protoc version.
verify: $(TOOLS)/protoc-gen-go
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting"; exit 1; }
	$(GO) vet ./...
	$(GO) mod tidy -diff
	@tmp=$$(mktemp -d); trap 'rm -rf $$tmp' EXIT; \
	  PATH=$(TOOLS):$$PATH protoc --go_out=$$tmp --go_opt=paths=source_relative proto/*.proto; \
	  for f in proto/*.pb.go; do \
	    diff <(grep -v '^// \tprotoc ' $$f) <(grep -v '^// \tprotoc ' $$tmp/$$f) >/dev/null || { echo "proto drift: $$f differs from make proto"; exit 1; }; \
	  done; echo "verify: ok"

demo: build
	$(BIN)/simulate --report $(BIN)/demo.html
	@echo "report page: $(BIN)/demo.html"

# 500 seeds in parallel; lists the failing ones with their replay commands.
sim: build
	$(BIN)/simulate --seeds 500

clean:
	rm -rf $(BIN) $(TOOLS)
