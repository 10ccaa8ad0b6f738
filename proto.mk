# proto.mk: protobuf tooling and generation for proto/. Included by the root
# Makefile (`include proto.mk`). Owned by the proto-ingest helper.
#
#   make tools-proto   install the pinned buf and protoc plugins into .tmp/bin
#   make proto         buf lint + buf generate (rewrites proto/**/*.pb.go)
#   make proto-check   regenerate, then fail if proto/ differs from git

# Pinned tool versions. protoc-gen-go matches the google.golang.org/protobuf
# runtime in proto/go.mod; bump them together.
BUF_VERSION                ?= v1.75.0
PROTOC_GEN_GO_VERSION      ?= v1.36.12
PROTOC_GEN_GO_GRPC_VERSION ?= v1.6.2

PROTO_BIN := $(CURDIR)/.tmp/bin
# A stamp per tool and version, so a version bump reinstalls and an unchanged
# one costs nothing (building buf takes minutes).
PROTO_TOOL_STAMPS := \
	$(PROTO_BIN)/.buf-$(BUF_VERSION) \
	$(PROTO_BIN)/.protoc-gen-go-$(PROTOC_GEN_GO_VERSION) \
	$(PROTO_BIN)/.protoc-gen-go-grpc-$(PROTOC_GEN_GO_GRPC_VERSION)

.PHONY: tools-proto proto proto-check

tools-proto: $(PROTO_TOOL_STAMPS)

$(PROTO_BIN)/.buf-$(BUF_VERSION):
	GOBIN=$(PROTO_BIN) go install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
	@touch $@

$(PROTO_BIN)/.protoc-gen-go-$(PROTOC_GEN_GO_VERSION):
	GOBIN=$(PROTO_BIN) go install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	@touch $@

$(PROTO_BIN)/.protoc-gen-go-grpc-$(PROTOC_GEN_GO_GRPC_VERSION):
	GOBIN=$(PROTO_BIN) go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
	@touch $@

# buf.gen.yaml cannot use `clean: true` (its out dir, proto/, also holds the
# sources), so stale generated files are removed here: code for a deleted
# .proto must not survive a regeneration.
proto: tools-proto
	PATH="$(PROTO_BIN):$$PATH" buf lint
	find proto -name '*.pb.go' -type f -delete
	PATH="$(PROTO_BIN):$$PATH" buf generate

proto-check: proto
	@test -z "$$(git status --porcelain -- proto/)" || { \
		echo "proto/ is stale: run 'make proto' and commit the result:"; \
		git status --porcelain -- proto/; exit 1; }
