# Herald: build, run and test every module of the go.work workspace.
#
#   make run      the all-in-one server (embedded NATS, auth, ingest, edge)
#   make test     deps, gofmt check, go vet, go test -race for every module, proto staleness check
#   make deps     the Debian packages the tests run for real, installed when missing
#   make build    one binary per services/*/cmd/* into bin/
#   make bench    every benchmark, once
#   make loadtest the all-in-one stack and herald-load against it (LOAD_ARGS)
#   make fuzz     every fuzz target for FUZZTIME each
#   make tools    pinned developer tools into .tmp/bin
#
# `go test ./...` fails at a go.work root (the root is no module), so the
# targets iterate the workspace's modules instead.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := build

GO        ?= go
BIN       := $(CURDIR)/bin
TOOLS_BIN := $(CURDIR)/.tmp/bin
# Every module listed in go.work, as absolute directories.
MODULES   := $(shell $(GO) list -m -f '{{.Dir}}')
# Every main package: services/<service>/cmd/<binary> (with Go files in it).
CMDS      := $(sort $(patsubst %/,%,$(dir $(wildcard services/*/cmd/*/*.go))))

FUZZTIME  ?= 10s
BENCHTIME ?= 1s
TESTFLAGS ?= -count=1 -timeout 10m

# Pinned developer tools; the proto generators are pinned in proto.mk.
GRPCURL_VERSION ?= v1.9.3

include proto.mk

.PHONY: all build run deps test fmt-check vet importcheck gotest bench loadtest fuzz tools clean

all: build

build:
	@mkdir -p $(BIN)
	@for cmd in $(CMDS); do \
		echo "go build -o bin/$$(basename $$cmd) ./$$cmd"; \
		$(GO) build -o $(BIN)/$$(basename $$cmd) ./$$cmd; \
	done

run:
	$(GO) run ./services/herald/cmd/herald serve

test: deps fmt-check vet importcheck gotest proto-check

# What the tests run for real, from Debian's packages: redis-server (pkg/testutil/redistest),
# Python's websocket-client for Debian's /usr/bin/python3 (the Salt example runs it), haproxy (deploy/check) and chromium
# (the browser tests). Missing ones are installed with apt-get (sudo when not root); without
# apt-get, or without the rights to use it, one line says what to install.
DEPS_CHECK := \
	command -v redis-server >/dev/null || need="$$need redis-server"; \
	/usr/bin/python3 -c 'import websocket' 2>/dev/null || need="$$need python3-websocket"; \
	command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || need="$$need haproxy"; \
	command -v chromium >/dev/null || need="$$need chromium"
deps:
	@need=""; $(DEPS_CHECK); \
	if [ -z "$$need" ]; then exit 0; fi; \
	if [ "$$(id -u)" -eq 0 ]; then sudo=""; elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo=sudo; else sudo=none; fi; \
	if ! command -v apt-get >/dev/null || [ "$$sudo" = none ]; then \
		echo "make deps: the tests need these packages, install them (Debian: apt-get install$$need):$$need" >&2; exit 1; \
	fi; \
	echo "make deps: installing$$need"; \
	$$sudo apt-get update -qq && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$need

fmt-check:
	@out="$$(gofmt -l $(MODULES))"; \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

# Each module on its own: a failure in one still lets the others report,
# and the target fails at the end if any did.
vet:
	@failed=""; for m in $(MODULES); do \
		echo "go vet $${m#$(CURDIR)/}"; \
		(cd $$m && $(GO) vet ./...) || failed="$$failed $${m#$(CURDIR)/}"; \
	done; \
	if [ -n "$$failed" ]; then echo "go vet failed in:$$failed"; exit 1; fi

