package tokenchecker_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	tokenchecker "github.com/tokenchecker/tokenchecker/bindings/go"
)

// benchToken is a token whose check is cached.
func benchToken(b *testing.B) (*tokenchecker.Checker, string) {
	c := newChecker(b)
	tok := newToken(b, nil)
	if _, err := c.Check(ctx, tok); err != nil {
		b.Fatal(err)
	}
	return c, tok
}

func BenchmarkCheckCached(b *testing.B) {
	c, tok := benchToken(b)
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := c.Check(ctx, tok); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := c.Check(ctx, tok); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

func BenchmarkAuthorizeCached(b *testing.B) {
	c, tok := benchToken(b)
	const alice2 = "urn:globus:auth:identity:a11ce000-0000-4000-8000-000000000002"
	b.Run("go", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := c.Authorize(ctx, tok, []string{alice2}, tokenchecker.AuthorizeOptions{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	// The baseline: the blocking tc_authorize alone, through cgo.
	b.Run("raw-tc_authorize", func(b *testing.B) {
		n := 0
		req := `{"allowed_principals":["` + alice2 + `"]}`
		if st := tokenchecker.RawAuthorize(c, tok, req, func() bool { n++; return n <= b.N }); st != tokenchecker.StatusOK {
			b.Fatal(st)
		}
	})
}

// BenchmarkTryCheckRawC is the baseline: tc_try_check through cgo without the binding's
// work ("cgo"), and in a C loop without even the cgo transition ("c-loop").
func BenchmarkTryCheckRawC(b *testing.B) {
	c, tok := benchToken(b)
	b.Run("cgo", func(b *testing.B) {
		n := 0
		if st := tokenchecker.RawTryCheck(c, tok, func() bool { n++; return n <= b.N }); st != tokenchecker.StatusOK {
			b.Fatal(st)
		}
	})
	b.Run("cgo-parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			if st := tokenchecker.RawTryCheck(c, tok, pb.Next); st != tokenchecker.StatusOK {
				b.Error(st)
			}
		})
	})
	b.Run("c-loop", func(b *testing.B) {
		if st := tokenchecker.RawTryCheckCLoop(c, tok, b.N); st != tokenchecker.StatusOK {
			b.Fatal(st)
		}
	})
}

// discard is a ResponseWriter that keeps only the status, so that the benchmark measures the
// middleware rather than httptest.
type discard struct {
	h      http.Header
	status int
}

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(p []byte) (int, error) { return len(p), nil }
func (d *discard) WriteHeader(s int)           { d.status = s }

func BenchmarkMiddleware(b *testing.B) {
	c, tok := benchToken(b)
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, found := tokenchecker.FromContext(r.Context()); !found {
			w.WriteHeader(http.StatusInternalServerError)
		}
	})
	h := c.Middleware(ok)
	run := func(b *testing.B, auth string, want int) {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			w := &discard{h: http.Header{}}
			for pb.Next() {
				w.status = http.StatusOK
				clear(w.h)
				h.ServeHTTP(w, req)
				if w.status != want {
					b.Errorf("status %d", w.status)
					return
				}
			}
		})
	}
	b.Run("valid", func(b *testing.B) { run(b, "Bearer "+tok, http.StatusOK) })
	b.Run("missing-header", func(b *testing.B) { run(b, "", http.StatusUnauthorized) })
	b.Run("inactive-cached", func(b *testing.B) { run(b, "Bearer tok-inactive", http.StatusUnauthorized) })
}
