# masqroute — see README.md. Every target needs only Go.
GO        ?= go
PKGS      ?= ./...
# Short benchmark smoke run inside `make test`: every benchmark executes a
# few iterations so a broken benchmark fails CI.
SMOKE     ?= -run '^$$' -bench . -benchtime 100x -short

.PHONY: run build demo test vet inline unit race norace burst bench-smoke bench bench-1m bench-e2e bench-report fuzz soak lint clean

# COMMIT is stamped into bin/masqroute (masqroute -version): this machine's
# Go sets GOFLAGS=-buildvcs=false, so the build records no revision itself.
# "-dirty" when the tree has uncommitted changes; empty outside a checkout,
# and -version then says "unknown".
COMMIT  ?= $(shell c=$$(git rev-parse --short HEAD 2>/dev/null) && { git diff --quiet HEAD 2>/dev/null || c=$$c-dirty; }; echo $$c)
LDFLAGS ?= -X main.commit=$(COMMIT)
# DEV_DIR keeps the -dev CA (ca.pem, ca-key.pem) across `make run`s, so a
# client command pasted from the banner keeps working. Git-ignored.
DEV_DIR ?= .dev

# run starts the proxy on 127.0.0.1:4433 in development mode: a certificate
# signed by the CA in $(DEV_DIR), loopback targets allowed, a local UDP echo
# target, CONNECT-IP into a userspace network, and a banner that says how
# to send traffic through it.
# (Built, then run: under `go run` a Ctrl-C made go itself exit 1 and make
# report an error after a clean shutdown.)
run: build
	./bin/masqroute -dev -dev-dir $(DEV_DIR)

# build writes bin/masqroute with the commit stamped in.
build:
	@mkdir -p bin
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/masqroute ./cmd/masqroute

# demo routes datagrams through a bare engine.Router and prints the counters.
demo:
	$(GO) run ./cmd/routerdemo

test: vet inline race norace bench-smoke

# inline checks every //gcassert:inline claim against the compiler's
# -gcflags=-m report (engine/internal/gcassert).
inline:
	$(GO) test -count=1 -run TestInlineClaims ./engine/internal/gcassert/

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

# norace runs, without the race detector, the tests it would distort and
# that skip themselves under it: allocation counts, memory per entry, and
# the fairness and stock-client burst timing tests; and the short soak,
# whose heap bound is tighter without it (1 MiB, against 8 under -race).
NORACE_TESTS ?= Alloc|TestMemory|TestFloodDoesNotHurtOtherTunnels|^TestSoak$$
norace:
	$(GO) test -count=1 -run '$(NORACE_TESTS)' -timeout 10m $(PKGS)

# burst runs the stock-quic-go-client test on its own: one tunnel at 8,000
# datagrams/s, read with quic-go's http3 ReceiveDatagram, must lose nothing.
# It is not in make test: on a loaded 2-core machine both masqroute and the
# stock proxy lose datagrams in quic-go's client queues (see
# docs/benchmarks.md), so it would fail CI for reasons outside the code.
burst:
	$(GO) test -count=1 -run '^TestStockClientBurst$$' -v -timeout 5m ./bench/e2e/ -e2e.burst

bench-smoke:
	$(GO) test $(SMOKE) -timeout 10m $(PKGS)

# bench runs the micro suite (bench/: the engine against the four baseline
# designs) with -count 5 at 1 and 2 dispatchers, and writes benchstat-format
# output with a header benchreport reads. 1M sessions take several minutes
# and GB of memory per run: they are in bench-1m.
BENCH_OUT   ?= bench/results
BENCH_COUNT ?= 5
BENCH_TIME  ?= 200ms
BENCH_CPU   ?= 1,2
define bench_header
{ echo "cores: $$(nproc)"; echo "commit: $$(git rev-parse --short HEAD)"; echo "go: $$($(GO) env GOVERSION)"; echo "command: $(1)"; }
endef
bench:
	@mkdir -p $(BENCH_OUT)
	@$(call bench_header,make bench = go test -bench Dispatch|Latency|DispatchBurst -short -benchtime $(BENCH_TIME) -count $(BENCH_COUNT) -cpu $(BENCH_CPU) ./bench/) > $(BENCH_OUT)/micro.txt
	$(GO) test -run '^$$' -bench 'Dispatch$$|Latency|DispatchBurst' -short -benchtime $(BENCH_TIME) -count $(BENCH_COUNT) -cpu $(BENCH_CPU) -timeout 90m ./bench/ | tee -a $(BENCH_OUT)/micro.txt

bench-1m:
	@mkdir -p $(BENCH_OUT)
	@$(call bench_header,make bench-1m = go test -bench Dispatch/impl=/sessions=1000000 -benchtime $(BENCH_TIME) -count 1 -cpu $(BENCH_CPU) ./bench/) > $(BENCH_OUT)/micro-1m.txt
	$(GO) test -run '^$$' -bench 'Dispatch$$/impl=/sessions=1000000$$/' -benchtime $(BENCH_TIME) -count 1 -cpu $(BENCH_CPU) -timeout 90m ./bench/ | tee -a $(BENCH_OUT)/micro-1m.txt

# bench-e2e runs masqroute and the stock quic-go proxy under the same load,
# each in its own process pinned to one CPU, the load generator pinned to the
# other, alternating run by run (see bench/e2e). -benchtime 1x: each run is
# a fixed time whatever b.N is. About 2 × 6 scenarios × E2E_COUNT × 3 s.
E2E_COUNT ?= 5
E2E_FLAGS ?=
bench-e2e:
	@mkdir -p $(BENCH_OUT)
	@$(call bench_header,make bench-e2e = go test -bench E2E -benchtime 1x -count $(E2E_COUNT) ./bench/e2e/ $(E2E_FLAGS)) > $(BENCH_OUT)/e2e.txt
	$(GO) test -run '^$$' -bench E2E -benchtime 1x -count $(E2E_COUNT) -timeout 60m ./bench/e2e/ $(E2E_FLAGS) | tee -a $(BENCH_OUT)/e2e.txt

# bench-report turns the saved results into docs/benchmarks.md and its charts.
bench-report:
	$(GO) run ./bench/cmd/benchreport -intro docs/benchmarks-intro.md -out docs -md benchmarks.md -img img \
	  $(wildcard $(BENCH_OUT)/micro.txt $(BENCH_OUT)/micro-1m.txt $(BENCH_OUT)/e2e.txt)

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
# hop-by-hop accounting. `make test` runs it for 3 s. TestSoakTCP (a 30 s
# CONNECT (TCP) copy) runs here only.
SOAK ?= 2m
soak:
	$(GO) test -count=1 -run '^TestSoak(TCP)?$$' -v -timeout 0 ./engine/proxy/ -soak $(SOAK)

lint: vet

# clean leaves $(DEV_DIR): clients may trust its CA.
clean:
	$(GO) clean -testcache
	rm -rf bin
