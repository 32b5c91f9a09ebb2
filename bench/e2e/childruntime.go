package e2e

// The proxy process's runtime endpoints, for measurements that need the Go
// runtime's own view of the child (memory per idle tunnel, goroutines per
// tunnel). See the control server's routes in child.go:
//
//	POST /gc                     runtime/debug.FreeOSMemory (a GC that also
//	                             returns freed pages to the OS), then as
//	                             GET /runtime
//	GET  /runtime                RuntimeStats, JSON
//	GET  /debug/pprof/{profile}  a runtime/pprof profile by name (heap,
//	                             goroutine, allocs, ...); ?debug=N as
//	                             net/http/pprof; the heap profile is only
//	                             as fine as the child's MemProfileRate
//	                             (GODEBUG=memprofilerate=1 in
//	                             ProcessConfig.Env for every allocation)

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
)

// RuntimeStats is the proxy process's Go runtime at one point.
type RuntimeStats struct {
	Goroutines int    `json:"goroutines"`
	HeapAlloc  uint64 `json:"heap_alloc"`  // bytes of live (and not yet swept) heap objects
	HeapInuse  uint64 `json:"heap_inuse"`  // bytes in in-use heap spans
	StackInuse uint64 `json:"stack_inuse"` // bytes of goroutine stacks
	Sys        uint64 `json:"sys"`         // bytes obtained from the OS
	NumGC      uint32 `json:"num_gc"`
}

func readRuntimeStats() RuntimeStats {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return RuntimeStats{
		Goroutines: runtime.NumGoroutine(),
		HeapAlloc:  ms.HeapAlloc,
		HeapInuse:  ms.HeapInuse,
		StackInuse: ms.StackInuse,
		Sys:        ms.Sys,
		NumGC:      ms.NumGC,
	}
}

// runtimeRoutes adds the runtime endpoints to the control server's mux.
func runtimeRoutes(m *http.ServeMux) {
	writeStats := func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(readRuntimeStats())
	}
	m.HandleFunc("POST /gc", func(w http.ResponseWriter, _ *http.Request) {
		debug.FreeOSMemory()
		writeStats(w)
	})
	m.HandleFunc("GET /runtime", func(w http.ResponseWriter, _ *http.Request) { writeStats(w) })
	m.HandleFunc("GET /debug/pprof/{profile}", func(w http.ResponseWriter, r *http.Request) {
		prof := pprof.Lookup(r.PathValue("profile"))
		if prof == nil {
			http.Error(w, "unknown profile", http.StatusNotFound)
			return
		}
		dbg, _ := strconv.Atoi(r.FormValue("debug"))
		if r.FormValue("gc") != "" {
			runtime.GC()
		}
		if dbg == 0 {
			w.Header().Set("Content-Type", "application/octet-stream")
		} else {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		}
		_ = prof.WriteTo(w, dbg)
	})
}

// GC runs a garbage collection in the proxy process, returns the freed
// memory to the OS (debug.FreeOSMemory), and reports the runtime's state
// after it.
func (p *Process) GC(ctx context.Context) (RuntimeStats, error) {
	var st RuntimeStats
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.control+"/gc", nil)
	if err != nil {
		return st, err
	}
	err = p.do(req, func(r io.Reader) error { return json.NewDecoder(r).Decode(&st) })
	return st, err
}

// Runtime reports the proxy process's goroutines and memory statistics.
func (p *Process) Runtime(ctx context.Context) (RuntimeStats, error) {
	var st RuntimeStats
	err := p.get(ctx, "/runtime", func(r io.Reader) error { return json.NewDecoder(r).Decode(&st) })
	return st, err
}

// WriteProfile writes the proxy process's runtime/pprof profile name (heap,
// goroutine, ...) to w, in the format debug selects (0: protobuf, as
// go tool pprof reads it); gc runs a garbage collection first, as
// net/http/pprof's ?gc=1 does.
func (p *Process) WriteProfile(ctx context.Context, name string, debug int, gc bool, w io.Writer) error {
	path := fmt.Sprintf("/debug/pprof/%s?debug=%d", name, debug)
	if gc {
		path += "&gc=1"
	}
	return p.get(ctx, path, func(r io.Reader) error {
		_, err := io.Copy(w, r)
		return err
	})
}

// ProcStats reads the proxy process's /proc counters now (RSS among them).
func (p *Process) ProcStats() (ProcStats, error) { return readProcStats(p.PID) }
