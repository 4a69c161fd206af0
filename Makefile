# gitopsd — see README.md. Everything builds with CGO_ENABLED=0.
GO      ?= go
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
export CGO_ENABLED := 0

.PHONY: build cross test lint bench demo demo-down clean

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/gitopsd ./cmd/gitopsd

# The release targets of DESIGN.md: linux amd64, arm64 and arm/v7.
cross:
	GOOS=linux GOARCH=amd64 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o dist/gitopsd-linux-amd64 ./cmd/gitopsd
	GOOS=linux GOARCH=arm64 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o dist/gitopsd-linux-arm64 ./cmd/gitopsd
	GOOS=linux GOARCH=arm GOARM=7 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o dist/gitopsd-linux-armv7 ./cmd/gitopsd

# The whole suite, against the real Docker engine (GITOPSD_SKIP_DOCKER=1 skips
# those tests on purpose). -p 2 matches the 2-core machines we run on.
test:
	$(GO) vet ./...
	$(GO) test -count=1 -p 2 -timeout 14m ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# Go benchmarks of the pure parts (planner, loader, store), with allocations.
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./internal/...

demo:
	scripts/demo.sh

demo-down:
	scripts/demo.sh down

clean:
	rm -rf bin dist
