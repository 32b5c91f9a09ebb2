# masqroute — see README.md. Every target needs only Go.
GO        ?= go
PKGS      ?= ./...
# Short benchmark smoke run inside `make test`: every benchmark executes a
# few iterations so a broken benchmark fails CI.
SMOKE     ?= -run '^$$' -bench . -benchtime 100x -short

.PHONY: run demo test vet unit race bench-smoke bench fuzz soak lint clean

# run starts the proxy on 127.0.0.1:4433 in development mode: a self-signed
# certificate, loopback targets allowed, a local UDP echo target, and a
# banner that says how to send traffic through it.
run:
	$(GO) run ./cmd/masqroute -dev

# demo routes datagrams through a bare engine.Router and prints the counters.
demo:
	$(GO) run ./cmd/routerdemo

test: vet race bench-smoke

vet:
	$(GO) vet $(PKGS)
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# unit runs the tests without the race detector (fast feedback).
unit:
	$(GO) test -count=1 -timeout 10m $(PKGS)

# race runs every test, fuzz seed corpora included, under the race detector.
race:
	$(GO) test -count=1 -race -timeout 15m $(PKGS)

bench-smoke:
	$(GO) test $(SMOKE) -timeout 10m $(PKGS)

bench:
	$(GO) test -run '^$$' -bench . -benchmem -count 5 -timeout 60m $(PKGS)

# fuzz runs every fuzz target of every package for FUZZTIME each. Crashers
# land in the package's testdata/fuzz/ and become regression seeds that
# `make test` runs from then on.
FUZZTIME ?= 1m
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "== $$pkg $$f ($(FUZZTIME))"; \
	    $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 10s $$pkg; \
	  done; \
	done

# soak opens and closes tunnels with traffic over connections that come and
# go for SOAK (default 2m), then checks goroutines, file descriptors, heap and
# hop-by-hop accounting. `make test` runs it for 3 s.
SOAK ?= 2m
soak:
	$(GO) test -count=1 -run '^TestSoak$$' -v -timeout 0 ./engine/ -soak $(SOAK)

lint: vet

clean:
	$(GO) clean -testcache