# The dependency rules of the layout, checked on non-test imports:
# pkg never imports services; a service imports no other service (only
# services/herald composes them); proto imports neither; pkg/testutil is
# for _test.go files only.
MOD := github.com/heraldhq/herald
importcheck:
	@for m in $(MODULES); do \
		(cd $$m && $(GO) list -f '{{.ImportPath}}{{range .Imports}} {{.}}{{end}}' ./...); \
	done | awk -v mod="$(MOD)/" ' \
		function area(p,  r) { if (index(p, mod) != 1) return ""; r = substr(p, length(mod) + 1); \
			if (r ~ /^services\//) { split(r, a, "/"); return "services/" a[2] } split(r, a, "/"); return a[1] } \
		{ from = area($$1); \
		  for (i = 2; i <= NF; i++) { to = area($$i); if (to == "" || to == from) continue; \
			if (index($$i, mod "pkg/testutil") == 1 && index($$1, mod "pkg/testutil") != 1) bad = bad "\n  " $$1 " imports " $$i " (tests only)"; \
			else if (from == "proto" || (from == "pkg" && to != "proto") || (from ~ /^services\// && from != "services/herald" && to ~ /^services\//)) \
				bad = bad "\n  " $$1 " imports " $$i } } \
		END { if (bad != "") { print "import rules broken:" bad; exit 1 } }'

gotest:
	@failed=""; for m in $(MODULES); do \
		echo "go test -race $${m#$(CURDIR)/}"; \
		(cd $$m && $(GO) test -race $(TESTFLAGS) ./...) || failed="$$failed $${m#$(CURDIR)/}"; \
	done; \
	if [ -n "$$failed" ]; then echo "go test failed in:$$failed"; exit 1; fi

bench:
	@for m in $(MODULES); do \
		(cd $$m && $(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./...); \
	done

# A short measured run: the all-in-one Herald from bin/ on its own ports and a fresh store,
# herald-load publishing through ingest's PublishStream, the server's pid for /proc. One
# JSON line on stdout, a summary on stderr; see the README's performance section.
LOAD_ARGS ?= -clients 1000 -rate 100 -duration 20s -sources 4
LOAD_HTTP ?= 127.0.0.1:18080
LOAD_GRPC ?= 127.0.0.1:19090
loadtest:
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/herald ./services/herald/cmd/herald
	$(GO) build -o $(BIN)/herald-load ./services/herald/cmd/herald-load
	@store="$$(mktemp -d)"; \
	HERALD_ADMIN_PASSWORD=loadtest $(BIN)/herald serve -http.addr $(LOAD_HTTP) -grpc.addr $(LOAD_GRPC) \
		-nats.store-dir "$$store" >"$$store/herald.log" 2>&1 & pid=$$!; \
	trap 'kill $$pid; wait $$pid; rm -rf "$$store"' EXIT; \
	for i in $$(seq 300); do curl -fs http://$(LOAD_HTTP)/readyz >/dev/null && break; sleep 0.1; done; \
	$(BIN)/herald-load -edges ws://$(LOAD_HTTP)/api/v3/ws -grpc $(LOAD_GRPC) -token admin:loadtest \
		-publish grpc-stream -pids $$pid $(LOAD_ARGS)

# `go test -list '^Fuzz' ./...` prints each package's targets followed by an
# "ok <package>" line; every target then runs alone for FUZZTIME.
fuzz:
	@for m in $(MODULES); do \
		(cd $$m && $(GO) test -list '^Fuzz' ./... | awk ' \
			/^Fuzz/ { names[n++] = $$1; next } \
			/^ok / { for (i = 0; i < n; i++) print $$2, names[i]; n = 0 }') | \
		while read -r pkg name; do \
			echo "fuzz $$pkg $$name for $(FUZZTIME)"; \
			(cd $$m && $(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) $$pkg); \
		done; \
	done

tools: tools-proto $(TOOLS_BIN)/.grpcurl-$(GRPCURL_VERSION)

$(TOOLS_BIN)/.grpcurl-$(GRPCURL_VERSION):
	GOBIN=$(TOOLS_BIN) $(GO) install github.com/fullstorydev/grpcurl/cmd/grpcurl@$(GRPCURL_VERSION)
	@touch $@

clean:
	rm -rf $(BIN)
