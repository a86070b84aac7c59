package auth

import "net/http/pprof"

// HandlePprof serves net/http/pprof's profiles under /debug/pprof/ (heap,
// goroutine, allocs, CPU profile, execution trace) on m, as `go tool
// pprof` expects them, never on http.DefaultServeMux. They reveal no
// tenant data, but the command line and the heap do: they need an admin
// token.
func HandlePprof(m *Mux) {
	m.HandleFunc("GET /debug/pprof/", Admin, pprof.Index)
	m.HandleFunc("GET /debug/pprof/cmdline", Admin, pprof.Cmdline)
	m.HandleFunc("GET /debug/pprof/profile", Admin, pprof.Profile)
	m.HandleFunc("GET /debug/pprof/symbol", Admin, pprof.Symbol)
	m.HandleFunc("POST /debug/pprof/symbol", Admin, pprof.Symbol)
	m.HandleFunc("GET /debug/pprof/trace", Admin, pprof.Trace)
}
