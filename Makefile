# loopgate — two commands on a fresh machine:
#   make demo   install what is missing, start the project-local PostgreSQL,
#               fetch and verify the models, then run the walk-through gate
#               node on a synthetic clip (decisions live, latency table)
#   make test   the same set-up, then every test against the real components
# Every target is idempotent.

SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(PATH)

ROOT := $(CURDIR)
export LOOPGATE_MODEL_DIR ?= $(ROOT)/.loopgate/models
export LOOPGATE_SHARED_DIR ?= $(abspath $(ROOT)/../shared)
# Offline model mirror: the shared folder, then Debian's libdlib-data.
export LOOPGATE_MODEL_MIRROR ?= $(LOOPGATE_SHARED_DIR)/models:/usr/share/dlib

# An external database, when given, replaces the project-local cluster.
ifdef LOOPGATE_DATABASE_URL
DB_TARGET :=
TEST_DB_URL = $(or $(LOOPGATE_TEST_DATABASE_URL),$(LOOPGATE_DATABASE_URL))
else
DB_TARGET := db
TEST_DB_URL = $(or $(LOOPGATE_TEST_DATABASE_URL),$(shell deploy/localdb.sh url loopgate_test))
endif

BIN := bin/loopgate
GO_SOURCES := $(shell find . -name '*.go' -not -path './.loopgate/*') $(shell find engine/gallery/migrations -name '*.sql') go.mod go.sum

.PHONY: all deps pgvector db db-stop models build demo test bench vet clean

all: build

deps:
	@deploy/install-deps.sh

pgvector: deps
	@deploy/build-pgvector.sh

db: pgvector
	@deploy/localdb.sh start

db-stop:
	@deploy/localdb.sh stop

$(BIN): $(GO_SOURCES) | deps
	go build -o $(BIN) ./cmd/loopgate

build: $(BIN)

models: $(BIN)
	@$(BIN) models fetch

demo: $(DB_TARGET) models
	$(BIN) migrate
	$(BIN) demo

test: $(DB_TARGET) models
	go vet ./...
	LOOPGATE_TEST_DATABASE_URL='$(TEST_DB_URL)' go test -count=1 -p 1 -timeout 40m ./...

# Quick versions of every benchmark (a few minutes once the LFW embedding
# cache is warm; the first run embeds ~3,500 LFW images, about 3 minutes).
bench: $(DB_TARGET) models
	LOOPGATE_TEST_DATABASE_URL='$(TEST_DB_URL)' go test -run '^$$' -bench 'YuNet|CropEmbed|FrameLatency|Pool|Decode|DetectEmbed|SearchExact|FileFast' -benchmem -benchtime 20x -timeout 30m ./benchmarks/ ./camera/
	LOOPGATE_TEST_DATABASE_URL='$(TEST_DB_URL)' go test -run '^$$' -bench Pipeline -benchtime 1x -timeout 30m ./benchmarks/
	$(BIN) bench lfw
	$(BIN) bench identify --quick
	LOOPGATE_TEST_DATABASE_URL='$(TEST_DB_URL)' $(BIN) bench search --quick
	LOOPGATE_TEST_DATABASE_URL='$(TEST_DB_URL)' $(BIN) bench pipeline

clean:
	rm -rf bin
