# gitopsd — see README.md. Everything builds with CGO_ENABLED=0.
GO      ?= go
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)

# The release build (make build, cross, package, bench). Two settings keep
# the binary small (docs/perf.md has the figures):
# - nethttpomithttp2 leaves HTTP/2 out of net/http: everything gitopsd talks
#   to (the Docker socket, Git servers, S3, webhooks, chat services,
#   Prometheus) speaks HTTP/1.1, and its own servers are scraped and called
#   by clients that do too.
# - No inlining (-l) outside the packages where the CPU goes (SQLite, zstd,
#   age and the crypto, hashing, Git's pack decoding, YAML and JSON, the
#   runtime and the basic std packages): the rest of the code runs a few
#   times a minute on an idle host, and inlined copies of it cost about a
#   megabyte of binary, resident as the binary's pages.
RELEASE_TAGS := nethttpomithttp2
RELEASE_INLINED := runtime runtime/... internal/... crypto/... hash/... compress/... archive/... \
	io bytes strings strconv sort slices maps sync/... math/... unicode/... reflect time \
	encoding/binary encoding/json modernc.org/... github.com/klauspost/compress/... filippo.io/... \
	golang.org/x/crypto/... github.com/go-git/go-git/v5/plumbing/format/... github.com/pjbgf/sha1cd/... \
	go.yaml.in/yaml/v3 github.com/santhosh-tekuri/jsonschema/v6
RELEASE_FLAGS = -trimpath -tags '$(RELEASE_TAGS)' -gcflags=all=-l $(foreach p,$(RELEASE_INLINED),-gcflags=$(p)=) -ldflags '$(LDFLAGS)'
export CGO_ENABLED := 0

.PHONY: build cross package test test-tools test-alone test-engine-restart test-package test-package-systemd lint bench soak fuzz demo demo-down clean

build:
	$(GO) build $(RELEASE_FLAGS) -o bin/gitopsd ./cmd/gitopsd

# The release targets: linux amd64, arm64 and arm/v7, and
# arm/v6 for the Raspberry Pi Zero and 1.
cross:
	GOOS=linux GOARCH=amd64 $(GO) build $(RELEASE_FLAGS) -o dist/gitopsd-linux-amd64 ./cmd/gitopsd
	GOOS=linux GOARCH=arm64 $(GO) build $(RELEASE_FLAGS) -o dist/gitopsd-linux-arm64 ./cmd/gitopsd
	GOOS=linux GOARCH=arm GOARM=7 $(GO) build $(RELEASE_FLAGS) -o dist/gitopsd-linux-armv7 ./cmd/gitopsd
	GOOS=linux GOARCH=arm GOARM=6 $(GO) build $(RELEASE_FLAGS) -o dist/gitopsd-linux-armv6 ./cmd/gitopsd

# The whole suite, against the real Docker engine (GITOPSD_SKIP_DOCKER=1 skips
# those tests on purpose). -p 2 matches the 2-core machines we run on.
# Each fuzz target then runs for its budget of executions (make fuzz).
# Under CI=true it then restarts dockerd under a running gitopsd, alone:
# that test stops every container of the machine, so on a workstation it
# runs only when asked (make test-engine-restart); it installs the .deb
# (make test-package), and runs the soak for a minute, where a leak of
# goroutines or open files fails it.
# First, make test-tools: the tools the tests run (promtool, systemd-analyze,
# zstd, ssh-keygen, gpg) are installed as root with apt-get; elsewhere each
# missing one is named with its install command, and the tests needing it
# skip (fail under CI=true). Every phase runs even when one before failed;
# the failed phases are listed at the end, and make test fails.
test:
	@failed=; \
	$(MAKE) --no-print-directory test-tools || failed="$$failed test-tools"; \
	$(GO) vet ./... || failed="$$failed vet"; \
	$(GO) test -count=1 -p 2 -timeout 14m ./... || failed="$$failed go-test"; \
	$(MAKE) --no-print-directory fuzz || failed="$$failed fuzz"; \
	$(MAKE) --no-print-directory test-alone || failed="$$failed test-alone"; \
	if [ "$$CI" = true ]; then \
		$(MAKE) --no-print-directory test-engine-restart || failed="$$failed test-engine-restart"; \
		$(MAKE) --no-print-directory test-package || failed="$$failed test-package"; \
		$(MAKE) --no-print-directory soak SOAK=1m || failed="$$failed soak"; \
	fi; \
	if [ -n "$$failed" ]; then echo "make test: FAILED:$$failed"; exit 1; fi; echo "make test: ok"

