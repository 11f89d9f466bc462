package app

import (
	"net/http"
	"net/http/pprof"
)

// mountPprof serves Go's profiler under /debug/pprof/ (HUDDLE_PPROF, on the
// metrics listener only): what docs/benchmarks.md's profiles were taken
// with, e.g. `go tool pprof http://127.0.0.1:9090/debug/pprof/heap`.
func mountPprof(mux *http.ServeMux) {
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
}