# Under CI=true lintian too, for test-package. Then the test servers built
# from the Go module proxy (the registry, SeaweedFS) are built into the
# cache folder ahead of the suite, so their minutes of compiling on a fresh
# machine count against no package's test timeout.
test-tools:
	@if [ "$$CI" = true ]; then scripts/test-tools.sh lintian:lintian; else scripts/test-tools.sh; fi
	GITOPSD_TEST_PREPARE=1 $(GO) test -count=1 -timeout 60m -run '^TestPrepareServers$$' ./internal/testenv/

# The tests whose must-show is a time bound run again on their own (they
# skip in the parallel run above): beside the other packages' tests, a
# 2-core machine would measure itself, not gitopsd.
ALONE_TESTS := ^(TestDriftHealedWithinTwoSeconds|TestStartFirstRollKeepsServing|TestWebhookConverges|TestStalledSourceKeepsHealing)$$
test-alone:
	GITOPSD_TEST_ALONE=1 $(GO) test -count=1 -timeout 5m -run '$(ALONE_TESTS)' ./internal/daemon/

test-engine-restart:
	GITOPSD_TEST_ENGINE_RESTART=1 $(GO) test -count=1 -timeout 5m -run '^TestEngineRestart$$' ./internal/daemon/

# .deb and .rpm in dist/, with the unit, a default config, completions,
# gzipped man pages (gitopsd-run(1) carries the configuration reference of
# internal/config/doc.go; written by a build with -tags man, as the daemon's
# binary leaves the generator out), copyright, changelog and the monitoring files.
# Architectures: amd64, arm64, armv7 and armv6 (Raspberry Pi Zero and 1).
# Debian has one 32-bit ARM architecture, armhf, for both: its .deb holds
# the armv6 build, which runs on either (Raspberry Pi OS's armhf is armv6
# too); the .rpm is built for each (armv6hl, armv7hl). The dates in pages
# and changelog are the commit's (SOURCE_DATE_EPOCH), so a rebuild of a
# commit gives the same files. nfpm is built from the Go module proxy on
# first use.
NFPM        ?= $(GO) run github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.0
PKG_VERSION ?= 0.1.0+git$(shell git rev-parse --short HEAD 2>/dev/null || echo dev)
PKG_ARCHES  := amd64:deb,rpm arm64:deb,rpm arm7:rpm arm6:deb,rpm
package: export SOURCE_DATE_EPOCH := $(shell git log -1 --format=%ct 2>/dev/null || date +%s)
package:
	rm -rf dist/pkg && mkdir -p dist/pkg/completions dist/pkg/man
	GOOS=linux GOARCH=amd64 $(GO) build $(RELEASE_FLAGS) -o dist/pkg/amd64/gitopsd ./cmd/gitopsd
	GOOS=linux GOARCH=arm64 $(GO) build $(RELEASE_FLAGS) -o dist/pkg/arm64/gitopsd ./cmd/gitopsd
	GOOS=linux GOARCH=arm GOARM=7 $(GO) build $(RELEASE_FLAGS) -o dist/pkg/arm7/gitopsd ./cmd/gitopsd
	GOOS=linux GOARCH=arm GOARM=6 $(GO) build $(RELEASE_FLAGS) -o dist/pkg/arm6/gitopsd ./cmd/gitopsd
	dist/pkg/amd64/gitopsd completion bash > dist/pkg/completions/gitopsd.bash
	dist/pkg/amd64/gitopsd completion zsh > dist/pkg/completions/_gitopsd
	dist/pkg/amd64/gitopsd completion fish > dist/pkg/completions/gitopsd.fish
	$(GO) run -trimpath -tags man -ldflags '-X main.version=$(VERSION)' ./cmd/gitopsd man --config-doc internal/config/doc.go dist/pkg/man
	gzip -9n dist/pkg/man/*.1
	packaging/changelog.sh $(PKG_VERSION)-1 | gzip -9n > dist/pkg/changelog.gz
	for a in $(PKG_ARCHES); do arch=$${a%%:*}; cp dist/pkg/$$arch/gitopsd dist/pkg/gitopsd && for fmt in $$(echo $${a#*:} | tr , ' '); do \
		GITOPSD_ARCH=$$arch GITOPSD_VERSION=$(PKG_VERSION) $(NFPM) package -f packaging/nfpm.yaml -p $$fmt -t dist/ || exit 1; \
	done; done

# Checks the amd64 .deb with Debian's lintian (errors fail; warnings are
# printed), then installs it on this machine, runs it as the unit would, and
# removes it again: CI only.
test-package: package
	@command -v lintian >/dev/null || { echo "test-package: lintian is missing: apt-get install lintian (scripts/test-tools.sh lintian:lintian)"; exit 1; }
	lintian --fail-on error --tag-display-limit 0 dist/gitopsd_$(PKG_VERSION)-1_amd64.deb
	GITOPSD_TEST_PACKAGE=1 GITOPSD_TEST_DEB=$(CURDIR)/dist/gitopsd_$(PKG_VERSION)-1_amd64.deb $(GO) test -count=1 -v -run '^TestDebInstallsAndRemoves$$' ./cmd/gitopsd/

# The same package test under a real systemd, with the unit's whole sandbox,
# on a machine whose PID 1 is not systemd: this machine's root booted in a
# systemd-nspawn container (see the script). Root only; asked for, not run
# by make test.
test-package-systemd: package
	scripts/test-package-systemd.sh dist/gitopsd_$(PKG_VERSION)-1_amd64.deb

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# The benchmark suite against the real engine, side by side with docker
# compose, and its report: $(BENCH_OUT)/report.md for people, report.json
# for machines (tools/benchreport). It leads with issue 20's table
# (tools/benchreport/rows.txt): each figure's median, minimum and maximum
# over at least 5 runs. Go benchmarks of the pure parts (the Git server's
# cost of a no-change poll among them) run $(BENCH_COUNT) times; the
# engine benchmarks that measure once per run (first convergence of the
# fleet, failed gate to old serving, idle memory) run $(BENCH_RUNS) times;
# the others once, repeating inside and recording each repeat in
# samples.txt (testenv.BenchSamples). BENCH_STACKS sizes the fleet (3
# containers per stack), BENCH_IDLE how long the idle daemon is left alone,
# BENCH_SOAK the soak (`make soak` alone runs 30 minutes); the defaults keep
# the run under 45 minutes on 2 cores. doco-cd is built from the Go module
# proxy and compared where it builds; otherwise doco.txt holds the one line
# saying why, and so does its column.
BENCH_OUT    ?= dist/bench
BENCH_COUNT  ?= 5
BENCH_RUNS   ?= 5
BENCH_STACKS ?= 50
BENCH_IDLE   ?= 30s
BENCH_SOAK   ?= 5m
BENCH_ENGINE_COUNT ?= 1
# Round trips of 256 MiB (GITOPSD_BENCH_REMOTE_MIB) to the local S3 server
# in the remote copies' benchmark.
BENCH_REMOTE_COUNT ?= 3
ENGINE_BENCH := ^(BenchmarkCommitToRunning|BenchmarkDriftHealed|BenchmarkRollFailedRequests|BenchmarkComposeRollFailedRequests|BenchmarkSnapshot1GiB|BenchmarkNoChangePoll)$$
RUNS_BENCH   := ^(BenchmarkFleet|BenchmarkFailedGateToOldServing)$$
bench:
	rm -rf $(BENCH_OUT) && mkdir -p $(BENCH_OUT)/sizes
	GOOS=linux GOARCH=amd64 $(GO) build $(RELEASE_FLAGS) -o $(BENCH_OUT)/sizes/gitopsd-linux-amd64 ./cmd/gitopsd
	GOOS=linux GOARCH=arm64 $(GO) build $(RELEASE_FLAGS) -o $(BENCH_OUT)/sizes/gitopsd-linux-arm64 ./cmd/gitopsd
	GOOS=linux GOARCH=arm GOARM=7 $(GO) build $(RELEASE_FLAGS) -o $(BENCH_OUT)/sizes/gitopsd-linux-armv7 ./cmd/gitopsd
	-$(GO) test -run '^$$' -bench . -benchmem -count $(BENCH_COUNT) ./internal/stack ./internal/sync ./internal/store ./internal/source ./internal/backup/format ./internal/engine > $(BENCH_OUT)/pure.txt 2>&1
	-$(GO) test -v -run '^$$' -bench '^BenchmarkDocoCD$$' -benchtime 1x -timeout 30m ./internal/daemon > $(BENCH_OUT)/doco.txt 2>&1
	-GITOPSD_BENCH_SAMPLES=$(abspath $(BENCH_OUT))/samples.txt GITOPSD_BENCH_STACKS=$(BENCH_STACKS) $(GO) test -run '^$$' -bench '$(ENGINE_BENCH)' -benchtime 1x -count $(BENCH_ENGINE_COUNT) -timeout 30m ./internal/daemon > $(BENCH_OUT)/engine.txt 2>&1
	-GITOPSD_BENCH_SAMPLES=$(abspath $(BENCH_OUT))/samples.txt GITOPSD_BENCH_STACKS=$(BENCH_STACKS) $(GO) test -run '^$$' -bench '$(RUNS_BENCH)' -benchtime 1x -count $(BENCH_RUNS) -timeout 60m ./internal/daemon > $(BENCH_OUT)/runs.txt 2>&1
	-GITOPSD_BENCH_IDLE_STACKS=5 GITOPSD_BENCH_IDLE_SERVICES=2 GITOPSD_BENCH_IDLE=$(BENCH_IDLE) GITOPSD_BENCH_BINARY=$(abspath $(BENCH_OUT))/sizes/gitopsd-linux-amd64 $(GO) test -run '^$$' -bench '^BenchmarkIdle$$' -benchtime 1x -count $(BENCH_RUNS) -timeout 20m ./cmd/gitopsd > $(BENCH_OUT)/idle.txt 2>&1
	-$(GO) test -run '^$$' -bench '^BenchmarkRemoteS3Throughput$$' -benchtime $(BENCH_REMOTE_COUNT)x -timeout 20m ./internal/backup/remote > $(BENCH_OUT)/remote.txt 2>&1
	@# The compose plugin the engine benchmarks ran, stripped as gitopsd is: its size beside gitopsd's.
	-@for p in $${DOCKER_CONFIG:-$$HOME/.docker}/cli-plugins/docker-compose /usr/local/lib/docker/cli-plugins/docker-compose /usr/libexec/docker/cli-plugins/docker-compose /usr/lib/docker/cli-plugins/docker-compose; do \
		if [ -f "$$p" ]; then cp "$$p" $(BENCH_OUT)/sizes/docker-compose; break; fi; done
	-$(MAKE) --no-print-directory soak SOAK=$(BENCH_SOAK) SOAK_OUT=$(BENCH_OUT)/soak.txt
	touch $(BENCH_OUT)/samples.txt
	$(GO) run ./tools/benchreport -machine -sizes $(BENCH_OUT)/sizes -ratios tools/benchreport/ratios.txt -rows tools/benchreport/rows.txt \
		-md $(BENCH_OUT)/report.md -json $(BENCH_OUT)/report.json $(BENCH_OUT)/pure.txt $(BENCH_OUT)/doco.txt $(BENCH_OUT)/engine.txt $(BENCH_OUT)/runs.txt $(BENCH_OUT)/samples.txt $(BENCH_OUT)/idle.txt $(BENCH_OUT)/remote.txt $(BENCH_OUT)/soak.txt
	@echo "report: $(BENCH_OUT)/report.md"

# The soak: the binary under random commits, hand-stopped containers and
# snapshots for $(SOAK), sampling its memory, goroutines and open files
# (BenchmarkSoak says how it judges a leak). make bench runs it for 30
# minutes, CI for one.
SOAK     ?= 30m
SOAK_OUT ?=
soak:
	GITOPSD_BENCH_SOAK=$(SOAK) $(GO) test -count=1 -run '^$$' -bench '^BenchmarkSoak$$' -benchtime 1x -timeout 60m ./cmd/gitopsd $(if $(SOAK_OUT),> $(SOAK_OUT) 2>&1)

# Go's native fuzzing of the code that reads hostile input, one target after
# another (-fuzz takes one target per package per run). FUZZ_TARGETS lists
# them as package:Target:budget; a listed target that does not exist fails
# rather than fuzzing nothing. The budgets are counts of executions, sized
# to a few seconds each here: a duration (-fuzztime 5s) trips a race in Go's
# fuzzing coordinator that fails a healthy target with "context deadline
# exceeded" (golang/go#75804, fixed in Go 1.27), and a count has no deadline
# to race. For a longer exploratory run give a duration or a bigger count
# for all targets: make fuzz FUZZTIME=2m (a failure without a crasher in
# testdata/fuzz is that race, not a finding). Crashers land in the
# package's testdata/fuzz/<Target>/.
FUZZTIME ?=
FUZZ_TARGETS := ./internal/stack:FuzzLoad:1500x ./internal/stack:FuzzLoadReferences:1000x ./internal/config:FuzzLoad:5000x ./internal/webhook:FuzzWebhook:15000x \
	./internal/secrets:FuzzDecrypt:6000x ./internal/secrets:FuzzRedact:20000x ./internal/source:FuzzVerifyCommit:15000x \
	./internal/s3:FuzzParseXML:20000x
fuzz:
	@fail=0; for t in $(FUZZ_TARGETS); do pkg=$${t%%:*}; rest=$${t#*:}; name=$${rest%%:*}; budget=$${rest#*:}; \
		budget=$${FUZZTIME:-$$budget}; echo "fuzz $$pkg $$name $$budget"; \
		if ! $(GO) test -list "^$$name\$$" $$pkg | grep -qx "$$name"; then echo "$$pkg has no fuzz target $$name"; fail=1; continue; fi; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $$budget -fuzzminimizetime 500x $$pkg || fail=1; \
	done; exit $$fail

demo:
	scripts/demo.sh

demo-down:
	scripts/demo.sh down

clean:
	rm -rf bin dist
